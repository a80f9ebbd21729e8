//! AMQP failures in words: fe2o3-amqp's errors, the peer's error conditions and what the
//! tap heard, classified into [`AmqpErrorKind`]s, on one line, with no secret in them.

use super::*;

pub(super) fn err(kind: AmqpErrorKind, message: impl Into<String>) -> AmqpError {
    AmqpError {
        kind,
        message: message.into(),
    }
}

pub(super) fn timeout(what: &str) -> AmqpError {
    err(
        AmqpErrorKind::Timeout,
        format!("timed out waiting for {what}"),
    )
}

pub(super) fn outcome_name(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Rejected(r) => match &r.error {
            Some(e) => format!("rejected ({})", describe(e)),
            None => "rejected".into(),
        },
        Outcome::Released(_) => "released".into(),
        Outcome::Modified(_) => "modified".into(),
        _ => "unexpected outcome".into(),
    }
}

pub(super) fn message_id_text(id: &fe2o3_amqp::types::messaging::MessageId) -> String {
    use fe2o3_amqp::types::messaging::MessageId;
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

pub(super) fn simple_int(value: &SimpleValue) -> Option<i64> {
    match value {
        SimpleValue::Int(v) => Some(i64::from(*v)),
        SimpleValue::Long(v) => Some(*v),
        SimpleValue::Uint(v) => Some(i64::from(*v)),
        SimpleValue::Ulong(v) => i64::try_from(*v).ok(),
        SimpleValue::Short(v) => Some(i64::from(*v)),
        SimpleValue::Ushort(v) => Some(i64::from(*v)),
        SimpleValue::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/* ----------------------------- error mapping ----------------------------- */

pub(super) fn condition_text(condition: &ErrorCondition) -> String {
    match condition {
        ErrorCondition::AmqpError(e) => Symbol::from(e).0,
        ErrorCondition::ConnectionError(e) => Symbol::from(e).0,
        ErrorCondition::SessionError(e) => Symbol::from(e).0,
        ErrorCondition::LinkError(e) => Symbol::from(e).0,
        ErrorCondition::Custom(s) => s.0.clone(),
        #[allow(unreachable_patterns)]
        _ => "unknown-condition".into(),
    }
}

pub(super) fn describe(error: &definitions::Error) -> String {
    match &error.description {
        Some(d) => format!("{}: {}", condition_text(&error.condition), clip(d)),
        None => condition_text(&error.condition),
    }
}

/// Keeps peer-provided text on one line and reasonably short.
pub(super) fn clip(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

pub(super) fn remote_error(what: &str, error: &definitions::Error) -> AmqpError {
    let unauthorized = condition_text(&error.condition) == "amqp:unauthorized-access";
    let kind = if unauthorized {
        AmqpErrorKind::Unauthorized
    } else {
        AmqpErrorKind::Other
    };
    err(kind, format!("{what} refused by peer: {}", describe(error)))
}

/// The peer ended the session or closed the connection with `error` during `what`:
/// unauthorized if its condition says so, else closed.
fn stopped_with(what: &str, error: &definitions::Error) -> AmqpError {
    let mut error = remote_error(what, error);
    if error.kind == AmqpErrorKind::Other {
        error.kind = AmqpErrorKind::Closed;
    }
    error
}

pub(super) fn stop_reason_error(reason: &SessionStopReason, what: &str) -> AmqpError {
    match reason {
        SessionStopReason::RemoteEndedWithError(e)
        | SessionStopReason::ConnectionStopped(ConnectionStopReason::RemoteClosedWithError(e)) => {
            stopped_with(what, e)
        }
        SessionStopReason::RemoteEnded
        | SessionStopReason::ConnectionStopped(ConnectionStopReason::RemoteClosed) => err(
            AmqpErrorKind::Closed,
            format!("peer closed the session/connection during {what}"),
        ),
        _ => err(
            AmqpErrorKind::Closed,
            format!("connection stopped during {what}"),
        ),
    }
}

pub(super) fn sender_attach_error(e: SenderAttachError, what: &str) -> AmqpError {
    match e {
        SenderAttachError::RemoteClosedWithError(e) => remote_error(what, &e),
        SenderAttachError::SessionStopped(reason) => stop_reason_error(&reason, what),
        SenderAttachError::IncomingTargetIsNone => err(
            AmqpErrorKind::Other,
            format!("{what} refused by peer (no target in attach reply)"),
        ),
        other => err(AmqpErrorKind::Other, format!("{what} failed: {other}")),
    }
}

pub(super) fn receiver_attach_error(e: ReceiverAttachError, what: &str) -> AmqpError {
    match e {
        ReceiverAttachError::RemoteClosedWithError(e) => remote_error(what, &e),
        ReceiverAttachError::SessionStopped(reason) => stop_reason_error(&reason, what),
        ReceiverAttachError::IncomingSourceIsNone => err(
            AmqpErrorKind::Other,
            format!("{what} refused by peer (no source in attach reply)"),
        ),
        other => err(AmqpErrorKind::Other, format!("{what} failed: {other}")),
    }
}

pub(super) fn link_state_error(e: LinkStateError, what: &str) -> AmqpError {
    match e {
        LinkStateError::RemoteDetachedWithError(e) | LinkStateError::RemoteClosedWithError(e) => {
            remote_error(what, &e)
        }
        LinkStateError::SessionStopped(reason) => stop_reason_error(&reason, what),
        other => err(AmqpErrorKind::Closed, format!("{what} failed: {other}")),
    }
}

pub(super) fn send_error(e: SendError) -> AmqpError {
    let what = "put-token request";
    match e {
        SendError::LinkStateError(e) => link_state_error(e, what),
        SendError::Detached(e) => link_state_error(e.into(), what),
        other => err(AmqpErrorKind::Other, format!("{what} failed: {other}")),
    }
}

pub(super) fn recv_error(e: RecvError) -> AmqpError {
    let what = "waiting for the put-token response";
    match e {
        RecvError::LinkStateError(e) => link_state_error(e, what),
        other => err(AmqpErrorKind::Other, format!("{what} failed: {other}")),
    }
}

pub(super) fn begin_error(e: BeginError) -> AmqpError {
    match e {
        BeginError::RemoteEndedWithError(e) => remote_error("session begin", &e),
        BeginError::ConnectionStopped(ConnectionStopReason::RemoteClosedWithError(e)) => {
            let mut error = remote_error("session begin", &e);
            error.kind = AmqpErrorKind::Closed;
            error
        }
        BeginError::RemoteEnded | BeginError::ConnectionStopped(_) => err(
            AmqpErrorKind::Closed,
            "peer closed the connection during session begin",
        ),
        other => err(
            AmqpErrorKind::Other,
            format!("session begin failed: {other}"),
        ),
    }
}

/// The session's `begin` failed before the peer's `open` arrived: with the open pipelined,
/// that is the peer's answer to our `open`, named by [`classify_open_error`] as if the open
/// had failed.
pub(super) fn open_refused(e: BeginError, tap: &Heard, sasl: &str) -> AmqpError {
    let open_error = match e {
        BeginError::ConnectionStopped(ConnectionStopReason::RemoteClosedWithError(e)) => {
            OpenError::RemoteClosedWithError(e)
        }
        BeginError::ConnectionStopped(ConnectionStopReason::RemoteClosed) => {
            OpenError::RemoteClosed
        }
        // The stream ended (or broke) before the peer's `open`.
        BeginError::ConnectionStopped(_) => OpenError::Io(std::io::ErrorKind::UnexpectedEof.into()),
        other => {
            return heard_wrong_header(tap, sasl)
                .unwrap_or_else(|| err(AmqpErrorKind::Other, format!("AMQP open failed: {other}")))
        }
    };
    classify_open_error(open_error, tap, sasl)
}

/// What the first bytes say, whatever error fe2o3 made of them: not AMQP at all, or the
/// other protocol header (SASL where none was configured, or the reverse). fe2o3 reports
/// a header mismatch as `ProtocolHeaderMismatch` on the SASL path, as `NotImplemented` on
/// the plain AMQP path, and after a pipelined open as a stopped connection.
fn heard_wrong_header(tap: &Heard, sasl: &str) -> Option<AmqpError> {
    if let Some(preview) = tap.non_amqp_preview() {
        return Some(not_amqp(&preview));
    }
    match (tap.first_header_id(), sasl) {
        (Some(3), "none") => Some(err(
            AmqpErrorKind::Other,
            "peer requires SASL but none was configured",
        )),
        (Some(0), s) if s != "none" => Some(err(
            AmqpErrorKind::Other,
            "peer does not support SASL (it answered with a plain AMQP header)",
        )),
        _ => None,
    }
}

pub(super) fn classify_open_error(e: OpenError, tap: &Heard, sasl: &str) -> AmqpError {
    if let Some(error) = heard_wrong_header(tap, sasl) {
        return error;
    }
    match e {
        OpenError::ProtocolHeaderMismatch(header) => err(
            AmqpErrorKind::Other,
            format!(
                "AMQP protocol header mismatch (peer sent {:?})",
                header.as_ref()
            ),
        ),
        OpenError::SaslError { code, .. } => {
            let kind = if code == SaslCode::Auth {
                AmqpErrorKind::Unauthorized
            } else {
                AmqpErrorKind::Other
            };
            err(
                kind,
                format!("SASL {sasl} rejected by the peer (sasl-outcome {code:?})"),
            )
        }
        OpenError::NotImplemented(_) => err(
            AmqpErrorKind::Other,
            format!("peer does not offer SASL mechanism {sasl}"),
        ),
        OpenError::RemoteClosedWithError(e) => stopped_with("AMQP open", &e),
        OpenError::RemoteClosed => err(
            AmqpErrorKind::Closed,
            "peer closed the connection during AMQP open",
        ),
        OpenError::Io(io) => io_error(io, tap),
        OpenError::TransportError(t) => {
            if tap.total() == 0 {
                err(
                    AmqpErrorKind::Closed,
                    "peer closed the connection before any AMQP data",
                )
            } else {
                err(
                    AmqpErrorKind::Other,
                    format!("AMQP transport error during open: {t}"),
                )
            }
        }
        other => err(AmqpErrorKind::Other, format!("AMQP open failed: {other}")),
    }
}

pub(super) fn not_amqp(preview: &str) -> AmqpError {
    err(
        AmqpErrorKind::NotAmqp,
        format!("peer does not speak AMQP (it sent \"{preview}\")"),
    )
}

pub(super) fn io_error(io: std::io::Error, tap: &Heard) -> AmqpError {
    use std::io::ErrorKind::*;
    match io.kind() {
        UnexpectedEof | BrokenPipe | ConnectionReset | ConnectionAborted => {
            let message = if tap.total() == 0 {
                "peer closed the connection before sending an AMQP protocol header".to_string()
            } else {
                "peer closed the connection before completing AMQP open".to_string()
            };
            err(AmqpErrorKind::Closed, message)
        }
        _ => err(
            AmqpErrorKind::Other,
            format!("I/O error during AMQP open: {io}"),
        ),
    }
}

/* ------------------------------ secret scrub ----------------------------- */

/* ---------------------------- stream recorder ---------------------------- */

//! AMQP 1.0 connectivity probe for Azure IoT Hub / DPS.
//!
//! Why this exists: "port 5671 is open and TLS works" does not mean a device can
//! talk AMQP to IoT Hub. Proxies, TLS-inspecting middleboxes and mis-routed
//! endpoints frequently answer with HTTP, hang after the handshake, or accept the
//! connection but refuse the credentials. This module walks the exact sequence an
//! Azure IoT SDK uses and reports *where* it stopped:
//!
//! 1. `open`: SASL (ANONYMOUS / PLAIN / none), AMQP `open` and `begin`. Success
//!    proves the peer speaks AMQP, independent of whether it accepts our identity.
//! 2. `auth`: optional CBS `put-token` on the `$cbs` node (implemented with plain
//!    links, because `fe2o3-amqp-cbs` treats only status 202 as success while IoT
//!    Hub answers 200), then an attach of a sender link to e.g.
//!    `/devices/{id}/messages/events`. Nothing is ever sent on that link.
//!
//! TLS is the caller's business: [`handshake`] receives an already established
//! stream and does not exchange the AMQP TLS protocol header. Every wait is bounded
//! by the caller's deadline. Secrets (SAS token, PLAIN password) never appear in
//! messages or `Debug` output: all text coming back is scrubbed before it is
//! returned.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgeprobe_iotedge::secret::{Scrubber, Secret};
use fe2o3_amqp::connection::{ConnectionStopReason, OpenError};
use fe2o3_amqp::link::{
    DetachError, LinkStateError, ReceiverAttachError, RecvError, SendError, SenderAttachError,
    SessionStopReason,
};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::{BeginError, SessionHandle};
use fe2o3_amqp::types::definitions::{self, ErrorCondition};
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Message, Outcome, Properties};
use fe2o3_amqp::types::performatives::Open;
use fe2o3_amqp::types::primitives::{SimpleValue, Symbol, Value};
use fe2o3_amqp::types::sasl::SaslCode;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout_at, Instant};

use crate::tap::{Heard, Tap};

/// What to connect with and what to prove.
pub struct AmqpParams {
    /// Sent in the AMQP `open` frame (and as SASL hostname).
    pub hostname: String,
    /// Our container id, e.g. the device id.
    pub container_id: String,
    pub sasl: AmqpSasl,
    /// `None` => no put-token (e.g. `--no-auth` or SASL PLAIN).
    pub cbs: Option<CbsPutToken>,
    /// `Some` => attach a sender to this address after auth (nothing is sent).
    pub link_address: Option<String>,
}

pub enum AmqpSasl {
    None,
    Anonymous,
    Plain { username: String, password: String },
}

pub struct CbsPutToken {
    /// e.g. `myhub.azure-devices.net/devices/dev1`
    pub audience: String,
    pub token: String,
}

/// Result of [`handshake`]. `auth` is `None` when neither CBS, PLAIN credentials
/// nor a link attach were attempted (or the protocol phase failed).
#[derive(Debug)]
pub struct AmqpTrace {
    pub open: Step,
    pub auth: Option<Step>,
}

#[derive(Debug)]
pub struct Step {
    pub duration: Duration,
    pub result: Result<StepOk, AmqpError>,
}

#[derive(Debug, Default)]
pub struct StepOk {
    pub detail: Vec<(&'static str, String)>,
}

/// One human-readable line; never contains the token or password.
#[derive(Debug, Clone)]
pub struct AmqpError {
    pub kind: AmqpErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmqpErrorKind {
    Timeout,
    NotAmqp,
    Closed,
    Unauthorized,
    Other,
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AmqpError {}

impl fmt::Debug for AmqpParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpParams")
            .field("hostname", &self.hostname)
            .field("container_id", &self.container_id)
            .field("sasl", &self.sasl)
            .field("cbs", &self.cbs)
            .field("link_address", &self.link_address)
            .finish()
    }
}

impl fmt::Debug for AmqpSasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmqpSasl::None => f.write_str("None"),
            AmqpSasl::Anonymous => f.write_str("Anonymous"),
            AmqpSasl::Plain { username, .. } => f
                .debug_struct("Plain")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl fmt::Debug for CbsPutToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CbsPutToken")
            .field("audience", &self.audience)
            .field("token", &"<redacted>")
            .finish()
    }
}

fn err(kind: AmqpErrorKind, message: impl Into<String>) -> AmqpError {
    AmqpError {
        kind,
        message: message.into(),
    }
}

fn timeout(what: &str) -> AmqpError {
    err(
        AmqpErrorKind::Timeout,
        format!("timed out waiting for {what}"),
    )
}

/// Runs the probe on an established (already TLS-wrapped) stream. Never panics.
pub async fn handshake<S>(stream: S, params: &AmqpParams, deadline: Instant) -> AmqpTrace
where
    S: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug + 'static,
{
    let mut trace = run(stream, params, deadline).await;
    let scrubber = scrubber_of(params);
    for step in std::iter::once(&mut trace.open).chain(trace.auth.as_mut()) {
        match &mut step.result {
            Ok(ok) => ok
                .detail
                .iter_mut()
                .for_each(|(_, v)| *v = scrubber.scrub(v)),
            Err(e) => e.message = scrubber.scrub(&e.message),
        }
    }
    trace
}

async fn run<S>(stream: S, params: &AmqpParams, deadline: Instant) -> AmqpTrace
where
    S: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug + 'static,
{
    let started = Instant::now();
    let (stream, tap) = Tap::new(stream, RECORD_LIMIT);
    let stream = stream.deferring_write_errors();
    let mut builder = Connection::builder()
        .container_id(params.container_id.clone())
        .hostname(params.hostname.as_str())
        .sasl_hostname(params.hostname.as_str());
    let (plain, sasl_name) = match &params.sasl {
        AmqpSasl::None => (false, "none"),
        AmqpSasl::Anonymous => {
            builder = builder.sasl_profile(SaslProfile::Anonymous);
            (false, "ANONYMOUS")
        }
        AmqpSasl::Plain { username, password } => {
            builder = builder.sasl_profile(SaslProfile::Plain {
                username: username.clone(),
                password: password.clone(),
            });
            (true, "PLAIN")
        }
    };
    let step = |result| Step {
        duration: started.elapsed(),
        result,
    };
    let mut connection = match timeout_at(deadline, builder.open_with_stream(stream)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(OpenError::SaslError {
            code: SaslCode::Auth,
            ..
        })) if plain => {
            // SASL worked and answered: the protocol is fine, the credentials are not.
            let open = step(Ok(detail(&[("sasl", "rejected")])));
            let auth = Step {
                duration: Duration::ZERO,
                result: Err(err(
                    AmqpErrorKind::Unauthorized,
                    "SASL PLAIN credentials rejected by the peer (sasl-outcome auth)",
                )),
            };
            return AmqpTrace {
                open,
                auth: Some(auth),
            };
        }
        Ok(Err(e)) => {
            return AmqpTrace {
                open: step(Err(classify_open_error(e, &tap, sasl_name))),
                auth: None,
            }
        }
        Err(_) => {
            let error = match tap.non_amqp_preview() {
                Some(preview) => not_amqp(&preview),
                None => timeout(tap.waiting_for(sasl_name != "none")),
            };
            return AmqpTrace {
                open: step(Err(error)),
                auth: None,
            };
        }
    };

    let mut open_detail = detail(&[("sasl", sasl_name)]);
    if let Some(container) = tap.remote_container() {
        open_detail.detail.push(("remote_container", container));
    }
    let mut session = match timeout_at(deadline, Session::begin(&mut connection)).await {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            let open = step(Err(begin_error(e)));
            close_connection(connection, deadline).await;
            return AmqpTrace { open, auth: None };
        }
        Err(_) => {
            let open = step(Err(timeout("the session begin reply")));
            return AmqpTrace { open, auth: None };
        }
    };
    open_detail.detail.push(("session", "begun".into()));
    let open = step(Ok(open_detail));

    let auth = if params.cbs.is_some() || plain || params.link_address.is_some() {
        let auth_started = Instant::now();
        let result = authorize(&mut session, params, plain, deadline).await;
        Some(Step {
            duration: auth_started.elapsed(),
            result,
        })
    } else {
        None
    };

    // The answer is in: dropping the handles sends `end` and `close` without waiting for the
    // peer's replies (two round trips that prove nothing). fe2o3-amqp's engine task finishes
    // the close in the background, so the check ends as soon as its last answer arrives.
    drop(session);
    drop(connection);
    AmqpTrace { open, auth }
}

async fn close_connection(
    mut connection: fe2o3_amqp::connection::ConnectionHandle<()>,
    deadline: Instant,
) {
    let _ = timeout_at(deadline, connection.close()).await;
}

fn detail(pairs: &[(&'static str, &str)]) -> StepOk {
    StepOk {
        detail: pairs.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    }
}

/// CBS put-token (if requested) followed by the link attach (if requested).
async fn authorize(
    session: &mut SessionHandle<()>,
    params: &AmqpParams,
    plain: bool,
    deadline: Instant,
) -> Result<StepOk, AmqpError> {
    let mut ok = StepOk::default();
    if plain {
        ok.detail.push(("sasl_plain", "accepted".into()));
    }
    if let Some(cbs) = &params.cbs {
        let status = put_token(session, cbs, deadline).await?;
        ok.detail.push(("cbs_status", status));
    }
    if let Some(address) = &params.link_address {
        attach_probe_link(session, address, deadline).await?;
        ok.detail.push(("link", "attached".into()));
    }
    Ok(ok)
}

async fn put_token(
    session: &mut SessionHandle<()>,
    cbs: &CbsPutToken,
    deadline: Instant,
) -> Result<String, AmqpError> {
    let n = next_id();
    let reply_to = format!("cbs-reply-{n}");
    let mut sender = timeout_at(
        deadline,
        Sender::attach(session, format!("cbs-sender-{n}"), "$cbs"),
    )
    .await
    .map_err(|_| timeout("the $cbs sender link attach"))?
    .map_err(|e| sender_attach_error(e, "$cbs sender link"))?;
    let mut receiver = timeout_at(
        deadline,
        Receiver::builder()
            .name(format!("cbs-receiver-{n}"))
            .source("$cbs")
            .target(reply_to.as_str())
            .attach(session),
    )
    .await
    .map_err(|_| timeout("the $cbs receiver link attach"))?
    .map_err(|e| receiver_attach_error(e, "$cbs receiver link"))?;

    let message_id = format!("edgeprobe-put-token-{}-{n}", std::process::id());
    let request = Message::builder()
        .properties(
            Properties::builder()
                .message_id(message_id.clone())
                .to("$cbs")
                .reply_to(reply_to.clone())
                .build(),
        )
        .application_properties(
            ApplicationProperties::builder()
                .insert("operation", "put-token")
                .insert("type", "servicebus.windows.net:sastoken")
                .insert("name", cbs.audience.as_str())
                .build(),
        )
        .value(cbs.token.as_str())
        .build();
    match timeout_at(deadline, sender.send(request)).await {
        Err(_) => return Err(timeout("the put-token request to be accepted")),
        Ok(Err(e)) => return Err(send_error(e)),
        Ok(Ok(Outcome::Accepted(_))) => {}
        Ok(Ok(other)) => {
            return Err(err(
                AmqpErrorKind::Other,
                format!(
                    "put-token request was not accepted by $cbs: {}",
                    outcome_name(&other)
                ),
            ))
        }
    }

    let (status, description) = loop {
        let delivery = timeout_at(deadline, receiver.recv::<Body<Value>>())
            .await
            .map_err(|_| timeout("the put-token response on $cbs"))?
            .map_err(recv_error)?;
        let _ = timeout_at(deadline, receiver.accept(&delivery)).await;
        let message = delivery.message();
        let correlated = message
            .properties
            .as_ref()
            .and_then(|p| p.correlation_id.as_ref())
            .is_some_and(|id| message_id_text(id) == message_id);
        if !correlated {
            continue; // not ours; keep waiting until the deadline
        }
        let props = message.application_properties.as_ref();
        let status = props
            .and_then(|p| p.get("status-code"))
            .and_then(simple_int);
        let description = props
            .and_then(|p| p.get("status-description"))
            .and_then(|v| match v {
                SimpleValue::String(s) => Some(s.clone()),
                _ => None,
            });
        break (status, description);
    };
    // Dropping the CBS links detaches them without waiting for the peer's detach replies:
    // the telemetry attach need not wait two round trips for links no one uses again.
    drop(sender);
    drop(receiver);

    let described = |code: &str| match &description {
        Some(d) => format!(
            "CBS put-token for {} answered {code}: {}",
            cbs.audience,
            clip(d)
        ),
        None => format!("CBS put-token for {} answered {code}", cbs.audience),
    };
    match status {
        Some(code @ (200 | 202)) => Ok(code.to_string()),
        Some(code @ (401 | 403)) => Err(err(
            AmqpErrorKind::Unauthorized,
            described(&code.to_string()),
        )),
        Some(code) => Err(err(AmqpErrorKind::Other, described(&code.to_string()))),
        None => Err(err(
            AmqpErrorKind::Other,
            described("without a status-code"),
        )),
    }
}

/// Attach a sender to `address` to prove authorization, then close it (nothing is
/// sent). A refusal may arrive as a failed attach or as a detach right after the
/// attach, so the close result is inspected as well.
async fn attach_probe_link(
    session: &mut SessionHandle<()>,
    address: &str,
    deadline: Instant,
) -> Result<(), AmqpError> {
    let what = format!("link attach to {address}");
    let sender = timeout_at(
        deadline,
        Sender::attach(session, format!("edgeprobe-link-{}", next_id()), address),
    )
    .await
    .map_err(|_| timeout(&format!("the {what}")))?
    .map_err(|e| sender_attach_error(e, &what))?;
    match timeout_at(deadline, sender.close()).await {
        Err(_) => Err(timeout(&format!("the detach reply after the {what}"))),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => match e {
            DetachError::RemoteDetachedWithError(e) | DetachError::RemoteClosedWithError(e) => {
                Err(remote_error(&what, &e))
            }
            DetachError::SessionStopped(reason) => Err(stop_reason_error(&reason, &what)),
            // A plain closing detach from the peer: the link was attached.
            _ => Ok(()),
        },
    }
}

fn next_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn outcome_name(outcome: &Outcome) -> String {
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

fn message_id_text(id: &fe2o3_amqp::types::messaging::MessageId) -> String {
    use fe2o3_amqp::types::messaging::MessageId;
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn simple_int(value: &SimpleValue) -> Option<i64> {
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

fn condition_text(condition: &ErrorCondition) -> String {
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

fn describe(error: &definitions::Error) -> String {
    match &error.description {
        Some(d) => format!("{}: {}", condition_text(&error.condition), clip(d)),
        None => condition_text(&error.condition),
    }
}

/// Keeps peer-provided text on one line and reasonably short.
fn clip(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

fn remote_error(what: &str, error: &definitions::Error) -> AmqpError {
    let unauthorized = condition_text(&error.condition) == "amqp:unauthorized-access";
    let kind = if unauthorized {
        AmqpErrorKind::Unauthorized
    } else {
        AmqpErrorKind::Other
    };
    err(kind, format!("{what} refused by peer: {}", describe(error)))
}

fn stop_reason_error(reason: &SessionStopReason, what: &str) -> AmqpError {
    match reason {
        SessionStopReason::RemoteEndedWithError(e)
        | SessionStopReason::ConnectionStopped(ConnectionStopReason::RemoteClosedWithError(e)) => {
            let mut error = remote_error(what, e);
            if error.kind == AmqpErrorKind::Other {
                error.kind = AmqpErrorKind::Closed;
            }
            error
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

fn sender_attach_error(e: SenderAttachError, what: &str) -> AmqpError {
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

fn receiver_attach_error(e: ReceiverAttachError, what: &str) -> AmqpError {
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

fn link_state_error(e: LinkStateError, what: &str) -> AmqpError {
    match e {
        LinkStateError::RemoteDetachedWithError(e) | LinkStateError::RemoteClosedWithError(e) => {
            remote_error(what, &e)
        }
        LinkStateError::SessionStopped(reason) => stop_reason_error(&reason, what),
        other => err(AmqpErrorKind::Closed, format!("{what} failed: {other}")),
    }
}

fn send_error(e: SendError) -> AmqpError {
    let what = "put-token request";
    match e {
        SendError::LinkStateError(e) => link_state_error(e, what),
        SendError::Detached(e) => link_state_error(e.into(), what),
        other => err(AmqpErrorKind::Other, format!("{what} failed: {other}")),
    }
}

fn recv_error(e: RecvError) -> AmqpError {
    let what = "waiting for the put-token response";
    match e {
        RecvError::LinkStateError(e) => link_state_error(e, what),
        other => err(AmqpErrorKind::Other, format!("{what} failed: {other}")),
    }
}

fn begin_error(e: BeginError) -> AmqpError {
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

fn classify_open_error(e: OpenError, tap: &Heard, sasl: &str) -> AmqpError {
    if let Some(preview) = tap.non_amqp_preview() {
        return not_amqp(&preview);
    }
    // fe2o3 reports a header mismatch as `ProtocolHeaderMismatch` on the SASL path
    // but as `NotImplemented` on the plain AMQP path, so look at the bytes instead.
    match (tap.first_header_id(), sasl) {
        (Some(3), "none") => {
            return err(
                AmqpErrorKind::Other,
                "peer requires SASL but none was configured",
            )
        }
        (Some(0), s) if s != "none" => {
            return err(
                AmqpErrorKind::Other,
                "peer does not support SASL (it answered with a plain AMQP header)",
            )
        }
        _ => {}
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
        OpenError::RemoteClosedWithError(e) => {
            let mut error = remote_error("AMQP open", &e);
            if error.kind == AmqpErrorKind::Other {
                error.kind = AmqpErrorKind::Closed;
            }
            error
        }
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

fn not_amqp(preview: &str) -> AmqpError {
    err(
        AmqpErrorKind::NotAmqp,
        format!("peer does not speak AMQP (it sent \"{preview}\")"),
    )
}

fn io_error(io: std::io::Error, tap: &Heard) -> AmqpError {
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

fn scrubber_of(params: &AmqpParams) -> Scrubber {
    let mut scrubber = Scrubber::new();
    if let AmqpSasl::Plain { username, password } = &params.sasl {
        scrubber.add_basic(username, &Secret::new(password.clone()));
    }
    if let Some(cbs) = &params.cbs {
        scrubber.add(&Secret::new(cbs.token.clone()));
    }
    scrubber
}

/* ---------------------------- stream recorder ---------------------------- */

const RECORD_LIMIT: usize = 4096;

/// What the peer sent, read to tell "not AMQP" from "closed", to name the step a timeout
/// happened in, and to name the peer's container.
trait AmqpHeard {
    fn non_amqp_preview(&self) -> Option<String>;
    fn first_header_id(&self) -> Option<u8>;
    fn waiting_for(&self, sasl: bool) -> &'static str;
    fn remote_container(&self) -> Option<String>;
}

impl AmqpHeard for Heard {
    /// Printable prefix of the peer's bytes if they do not start like AMQP.
    fn non_amqp_preview(&self) -> Option<String> {
        let head = self.head();
        if head.is_empty() || b"AMQP".starts_with(&head[..head.len().min(4)]) {
            return None;
        }
        let line = head
            .split(|b| *b == b'\r' || *b == b'\n')
            .next()
            .unwrap_or(&[]);
        let text: String = line
            .iter()
            .take(60)
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        Some(text)
    }

    /// Protocol id of the peer's first protocol header (0 = AMQP, 3 = SASL).
    fn first_header_id(&self) -> Option<u8> {
        let head = self.head();
        (head.len() >= 5 && head[..4] == *b"AMQP").then(|| head[4])
    }

    fn waiting_for(&self, sasl: bool) -> &'static str {
        let head = self.head();
        let has = |id: u8| head.windows(5).any(|w| w[..4] == *b"AMQP" && w[4] == id);
        if head.is_empty() {
            "the peer's AMQP protocol header"
        } else if has(0) {
            "the peer's AMQP open frame"
        } else if sasl && has(3) {
            "the SASL negotiation to complete"
        } else {
            "the AMQP protocol header exchange"
        }
    }

    /// The container-id of the peer's `open` frame: the first frame after its AMQP protocol
    /// header, decoded with serde_amqp (fe2o3-amqp does not expose the remote `open`).
    fn remote_container(&self) -> Option<String> {
        let head = self.head();
        let header = b"AMQP\x00\x01\x00\x00";
        let start = head.windows(8).rposition(|w| w == header)? + 8;
        remote_open(head.get(start..)?).map(|open| open.container_id.chars().take(200).collect())
    }
}

/// Decodes an AMQP frame (size, data offset, type 0, channel) that carries an `open`.
fn remote_open(frame: &[u8]) -> Option<Open> {
    let size = u32::from_be_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    let doff = usize::from(*frame.get(4)?) * 4;
    if *frame.get(5)? != 0 {
        return None; // not an AMQP frame (1 = SASL)
    }
    serde_amqp::from_slice(frame.get(doff..size)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer sends it: 8-byte header (size, doff 2, type 0, channel 0), then `open`.
    fn frame_of(open: &Open) -> Vec<u8> {
        let body = serde_amqp::to_vec(open).unwrap();
        let mut frame = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&[2, 0, 0, 0]);
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn the_peers_container_id_comes_from_its_open_frame() {
        let open = Open {
            container_id: "IoTHub-7a1".into(),
            hostname: Some("hub.azure-devices.net".into()),
            max_frame_size: 65536.into(),
            channel_max: 8191.into(),
            idle_time_out: Some(240_000),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let mut head = b"AMQP\x03\x01\x00\x00AMQP\x00\x01\x00\x00".to_vec();
        head.extend_from_slice(&frame_of(&open));
        let heard = Heard::of(&head);
        assert_eq!(heard.remote_container().as_deref(), Some("IoTHub-7a1"));

        // Cut short (the recorder keeps only the first bytes), or not AMQP: no name.
        let heard = Heard::of(&head[..head.len() - 3]);
        assert_eq!(heard.remote_container(), None);
        let mut sasl = frame_of(&open);
        sasl[5] = 1;
        assert!(remote_open(&sasl).is_none());
    }
}

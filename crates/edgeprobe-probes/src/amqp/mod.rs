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

mod errors;
mod heard;

use errors::*;
use heard::{AmqpHeard, RECORD_LIMIT};

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
    // Pipelined: `open_with_stream_pipelined` returns once the SASL exchange is done and our
    // AMQP header and `open` are sent; the session's `begin` follows in the same flight, and
    // the peer's `open` (or its refusal) comes back with or before its `begin`.
    let mut connection =
        match timeout_at(deadline, builder.open_with_stream_pipelined(stream)).await {
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

    // The session's `begin` follows the `open` at once, and the links' attaches follow the
    // `begin` (pipelined: nothing waits for the peer here). The peer's `open` and `begin`
    // then come back with the attaches' answers.
    let session = match timeout_at(
        deadline,
        Session::builder().begin_pipelined(&mut connection),
    )
    .await
    {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            let open = step(Err(open_refused(e, &tap, sasl_name)));
            close_connection(connection, deadline).await;
            return AmqpTrace { open, auth: None };
        }
        Err(_) => {
            let open = step(Err(timeout(tap.waiting_for(sasl_name != "none"))));
            return AmqpTrace { open, auth: None };
        }
    };
    let wants_auth = params.cbs.is_some() || plain || params.link_address.is_some();
    let begun = async {
        let result = timeout_at(deadline, session.begun()).await;
        (result, Instant::now())
    };
    let auth = async {
        if !wants_auth {
            return None;
        }
        let result = authorize(&session, params, plain, deadline).await;
        Some((result, Instant::now()))
    };
    let ((begun, begun_at), auth) = tokio::join!(begun, auth);
    let open_step = |result| Step {
        duration: begun_at.saturating_duration_since(started),
        result,
    };
    match begun {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            // Until the peer's `open` is in, a stop is its answer to our `open`; after it,
            // the answer to our `begin`.
            let error = match tap.remote_container() {
                None => open_refused(e, &tap, sasl_name),
                Some(_) => begin_error(e),
            };
            let open = open_step(Err(error));
            close_connection(connection, deadline).await;
            return AmqpTrace { open, auth: None };
        }
        Err(_) => {
            let waiting = match tap.remote_container() {
                None => tap.waiting_for(sasl_name != "none"),
                Some(_) => "the session begin reply",
            };
            let open = open_step(Err(timeout(waiting)));
            return AmqpTrace { open, auth: None };
        }
    }
    let mut open_detail = detail(&[("sasl", sasl_name)]);
    if let Some(container) = tap.remote_container() {
        open_detail.detail.push(("remote_container", container));
    }
    open_detail.detail.push(("session", "begun".into()));
    let open = open_step(Ok(open_detail));
    // The auth step is what came after the session was begun.
    let auth = auth.map(|(result, ended_at)| Step {
        duration: ended_at.saturating_duration_since(begun_at),
        result,
    });

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
    session: &SessionHandle<()>,
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
    session: &SessionHandle<()>,
    cbs: &CbsPutToken,
    deadline: Instant,
) -> Result<String, AmqpError> {
    let n = next_id();
    let reply_to = format!("cbs-reply-{n}");
    // Both links attach in one flight: neither waits for the other's answer, and the first
    // refusal ends the wait for both.
    let sender = async {
        timeout_at(
            deadline,
            Sender::attach(session, format!("cbs-sender-{n}"), "$cbs"),
        )
        .await
        .map_err(|_| timeout("the $cbs sender link attach"))?
        .map_err(|e| sender_attach_error(e, "$cbs sender link"))
    };
    let receiver = async {
        timeout_at(
            deadline,
            Receiver::builder()
                .name(format!("cbs-receiver-{n}"))
                .source("$cbs")
                .target(reply_to.as_str())
                .attach(session),
        )
        .await
        .map_err(|_| timeout("the $cbs receiver link attach"))?
        .map_err(|e| receiver_attach_error(e, "$cbs receiver link"))
    };
    let (mut sender, mut receiver) = tokio::try_join!(sender, receiver)?;

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
    session: &SessionHandle<()>,
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

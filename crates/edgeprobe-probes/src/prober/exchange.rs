//! The `tcp` and `tls` probe kinds: the connection (or the verified handshake) is the
//! answer, unless the check sends a query or expects what the server says first — like
//! blackbox_exporter's query_response.

use edgeprobe_core::{Outcome, PhaseName, PhaseStatus, Reason, Status};
use serde_json::json;
use tokio::time::Instant;

use crate::path::Path;
use crate::BoxIo;
use crate::Failure;

/// The tcp and tls probe kinds: the connection is the answer, unless the check sends
/// something or expects what the server says first.
pub(super) async fn exchange(
    path: &Path<'_>,
    mut io: BoxIo,
    what: String,
) -> Result<Outcome, Failure> {
    use tokio::io::AsyncWriteExt as _;
    let expect = &path.check.expect;
    if path.check.send.is_none() && !expect.wants_banner() {
        return Ok(Outcome::new(Status::Pass, Reason::Ok, what));
    }
    path.rec.start(PhaseName::Protocol);
    if let Some(send) = &path.check.send {
        path.rec.note("sent_bytes", send.len());
        let wrote = tokio::time::timeout_at(path.deadline, async {
            io.write_all(send.as_bytes()).await?;
            io.flush().await
        })
        .await;
        if let Err(why) = wrote
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            path.rec.end(PhaseStatus::Fail, Vec::new());
            return Err((
                Reason::ProtocolError,
                format!("{what}, but sending to it failed: {why}"),
            ));
        }
    }
    let read = read_answer(&mut io, expect, path.deadline).await;
    let text = String::from_utf8_lossy(&read.bytes).into_owned();
    let quoted: String = text.chars().take(200).collect();
    let detail: edgeprobe_core::Detail = vec![
        ("received_bytes".into(), json!(read.bytes.len())),
        ("answer".into(), json!(quoted)),
    ];
    if read.bytes.is_empty() && read.timed_out {
        path.rec.end(PhaseStatus::Fail, detail);
        return Err((
            Reason::ProtocolTimeout,
            format!("{what}, but it sent nothing before the check's time ran out"),
        ));
    }
    match expect.unmet_banner(&text) {
        None => {
            path.rec.end(PhaseStatus::Ok, detail);
            Ok(Outcome::new(
                Status::Pass,
                Reason::Ok,
                format!("{what}; its answer began {quoted:?}"),
            ))
        }
        Some(why) => {
            path.rec.end(PhaseStatus::Fail, detail);
            let ended = match (&read.error, read.timed_out) {
                (Some(e), _) => format!(" (the connection ended: {e})"),
                (None, true) => " (no more came in time)".to_owned(),
                (None, false) => String::new(),
            };
            Ok(Outcome::new(
                Status::Fail,
                Reason::ExpectationFailed,
                format!("{what}, but {why}{ended}; it sent {quoted:?}"),
            )
            .with_fix("something other than the service answered, or the check's expect is wrong"))
        }
    }
}

/// The most a tcp or tls check reads of the server's answer.
const ANSWER_LIMIT: usize = 4096;

/// What a server sent on a tcp or tls check.
struct Answer {
    bytes: Vec<u8>,
    timed_out: bool,
    error: Option<String>,
}

/// Reads the server's answer until it meets `expect` (or can no longer), the peer closes,
/// [`ANSWER_LIMIT`] bytes have come or the deadline passes. With only `body_not_matches`,
/// the first bytes are the answer.
async fn read_answer(
    io: &mut BoxIo,
    expect: &edgeprobe_core::catalog::Expect,
    deadline: Instant,
) -> Answer {
    use tokio::io::AsyncReadExt as _;
    let mut answer = Answer {
        bytes: Vec::new(),
        timed_out: false,
        error: None,
    };
    let mut chunk = [0u8; 1024];
    while answer.bytes.len() < ANSWER_LIMIT {
        match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Err(_) => {
                answer.timed_out = true;
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                let room = ANSWER_LIMIT - answer.bytes.len();
                answer.bytes.extend_from_slice(&chunk[..n.min(room)]);
                let text = String::from_utf8_lossy(&answer.bytes);
                if expect.body_matches.is_none() || expect.unmet_banner(&text).is_none() {
                    break;
                }
            }
            Ok(Err(e)) => {
                answer.error = Some(e.to_string());
                break;
            }
        }
    }
    answer
}

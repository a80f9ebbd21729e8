//! The WebSocket layer of MqttWs and AmqpWs: an upgrade on `/$iothub/websocket` with the
//! subprotocol the runtime asks for (`mqtt`, or `AMQPWSB10` — not fe2o3-amqp-ws's `amqp`),
//! then a byte-stream adapter so MQTT and AMQP run over binary frames unchanged.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{PhaseName, PhaseStatus, Reason};
use futures_util::{Sink, Stream};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::BoxIo;
use crate::Failure;

/// IoT Hub's (and edgeHub's, and DPS's) WebSocket path.
pub const PATH: &str = "/$iothub/websocket";

/// Upgrades `stream` to a WebSocket with `subprotocol`, recording the `ws` phase.
pub async fn upgrade(
    stream: BoxIo,
    host: &str,
    path_and_query: &str,
    subprotocol: &str,
    rec: &PhaseRecorder,
    deadline: Instant,
) -> Result<WsIo<BoxIo>, Failure> {
    rec.start(PhaseName::Ws);
    rec.note("path", path_and_query);
    rec.note("subprotocol", subprotocol);
    let url = format!("wss://{host}{path_and_query}");
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            return Err((
                Reason::WsRejected,
                format!("cannot build the upgrade request for {url}: {e}"),
            ));
        }
    };
    if let Ok(v) = HeaderValue::from_str(subprotocol) {
        request.headers_mut().insert("Sec-WebSocket-Protocol", v);
    }
    let result =
        tokio::time::timeout_at(deadline, tokio_tungstenite::client_async(request, stream)).await;
    match result {
        Ok(Ok((ws, response))) => {
            let echoed = response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            rec.end(
                PhaseStatus::Ok,
                vec![
                    ("status".into(), json!(response.status().as_u16())),
                    ("accepted_subprotocol".into(), json!(echoed)),
                ],
            );
            Ok(WsIo::new(ws))
        }
        Ok(Err(e)) => {
            let failure = match &e {
                WsError::Http(resp) => {
                    let status = resp.status();
                    let server = resp
                        .headers()
                        .get("server")
                        .and_then(|v| v.to_str().ok())
                        .map(|s| format!(", Server: {s}"))
                        .unwrap_or_default();
                    rec.end(
                        PhaseStatus::Fail,
                        vec![("status".into(), json!(status.as_u16()))],
                    );
                    return Err((
                        Reason::WsRejected,
                        format!("the WebSocket upgrade on {path_and_query} was refused with HTTP {status}{server}"),
                    ));
                }
                WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(sub)) => {
                    let why = match sub {
                        SubProtocolError::NoSubProtocol => {
                            "the server did not echo any subprotocol"
                        }
                        SubProtocolError::InvalidSubProtocol => {
                            "the server chose a different subprotocol"
                        }
                        SubProtocolError::ServerSentSubProtocolNoneRequested => {
                            "the server sent a subprotocol we did not ask for"
                        }
                    };
                    (
                        Reason::WsSubprotocol,
                        format!("WebSocket subprotocol {subprotocol:?} not accepted: {why}"),
                    )
                }
                WsError::Io(io) => (
                    Reason::ProtocolError,
                    format!("the connection broke during the WebSocket upgrade: {io}"),
                ),
                other => (
                    Reason::WsRejected,
                    format!("the WebSocket upgrade failed: {other}"),
                ),
            };
            rec.end(
                PhaseStatus::Fail,
                vec![("error".into(), json!(e.to_string()))],
            );
            Err(failure)
        }
        Err(_) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            Err((
                Reason::ProtocolTimeout,
                "no answer to the WebSocket upgrade in time".into(),
            ))
        }
    }
}

/// A byte stream over WebSocket binary frames: each write is one frame, reads concatenate
/// frames. Control frames are handled by tungstenite; a close ends the stream.
#[derive(Debug)]
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

impl<S> WsIo<S> {
    /// Wraps an upgraded WebSocket (client or server side).
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsIo {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn io_err(e: WsError) -> std::io::Error {
    match e {
        WsError::Io(io) => io,
        WsError::ConnectionClosed | WsError::AlreadyClosed => std::io::ErrorKind::BrokenPipe.into(),
        other => std::io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Text(text))) => {
                    self.pending = Bytes::copy_from_slice(text.as_bytes())
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(io_err)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_err)
    }
}

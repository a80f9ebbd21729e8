//! HTTP/1.1 over an established stream, with hyper. The probes use it for IoT Hub's
//! unauthenticated request (whose 401 and `iothub-errorcode` header prove the service), for
//! generic HTTPS endpoints, and to keep the `Date` header for the clock check; the registry
//! walk keeps an [`HttpConnection`] alive for its further requests to the same host.

use std::time::SystemTime;

use bytes::Bytes;
use edgeprobe_core::Reason;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::Failure;
use crate::{sniff, BoxIo};

/// How much of a response body we read: enough for an error JSON or a page title.
const BODY_LIMIT: usize = 16 * 1024;

/// What answered.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The start of the body, lossily decoded.
    pub body: String,
    pub date: Option<SystemTime>,
    /// Our clock when the headers arrived.
    pub received_at: SystemTime,
}

impl HttpAnswer {
    /// The service's clock minus ours, in seconds (the `Date` header has 1 s resolution).
    pub fn clock_offset_secs(&self) -> Option<f64> {
        let date = self.date?;
        Some(match date.duration_since(self.received_at) {
            Ok(ahead) => ahead.as_secs_f64(),
            Err(behind) => -behind.duration().as_secs_f64(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The HTML `<title>`, for naming captive portals and proxy error pages.
    pub fn title(&self) -> Option<String> {
        let lower = self.body.to_ascii_lowercase();
        let start = lower.find("<title")?;
        let open_end = lower[start..].find('>')? + start + 1;
        let close = lower[open_end..].find("</title>")? + open_end;
        let t = self.body[open_end..close].trim();
        (!t.is_empty()).then(|| t.chars().take(80).collect())
    }

    /// "HTTP 302, Server: nginx, title "Guest Wi-Fi login"" — who answered, for messages.
    pub fn who(&self) -> String {
        let mut s = format!("HTTP {}", self.status);
        if let Some(server) = self.header("server") {
            s.push_str(&format!(", Server: {server}"));
        }
        if let Some(title) = self.title() {
            s.push_str(&format!(", title {title:?}"));
        }
        s
    }
}

/// A request to send.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub host: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// Sends one request on `stream` and reads the answer.
pub async fn exchange(
    stream: BoxIo,
    req: &HttpRequest,
    deadline: Instant,
) -> Result<HttpAnswer, Failure> {
    let mut conn = HttpConnection::open(stream, deadline).await?;
    conn.send(req, deadline).await
}

/// An HTTP/1.1 connection that further requests may reuse (keep-alive), until an answer's
/// body is cut short or the peer closes it.
pub struct HttpConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
    /// An answer's body was left unread: the connection cannot carry another request.
    spent: bool,
}

impl std::fmt::Debug for HttpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnection")
            .field("spent", &self.spent)
            .finish()
    }
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpConnection {
    /// HTTP/1.1 on `stream` (nothing is sent until the first request).
    pub async fn open(stream: BoxIo, deadline: Instant) -> Result<Self, Failure> {
        let handshake =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream));
        let (sender, conn) = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(r) => {
                r.map_err(|e| (Reason::ProtocolError, format!("HTTP handshake failed: {e}")))?
            }
            Err(_) => {
                return Err((
                    Reason::ProtocolTimeout,
                    "the HTTP connection could not be set up in time".into(),
                ))
            }
        };
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(HttpConnection {
            sender,
            task,
            spent: false,
        })
    }

    /// Whether another request can go on this connection: the last answer was read to its
    /// end, and the connection's task, once it has run, finds it idle rather than closed (by
    /// the peer, or by a `Connection: close`). Asking before that task has run would say no
    /// to a healthy connection on a busy machine, so this waits for its answer — at most
    /// [`READY_WAIT`] or until `until`; a healthy or a closed connection answers at once.
    pub async fn reusable(&mut self, until: Instant) -> bool {
        if self.spent {
            return false;
        }
        let until = until.min(Instant::now() + READY_WAIT);
        matches!(
            tokio::time::timeout_at(until, self.sender.ready()).await,
            Ok(Ok(()))
        )
    }

    /// Sends `req` and reads the answer: the status and headers by the deadline, the body
    /// until it ends, [`BODY_LIMIT`], [`BODY_WAIT`] or the deadline.
    pub async fn send(
        &mut self,
        req: &HttpRequest,
        deadline: Instant,
    ) -> Result<HttpAnswer, Failure> {
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(req.path_and_query.as_str())
            .header(http::header::HOST, req.host.as_str())
            .header(
                http::header::USER_AGENT,
                concat!("edgeprobe/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let body = Full::new(Bytes::from(req.body.clone().unwrap_or_default()));
        let request = builder.body(body).map_err(|e| {
            (
                Reason::ProtocolError,
                format!("cannot build the request: {e}"),
            )
        })?;
        self.spent = true;
        let response =
            match tokio::time::timeout_at(deadline, self.sender.send_request(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    return Err(if e.is_parse() {
                        (
                            Reason::WrongService,
                            format!("the peer does not speak HTTP: {msg}"),
                        )
                    } else if e.is_incomplete_message() || e.is_closed() {
                        (
                            Reason::ProtocolError,
                            format!("the peer closed the connection without an HTTP answer: {msg}"),
                        )
                    } else {
                        (
                            Reason::ProtocolError,
                            format!("HTTP exchange failed: {msg}"),
                        )
                    });
                }
                Err(_) => {
                    return Err((
                        Reason::ProtocolTimeout,
                        "the HTTP request was sent but no answer came back in time".into(),
                    ))
                }
            };
        let received_at = SystemTime::now();
        // The status and headers decide; the body only adds detail. A body that trickles or
        // never ends (an endless chunked stream) is cut at BODY_WAIT or the deadline, and the
        // answer stands with what arrived.
        let (parts, body) = response.into_parts();
        let (body, ended) = read_body(body, deadline.min(Instant::now() + BODY_WAIT)).await;
        self.spent = !ended;
        let date = parts
            .headers
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok());
        Ok(HttpAnswer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            date,
            received_at,
        })
    }
}

/// How long a kept connection's task may take to say it is idle again.
const READY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long the body may take once the headers are in.
const BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads up to [`BODY_LIMIT`] bytes of a body until it ends or `until`, whichever is first;
/// and whether it ended (all of it read, so the connection can carry another request).
async fn read_body(mut body: hyper::body::Incoming, until: Instant) -> (Vec<u8>, bool) {
    use hyper::body::Body as _;
    let mut out = Vec::new();
    while out.len() < BODY_LIMIT {
        if body.is_end_stream() {
            return (out, true);
        }
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let room = BODY_LIMIT - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Ok(None) => return (out, true),
            // An error mid-body, or time's up: keep what arrived.
            _ => return (out, false),
        }
    }
    let ended = body.is_end_stream();
    (out, ended)
}

/// An empty body, for CONNECT.
pub fn empty() -> Empty<Bytes> {
    Empty::new()
}

/// Describes bytes that were not HTTP.
pub fn not_http(bytes: &[u8]) -> String {
    sniff::classify(bytes).describe()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// Answers each request on `stream` with `answer` until `rounds` are done or the client
    /// hangs up; returns how many requests came.
    async fn responder(stream: &mut DuplexStream, answer: &'static str, rounds: usize) -> usize {
        let mut seen = 0;
        let mut buf = Vec::new();
        while seen < rounds {
            let mut chunk = [0u8; 1024];
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..end + 4);
                seen += 1;
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return seen;
                }
            }
        }
        seen
    }

    fn get() -> HttpRequest {
        HttpRequest {
            method: Method::GET,
            host: "registry.lab".into(),
            path_and_query: "/v2/".into(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn soon() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    const KEEP: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";

    #[tokio::test(flavor = "current_thread")]
    async fn a_kept_connection_carries_request_after_request_on_one_stream() {
        let (client, server) = tokio::io::duplex(4096);
        // Serves until the client hangs up.
        let served =
            tokio::spawn(async move { responder(&mut { server }, KEEP, usize::MAX).await });
        let mut conn = HttpConnection::open(Box::new(client), soon())
            .await
            .unwrap();
        for _ in 0..3 {
            let answer = conn.send(&get(), soon()).await.unwrap();
            assert_eq!((answer.status, answer.body.as_str()), (200, "{}"));
            assert!(conn.reusable(soon()).await, "{conn:?}");
        }
        drop(conn);
        assert_eq!(served.await.unwrap(), 3, "three requests on the one stream");
    }

    /// A stream whose reader stalls its thread for a moment after each read that returned
    /// bytes, as a preempted thread would on a busy machine: whoever waits on the answer may
    /// see the whole body before the connection's task has finished with it.
    #[derive(Debug)]
    struct Preempted(DuplexStream, bool);

    impl tokio::io::AsyncRead for Preempted {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if std::mem::take(&mut self.1) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let before = buf.filled().len();
            let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
            self.1 = buf.filled().len() > before;
            r
        }
    }

    impl tokio::io::AsyncWrite for Preempted {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    // The race CI met: on a multi-threaded runtime the body's end reached the registry walk
    // while the connection's task was still between reading it and saying it was idle, and
    // the kept connection was thrown away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_connection_is_reused_even_when_its_task_lags_behind_the_answer() {
        let (client, server) = tokio::io::duplex(4096);
        let served =
            tokio::spawn(async move { responder(&mut { server }, KEEP, usize::MAX).await });
        let mut conn = HttpConnection::open(Box::new(Preempted(client, false)), soon())
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(conn.send(&get(), soon()).await.unwrap().status, 200);
            assert!(conn.reusable(soon()).await, "{conn:?}");
        }
        drop(conn);
        assert_eq!(served.await.unwrap(), 3, "three requests on the one stream");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_the_peer_closes_or_asks_to_close_is_not_reused() {
        let (client, server) = tokio::io::duplex(4096);
        let close = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        tokio::spawn(async move { responder(&mut { server }, close, 1).await });
        let mut conn = HttpConnection::open(Box::new(client), soon())
            .await
            .unwrap();
        assert_eq!(conn.send(&get(), soon()).await.unwrap().status, 200);
        assert!(!conn.reusable(soon()).await);

        // Keep-alive promised, then the peer hangs up after its answer.
        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(async move { responder(&mut { server }, KEEP, 1).await });
        let mut conn = HttpConnection::open(Box::new(client), soon())
            .await
            .unwrap();
        assert_eq!(conn.send(&get(), soon()).await.unwrap().status, 200);
        assert!(!conn.reusable(soon()).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_cut_short_spends_the_connection() {
        let (client, server) = tokio::io::duplex(4096);
        // Promises 100 bytes, sends 2, then stays silent: the body wait ends it.
        tokio::spawn(async move {
            let mut server = server;
            responder(
                &mut server,
                "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",
                1,
            )
            .await;
            std::future::pending::<()>().await;
        });
        let mut conn = HttpConnection::open(Box::new(client), soon())
            .await
            .unwrap();
        let answer = conn
            .send(
                &get(),
                Instant::now() + std::time::Duration::from_millis(200),
            )
            .await
            .unwrap();
        assert_eq!(answer.body, "{}");
        assert!(!conn.reusable(soon()).await);
    }
}

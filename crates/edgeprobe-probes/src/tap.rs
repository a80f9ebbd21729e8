//! The one stream tap: a transparent wrapper that keeps a copy of the first bytes the peer
//! sent, so a failed handshake can say what answered instead (TLS: an HTTP page on 443;
//! AMQP: which frame it was waiting for, the peer's `open`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a [`Tap`] has seen of the peer: its first bytes, and how many it sent in all.
#[derive(Debug, Default)]
pub struct Heard {
    head: Mutex<Vec<u8>>,
    total: AtomicU64,
}

impl Heard {
    /// The first bytes the peer sent (at most the tap's limit).
    pub fn head(&self) -> Vec<u8> {
        self.head.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// How many bytes the peer sent.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn record(&self, new: &[u8], limit: usize) {
        self.total.fetch_add(new.len() as u64, Ordering::Relaxed);
        if let Ok(mut head) = self.head.lock() {
            let room = limit.saturating_sub(head.len());
            head.extend_from_slice(&new[..new.len().min(room)]);
        }
    }

    /// Heard `bytes`, as if a peer had sent them (for tests of what reads the head).
    #[cfg(test)]
    pub(crate) fn of(bytes: &[u8]) -> Self {
        let heard = Heard::default();
        heard.record(bytes, usize::MAX);
        heard
    }
}

/// A stream that records the first `limit` bytes read from it into a shared [`Heard`].
pub struct Tap<S> {
    inner: S,
    heard: Arc<Heard>,
    limit: usize,
    defer_write_errors: bool,
}

impl<S> Tap<S> {
    pub fn new(inner: S, limit: usize) -> (Self, Arc<Heard>) {
        let heard = Arc::new(Heard::default());
        let tap = Tap {
            inner,
            heard: heard.clone(),
            limit,
            defer_write_errors: false,
        };
        (tap, heard)
    }

    /// Before the peer has sent anything, a write to a peer that already closed (broken
    /// pipe, reset) succeeds: the read side then reports what the peer did send, e.g. an
    /// HTTP error page, instead of a bare "broken pipe".
    pub fn deferring_write_errors(mut self) -> Self {
        self.defer_write_errors = true;
        self
    }

    fn defer(&self, e: &std::io::Error) -> bool {
        use std::io::ErrorKind::*;
        self.defer_write_errors
            && self.heard.total() == 0
            && matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
    }
}

impl<S> std::fmt::Debug for Tap<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("read", &self.heard.total())
            .finish()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.heard.record(new, self.limit);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if self.defer(&e) => Poll::Ready(Ok(buf.len())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if self.defer(&e) => Poll::Ready(Ok(())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn it_keeps_the_first_bytes_and_counts_them_all() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let (mut tap, heard) = Tap::new(ours, 4);
        peer.write_all(b"HTTP/1.1 400").await.unwrap();
        drop(peer);
        let mut all = Vec::new();
        tap.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"HTTP/1.1 400");
        assert_eq!((heard.head(), heard.total()), (b"HTTP".to_vec(), 12));
    }

    #[tokio::test]
    async fn a_closed_peer_s_write_error_waits_for_what_it_said_only_when_asked() {
        let (peer, ours) = tokio::io::duplex(64);
        drop(peer);
        let (mut plain, _) = Tap::new(ours, 4);
        assert!(plain.write_all(b"AMQP").await.is_err());
        let (peer, ours) = tokio::io::duplex(64);
        drop(peer);
        let (deferring, _) = Tap::new(ours, 4);
        let mut deferring = deferring.deferring_write_errors();
        assert!(deferring.write_all(b"AMQP").await.is_ok());
    }
}

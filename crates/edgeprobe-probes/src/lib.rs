//! The layers a probe walks, each timed as a phase and classified into the reason codes of
//! PRODUCT.md: DNS, TCP, an HTTP CONNECT proxy, TLS, a WebSocket upgrade, and the protocol
//! handshakes the IoT Edge runtime performs (MQTT, AMQP, HTTPS).
//!
//! [`Prober`] composes the layers per protocol and implements the runner's `Probe` trait.
//! Every network operation takes the run's deadline; none sleeps or retries on its own.

/// AMQP 1.0 open, CBS put-token and link attach (fe2o3-amqp).
pub mod amqp;
/// Address lookup (hickory-resolver) and `--resolve`/`--connect-to` overrides.
pub mod dns;
/// DPS's rules: what the registration status lookup's answer means for provisioning.
pub mod dps;
/// What to change, per reason.
pub mod fix;
/// HTTP requests over an established stream (hyper): IoT Hub's 401, generic services.
pub mod https;
/// What an answer means: CONNACK codes, IoT Hub's HTTPS answer; pure functions.
pub mod judge;
/// MQTT 3.1.1 CONNECT/CONNACK with rumqttc's codec.
pub mod mqtt;
/// The layers to an endpoint: dns → tcp → [proxy CONNECT] → tls.
pub mod path;
/// The per-protocol layer composition and the runner's `Probe` implementation.
pub mod prober;
/// Service profiles: what the device presents to each service, and what its answer means.
mod profile;
/// HTTP CONNECT tunnels through a proxy (hyper).
pub mod proxy;
/// Container registries (Registry API v2): `/v2/`, pull token, manifest, blob redirect.
pub mod registry;
/// What the probes of one run share, and where credentials may go.
pub mod settings;
/// Recognising what answered when it was not the expected protocol.
pub mod sniff;
/// The one stream tap: the first bytes a peer sent, for naming what answered.
pub mod tap;
/// Connecting to the resolved addresses, IPv6 and IPv4 raced.
pub mod tcp;
/// TLS with rustls: trust roots, chain capture, failure classification.
pub mod tls;
/// WebSocket upgrade (tokio-tungstenite) and a byte-stream adapter over binary frames.
pub mod ws;

pub use prober::{ProbeSettings, Prober};

/// Any byte stream a layer can run over: TCP, a proxy tunnel, TLS, a WebSocket.
pub trait Io:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

/// Why a layer failed: the reason code, and one line for people. Every layer returns it.
pub type Failure = (edgeprobe_core::Reason, String);

/// A boxed stream, so layers compose without naming each other's types.
pub type BoxIo = Box<dyn Io>;

/// Property tests of the parsers of user input.
#[cfg(test)]
mod proptests;

//! The path to one endpoint: dns → tcp → [proxy CONNECT] → tls, the layers every probe
//! walks before its protocol. The prober walks it once per check; the registry walk once
//! more for each further host it is sent to (a token service, a blob's data endpoint).
//!
//! A [`Connector`] in the settings replaces dns → tcp with an in-process stream: the fast
//! tier tests the layers above TCP (TLS, WebSocket, the protocols and their judgement)
//! against the simulated services over `tokio::io::duplex`, without sockets or root.

use std::borrow::Cow;
use std::net::SocketAddr;

use edgeprobe_core::catalog::{CheckDef, IpFamily};
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{PhaseName, PhaseStatus, Reason};
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::time::Instant;

use crate::proxy::{self, ProxyConfig};
use crate::settings::ProbeSettings;
use crate::tls::{self, TlsFacts, TlsSettings};
use crate::Failure;
use crate::{tcp, BoxIo};

/// Where streams come from in place of dns → tcp (an in-process server, in tests).
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// A stream to whatever answers for `host:port`.
    fn connect(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<BoxIo>>;
}

/// One endpoint of one check, with the check's rules and the run's deadline.
pub(crate) struct Path<'a> {
    pub(crate) s: &'a ProbeSettings,
    pub(crate) check: &'a CheckDef,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) rec: &'a PhaseRecorder,
    pub(crate) deadline: Instant,
}

impl Path<'_> {
    /// The TLS settings towards this host: with the device's client certificate only
    /// towards the services it belongs to.
    pub(crate) fn tls_settings(&self) -> Cow<'_, TlsSettings> {
        if self.s.tls.has_client_cert() && !self.s.may_present(self.check, self.host) {
            Cow::Owned(self.s.tls.without_client_cert())
        } else {
            Cow::Borrowed(&self.s.tls)
        }
    }

    /// The proxy this host is reached through, unless `NO_PROXY` exempts it.
    pub(crate) fn proxy(&self) -> Option<&ProxyConfig> {
        self.s
            .proxy
            .as_ref()
            .filter(|_| !proxy::no_proxy_matches(&self.s.no_proxy, self.host))
    }

    /// Whether this check's protocol goes through the proxy (Mqtt and Amqp never do).
    pub(crate) fn uses_proxy(&self) -> bool {
        self.check.protocol.proxiable() && self.proxy().is_some()
    }

    /// Reaches the target: directly, or through a CONNECT tunnel.
    pub(crate) async fn transport(&self, use_proxy: bool) -> Result<BoxIo, Failure> {
        match (self.proxy().filter(|_| use_proxy), &self.s.connector) {
            (None, Some(connector)) => self.connect_in_process(connector.as_ref()).await,
            (None, None) => {
                let addrs = self
                    .s
                    .dns
                    .lookup(self.host, self.port, self.rec, self.deadline)
                    .await?;
                let addrs = prefer_family(addrs, self.check.limits.ip_family);
                let (stream, _) = tcp::connect(&addrs, self.rec, self.deadline).await?;
                Ok(Box::new(stream))
            }
            (Some(p), _) => {
                // A failure reaching the proxy itself is a proxy failure, whatever layer.
                let at_proxy = |(_, m): Failure| {
                    (
                        Reason::ProxyUnreachable,
                        format!("proxy {}: {m}", p.redacted()),
                    )
                };
                let addrs = self
                    .s
                    .dns
                    .lookup(&p.host, p.port, self.rec, self.deadline)
                    .await
                    .map_err(at_proxy)?;
                let (stream, _) = tcp::connect(&addrs, self.rec, self.deadline)
                    .await
                    .map_err(at_proxy)?;
                // A proxy is never one of the device's services: no client certificate.
                proxy::connect(
                    Box::new(stream),
                    p,
                    &self.s.tls.without_client_cert(),
                    self.host,
                    self.port,
                    self.rec,
                    self.deadline,
                )
                .await
            }
        }
    }

    /// A stream from the settings' [`Connector`], timed as the TCP phase.
    async fn connect_in_process(&self, connector: &dyn Connector) -> Result<BoxIo, Failure> {
        self.rec.start(PhaseName::Tcp);
        let connected =
            tokio::time::timeout_at(self.deadline, connector.connect(self.host, self.port)).await;
        let (reason, why) = match connected {
            Ok(Ok(io)) => {
                self.rec
                    .end(PhaseStatus::Ok, vec![("in_process".into(), json!(true))]);
                return Ok(io);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                (Reason::TcpRefused, e.to_string())
            }
            Ok(Err(e)) => (Reason::TcpUnreachable, e.to_string()),
            Err(_) => (Reason::TcpTimeout, "timed out".to_owned()),
        };
        self.rec.end(PhaseStatus::Fail, Vec::new());
        Err((reason, format!("{}:{}: {why}", self.host, self.port)))
    }

    /// The transport, then a verified TLS handshake; what TLS saw goes into `facts`.
    pub(crate) async fn tls(
        &self,
        use_proxy: bool,
        facts: &mut TlsFacts,
    ) -> Result<BoxIo, Failure> {
        let io = self.transport(use_proxy).await?;
        let settings = self.tls_settings();
        Ok(Box::new(
            tls::handshake(io, self.host, &settings, self.rec, self.deadline, facts).await?,
        ))
    }

    /// dns → tcp → [proxy] → tls, for probes that need more connections than the first
    /// (the registry's token service and blob requests).
    pub(crate) async fn open_tls(&self) -> Result<BoxIo, Failure> {
        self.tls(self.uses_proxy(), &mut TlsFacts::default()).await
    }
}

/// Puts the addresses of the preferred family first, keeping the resolver's order within
/// each family: the other family is still tried, after the preferred one.
pub(crate) fn prefer_family(
    mut addrs: Vec<SocketAddr>,
    family: Option<IpFamily>,
) -> Vec<SocketAddr> {
    if let Some(family) = family {
        addrs.sort_by_key(|a| a.is_ipv6() != (family == IpFamily::Ipv6));
    }
    addrs
}

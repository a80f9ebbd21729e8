//! Composes the layers per protocol the way the IoT Edge runtime stacks them:
//!
//! | protocol | layers |
//! |---|---|
//! | mqtt (8883) | dns → tcp → tls → MQTT CONNECT/CONNACK → auth |
//! | amqp (5671) | dns → tcp → tls → AMQP open/begin → CBS put-token + attach |
//! | mqtt-ws (443) | dns → tcp → [proxy] → tls → ws `mqtt` → MQTT |
//! | amqp-ws (443) | dns → tcp → [proxy] → tls → ws `AMQPWSB10` → AMQP |
//! | https (443) | dns → tcp → [proxy] → tls → HTTP request |
//! | registry (443) | dns → tcp → [proxy] → tls → `GET /v2/` → token, manifest, blob `HEAD` ([`crate::registry`]) |
//! | tcp (catalog) | dns → tcp → [send, read the answer] |
//! | tls (catalog) | dns → tcp → tls → [send, read the answer] |
//!
//! and turns what happened into one [`Outcome`]: the first failing layer decides the reason,
//! a protocol answer proves the path, and refused credentials are a warning, not a failure.

use std::sync::Arc;

use edgeprobe_core::catalog::{CheckDef, Target};
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::runner::Probe;
use edgeprobe_core::{
    AuthState, Endpoint, Outcome, PhaseName, PhaseStatus, Protocol, Reason, Status,
};
use edgeprobe_iotedge::identity::{Credentials, DeviceIdentity, DpsIdentity};
use edgeprobe_iotedge::secret::{Scrubber, Secret};
use futures_util::future::BoxFuture;
use http::Method;
use serde_json::json;
use tokio::time::Instant;

use crate::dns::{Dns, Failure};
use crate::https::{HttpAnswer, HttpRequest};
use crate::proxy::ProxyConfig;
use crate::tls::{TlsFacts, TlsSettings};
use crate::{amqp, https, mqtt, proxy, tcp, tls, ws, BoxIo};

/// The client id used when no device identity is known (`--no-auth` without a device id).
pub const ANONYMOUS_DEVICE: &str = "edgeprobe-probe";

/// Everything the probes of one run share.
#[derive(Debug)]
pub struct ProbeSettings {
    /// The run's one resolver: every prober of a run shares it, so each name is asked once.
    pub dns: Arc<Dns>,
    pub tls: TlsSettings,
    /// The device identity used towards IoT Hub, a parent or a gateway.
    pub identity: Option<DeviceIdentity>,
    /// The device's DPS registration, for checks against DPS.
    pub dps: Option<DpsIdentity>,
    pub proxy: Option<ProxyConfig>,
    /// `NO_PROXY` entries.
    pub no_proxy: String,
    /// Prove paths without presenting credentials.
    pub no_auth: bool,
    /// The registries the registry checks may pull from: image and credentials.
    pub registries: Vec<crate::registry::RegistryAccess>,
    /// The hosts of the services the device's credentials belong to (its IoT Hub, DPS,
    /// parent, gateway or edgeHub). Credentials — a token, a client certificate — go to
    /// these only: a check of any other host, whatever its catalog entry says, presents none.
    pub credential_hosts: Vec<String>,
}

impl ProbeSettings {
    /// Whether `check`, at `host`, may present the device's credentials: it asks for them
    /// (a family of the device's services, or `credentials = "device"`), and `host` is one
    /// of the device's own services.
    pub fn may_present(&self, check: &CheckDef, host: &str) -> bool {
        let endpoint = check.endpoint;
        !self.no_auth
            && check.credentials
            && matches!(
                endpoint,
                Endpoint::Iothub | Endpoint::Parent | Endpoint::Gateway | Endpoint::Dps
            )
            && self
                .credential_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }
}

impl ProbeSettings {
    /// Every secret the probes may send, for scrubbing what comes back.
    pub fn scrubber(&self) -> Scrubber {
        let mut scrubber = Scrubber::of(self.identity.iter().flat_map(|i| i.secrets()));
        if let Some(key) = self.dps.as_ref().and_then(|d| d.key.as_ref()) {
            scrubber.add(key);
        }
        if let Some(p) = &self.proxy {
            if let Some(password) = &p.password {
                scrubber.add_basic(p.username.as_deref().unwrap_or_default(), password);
            }
        }
        for r in &self.registries {
            if let Some(password) = &r.password {
                scrubber.add_basic(r.username.as_deref().unwrap_or_default(), password);
            }
        }
        scrubber
    }
}

/// The runner's `Probe`: walks the layers for each check.
#[derive(Debug, Clone)]
pub struct Prober {
    settings: Arc<ProbeSettings>,
    scrubber: Arc<Scrubber>,
}

impl Prober {
    pub fn new(settings: ProbeSettings) -> Self {
        let scrubber = Arc::new(settings.scrubber());
        Prober {
            settings: Arc::new(settings),
            scrubber,
        }
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }
}

impl Probe for Prober {
    fn run<'a>(
        &'a self,
        check: &'a CheckDef,
        target: &'a Target,
        rec: &'a PhaseRecorder,
        deadline: Instant,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(port) = target.port else {
                return Outcome::new(Status::Skip, Reason::NotConfigured, "no port to probe");
            };
            let job = Job {
                s: &self.settings,
                scrubber: &self.scrubber,
                check,
                host: &target.host,
                port,
                rec,
                // A check's own timeout, within the run's deadline.
                deadline: check.limits.deadline(Instant::now(), deadline),
            };
            job.run().await
        })
    }
}

/// One check in flight.
struct Job<'a> {
    s: &'a ProbeSettings,
    scrubber: &'a Scrubber,
    check: &'a CheckDef,
    host: &'a str,
    port: u16,
    rec: &'a PhaseRecorder,
    deadline: Instant,
}

impl Job<'_> {
    /// The TLS settings for this check: with the device's client certificate only towards
    /// the services it belongs to.
    fn tls_settings(&self) -> std::borrow::Cow<'_, TlsSettings> {
        if self.s.tls.has_client_cert() && !self.s.may_present(self.check, self.host) {
            std::borrow::Cow::Owned(self.s.tls.without_client_cert())
        } else {
            std::borrow::Cow::Borrowed(&self.s.tls)
        }
    }

    fn proxy(&self) -> Option<&ProxyConfig> {
        self.s
            .proxy
            .as_ref()
            .filter(|_| !proxy::no_proxy_matches(&self.s.no_proxy, self.host))
    }

    async fn run(&self) -> Outcome {
        let protocol = self.check.protocol;
        let use_proxy = protocol.proxiable() && self.proxy().is_some();
        let mut tls_facts = TlsFacts::default();
        let mut outcome = match self.walk(use_proxy, &mut tls_facts).await {
            Ok(o) => o,
            Err(failure) => self.failed(failure),
        };
        // IPv6 resolved but lost to IPv4: it works, but software that insists on IPv6 (or a
        // Docker network with IPv6 enabled) will not.
        let v6_lost = self
            .rec
            .finished()
            .iter()
            .any(|p| p.name == PhaseName::Tcp && p.status == PhaseStatus::Warn);
        if v6_lost && outcome.status == Status::Pass {
            outcome.status = Status::Warn;
            outcome.reason = Reason::Ipv6Fallback;
            outcome.message.push_str(&format!(
                "; but {} has IPv6 addresses that did not connect (IPv4 did)",
                self.host
            ));
            outcome.fix.get_or_insert_with(|| {
                "fix IPv6 routing on this network, or disable IPv6 where it has no route (e.g. ipv6 = false in [moby_runtime.network])".into()
            });
        }
        if let (Some(min), Some(leaf)) = (self.check.expect.min_cert_days, tls_facts.chain.first())
        {
            if let Some(days) = days_left(&leaf.not_after) {
                if days < f64::from(min) && outcome.status != Status::Fail {
                    outcome.status = Status::Fail;
                    outcome.reason = Reason::CertExpiring;
                    outcome.message = format!(
                        "{}'s certificate ({}) expires in {days:.1} days, sooner than the {min} days the check requires",
                        self.host, leaf.subject
                    );
                    outcome.fix = Some(format!("renew the certificate of {}", self.host));
                }
            }
        }
        // Trusted here, not on the other side of the device: the modules (for the services
        // edgeHub and edgeAgent reach) or the host's services would refuse this chain.
        if let Some(differ) = tls_facts.roots_differ.take() {
            let modules_reach = matches!(
                self.check.endpoint,
                Endpoint::Iothub | Endpoint::Parent | Endpoint::Gateway
            );
            if modules_reach && outcome.status == Status::Pass {
                outcome.status = Status::Warn;
                outcome.reason = Reason::TlsRootsDiffer;
                outcome.fix = Some(
                    "add the root to trust_bundle_cert in /etc/aziot/config.toml (and to the OS store), or remove the TLS inspection that issues this chain".into(),
                );
            }
            outcome.message.push_str(&format!("; but {differ}"));
        }
        // The chain the endpoint presented, trusted or not: support bundles keep it.
        outcome.certificates = tls_facts.chain.into_iter().map(|c| c.pem).collect();
        outcome.via_proxy = use_proxy;
        // Mqtt and Amqp never use the proxy: say so when they fail, beside the cause.
        if let Some(p) = self.proxy() {
            if !protocol.proxiable() && outcome.status == Status::Fail {
                outcome.also.push(Reason::NotProxiable);
                outcome.message.push_str(&format!(
                    " ({} cannot use the proxy {}; it needs direct egress on port {})",
                    protocol.title(),
                    p.redacted(),
                    self.port
                ));
            }
        }
        // Everything below came from peers and errors: scrub it before anyone reads it.
        if outcome.phases.is_empty() {
            outcome.phases = self.rec.finish();
        }
        self.scrubber.scrub_outcome(&mut outcome);
        outcome
    }

    fn failed(&self, (reason, message): Failure) -> Outcome {
        let mut o = Outcome::new(Status::Fail, reason, message);
        o.fix = fix_for(reason, self.check.protocol, self.host, self.port);
        o
    }

    /// Reaches the target: directly, or through a CONNECT tunnel.
    async fn transport(&self, use_proxy: bool) -> Result<BoxIo, Failure> {
        match self.proxy().filter(|_| use_proxy) {
            None => {
                let addrs = self
                    .s
                    .dns
                    .lookup(self.host, self.port, self.rec, self.deadline)
                    .await?;
                let addrs = prefer_family(addrs, self.check.limits.ip_family);
                let (stream, _) = tcp::connect(&addrs, self.rec, self.deadline).await?;
                Ok(Box::new(stream))
            }
            Some(p) => {
                let addrs = self
                    .s
                    .dns
                    .lookup(&p.host, p.port, self.rec, self.deadline)
                    .await
                    .map_err(|(r, m)| {
                        (
                            proxy_layer_reason(r),
                            format!("proxy {}: {m}", p.redacted()),
                        )
                    })?;
                let (stream, _) = tcp::connect(&addrs, self.rec, self.deadline)
                    .await
                    .map_err(|(r, m)| {
                        (
                            proxy_layer_reason(r),
                            format!("proxy {}: {m}", p.redacted()),
                        )
                    })?;
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

    async fn walk(&self, use_proxy: bool, facts: &mut TlsFacts) -> Result<Outcome, Failure> {
        let io = self.transport(use_proxy).await?;
        if self.check.protocol == Protocol::Tcp {
            let what = format!("{}:{} accepted a TCP connection", self.host, self.port);
            return self.exchange(io, what).await;
        }
        let settings = self.tls_settings();
        let tls: BoxIo = Box::new(
            tls::handshake(io, self.host, &settings, self.rec, self.deadline, facts).await?,
        );
        if let Some(why) = self.check.expect.unmet_tls(&facts.seen()) {
            return Ok(Outcome::new(
                Status::Fail,
                Reason::ExpectationFailed,
                format!("{} completed the TLS handshake, but {why}", self.host),
            )
            .with_fix(
                "a TLS-inspecting proxy or another server answered, or the check's expect is wrong",
            ));
        }
        match self.check.protocol {
            Protocol::Tls => {
                let leaf = facts.chain.first();
                let what = format!(
                    "{}:{} completed a {} handshake ({}, issued by {})",
                    self.host,
                    self.port,
                    facts.version.as_deref().unwrap_or("TLS"),
                    leaf.map_or("?", |c| c.subject.as_str()),
                    leaf.map_or("?", |c| c.issuer.as_str()),
                );
                self.exchange(tls, what).await
            }
            Protocol::Mqtt => self.mqtt(tls).await,
            Protocol::MqttWs => {
                let ws =
                    ws::upgrade(tls, self.host, ws::PATH, "mqtt", self.rec, self.deadline).await?;
                self.mqtt(Box::new(ws)).await
            }
            Protocol::Amqp => self.amqp(tls).await,
            Protocol::AmqpWs => {
                let ws = ws::upgrade(
                    tls,
                    self.host,
                    ws::PATH,
                    "AMQPWSB10",
                    self.rec,
                    self.deadline,
                )
                .await?;
                self.amqp(Box::new(ws)).await
            }
            Protocol::Https => self.https(tls).await,
            Protocol::Registry => {
                let ctx = crate::registry::Ctx {
                    s: self.s,
                    check: self.check,
                    host: self.host,
                    port: self.port,
                    rec: self.rec,
                    deadline: self.deadline,
                };
                crate::registry::probe(ctx, tls).await
            }
            other => Ok(Outcome::skip(
                Reason::NotConfigured,
                format!("protocol {other} is not a network probe"),
            )),
        }
    }

    /// The identity to present, if credentials are to be used.
    fn credentials(&self) -> (Option<&DeviceIdentity>, Option<Result<Secret, String>>) {
        let identity = self.s.identity.as_ref();
        if !self.s.may_present(self.check, self.host) {
            return (identity, None);
        }
        let token = identity.and_then(|i| match &i.credentials {
            Credentials::SasKey(_) | Credentials::SignedToken(_) => {
                i.sas_token().map(|r| r.map_err(|e| e.to_string()))
            }
            Credentials::Unavailable(why) => Some(Err(why.clone())),
            _ => None,
        });
        (identity, token)
    }

    fn uses_x509(&self) -> bool {
        self.s.may_present(self.check, self.host)
            && self
                .s
                .identity
                .as_ref()
                .is_some_and(|i| matches!(i.credentials, Credentials::X509 { .. }))
    }

    /// What MQTT CONNECT carries for this endpoint, whether credentials are presented, and
    /// why configured credentials could not be used.
    fn mqtt_params(&self) -> (mqtt::MqttParams, bool, Option<String>) {
        let split = |token: Option<Result<Secret, String>>| match token {
            Some(Ok(t)) => (Some(t), None),
            Some(Err(why)) => (None, Some(why)),
            None => (None, None),
        };
        if self.check.endpoint == Endpoint::Dps {
            let dps = self.s.dps.as_ref();
            let token = dps
                .filter(|_| self.s.may_present(self.check, self.host))
                .and_then(|d| d.sas_token())
                .map(|r| r.map_err(|e| e.to_string()));
            let (password, unusable) = split(token);
            let presenting = password.is_some();
            let params = mqtt::MqttParams {
                client_id: dps
                    .map(|d| d.registration_id.clone())
                    .unwrap_or_else(|| ANONYMOUS_DEVICE.into()),
                username: dps.map(|d| d.mqtt_username()),
                password,
            };
            return (params, presenting, unusable);
        }
        let (identity, token) = self.credentials();
        let device = identity
            .map(|i| i.client_id())
            .unwrap_or_else(|| ANONYMOUS_DEVICE.into());
        let username = identity.map(|i| i.mqtt_username()).unwrap_or_else(|| {
            format!(
                "{}/{ANONYMOUS_DEVICE}/?api-version={}",
                self.host,
                edgeprobe_iotedge::identity::IOTHUB_API_VERSION
            )
        });
        let (password, unusable) = split(token);
        let presenting = password.is_some() || self.uses_x509();
        let params = mqtt::MqttParams {
            client_id: device,
            username: Some(username),
            password,
        };
        (params, presenting, unusable)
    }

    async fn mqtt(&self, mut io: BoxIo) -> Result<Outcome, Failure> {
        let (params, presenting, unusable) = self.mqtt_params();
        let ack = mqtt::connect(&mut io, &params, self.rec, self.deadline).await?;
        let (code, words) = mqtt::describe_code(ack.code);
        let title = self.service_name();
        let mut o = crate::judge::connack(self.service(), presenting, ack.code);
        if presenting {
            let refused = o.auth == Some(AuthState::Rejected);
            self.rec.instant(
                PhaseName::Auth,
                if refused {
                    PhaseStatus::Fail
                } else {
                    PhaseStatus::Ok
                },
                vec![("connack_code".into(), json!(code))],
            );
        }
        if let Some(why) = unusable {
            o.message
                .push_str(&format!("; credentials not tested: {why}"));
        }
        if let Some(why) = self.check.expect.unmet_connack(code) {
            o.status = Status::Fail;
            o.reason = Reason::ExpectationFailed;
            o.message = format!("{title} answered CONNACK {code} ({words}), but {why}");
        }
        Ok(o)
    }

    /// The tcp and tls probe kinds: the connection is the answer, unless the check sends
    /// something or expects what the server says first.
    async fn exchange(&self, mut io: BoxIo, what: String) -> Result<Outcome, Failure> {
        use tokio::io::AsyncWriteExt as _;
        let expect = &self.check.expect;
        if self.check.send.is_none() && !expect.wants_banner() {
            return Ok(Outcome::new(Status::Pass, Reason::Ok, what));
        }
        self.rec.start(PhaseName::Protocol);
        if let Some(send) = &self.check.send {
            self.rec.note("sent_bytes", send.len());
            let wrote = tokio::time::timeout_at(self.deadline, async {
                io.write_all(send.as_bytes()).await?;
                io.flush().await
            })
            .await;
            if let Err(why) = wrote
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                self.rec.end(PhaseStatus::Fail, Vec::new());
                return Err((
                    Reason::ProtocolError,
                    format!("{what}, but sending to it failed: {why}"),
                ));
            }
        }
        let read = read_answer(&mut io, expect, self.deadline).await;
        let text = String::from_utf8_lossy(&read.bytes).into_owned();
        let quoted: String = text.chars().take(200).collect();
        let detail: edgeprobe_core::Detail = vec![
            ("received_bytes".into(), json!(read.bytes.len())),
            ("answer".into(), json!(quoted)),
        ];
        if read.bytes.is_empty() && read.timed_out {
            self.rec.end(PhaseStatus::Fail, detail);
            return Err((
                Reason::ProtocolTimeout,
                format!("{what}, but it sent nothing before the check's time ran out"),
            ));
        }
        match expect.unmet_banner(&text) {
            None => {
                self.rec.end(PhaseStatus::Ok, detail);
                Ok(Outcome::new(
                    Status::Pass,
                    Reason::Ok,
                    format!("{what}; its answer began {quoted:?}"),
                ))
            }
            Some(why) => {
                self.rec.end(PhaseStatus::Fail, detail);
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
                .with_fix(
                    "something other than the service answered, or the check's expect is wrong",
                ))
            }
        }
    }

    /// What the AMQP handshake presents for this endpoint: DPS takes SASL PLAIN with the
    /// registration and a token; IoT Hub and edgeHub take SASL ANONYMOUS then CBS.
    fn amqp_params(&self) -> (amqp::AmqpParams, bool, Option<String>) {
        if self.check.endpoint == Endpoint::Dps {
            let dps = self.s.dps.as_ref();
            let token = dps
                .filter(|_| self.s.may_present(self.check, self.host))
                .and_then(|d| d.sas_token())
                .map(|r| r.map_err(|e| e.to_string()));
            let (sasl, unusable) = match (dps, token) {
                (Some(d), Some(Ok(t))) => (
                    amqp::AmqpSasl::Plain {
                        username: d.resource(),
                        password: t.expose().to_owned(),
                    },
                    None,
                ),
                (_, Some(Err(why))) => (amqp::AmqpSasl::Anonymous, Some(why)),
                _ => (amqp::AmqpSasl::Anonymous, None),
            };
            let presenting = matches!(sasl, amqp::AmqpSasl::Plain { .. });
            let params = amqp::AmqpParams {
                hostname: self.host.to_owned(),
                container_id: dps
                    .map(|d| d.registration_id.clone())
                    .unwrap_or_else(|| ANONYMOUS_DEVICE.into()),
                sasl,
                cbs: None,
                link_address: None,
            };
            return (params, presenting, unusable);
        }
        let (identity, token) = self.credentials();
        let device = identity
            .map(|i| i.client_id())
            .unwrap_or_else(|| ANONYMOUS_DEVICE.into());
        let (cbs, unusable) = match (identity, token) {
            (Some(i), Some(Ok(t))) => (
                Some(amqp::CbsPutToken {
                    audience: i.resource(),
                    token: t.expose().to_owned(),
                }),
                None,
            ),
            (_, Some(Err(why))) => (None, Some(why)),
            _ => (None, None),
        };
        let presenting = cbs.is_some() || self.uses_x509();
        let params = amqp::AmqpParams {
            hostname: self.host.to_owned(),
            container_id: device,
            sasl: amqp::AmqpSasl::Anonymous,
            cbs,
            link_address: identity.filter(|_| presenting).map(|i| i.events_address()),
        };
        (params, presenting, unusable)
    }

    async fn amqp(&self, io: BoxIo) -> Result<Outcome, Failure> {
        let (params, presenting, unusable) = self.amqp_params();
        self.rec.start(PhaseName::Protocol);
        let trace = amqp::handshake(io, &params, self.deadline).await;
        let title = self.service_name();
        let open_detail = |ok: &amqp::StepOk| -> edgeprobe_core::Detail {
            ok.detail
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect()
        };
        let opened_at = match &trace.open.result {
            Ok(ok) => self
                .rec
                .end_after(trace.open.duration, PhaseStatus::Ok, open_detail(ok)),
            Err(e) if matches!(e.kind, amqp::AmqpErrorKind::Unauthorized) => {
                // The service answered SASL: that is AMQP from the real service, refusing us.
                self.rec.end_after(
                    trace.open.duration,
                    PhaseStatus::Ok,
                    vec![("sasl".into(), json!("rejected"))],
                );
                let mut o = if presenting {
                    let mut o = Outcome::new(
                        Status::Fail,
                        Reason::AuthRejected,
                        format!(
                            "the AMQP path works, but {} refused the credentials: {}",
                            self.service_name(),
                            e.message
                        ),
                    );
                    o.auth = Some(AuthState::Rejected);
                    o.fix = fix_for(Reason::AuthRejected, Protocol::Amqp, self.host, self.port);
                    o
                } else {
                    let mut o = Outcome::new(
                        Status::Pass,
                        Reason::Ok,
                        format!(
                            "{} refused an anonymous SASL login: the AMQP path works",
                            self.service_name()
                        ),
                    );
                    o.auth = Some(AuthState::Untested);
                    o
                };
                if let Some(why) = unusable {
                    o.message
                        .push_str(&format!("; credentials not tested: {why}"));
                }
                return Ok(o);
            }
            Err(e) => {
                self.rec.end_after(
                    trace.open.duration,
                    PhaseStatus::Fail,
                    vec![("error".into(), json!(e.message))],
                );
                let reason = match e.kind {
                    amqp::AmqpErrorKind::Timeout => Reason::ProtocolTimeout,
                    amqp::AmqpErrorKind::NotAmqp => Reason::WrongService,
                    _ => Reason::ProtocolError,
                };
                return Err((reason, format!("AMQP: {}", e.message)));
            }
        };
        let mut o = match &trace.auth {
            None => {
                let mut o = Outcome::new(
                    Status::Pass,
                    Reason::Ok,
                    format!("{title} opened an AMQP connection: the AMQP path works"),
                );
                o.auth = Some(AuthState::Untested);
                o
            }
            Some(step) => {
                let status = if step.result.is_ok() {
                    PhaseStatus::Ok
                } else {
                    PhaseStatus::Fail
                };
                let detail = match &step.result {
                    Ok(ok) => open_detail(ok),
                    Err(e) => vec![("error".into(), json!(e.message))],
                };
                self.rec
                    .push(PhaseName::Auth, opened_at, step.duration, status, detail);
                match &step.result {
                    Ok(_) => {
                        let what = if self.check.endpoint == Endpoint::Dps {
                            "SASL PLAIN accepted"
                        } else {
                            "token accepted, telemetry link attached"
                        };
                        let mut o = Outcome::new(
                            Status::Pass,
                            Reason::Ok,
                            format!("{title} accepted the device over AMQP ({what})"),
                        );
                        o.auth = Some(AuthState::Ok);
                        o
                    }
                    Err(e) if matches!(e.kind, amqp::AmqpErrorKind::Unauthorized) => {
                        let mut o = Outcome::new(
                            Status::Fail,
                            Reason::AuthRejected,
                            format!(
                                "the AMQP path works, but {title} refused the credentials: {}",
                                e.message
                            ),
                        );
                        o.auth = Some(AuthState::Rejected);
                        o.fix = fix_for(Reason::AuthRejected, Protocol::Amqp, self.host, self.port);
                        o
                    }
                    Err(e) => {
                        let reason = match e.kind {
                            amqp::AmqpErrorKind::Timeout => Reason::ProtocolTimeout,
                            _ => Reason::ProtocolError,
                        };
                        let mut o = Outcome::new(
                            Status::Warn,
                            reason,
                            format!("the AMQP connection opened, but authentication did not complete: {}", e.message),
                        );
                        o.auth = Some(AuthState::Untested);
                        o
                    }
                }
            }
        };
        if let Some(why) = unusable {
            o.message
                .push_str(&format!("; credentials not tested: {why}"));
        }
        Ok(o)
    }

    /// The service answering this check, for the judgements.
    fn service(&self) -> crate::judge::Service<'_> {
        crate::judge::Service {
            title: self.service_name(),
            endpoint: self.check.endpoint,
            host: self.host,
            port: self.port,
        }
    }

    fn service_name(&self) -> &'static str {
        match self.check.endpoint {
            Endpoint::Iothub => "IoT Hub",
            Endpoint::Dps => "DPS",
            Endpoint::Parent => "the parent's edgeHub",
            Endpoint::Gateway => "the gateway's edgeHub",
            Endpoint::Registry => "the registry",
            Endpoint::Device => "the service",
        }
    }

    /// DPS over HTTPS: the registration status lookup, which never re-registers the device.
    /// Any answer of DPS's own proves the path; [`crate::dps::judge`] says what it means for
    /// provisioning (a 200 carries the registration's state and the assigned hub).
    async fn dps_https(&self, io: BoxIo) -> Result<Outcome, Failure> {
        let Some(dps) = self.s.dps.as_ref() else {
            return Ok(Outcome::skip(
                Reason::NotConfigured,
                "no DPS registration to look up",
            ));
        };
        let token = if self.s.no_auth {
            None
        } else {
            dps.sas_token()
        };
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let mut unusable = None;
        match token {
            Some(Ok(t)) => headers.push(("authorization".to_owned(), t.expose().to_owned())),
            Some(Err(e)) => unusable = Some(e.to_string()),
            None => {}
        }
        let presenting = headers.len() > 1;
        let path = dps.status_lookup_path();
        let req = HttpRequest {
            method: Method::POST,
            host: self.host.to_owned(),
            path_and_query: path.clone(),
            headers,
            body: Some(serde_json::json!({ "registrationId": dps.registration_id }).to_string()),
        };
        self.rec.start(PhaseName::Protocol);
        self.rec.note(
            "request",
            format!("POST {path} (registration status lookup)"),
        );
        let answer = match https::exchange(io, &req, self.deadline).await {
            Ok(a) => a,
            Err(f) => {
                self.rec.end(PhaseStatus::Fail, Vec::new());
                return Err(f);
            }
        };
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
        let error_code = answer
            .header("x-ms-error-code")
            .map(str::to_owned)
            .or_else(|| body.get("errorCode").map(|c| c.to_string()));
        let who = answer.who();
        let j = crate::dps::judge(
            &crate::dps::Registration {
                id_scope: &dps.id_scope,
                registration_id: &dps.registration_id,
                group: dps.group_enrollment,
                presenting,
            },
            &crate::dps::Answer {
                http_status: answer.status,
                error_code: error_code.as_deref(),
                body: &body,
                who: &who,
            },
        );
        let detail = http_detail(&answer);
        if !j.dps_answered {
            self.rec.end(PhaseStatus::Fail, detail);
            return Ok(Outcome::new(j.status, j.reason, j.message).with_fix(
                fix_for(j.reason, Protocol::Https, self.host, self.port).unwrap_or_default(),
            ));
        }
        self.rec.end(PhaseStatus::Ok, detail);
        if let Some((status, detail)) = j.auth_phase {
            self.rec.instant(PhaseName::Auth, status, detail);
        }
        let mut o = Outcome::new(j.status, j.reason, j.message);
        o.auth = j.auth;
        o.fix = j.fix;
        if let Some(h) = j.hub {
            o.learned.push(edgeprobe_core::Learned::AssignedHub(h));
        }
        if let Some(d) = j.device_id {
            o.learned.push(edgeprobe_core::Learned::AssignedDeviceId(d));
        }
        o.clock_offset_secs = answer.clock_offset_secs();
        if let Some(why) = unusable {
            o.message
                .push_str(&format!("; credentials not tested: {why}"));
        }
        Ok(o)
    }

    async fn https(&self, io: BoxIo) -> Result<Outcome, Failure> {
        if self.check.endpoint == Endpoint::Dps {
            return self.dps_https(io).await;
        }
        let device = self
            .s
            .identity
            .as_ref()
            .map(|i| i.device_id.clone())
            .unwrap_or_else(|| ANONYMOUS_DEVICE.into());
        let path = match self.check.endpoint {
            Endpoint::Iothub | Endpoint::Parent | Endpoint::Gateway => format!(
                "/devices/{}/messages/deviceBound?api-version={}",
                crate_url_encode(&device),
                edgeprobe_iotedge::identity::IOTHUB_API_VERSION
            ),
            _ => "/".to_owned(),
        };
        let req = HttpRequest {
            method: Method::GET,
            host: self.host.to_owned(),
            path_and_query: path.clone(),
            headers: Vec::new(),
            body: None,
        };
        self.rec.start(PhaseName::Protocol);
        self.rec.note("request", format!("GET {path}"));
        let answer = match https::exchange(io, &req, self.deadline).await {
            Ok(a) => a,
            Err(f) => {
                self.rec.end(PhaseStatus::Fail, Vec::new());
                return Err(f);
            }
        };
        let detail = http_detail(&answer);
        match self.check.endpoint {
            Endpoint::Iothub | Endpoint::Parent | Endpoint::Gateway => {
                let mut o = crate::judge::iothub_https(
                    self.service(),
                    answer.status,
                    answer.header("iothub-errorcode"),
                    &answer.who(),
                );
                let status = if o.status == Status::Pass {
                    PhaseStatus::Ok
                } else {
                    PhaseStatus::Fail
                };
                self.rec.end(status, detail);
                o.clock_offset_secs = answer.clock_offset_secs();
                Ok(o)
            }
            _ => {
                let who = answer.who();
                let unmet =
                    self.check
                        .expect
                        .unmet_http(answer.status, |n| answer.header(n), &answer.body);
                let mut o = match unmet {
                    None => {
                        self.rec.end(PhaseStatus::Ok, detail);
                        Outcome::new(
                            Status::Pass,
                            Reason::Ok,
                            format!("{} answered: {who}", self.host),
                        )
                    }
                    Some(why) => {
                        self.rec.end(PhaseStatus::Fail, detail);
                        Outcome::new(
                            Status::Fail,
                            Reason::ExpectationFailed,
                            format!("{} answered {who}, but {why}", self.host),
                        )
                        .with_fix("something other than the service answered (a captive portal, a proxy's block page), or the check's expect is wrong")
                    }
                };
                o.clock_offset_secs = answer.clock_offset_secs();
                Ok(o)
            }
        }
    }
}

/// dns → tcp → [proxy] → tls to another host, for probes that need more connections than
/// the first (the registry's token service and blob requests), recorded in `rec`.
pub(crate) async fn open_tls(
    s: &ProbeSettings,
    check: &CheckDef,
    host: &str,
    port: u16,
    rec: &PhaseRecorder,
    deadline: Instant,
) -> Result<BoxIo, Failure> {
    // This job returns a stream, not an outcome: nothing to scrub here (the registry walk
    // scrubs what it quotes, the Prober the outcome).
    let scrubber = Scrubber::new();
    let job = Job {
        s,
        scrubber: &scrubber,
        check,
        host,
        port,
        rec,
        deadline,
    };
    let use_proxy = check.protocol.proxiable() && job.proxy().is_some();
    let io = job.transport(use_proxy).await?;
    let mut facts = TlsFacts::default();
    let settings = job.tls_settings();
    Ok(Box::new(
        tls::handshake(io, host, &settings, rec, deadline, &mut facts).await?,
    ))
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

/// Puts the addresses of the preferred family first, keeping the resolver's order within
/// each family: the other family is still tried, after the preferred one.
fn prefer_family(
    mut addrs: Vec<std::net::SocketAddr>,
    family: Option<edgeprobe_core::catalog::IpFamily>,
) -> Vec<std::net::SocketAddr> {
    use edgeprobe_core::catalog::IpFamily;
    if let Some(family) = family {
        addrs.sort_by_key(|a| a.is_ipv6() != (family == IpFamily::Ipv6));
    }
    addrs
}

/// Days until an RFC 3339 time, from now.
fn days_left(not_after: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some((t - time::OffsetDateTime::now_utc()).as_seconds_f64() / 86_400.0)
}

fn crate_url_encode(s: &str) -> String {
    edgeprobe_iotedge::sas::url_encode(s)
}

fn http_detail(a: &HttpAnswer) -> edgeprobe_core::Detail {
    let mut d: edgeprobe_core::Detail = vec![("status".into(), json!(a.status))];
    for h in ["server", "iothub-errorcode", "date", "content-type"] {
        if let Some(v) = a.header(h) {
            d.push((h.into(), json!(v)));
        }
    }
    if let Some(t) = a.title() {
        d.push(("title".into(), json!(t)));
    }
    d
}

/// A failure reaching the proxy itself is a proxy failure, whatever layer it was in.
fn proxy_layer_reason(_: Reason) -> Reason {
    Reason::ProxyUnreachable
}

/// What to change, per reason. `None` where the message says it all. The protocol to switch
/// to, when one works, is the verdict's to name (`verdict::align_fix`), not the probe's.
pub fn fix_for(reason: Reason, protocol: Protocol, host: &str, port: u16) -> Option<String> {
    Some(match reason {
        Reason::DnsNxdomain => format!("check the host name {host} (a typo in config.toml, or a deleted hub)"),
        Reason::DnsNoRecords | Reason::DnsError => format!("check the DNS servers in /etc/resolv.conf and whether they can resolve {host}"),
        Reason::DnsTimeout => "check that the DNS servers in /etc/resolv.conf are reachable (UDP and TCP 53)".into(),
        Reason::TcpTimeout | Reason::TcpRefused | Reason::TcpUnreachable => {
            format!("allow outbound TCP {port} to {host} in the firewall")
        }
        Reason::TlsUntrusted => "if a TLS-inspecting proxy is on the path, exempt the Azure endpoints from inspection, or add its root CA to the OS store and to trust_bundle_cert in /etc/aziot/config.toml (X.509 device auth cannot pass inspection)".into(),
        Reason::TlsNameMismatch => format!("something intercepts {host}:{port}, or the host name is wrong; check DNS and transparent proxies"),
        Reason::TlsExpired => "check the device clock (timedatectl; enable NTP); if the clock is right, the server's certificate has expired".into(),
        Reason::TlsNotTls | Reason::WrongService => format!("something other than the service answers on {host}:{port}: check for a transparent proxy, captive portal or port redirect"),
        Reason::TlsTimeout | Reason::ProtocolTimeout => format!("a middlebox inspects or drops {} after the handshake starts, or the path MTU is too small (try `ping -M do -s 1472 {host}`)", protocol.title()),
        Reason::ProxyAuthRequired => "put the proxy credentials in the proxy URL (http://user:password@proxy:port)".into(),
        Reason::ProxyDenied => format!("ask the proxy administrator to allow CONNECT to {host}:{port}"),
        Reason::ProxyUnreachable => "check the proxy address and that it is reachable from this device; for an https:// proxy, that its certificate is valid for its name and its CA is trusted (trust_bundle_cert, or --trust-bundle)".into(),
        Reason::WsRejected | Reason::WsSubprotocol => "a proxy or web filter blocks WebSocket upgrades on /$iothub/websocket: allow them for the Azure endpoints".into(),
        Reason::AuthRejected => "check the device id and key (regenerated key? wrong hub?) and the device clock".into(),
        _ => return None,
    })
}

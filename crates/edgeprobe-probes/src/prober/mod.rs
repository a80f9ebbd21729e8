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
//!
//! The layers up to TLS are [`crate::path`]; what to present to the service and what its
//! answer means are the check's [`crate::profile`] (IoT Hub and edgeHub, DPS, anything
//! else), judged by the pure functions of [`crate::judge`] and [`crate::dps`].

mod exchange;

use std::sync::Arc;

use edgeprobe_core::catalog::{CheckDef, Target};
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::runner::Probe;
use edgeprobe_core::{Outcome, PhaseName, PhaseStatus, Protocol, Reason, Status};
use edgeprobe_iotedge::secret::Scrubber;
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::time::Instant;

use crate::fix::fix_for;
use crate::https::{self, HttpAnswer};
use crate::path::Path;
use crate::profile::Profile;
use crate::tls::TlsFacts;
use crate::Failure;
use crate::{amqp, judge, mqtt, registry, ws, BoxIo};

pub use crate::settings::{ProbeSettings, ANONYMOUS_DEVICE};

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
            let s = &*self.settings;
            let job = Job {
                path: Path {
                    s,
                    check,
                    host: &target.host,
                    port,
                    rec,
                    // A check's own timeout, within the run's deadline.
                    deadline: check.limits.deadline(Instant::now(), deadline),
                },
                profile: Profile::of(s, check, &target.host),
                scrubber: &self.scrubber,
            };
            job.run().await
        })
    }
}

/// One check in flight: the path to its endpoint and the service at the end of it.
struct Job<'a> {
    path: Path<'a>,
    profile: Profile<'a>,
    scrubber: &'a Scrubber,
}

impl Job<'_> {
    async fn run(&self) -> Outcome {
        let (path, protocol) = (&self.path, self.path.check.protocol);
        let use_proxy = path.uses_proxy();
        let mut tls_facts = TlsFacts::default();
        let mut outcome = match self.walk(use_proxy, &mut tls_facts).await {
            Ok(o) => o,
            Err(failure) => self.failed(failure),
        };
        // IPv6 resolved but lost to IPv4: it works, but software that insists on IPv6 (or a
        // Docker network with IPv6 enabled) will not.
        let v6_lost = path
            .rec
            .finished()
            .iter()
            .any(|p| p.name == PhaseName::Tcp && p.status == PhaseStatus::Warn);
        if v6_lost && outcome.status == Status::Pass {
            outcome.status = Status::Warn;
            outcome.reason = Reason::Ipv6Fallback;
            outcome.message.push_str(&format!(
                "; but {} has IPv6 addresses that did not connect (IPv4 did)",
                path.host
            ));
            outcome.fix.get_or_insert_with(|| {
                "fix IPv6 routing on this network, or disable IPv6 where it has no route (e.g. ipv6 = false in [moby_runtime.network])".into()
            });
        }
        if let (Some(min), Some(leaf)) = (path.check.expect.min_cert_days, tls_facts.chain.first())
        {
            if let Some(days) = days_left(&leaf.not_after) {
                if days < f64::from(min) && outcome.status != Status::Fail {
                    outcome.status = Status::Fail;
                    outcome.reason = Reason::CertExpiring;
                    outcome.message = format!(
                        "{}'s certificate ({}) expires in {days:.1} days, sooner than the {min} days the check requires",
                        path.host, leaf.subject
                    );
                    outcome.fix = Some(format!("renew the certificate of {}", path.host));
                }
            }
        }
        // Trusted here, not on the other side of the device: the modules (for the services
        // edgeHub and edgeAgent reach) or the host's services would refuse this chain.
        if let Some(differ) = tls_facts.roots_differ.take() {
            // IoT Hub, a parent's or a gateway's edgeHub: what edgeHub and edgeAgent reach.
            let modules_reach = matches!(self.profile, Profile::Hub { .. });
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
        if let Some(p) = path.proxy() {
            if !protocol.proxiable() && outcome.status == Status::Fail {
                outcome.also.push(Reason::NotProxiable);
                outcome.message.push_str(&format!(
                    " ({} cannot use the proxy {}; it needs direct egress on port {})",
                    protocol.title(),
                    p.redacted(),
                    path.port
                ));
            }
        }
        // Everything below came from peers and errors: scrub it before anyone reads it.
        if outcome.phases.is_empty() {
            outcome.phases = path.rec.finish();
        }
        self.scrubber.scrub_outcome(&mut outcome);
        outcome
    }

    fn failed(&self, (reason, message): Failure) -> Outcome {
        let p = &self.path;
        let mut o = Outcome::new(Status::Fail, reason, message);
        o.fix = fix_for(reason, p.check.protocol, p.host, p.port);
        o
    }

    async fn walk(&self, use_proxy: bool, facts: &mut TlsFacts) -> Result<Outcome, Failure> {
        let p = &self.path;
        if p.check.protocol == Protocol::Tcp {
            let io = p.transport(use_proxy).await?;
            let what = format!("{}:{} accepted a TCP connection", p.host, p.port);
            return exchange::exchange(p, io, what).await;
        }
        let tls = p.tls(use_proxy, facts).await?;
        if let Some(why) = p.check.expect.unmet_tls(&facts.seen()) {
            return Ok(Outcome::new(
                Status::Fail,
                Reason::ExpectationFailed,
                format!("{} completed the TLS handshake, but {why}", p.host),
            )
            .with_fix(
                "a TLS-inspecting proxy or another server answered, or the check's expect is wrong",
            ));
        }
        let upgrade =
            |io, subprotocol| ws::upgrade(io, p.host, ws::PATH, subprotocol, p.rec, p.deadline);
        match p.check.protocol {
            Protocol::Tls => {
                let leaf = facts.chain.first();
                let what = format!(
                    "{}:{} completed a {} handshake ({}, issued by {})",
                    p.host,
                    p.port,
                    facts.version.as_deref().unwrap_or("TLS"),
                    leaf.map_or("?", |c| c.subject.as_str()),
                    leaf.map_or("?", |c| c.issuer.as_str()),
                );
                exchange::exchange(p, tls, what).await
            }
            Protocol::Mqtt => self.mqtt(tls).await,
            Protocol::MqttWs => self.mqtt(Box::new(upgrade(tls, "mqtt").await?)).await,
            Protocol::Amqp => self.amqp(tls).await,
            Protocol::AmqpWs => self.amqp(Box::new(upgrade(tls, "AMQPWSB10").await?)).await,
            Protocol::Https => self.https(tls).await,
            Protocol::Registry => registry::probe(p, tls).await,
            other => Ok(Outcome::skip(
                Reason::NotConfigured,
                format!("protocol {other} is not a network probe"),
            )),
        }
    }

    async fn mqtt(&self, mut io: BoxIo) -> Result<Outcome, Failure> {
        let p = &self.path;
        let offer = self.profile.mqtt(p.host);
        let ack = mqtt::connect(&mut io, &offer.params, p.rec, p.deadline).await?;
        let (code, words) = mqtt::describe_code(ack.code);
        let mut o = judge::connack(
            self.profile.service(p.host, p.port),
            offer.presenting(),
            ack.code,
        );
        if offer.presenting() {
            let refused = o.auth == Some(edgeprobe_core::AuthState::Rejected);
            let status = if refused {
                PhaseStatus::Fail
            } else {
                PhaseStatus::Ok
            };
            p.rec.instant(
                PhaseName::Auth,
                status,
                vec![("connack_code".into(), json!(code))],
            );
        }
        if let Some(why) = offer.unusable {
            o.message
                .push_str(&format!("; credentials not tested: {why}"));
        }
        if let Some(why) = p.check.expect.unmet_connack(code) {
            o.status = Status::Fail;
            o.reason = Reason::ExpectationFailed;
            o.message = format!(
                "{} answered CONNACK {code} ({words}), but {why}",
                self.profile.title()
            );
        }
        Ok(o)
    }

    async fn amqp(&self, io: BoxIo) -> Result<Outcome, Failure> {
        let p = &self.path;
        let offer = self.profile.amqp(p.host);
        p.rec.start(PhaseName::Protocol);
        let trace = amqp::handshake(io, &offer.params, p.deadline).await;
        let j = judge::amqp(
            self.profile.service(p.host, p.port),
            offer.presented,
            &trace,
        );
        let (status, detail) = j.open;
        let opened_at = p.rec.end_after(trace.open.duration, status, detail);
        if let (Some((status, detail)), Some(step)) = (j.auth, &trace.auth) {
            p.rec
                .push(PhaseName::Auth, opened_at, step.duration, status, detail);
        }
        let mut o = j.result?;
        if let Some(why) = offer.unusable {
            o.message
                .push_str(&format!("; credentials not tested: {why}"));
        }
        Ok(o)
    }

    async fn https(&self, io: BoxIo) -> Result<Outcome, Failure> {
        let p = &self.path;
        let Some((offer, note)) = self.profile.https(p.host) else {
            return Ok(Outcome::skip(
                Reason::NotConfigured,
                "no DPS registration to look up",
            ));
        };
        p.rec.start(PhaseName::Protocol);
        p.rec.note("request", note);
        let answer = match https::exchange(io, &offer.params, p.deadline).await {
            Ok(a) => a,
            Err(f) => {
                p.rec.end(PhaseStatus::Fail, Vec::new());
                return Err(f);
            }
        };
        let j = self
            .profile
            .judge_https(p.check, p.host, p.port, offer.presenting(), &answer);
        p.rec.end(j.phase, http_detail(&answer));
        if let Some((status, detail)) = j.auth_phase {
            p.rec.instant(PhaseName::Auth, status, detail);
        }
        let mut o = j.outcome;
        if let Some(why) = offer.unusable.filter(|_| j.phase == PhaseStatus::Ok) {
            o.message
                .push_str(&format!("; credentials not tested: {why}"));
        }
        Ok(o)
    }
}

/// Days until an RFC 3339 time, from now.
fn days_left(not_after: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some((t - time::OffsetDateTime::now_utc()).as_seconds_f64() / 86_400.0)
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

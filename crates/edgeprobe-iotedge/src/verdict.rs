//! The answer people run edgeprobe for: which `UpstreamProtocol` values will work for
//! edgeAgent and edgeHub, and what to set. A protocol works only when its protocol phase got
//! an answer from the real service (a CONNACK, an AMQP open, IoT Hub's own HTTP error);
//! credentials refused still mean the path works.

use std::fmt;

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{AuthState, Endpoint, Outcome, Protocol, Reason, Status};

/// The values of the `UpstreamProtocol` env setting, in the order we recommend them:
/// the runtime's default (Amqp) first, then the other direct protocol, then the WebSocket
/// ones that cross proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UpstreamProtocol {
    Amqp,
    Mqtt,
    AmqpWs,
    MqttWs,
}

impl UpstreamProtocol {
    pub const ALL: [UpstreamProtocol; 4] = [
        UpstreamProtocol::Amqp,
        UpstreamProtocol::Mqtt,
        UpstreamProtocol::AmqpWs,
        UpstreamProtocol::MqttWs,
    ];

    /// The value as written in the env setting.
    pub const fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Amqp => "Amqp",
            UpstreamProtocol::Mqtt => "Mqtt",
            UpstreamProtocol::AmqpWs => "AmqpWs",
            UpstreamProtocol::MqttWs => "MqttWs",
        }
    }

    /// The probe protocol that proves it.
    pub const fn protocol(self) -> Protocol {
        match self {
            UpstreamProtocol::Amqp => Protocol::Amqp,
            UpstreamProtocol::Mqtt => Protocol::Mqtt,
            UpstreamProtocol::AmqpWs => Protocol::AmqpWs,
            UpstreamProtocol::MqttWs => Protocol::MqttWs,
        }
    }

    /// Parses a configured value; the runtime compares case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

impl fmt::Display for UpstreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the probes showed about one `UpstreamProtocol`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolVerdict {
    pub protocol: UpstreamProtocol,
    /// Whether a probe ran at all.
    pub tested: bool,
    /// Whether the run's selection (`--only`/`--skip`) included it; a protocol left out is
    /// "not checked", never "does not work".
    pub selected: bool,
    pub works: bool,
    pub auth: AuthState,
    pub via_proxy: bool,
    /// Ids of the checks this verdict rests on.
    pub evidence: Vec<String>,
    /// The port probed.
    pub port: Option<u16>,
    /// The reason of the worst evidence (`ok` when it works).
    pub reason: Reason,
    /// Why, in one line.
    pub why: String,
}

/// The recommendation.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub upstream_protocol: Option<UpstreamProtocol>,
    pub change_needed: bool,
    /// Every protocol that reached the service had the device's credentials refused: the
    /// thing to fix is the credentials, whatever the protocol.
    pub credentials_refused: bool,
    pub why: String,
    /// The exact setting to apply, when a change is needed.
    pub setting: Option<String>,
}

/// The verdict over all upstream protocols.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub protocols: Vec<ProtocolVerdict>,
    pub recommendation: Recommendation,
    pub configured: Option<UpstreamProtocol>,
}

impl Verdict {
    pub fn get(&self, p: UpstreamProtocol) -> &ProtocolVerdict {
        self.protocols
            .iter()
            .find(|v| v.protocol == p)
            .expect("every protocol has a verdict")
    }

    /// Whether any protocol was probed.
    pub fn tested(&self) -> bool {
        self.protocols.iter().any(|v| v.tested)
    }
}

/// The env setting, as it must appear for both system modules.
pub fn setting_for(p: UpstreamProtocol) -> String {
    format!(
        "set env UpstreamProtocol={p} on both $edgeAgent and $edgeHub in the deployment manifest \
         (\"env\": {{\"UpstreamProtocol\": {{\"value\": \"{p}\"}}}}), and UpstreamProtocol = \"{p}\" \
         under [agent.env] in /etc/aziot/config.toml, then run `iotedge config apply`"
    )
}

/// Judges the upstream protocols from the results of checks against `upstream`
/// (IoT Hub, or the parent device when nested). `selected` says whether the run's selection
/// included a protocol's check: one it left out is "not checked" and never recommended.
pub fn judge(
    results: &[CheckResult],
    upstream: Endpoint,
    configured: Option<UpstreamProtocol>,
    selected: impl Fn(UpstreamProtocol) -> bool,
) -> Verdict {
    let protocols: Vec<ProtocolVerdict> = UpstreamProtocol::ALL
        .into_iter()
        .map(|up| judge_one(results, upstream, up, selected(up)))
        .collect();
    let recommendation = recommend(&protocols, configured);
    Verdict {
        protocols,
        recommendation,
        configured,
    }
}

fn judge_one(
    results: &[CheckResult],
    upstream: Endpoint,
    up: UpstreamProtocol,
    selected: bool,
) -> ProtocolVerdict {
    let evidence: Vec<&CheckResult> = results
        .iter()
        .filter(|r| {
            r.def.endpoint == upstream
                && r.def.protocol == up.protocol()
                && r.outcome.status != Status::Skip
        })
        .collect();
    // A check the run's deadline cut short while it was still answering says nothing about
    // the network: it is left out of the judgement, and alone it leaves the protocol unjudged.
    let cut_short = !evidence.is_empty()
        && evidence
            .iter()
            .all(|r| r.outcome.reason == Reason::Deadline);
    let evidence: Vec<&CheckResult> = evidence
        .into_iter()
        .filter(|r| r.outcome.reason != Reason::Deadline)
        .collect();
    let tested = !evidence.is_empty();
    let works = tested && evidence.iter().all(|r| r.outcome.protocol_proven());
    let auth = if evidence
        .iter()
        .any(|r| r.outcome.auth == Some(AuthState::Rejected))
    {
        AuthState::Rejected
    } else if tested
        && evidence
            .iter()
            .all(|r| r.outcome.auth == Some(AuthState::Ok))
    {
        AuthState::Ok
    } else {
        AuthState::Untested
    };
    // The worst evidence explains the verdict: a failure over a warning over a pass.
    let worst: Option<&Outcome> =
        evidence
            .iter()
            .map(|r| &r.outcome)
            .max_by_key(|o| match o.status {
                Status::Fail => 3,
                Status::Warn => 2,
                Status::Pass => 1,
                Status::Skip => 0,
            });
    let (reason, why) = match worst {
        None if cut_short => (
            Reason::Deadline,
            "not judged: the run's deadline cut its check short while it was still answering (raise --timeout)".to_owned(),
        ),
        None if !selected => (
            Reason::NotConfigured,
            "not checked: the selection (--only/--skip) left it out".to_owned(),
        ),
        None => (
            Reason::NotConfigured,
            "not probed (no upstream host configured, or skipped)".to_owned(),
        ),
        Some(o) if works && o.reason == Reason::AuthRejected => {
            (Reason::AuthRejected, format!("path works, {}", o.message))
        }
        Some(o) if works => (Reason::Ok, o.message.clone()),
        Some(o) => (o.reason, o.message.clone()),
    };
    ProtocolVerdict {
        protocol: up,
        tested,
        selected,
        works,
        auth,
        via_proxy: evidence.iter().any(|r| r.outcome.via_proxy),
        evidence: evidence.iter().map(|r| r.def.id.clone()).collect(),
        port: evidence.first().and_then(|r| r.def.port),
        reason,
        why,
    }
}

fn recommend(
    protocols: &[ProtocolVerdict],
    configured: Option<UpstreamProtocol>,
) -> Recommendation {
    let works = |p: UpstreamProtocol| protocols.iter().any(|v| v.protocol == p && v.works);
    let tested = |p: UpstreamProtocol| protocols.iter().any(|v| v.protocol == p && v.tested);
    let refused = refused_everywhere(protocols);
    let none = |why: String, change_needed: bool| Recommendation {
        upstream_protocol: None,
        change_needed,
        credentials_refused: false,
        why,
        setting: None,
    };
    if !protocols.iter().any(|v| v.tested) {
        return none("no upstream protocol was probed".into(), false);
    }
    let partial = protocols.iter().any(|v| !v.tested);
    // The network is fine but the service refused the device: no protocol switch helps.
    if let Some(c) = configured.filter(|c| works(*c)) {
        return Recommendation {
            upstream_protocol: Some(c),
            change_needed: false,
            credentials_refused: refused,
            why: match refused {
                true => format!("the configured UpstreamProtocol {c} reaches the service, but it refused the device's credentials: {CREDENTIALS_FIX}; changing UpstreamProtocol will not help"),
                false => format!("the configured UpstreamProtocol {c} works; keep it"),
            },
            setting: None,
        };
    }
    let effective = configured.unwrap_or(UpstreamProtocol::Amqp);
    let Some(best) = UpstreamProtocol::ALL.into_iter().find(|p| works(*p)) else {
        let ports: Vec<String> = protocols
            .iter()
            .filter(|v| v.tested)
            .map(|v| match v.port {
                Some(port) => format!("{} ({port})", v.protocol),
                None => v.protocol.to_string(),
            })
            .collect();
        return none(
            if partial {
                format!(
                    "none of the checked protocols works ({}); the others were not checked",
                    ports.join(", ")
                )
            } else {
                "no UpstreamProtocol works: edgeAgent and edgeHub cannot reach the upstream \
                 on 5671, 8883 or 443; open one of these ports outbound or configure a proxy \
                 (AmqpWs/MqttWs)"
                    .into()
            },
            true,
        );
    };
    if !tested(effective) {
        // Judge only what ran: the protocol the runtime would use was left out, or the
        // run's deadline cut it short.
        let what = match configured {
            Some(c) => format!("the configured UpstreamProtocol {c}"),
            None => "Amqp (UpstreamProtocol is unset)".to_owned(),
        };
        let why = protocols
            .iter()
            .find(|v| v.protocol == effective)
            .map(|v| v.why.clone())
            .unwrap_or_default();
        return none(
            format!("{what} was not judged ({why}); of the checked protocols, {best} works"),
            false,
        );
    }
    let (change_needed, why) = match configured {
        Some(c) => (
            true,
            format!("the configured UpstreamProtocol {c} does not work; {best} does"),
        ),
        // Unset: edgeHub uses Amqp, edgeAgent tries Amqp then AmqpWs.
        None if best == UpstreamProtocol::Amqp => (
            false,
            "UpstreamProtocol is unset and the default, Amqp, works".to_owned(),
        ),
        None => (
            true,
            format!(
                "UpstreamProtocol is unset, so edgeHub uses Amqp, which does not work; {best} does"
            ),
        ),
    };
    let why = if refused {
        format!("{why}, but the service refused the device's credentials on every protocol: {CREDENTIALS_FIX}")
    } else {
        why
    };
    Recommendation {
        upstream_protocol: Some(best),
        setting: change_needed.then(|| setting_for(best)),
        change_needed,
        credentials_refused: refused,
        why,
    }
}

/// What to check when the service refuses the device's own credentials.
pub const CREDENTIALS_FIX: &str = "the network path is fine; check the device id, its key (regenerated in IoT Hub?) and the hub name in the device configuration, an X.509 certificate's expiry and subject, and the device clock";

/// Whether every protocol that reached the service had the device's credentials refused.
fn refused_everywhere(protocols: &[ProtocolVerdict]) -> bool {
    let working: Vec<&ProtocolVerdict> = protocols.iter().filter(|v| v.works).collect();
    !working.is_empty() && working.iter().all(|v| v.auth == AuthState::Rejected)
}

/// The `config-upstream-protocol` check: does the configured (or default) UpstreamProtocol work?
pub fn configured_protocol_outcome(verdict: &Verdict) -> Outcome {
    if !verdict.tested() {
        return Outcome::skip(
            Reason::NotConfigured,
            "no upstream protocol was probed, so the configured one cannot be judged",
        );
    }
    let rec = &verdict.recommendation;
    let effective = verdict.configured.unwrap_or(UpstreamProtocol::Amqp);
    let v = verdict.get(effective);
    let what = match verdict.configured {
        Some(c) => format!("configured UpstreamProtocol {c}"),
        None => "UpstreamProtocol is unset (edgeHub uses Amqp; edgeAgent tries Amqp, then AmqpWs)"
            .to_owned(),
    };
    if !v.tested {
        return Outcome::skip(
            Reason::NotConfigured,
            format!("{what}: not checked ({})", v.why),
        );
    }
    if v.works && v.auth == AuthState::Rejected {
        // The device's own credentials: it cannot connect, whatever the protocol.
        return Outcome::new(
            Status::Fail,
            Reason::AuthRejected,
            format!(
                "{what}: the network path works, but the service refused the device's credentials"
            ),
        )
        .with_fix(CREDENTIALS_FIX);
    }
    if v.works {
        return Outcome::new(Status::Pass, Reason::Ok, format!("{what}: works"));
    }
    let mut o = Outcome::new(
        Status::Fail,
        v.reason,
        format!("{what}: will not work ({})", v.why),
    );
    o.fix = match rec.upstream_protocol {
        Some(best) => Some(setting_for(best)),
        None => Some(rec.why.clone()),
    };
    o
}

/// For a downstream device: which protocols it can use through its gateway.
pub fn downstream_outcome(verdict: &Verdict) -> Outcome {
    if !verdict.tested() {
        return Outcome::skip(Reason::NotConfigured, "no gateway protocol was probed");
    }
    let working: Vec<&str> = verdict
        .protocols
        .iter()
        .filter(|v| v.works)
        .map(|v| v.protocol.as_str())
        .collect();
    if working.is_empty() {
        let worst = verdict
            .protocols
            .iter()
            .find(|v| v.tested)
            .map(|v| v.reason)
            .unwrap_or(Reason::NotConfigured);
        return Outcome::new(
            Status::Fail,
            worst,
            "a downstream device cannot reach the gateway's edgeHub over any protocol",
        )
        .with_fix("open at least one of 8883, 5671 or 443 inbound on the gateway, and have the device trust the gateway's Edge CA (its root is named in the TLS failures above)");
    }
    let mut o = Outcome::new(
        Status::Pass,
        Reason::Ok,
        format!(
            "a downstream device can use {} through the gateway",
            working.join(", ")
        ),
    );
    if verdict
        .protocols
        .iter()
        .any(|v| v.auth == AuthState::Rejected)
    {
        o.status = Status::Fail;
        o.reason = Reason::AuthRejected;
        o.message
            .push_str(", but the gateway refused the device's credentials");
        o.fix = Some(CREDENTIALS_FIX.into());
    }
    o
}

/// What decides whether a failing or warning check makes the device not ready.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadinessPolicy {
    /// `--warnings-as-errors`: a warning blocks too.
    pub warnings_as_errors: bool,
    /// `--only` named the checks: each of them counts as required, since a script that asks
    /// for one check wants to know whether it passes.
    pub only: bool,
}

impl ReadinessPolicy {
    /// Whether this check's result makes the device not ready: a required check that
    /// failed, the device's own credentials refused (a failed check with `auth_rejected`),
    /// any failure of a check `--only` named, and with `--warnings-as-errors` any warning.
    pub fn blocks(&self, r: &CheckResult) -> bool {
        match r.outcome.status {
            Status::Fail => r.def.required || self.only || r.outcome.reason == Reason::AuthRejected,
            Status::Warn => self.warnings_as_errors,
            Status::Pass | Status::Skip => false,
        }
    }
}

/// The run's one answer: can the device run? The exit code, the text summary, JUnit,
/// Prometheus and HTML all state this.
#[derive(Clone, Debug, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    /// `ok`, or the reason of the first check that blocks.
    pub reason: Reason,
    /// One line for people.
    pub message: String,
    /// What to change, when not ready.
    pub fix: Option<String>,
    /// Ids of the checks that make the device not ready (with their vantage when not the host).
    pub blocking: Vec<String>,
}

/// Judges readiness from the results and the protocol verdict.
pub fn readiness(results: &[CheckResult], verdict: &Verdict, policy: ReadinessPolicy) -> Readiness {
    let blocking: Vec<&CheckResult> = results.iter().filter(|r| policy.blocks(r)).collect();
    let ids: Vec<String> = blocking
        .iter()
        .map(|r| match r.vantage {
            edgeprobe_core::Vantage::Host => r.def.id.clone(),
            ref v => format!("{} ({v})", r.def.id),
        })
        .collect();
    let refused: Vec<&CheckResult> = blocking
        .iter()
        .copied()
        .filter(|r| r.outcome.reason == Reason::AuthRejected)
        .collect();
    if blocking.is_empty() {
        let ran = results.iter().any(|r| r.outcome.status != Status::Skip);
        let message = if !ran {
            "nothing was checked: every selected check was skipped".to_owned()
        } else if let Some(p) = verdict
            .recommendation
            .upstream_protocol
            .filter(|_| !verdict.recommendation.change_needed)
        {
            format!("ready: every required check passed, and UpstreamProtocol {p} works")
        } else {
            "ready: every required check passed".to_owned()
        };
        return Readiness {
            ready: ran,
            reason: if ran {
                Reason::Ok
            } else {
                Reason::NotConfigured
            },
            message,
            fix: None,
            blocking: Vec::new(),
        };
    }
    if !refused.is_empty() {
        let services: Vec<&str> = {
            let mut v: Vec<&str> = refused
                .iter()
                .map(|r| service_name(r.def.endpoint))
                .collect();
            v.dedup();
            v
        };
        return Readiness {
            ready: false,
            reason: Reason::AuthRejected,
            message: format!(
                "not ready: the network reaches {}, but it refused the device's own credentials ({})",
                services.join(" and "),
                ids.join(", ")
            ),
            fix: Some(format!("{CREDENTIALS_FIX}; changing UpstreamProtocol will not help")),
            blocking: ids,
        };
    }
    let first = blocking[0];
    let fix = if first.def.id == "config-upstream-protocol" || first.outcome.fix.is_none() {
        verdict
            .recommendation
            .setting
            .clone()
            .or_else(|| first.outcome.fix.clone())
            .or_else(|| Some(verdict.recommendation.why.clone()))
    } else {
        first.outcome.fix.clone()
    };
    Readiness {
        ready: false,
        reason: first.outcome.reason,
        message: format!(
            "not ready: {} failed: {}",
            ids.join(", "),
            first.outcome.message
        ),
        fix,
        blocking: ids,
    }
}

/// The service behind an endpoint, for people.
fn service_name(e: Endpoint) -> &'static str {
    match e {
        Endpoint::Iothub => "IoT Hub",
        Endpoint::Dps => "DPS",
        Endpoint::Parent => "the parent device",
        Endpoint::Gateway => "the gateway",
        Endpoint::Registry => "the registry",
        Endpoint::Device => "the service",
    }
}

/// Keeps a failing protocol check's advice in line with the recommendation: the prober
/// only says what to open; the alternative it names is the protocol recommended here.
pub fn align_fix(r: &mut CheckResult, verdict: &Verdict, upstream: Endpoint) {
    let Some(up) = UpstreamProtocol::ALL
        .into_iter()
        .find(|u| u.protocol() == r.def.protocol)
    else {
        return;
    };
    if r.def.endpoint != upstream || r.outcome.status != Status::Fail || verdict.get(up).works {
        return;
    }
    let Some(fix) = r.outcome.fix.as_mut() else {
        return;
    };
    match verdict.recommendation.upstream_protocol {
        Some(best) if best != up => fix.push_str(&format!(
            " — or use UpstreamProtocol {best}, which works here"
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeprobe_core::catalog::CheckDef;
    use edgeprobe_core::{Phase, PhaseName, PhaseStatus, Vantage};
    use std::time::Duration;

    fn result(protocol: Protocol, works: bool, auth: Option<AuthState>) -> CheckResult {
        let mut outcome = if works {
            Outcome::new(Status::Pass, Reason::Ok, "ok")
        } else {
            Outcome::new(Status::Fail, Reason::TcpTimeout, "dropped")
        };
        outcome.auth = auth;
        outcome.phases.push(Phase {
            name: PhaseName::Protocol,
            status: if works {
                PhaseStatus::Ok
            } else {
                PhaseStatus::Fail
            },
            started: Duration::ZERO,
            duration: Duration::ZERO,
            detail: Vec::new(),
        });
        CheckResult {
            def: CheckDef {
                id: format!("iothub-{protocol}"),
                title: String::new(),
                endpoint: Endpoint::Iothub,
                protocol,
                host: "h".into(),
                port: protocol.default_port(),
                required: false,
                requires: Vec::new(),
                unless: Vec::new(),
                source: "t".into(),
                expect: Default::default(),
                credentials: false,
                limits: Default::default(),
                send: None,
            },
            target: None,
            vantage: Vantage::Host,
            outcome,
            duration: Duration::ZERO,
        }
    }

    fn run(works: &[Protocol], configured: Option<UpstreamProtocol>) -> Verdict {
        let results: Vec<CheckResult> = [
            Protocol::Mqtt,
            Protocol::Amqp,
            Protocol::MqttWs,
            Protocol::AmqpWs,
        ]
        .into_iter()
        .map(|p| result(p, works.contains(&p), Some(AuthState::Ok)))
        .collect();
        judge(&results, Endpoint::Iothub, configured, |_| true)
    }

    #[test]
    fn configured_protocol_is_kept_when_it_works() {
        let v = run(
            &[Protocol::Mqtt, Protocol::Amqp],
            Some(UpstreamProtocol::Mqtt),
        );
        assert_eq!(
            v.recommendation.upstream_protocol,
            Some(UpstreamProtocol::Mqtt)
        );
        assert!(!v.recommendation.change_needed);
        assert_eq!(configured_protocol_outcome(&v).status, Status::Pass);
    }

    #[test]
    fn first_working_protocol_in_preference_order_is_recommended() {
        let v = run(
            &[Protocol::MqttWs, Protocol::AmqpWs],
            Some(UpstreamProtocol::Amqp),
        );
        assert_eq!(
            v.recommendation.upstream_protocol,
            Some(UpstreamProtocol::AmqpWs)
        );
        assert!(v.recommendation.change_needed);
        assert!(v
            .recommendation
            .setting
            .as_deref()
            .unwrap()
            .contains("UpstreamProtocol=AmqpWs"));
        let check = configured_protocol_outcome(&v);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.reason, Reason::TcpTimeout);
        assert!(check.fix.unwrap().contains("AmqpWs"));
    }

    #[test]
    fn unset_protocol_needs_a_change_only_when_amqp_fails() {
        assert!(!run(&[Protocol::Amqp], None).recommendation.change_needed);
        let v = run(&[Protocol::Mqtt], None);
        assert!(v.recommendation.change_needed);
        assert_eq!(
            v.recommendation.upstream_protocol,
            Some(UpstreamProtocol::Mqtt)
        );
    }

    #[test]
    fn nothing_works_means_no_recommendation() {
        let v = run(&[], None);
        assert_eq!(v.recommendation.upstream_protocol, None);
        assert!(v.protocols.iter().all(|p| !p.works && p.tested));
    }

    #[test]
    fn rejected_credentials_still_mean_the_path_works() {
        let results = vec![result(Protocol::Amqp, true, Some(AuthState::Rejected))];
        let v = judge(&results, Endpoint::Iothub, None, |_| true);
        let amqp = v.get(UpstreamProtocol::Amqp);
        assert!(amqp.works);
        assert_eq!(amqp.auth, AuthState::Rejected);
        // ...but the device cannot connect: the configured protocol's check fails, and the
        // advice is about the credentials.
        let o = configured_protocol_outcome(&v);
        assert_eq!((o.status, o.reason), (Status::Fail, Reason::AuthRejected));
        assert!(o.fix.unwrap().contains("its key"));
        assert!(!v.recommendation.change_needed);
        assert!(v
            .recommendation
            .why
            .contains("refused the device's credentials"));
    }

    fn refused(protocol: Protocol) -> CheckResult {
        let mut r = result(protocol, true, Some(AuthState::Rejected));
        r.outcome.status = Status::Fail;
        r.outcome.reason = Reason::AuthRejected;
        r
    }

    #[test]
    fn readiness_table() {
        let plain = ReadinessPolicy::default();
        let only = ReadinessPolicy {
            only: true,
            ..plain
        };
        let strict = ReadinessPolicy {
            warnings_as_errors: true,
            ..plain
        };
        let mut required_https = result(Protocol::Https, false, None);
        required_https.def.required = true;
        let mut warned = result(Protocol::Amqp, true, Some(AuthState::Ok));
        warned.outcome.status = Status::Warn;
        warned.outcome.reason = Reason::ClockSkew;
        /// (results, policy, ready, reason, blocking)
        type Case = (
            Vec<CheckResult>,
            ReadinessPolicy,
            bool,
            Reason,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![result(Protocol::Amqp, true, Some(AuthState::Ok))],
                plain,
                true,
                Reason::Ok,
                vec![],
            ),
            // A protocol that is not required fails: the device still runs on another.
            (
                vec![
                    result(Protocol::Mqtt, false, None),
                    result(Protocol::Amqp, true, None),
                ],
                plain,
                true,
                Reason::Ok,
                vec![],
            ),
            // ...unless --only named it.
            (
                vec![result(Protocol::Mqtt, false, None)],
                only,
                false,
                Reason::TcpTimeout,
                vec!["iothub-mqtt"],
            ),
            (
                vec![required_https.clone()],
                plain,
                false,
                Reason::TcpTimeout,
                vec!["iothub-https"],
            ),
            (
                vec![refused(Protocol::Amqp), refused(Protocol::Mqtt)],
                plain,
                false,
                Reason::AuthRejected,
                vec!["iothub-amqp", "iothub-mqtt"],
            ),
            (vec![warned.clone()], plain, true, Reason::Ok, vec![]),
            (
                vec![warned],
                strict,
                false,
                Reason::ClockSkew,
                vec!["iothub-amqp"],
            ),
            (vec![], plain, false, Reason::NotConfigured, vec![]),
        ];
        for (i, (results, policy, ready, reason, blocking)) in cases.into_iter().enumerate() {
            let v = judge(&results, Endpoint::Iothub, None, |_| true);
            let r = readiness(&results, &v, policy);
            assert_eq!((r.ready, r.reason), (ready, reason), "case {i}: {r:?}");
            assert_eq!(r.blocking, blocking, "case {i}");
            assert_eq!(
                r.fix.is_some(),
                !ready && !r.blocking.is_empty(),
                "case {i}: {r:?}"
            );
        }
    }

    #[test]
    fn protocols_left_out_by_the_selection_are_not_checked_nor_blamed() {
        let results = vec![result(Protocol::Amqp, false, None)];
        let v = judge(&results, Endpoint::Iothub, None, |p| {
            p == UpstreamProtocol::Amqp
        });
        let mqtt = v.get(UpstreamProtocol::Mqtt);
        assert!(!mqtt.tested && !mqtt.selected && !mqtt.works);
        assert!(mqtt.why.starts_with("not checked"), "{}", mqtt.why);
        let why = &v.recommendation.why;
        assert!(
            why.contains("Amqp (5671)") && !why.contains("8883"),
            "{why}"
        );

        // The configured protocol was left out: nothing is recommended in its place.
        let results = vec![result(Protocol::Amqp, true, Some(AuthState::Ok))];
        let v = judge(
            &results,
            Endpoint::Iothub,
            Some(UpstreamProtocol::Mqtt),
            |p| p == UpstreamProtocol::Amqp,
        );
        assert_eq!(v.recommendation.upstream_protocol, None);
        assert!(!v.recommendation.change_needed);
        assert!(
            v.recommendation
                .why
                .contains("Mqtt was not judged (not checked"),
            "{}",
            v.recommendation.why
        );
        assert_eq!(configured_protocol_outcome(&v).status, Status::Skip);
    }

    #[test]
    fn a_check_the_deadline_cut_short_leaves_its_protocol_unjudged() {
        let mut amqp = result(Protocol::Amqp, false, None);
        amqp.outcome.status = Status::Warn;
        amqp.outcome.reason = Reason::Deadline;
        let results = vec![amqp, result(Protocol::Mqtt, true, Some(AuthState::Ok))];
        let v = judge(&results, Endpoint::Iothub, None, |_| true);
        let a = v.get(UpstreamProtocol::Amqp);
        assert!(!a.tested && !a.works);
        assert_eq!(a.reason, Reason::Deadline);
        // No switch is advised on a protocol that was never judged.
        assert!(!v.recommendation.change_needed, "{:?}", v.recommendation);
        assert!(v.recommendation.why.contains("raise --timeout"));
        assert_eq!(configured_protocol_outcome(&v).status, Status::Skip);
    }

    #[test]
    fn a_failing_protocol_s_fix_names_the_recommended_protocol() {
        let mut results: Vec<CheckResult> = [Protocol::Mqtt, Protocol::Amqp, Protocol::MqttWs]
            .into_iter()
            .map(|p| result(p, p != Protocol::Mqtt && p != Protocol::MqttWs, None))
            .collect();
        for r in &mut results {
            r.outcome.fix = Some("allow outbound TCP".into());
        }
        let v = judge(&results, Endpoint::Iothub, None, |_| true);
        for r in &mut results {
            align_fix(r, &v, Endpoint::Iothub);
        }
        assert_eq!(
            results[0].outcome.fix.as_deref(),
            Some("allow outbound TCP — or use UpstreamProtocol Amqp, which works here")
        );
        assert_eq!(
            results[1].outcome.fix.as_deref(),
            Some("allow outbound TCP"),
            "it works"
        );
    }
}

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
/// (IoT Hub, or the parent device when nested).
pub fn judge(
    results: &[CheckResult],
    upstream: Endpoint,
    configured: Option<UpstreamProtocol>,
) -> Verdict {
    let protocols: Vec<ProtocolVerdict> = UpstreamProtocol::ALL
        .into_iter()
        .map(|up| judge_one(results, upstream, up))
        .collect();
    let recommendation = recommend(&protocols, configured);
    Verdict {
        protocols,
        recommendation,
        configured,
    }
}

fn judge_one(results: &[CheckResult], upstream: Endpoint, up: UpstreamProtocol) -> ProtocolVerdict {
    let evidence: Vec<&CheckResult> = results
        .iter()
        .filter(|r| {
            r.def.endpoint == upstream
                && r.def.protocol == up.protocol()
                && r.outcome.status != Status::Skip
        })
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
    if !protocols.iter().any(|v| v.tested) {
        return Recommendation {
            upstream_protocol: None,
            change_needed: false,
            why: "no upstream protocol was probed".into(),
            setting: None,
        };
    }
    if let Some(c) = configured.filter(|c| works(*c)) {
        return Recommendation {
            upstream_protocol: Some(c),
            change_needed: false,
            why: format!("the configured UpstreamProtocol {c} works; keep it"),
            setting: None,
        };
    }
    let Some(best) = UpstreamProtocol::ALL.into_iter().find(|p| works(*p)) else {
        return Recommendation {
            upstream_protocol: None,
            change_needed: true,
            why: "no UpstreamProtocol works: edgeAgent and edgeHub cannot reach the upstream \
                  on 5671, 8883 or 443; open one of these ports outbound or configure a proxy \
                  (AmqpWs/MqttWs)"
                .into(),
            setting: None,
        };
    };
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
    Recommendation {
        upstream_protocol: Some(best),
        setting: change_needed.then(|| setting_for(best)),
        change_needed,
        why,
    }
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
    if v.works {
        let mut o = Outcome::new(Status::Pass, Reason::Ok, format!("{what}: works"));
        if v.auth == AuthState::Rejected {
            o.status = Status::Warn;
            o.reason = Reason::AuthRejected;
            o.message = format!("{what}: the path works but the credentials were refused");
        }
        return o;
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
        o.status = Status::Warn;
        o.reason = Reason::AuthRejected;
        o.message
            .push_str(", but the gateway refused the device's credentials");
    }
    o
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
        judge(&results, Endpoint::Iothub, configured)
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
        let v = judge(&results, Endpoint::Iothub, None);
        let amqp = v.get(UpstreamProtocol::Amqp);
        assert!(amqp.works);
        assert_eq!(amqp.auth, AuthState::Rejected);
        assert_eq!(configured_protocol_outcome(&v).status, Status::Warn);
    }
}

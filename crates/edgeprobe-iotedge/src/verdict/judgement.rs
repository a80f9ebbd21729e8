//! The judgement of each `UpstreamProtocol` from the checks against the upstream (only a
//! protocol answer counts), and the recommendation: keep the configured protocol if it
//! works, else the first that does, in the order of [`UpstreamProtocol::ALL`].

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{AuthState, Endpoint, Outcome, Reason, Status};

use super::{
    setting_for, ProtocolVerdict, Recommendation, UpstreamProtocol, Verdict, CREDENTIALS_FIX,
};

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

/// Whether every protocol that reached the service had the device's credentials refused.
fn refused_everywhere(protocols: &[ProtocolVerdict]) -> bool {
    let working: Vec<&ProtocolVerdict> = protocols.iter().filter(|v| v.works).collect();
    !working.is_empty() && working.iter().all(|v| v.auth == AuthState::Rejected)
}

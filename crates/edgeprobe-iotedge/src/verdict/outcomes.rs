//! The verdict as checks — `config-upstream-protocol`, and for a downstream device which
//! protocols its gateway serves — and a failing protocol check's fix kept in line with the
//! recommendation.

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{AuthState, Endpoint, Outcome, Reason, Status};

use super::{setting_for, UpstreamProtocol, Verdict, CREDENTIALS_FIX};

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

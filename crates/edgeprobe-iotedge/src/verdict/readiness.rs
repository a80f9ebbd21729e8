//! The run's one answer, can the device run: which failures and warnings block, and the
//! message and fix that say why.

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{Endpoint, Reason, Status};

use super::{Verdict, CREDENTIALS_FIX};

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

//! The runner owns what every check shares: the deadline, the timing, the concurrency limit
//! and cancellation. Probes never sleep or retry on their own; they get the deadline and
//! stop at it. As a safety net the runner drops any probe still running a moment after the
//! deadline and turns the phase it was in into the matching timeout reason, so a run ends
//! within `--timeout` plus a small margin whatever the network does.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;

use crate::catalog::{CheckDef, Target};
use crate::model::{Outcome, PhaseName, Reason, Status, Vantage};
use crate::recorder::PhaseRecorder;

/// How long after the deadline the runner waits before dropping a probe. Probes honour the
/// deadline themselves; this only catches a probe stuck where it cannot.
pub const GRACE: Duration = Duration::from_millis(150);

/// Runs one check. Implemented by the probes crate; a fake in tests.
pub trait Probe: Send + Sync {
    /// Walks the layers for `check` against `target`, recording each in `rec`, and stops at
    /// `deadline`.
    fn run<'a>(
        &'a self,
        check: &'a CheckDef,
        target: &'a Target,
        rec: &'a PhaseRecorder,
        deadline: Instant,
    ) -> BoxFuture<'a, Outcome>;
}

/// A check as the runner sees it: its declaration and either a target or why it is skipped.
#[derive(Clone, Debug)]
pub struct Planned {
    pub def: CheckDef,
    pub plan: Plan,
}

/// What to do with a planned check.
#[derive(Clone, Debug)]
pub enum Plan {
    Run(Target),
    Skip(Outcome),
}

/// A finished check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub def: CheckDef,
    pub target: Option<Target>,
    pub vantage: Vantage,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// Runner settings.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub deadline: Instant,
    /// Counts finished checks, for a progress indicator.
    pub progress: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    /// Most probes in flight at once.
    pub concurrency: usize,
    pub vantage: Vantage,
}

/// Runs every planned check concurrently and returns the results in plan order.
pub async fn run_all(
    plan: Vec<Planned>,
    probe: Arc<dyn Probe>,
    opts: &RunOptions,
) -> Vec<CheckResult> {
    let limit = opts.concurrency.max(1);
    let mut results: Vec<(usize, CheckResult)> = stream::iter(plan.into_iter().enumerate())
        .map(|(index, planned)| {
            let probe = Arc::clone(&probe);
            let opts = opts.clone();
            async move {
                let result = run_one(planned, probe.as_ref(), &opts).await;
                if let Some(p) = &opts.progress {
                    p.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (index, result)
            }
        })
        .buffer_unordered(limit)
        .collect()
        .await;
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, r)| r).collect()
}

async fn run_one(planned: Planned, probe: &dyn Probe, opts: &RunOptions) -> CheckResult {
    let started = Instant::now();
    let Planned { def, plan } = planned;
    let (target, outcome) = match plan {
        Plan::Skip(outcome) => (None, outcome),
        Plan::Run(target) => {
            let rec = PhaseRecorder::new();
            let outcome = if Instant::now() >= opts.deadline {
                deadline_outcome(&rec, opts.deadline, started)
            } else {
                let fut = probe.run(&def, &target, &rec, opts.deadline);
                match tokio::time::timeout_at(opts.deadline + GRACE, fut).await {
                    Ok(mut outcome) => {
                        if outcome.phases.is_empty() {
                            outcome.phases = rec.finish();
                        }
                        outcome
                    }
                    Err(_) => deadline_outcome(&rec, opts.deadline, started),
                }
            };
            (Some(target), outcome)
        }
    };
    CheckResult {
        def,
        target,
        vantage: opts.vantage.clone(),
        outcome,
        duration: started.elapsed(),
    }
}

/// The reason a deadline means, given the phase that was running when it struck.
pub fn timeout_reason(phase: Option<PhaseName>) -> Reason {
    match phase {
        Some(PhaseName::Dns) => Reason::DnsTimeout,
        Some(PhaseName::Tcp) | None => Reason::TcpTimeout,
        Some(PhaseName::Proxy) => Reason::ProxyUnreachable,
        Some(PhaseName::Tls) => Reason::TlsTimeout,
        Some(PhaseName::Ws) | Some(PhaseName::Protocol) | Some(PhaseName::Auth) => {
            Reason::ProtocolTimeout
        }
    }
}

fn deadline_outcome(rec: &PhaseRecorder, deadline: Instant, started: Instant) -> Outcome {
    let open = rec.open_phase();
    let budget = deadline.saturating_duration_since(started);
    let mut outcome = Outcome::new(
        Status::Fail,
        timeout_reason(open),
        format!(
            "gave up after {:.1} s waiting in the {} phase",
            budget.as_secs_f64(),
            open.map(|p| p.as_str()).unwrap_or("start")
        ),
    );
    outcome.phases = rec.finish();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, PhaseStatus, Protocol};

    /// A probe that records DNS, then hangs in TCP forever, ignoring the deadline.
    struct Hangs;

    impl Probe for Hangs {
        fn run<'a>(
            &'a self,
            _check: &'a CheckDef,
            _target: &'a Target,
            rec: &'a PhaseRecorder,
            _deadline: Instant,
        ) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                rec.start(PhaseName::Dns);
                rec.end(PhaseStatus::Ok, Vec::new());
                rec.start(PhaseName::Tcp);
                std::future::pending::<()>().await;
                unreachable!()
            })
        }
    }

    fn def(id: &str) -> CheckDef {
        CheckDef {
            id: id.into(),
            title: id.into(),
            endpoint: Endpoint::Iothub,
            protocol: Protocol::Mqtt,
            host: "h".into(),
            port: Some(8883),
            required: false,
            requires: Vec::new(),
            unless: Vec::new(),
            source: "test".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_ignores_the_deadline_is_cut_off_with_the_phase_it_was_in() {
        let plan: Vec<Planned> = (0..20)
            .map(|i| Planned {
                def: def(&format!("c{i}")),
                plan: Plan::Run(Target {
                    host: "h".into(),
                    port: Some(8883),
                }),
            })
            .collect();
        let start = Instant::now();
        let opts = RunOptions {
            deadline: start + Duration::from_secs(5),
            progress: None,
            concurrency: 64,
            vantage: Vantage::Host,
        };
        let results = run_all(plan, Arc::new(Hangs), &opts).await;
        assert_eq!(results.len(), 20);
        assert!(start.elapsed() <= Duration::from_secs(5) + GRACE);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.def.id, format!("c{i}"), "results keep plan order");
            assert_eq!(r.outcome.reason, Reason::TcpTimeout);
            assert_eq!(r.outcome.phases.len(), 2);
            assert_eq!(r.outcome.phases[1].status, PhaseStatus::Fail);
        }
    }

    #[test]
    fn every_phase_maps_to_a_timeout_reason() {
        assert_eq!(timeout_reason(Some(PhaseName::Dns)), Reason::DnsTimeout);
        assert_eq!(timeout_reason(Some(PhaseName::Tls)), Reason::TlsTimeout);
        assert_eq!(
            timeout_reason(Some(PhaseName::Proxy)),
            Reason::ProxyUnreachable
        );
        assert_eq!(
            timeout_reason(Some(PhaseName::Protocol)),
            Reason::ProtocolTimeout
        );
    }
}

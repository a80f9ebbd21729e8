//! The runner owns what every check shares: the deadline, the timing, the concurrency limit
//! and cancellation. Probes never sleep or retry on their own; they get the deadline and
//! stop at it. As a safety net the runner drops any probe still running a moment after the
//! deadline and turns the phase it was in into the matching timeout reason, so a run ends
//! within `--timeout` plus a small margin whatever the network does.
//!
//! The deadline is not the network: a step that timed out only because the steps before it
//! (or a late start) used up the run's time says nothing about the path. The runner judges
//! every timeout that ended at the deadline with [`cut_short`]: a step that had at least
//! its [`fair_share`] of time and got no answer is the network's failure (`dns_timeout`,
//! `tcp_timeout`, ...); one that had less is reason `deadline`, with each step's time and
//! the advice to raise `--timeout`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;

use crate::catalog::{CheckDef, Target};
use crate::model::{Outcome, PhaseName, PhaseStatus, Reason, Status, Vantage};
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
    /// The run's whole time (`--timeout`, or what was left of an absolute deadline): what a
    /// step's fair share is measured against.
    pub budget: Duration,
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
            let mut outcome = if Instant::now() >= opts.deadline {
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
            let at_deadline = Instant::now() >= opts.deadline;
            if let Some(cut) = cut_short(&outcome, opts.budget, at_deadline) {
                outcome = ran_out(outcome, cut, opts.budget);
            }
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

/// How long a healthy peer may leave one step unanswered before silence means the network
/// lost it: DNS as glibc's resolver waits per try (5 s), TCP three SYNs at Linux's 1 s
/// initial retransmission timeout (3 s). The other steps have no budget of their own.
pub fn layer_budget(phase: PhaseName) -> Option<Duration> {
    match phase {
        PhaseName::Dns => Some(Duration::from_secs(5)),
        PhaseName::Tcp => Some(Duration::from_secs(3)),
        _ => None,
    }
}

/// The least time a step must have waited for its silence to be the network's verdict:
/// half the run's time, and no more than the layer's own budget.
pub fn fair_share(phase: PhaseName, run_budget: Duration) -> Duration {
    let half = run_budget / 2;
    layer_budget(phase).map_or(half, |b| b.min(half))
}

/// Where the run's deadline cut a check short.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cut {
    /// The step it was in; `None` when it had not begun one (it started at the deadline).
    pub step: Option<PhaseName>,
    /// How long that step had waited.
    pub waited: Duration,
}

/// Where a check was cut short by the run's deadline, when that is what happened: the check
/// failed with a timeout at the deadline, and the step that timed out had waited less than
/// its [`fair_share`]. `None` when the outcome stands (no timeout, a timeout before the
/// deadline, or a step that had its share and got no answer).
pub fn cut_short(outcome: &Outcome, run_budget: Duration, at_deadline: bool) -> Option<Cut> {
    let timeout = matches!(
        outcome.reason,
        Reason::DnsTimeout
            | Reason::TcpTimeout
            | Reason::TlsTimeout
            | Reason::ProtocolTimeout
            | Reason::ProxyUnreachable
    );
    if !at_deadline || outcome.status != Status::Fail || !timeout {
        return None;
    }
    // The step that timed out: the failed phase that began last (a probe that makes several
    // requests records the one that failed inside its own phase), else the last phase.
    let step = outcome
        .phases
        .iter()
        .filter(|p| p.status == PhaseStatus::Fail)
        .max_by_key(|p| p.started)
        .or(outcome.phases.last());
    match step {
        None => Some(Cut {
            step: None,
            waited: Duration::ZERO,
        }),
        Some(p) if p.duration < fair_share(p.name, run_budget) => Some(Cut {
            step: Some(p.name),
            waited: p.duration,
        }),
        Some(_) => None,
    }
}

/// The outcome of a check the deadline cut short: reason `deadline`, each step's time, and
/// the advice to give the run more time. Never a network verdict.
fn ran_out(mut outcome: Outcome, cut: Cut, run_budget: Duration) -> Outcome {
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let steps: Vec<String> = outcome
        .phases
        .iter()
        .map(|p| format!("{} {}", p.name, secs(p.duration)))
        .collect();
    let run = format!("the run's time ({:.1} s)", run_budget.as_secs_f64());
    outcome.status = Status::Warn;
    outcome.reason = Reason::Deadline;
    outcome.message = match cut.step {
        Some(step) => format!(
            "{run} ran out in the {step} step, which had waited only {} of it (steps: {}): too short to blame the network, and the steps before it answered",
            secs(cut.waited),
            steps.join(", ")
        ),
        None => format!("{run} ran out before this check could begin: the checks it waited for used it up, so this says nothing about the network"),
    };
    let more = (run_budget.as_secs_f64() * 2.0).ceil().max(10.0);
    outcome.fix = Some(format!(
        "give the run more time (--timeout {more}); this run had {:.1} s",
        run_budget.as_secs_f64()
    ));
    outcome.also.clear();
    outcome
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
    use crate::model::{Endpoint, Phase, Protocol};

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
            expect: Default::default(),
            credentials: false,
            limits: Default::default(),
            send: None,
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
            budget: Duration::from_secs(5),
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

    fn phase(name: PhaseName, status: PhaseStatus, secs: f64) -> Phase {
        Phase {
            name,
            status,
            started: Duration::ZERO,
            duration: Duration::from_secs_f64(secs),
            detail: Vec::new(),
        }
    }

    fn at(mut p: Phase, started_secs: f64) -> Phase {
        p.started = Duration::from_secs_f64(started_secs);
        p
    }

    fn failed(reason: Reason, phases: Vec<Phase>) -> Outcome {
        let mut o = Outcome::new(Status::Fail, reason, "timed out");
        o.phases = phases;
        o
    }

    #[test]
    fn a_step_with_its_fair_share_is_the_networks_failure_one_without_is_the_deadlines() {
        use PhaseName::*;
        use PhaseStatus::{Fail, Ok as Done};
        let s = Duration::from_secs;
        // (reason, phases, run budget, at the deadline) → cut short in which step (None: the verdict stands)
        type Row = (Reason, Vec<Phase>, Duration, bool, Option<PhaseName>);
        let table: Vec<Row> = vec![
            // Blackholed port at --timeout 2: TCP waited the whole run.
            (
                Reason::TcpTimeout,
                vec![phase(Dns, Done, 0.0), phase(Tcp, Fail, 2.0)],
                s(2),
                true,
                None,
            ),
            // Dropped DNS at --timeout 2 and at --timeout 15 (5 s is glibc's per try).
            (
                Reason::DnsTimeout,
                vec![phase(Dns, Fail, 2.0)],
                s(2),
                true,
                None,
            ),
            (
                Reason::DnsTimeout,
                vec![phase(Dns, Fail, 15.0)],
                s(15),
                true,
                None,
            ),
            (
                Reason::DnsTimeout,
                vec![phase(Dns, Fail, 5.0)],
                s(15),
                true,
                None,
            ),
            // A service silent after TLS for most of the run.
            (
                Reason::ProtocolTimeout,
                vec![
                    phase(Dns, Done, 0.0),
                    phase(Tcp, Done, 0.0),
                    phase(Tls, Done, 0.1),
                    phase(Protocol, Fail, 1.4),
                ],
                Duration::from_millis(1500),
                true,
                None,
            ),
            // Regression: a 2.5 s resolver; the data endpoint's lookup began with 0.2 s left.
            (
                Reason::DnsTimeout,
                vec![phase(Dns, Fail, 0.2)],
                s(3),
                true,
                Some(Dns),
            ),
            (
                Reason::DnsTimeout,
                vec![phase(Dns, Fail, 2.5)],
                s(10),
                true,
                Some(Dns),
            ),
            // A long chain of steps that each answered, cut in TLS.
            (
                Reason::TlsTimeout,
                vec![
                    phase(Dns, Done, 2.5),
                    phase(Tcp, Done, 0.1),
                    phase(Tls, Fail, 0.3),
                ],
                s(3),
                true,
                Some(Tls),
            ),
            // A TCP connect that began late and waited 1 s of a 10 s run.
            (
                Reason::TcpTimeout,
                vec![phase(Dns, Done, 8.9), phase(Tcp, Fail, 1.0)],
                s(10),
                true,
                Some(Tcp),
            ),
            // Three unanswered SYNs are a drop, however long the run.
            (
                Reason::TcpTimeout,
                vec![phase(Dns, Done, 6.0), phase(Tcp, Fail, 4.0)],
                s(10),
                true,
                None,
            ),
            // The resolver's own timeout, before the deadline: the resolver's failure.
            (
                Reason::DnsTimeout,
                vec![phase(Dns, Fail, 0.3)],
                s(10),
                false,
                None,
            ),
            // A registry pull whose fourth request's lookup began late: the walk's auth phase
            // (7.5 s) holds the failed lookup (0.2 s), which began last.
            (
                Reason::DnsTimeout,
                vec![
                    phase(Dns, Done, 2.5),
                    phase(Protocol, Done, 0.0),
                    at(phase(Dns, Fail, 0.2), 9.8),
                    at(phase(Auth, Fail, 7.5), 2.5),
                ],
                s(10),
                true,
                Some(Dns),
            ),
            // Not a timeout at all.
            (
                Reason::TcpRefused,
                vec![phase(Tcp, Fail, 0.0)],
                s(10),
                true,
                None,
            ),
        ];
        for (reason, phases, budget, at_deadline, want) in table {
            let o = failed(reason, phases.clone());
            let got = cut_short(&o, budget, at_deadline).map(|c| c.step);
            assert_eq!(got, want.map(Some), "{reason} {phases:?} in {budget:?}");
        }
        // A check that began at the deadline never had a step.
        assert_eq!(
            cut_short(&failed(Reason::TcpTimeout, Vec::new()), s(3), true),
            Some(Cut {
                step: None,
                waited: Duration::ZERO
            })
        );
    }

    /// A probe whose resolver answers (slowly) and whose next step never finishes before the
    /// deadline, like a check that begins late in the run.
    struct SlowSteps;

    impl Probe for SlowSteps {
        fn run<'a>(
            &'a self,
            _check: &'a CheckDef,
            _target: &'a Target,
            rec: &'a PhaseRecorder,
            deadline: Instant,
        ) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                rec.start(PhaseName::Dns);
                tokio::time::sleep(Duration::from_millis(2500)).await;
                rec.end(PhaseStatus::Ok, Vec::new());
                rec.start(PhaseName::Tls);
                tokio::time::sleep_until(deadline).await;
                rec.end(PhaseStatus::Fail, Vec::new());
                let mut o = Outcome::new(Status::Fail, Reason::TlsTimeout, "no TLS answer");
                o.phases = rec.finish();
                o
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_the_deadline_cut_short_says_deadline_with_each_steps_time() {
        let start = Instant::now();
        let opts = RunOptions {
            deadline: start + Duration::from_secs(3),
            budget: Duration::from_secs(3),
            progress: None,
            concurrency: 4,
            vantage: Vantage::Host,
        };
        let plan = vec![Planned {
            def: def("c"),
            plan: Plan::Run(Target {
                host: "h".into(),
                port: Some(443),
            }),
        }];
        let r = &run_all(plan, Arc::new(SlowSteps), &opts).await[0];
        assert_eq!(
            (r.outcome.status, r.outcome.reason),
            (Status::Warn, Reason::Deadline),
            "{}",
            r.outcome.message
        );
        assert!(
            r.outcome.message.contains("ran out in the tls step")
                && r.outcome.message.contains("dns 2.50 s, tls 0.50 s"),
            "{}",
            r.outcome.message
        );
        assert!(r.outcome.fix.as_deref().unwrap().contains("--timeout 10"));
        // The same steps with the whole run to wait in TLS: the network's failure stands.
        let opts = RunOptions {
            deadline: Instant::now() + Duration::from_secs(30),
            budget: Duration::from_secs(30),
            ..opts
        };
        let plan = vec![Planned {
            def: def("c"),
            plan: Plan::Run(Target {
                host: "h".into(),
                port: Some(443),
            }),
        }];
        let r = &run_all(plan, Arc::new(SlowSteps), &opts).await[0];
        assert_eq!(r.outcome.reason, Reason::TlsTimeout);
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

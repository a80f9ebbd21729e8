//! A probe records each layer it walks here. The runner owns the recorder, so when the
//! deadline forces it to drop a probe mid-flight it still knows every finished phase and
//! which phase was in progress — that is what turns "cancelled" into `tls_timeout`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{Detail, Phase, PhaseName, PhaseStatus};

/// Collects the phases of one check.
#[derive(Debug)]
pub struct PhaseRecorder {
    origin: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    done: Vec<Phase>,
    open: Option<(PhaseName, Instant, Detail)>,
}

impl PhaseRecorder {
    /// A recorder whose offsets count from now.
    pub fn new() -> Self {
        PhaseRecorder {
            origin: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A probe that panicked while holding the lock leaves consistent data behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts timing a phase. A phase still open is closed as failed first.
    pub fn start(&self, name: PhaseName) {
        let mut inner = self.lock();
        if let Some((open, began, detail)) = inner.open.take() {
            let phase = self.close(open, began, PhaseStatus::Fail, detail);
            inner.done.push(phase);
        }
        inner.open = Some((name, Instant::now(), Vec::new()));
    }

    /// Adds a detail to the open phase (kept even if the phase never finishes).
    pub fn note(&self, key: &str, value: impl Into<serde_json::Value>) {
        if let Some((_, _, detail)) = self.lock().open.as_mut() {
            detail.push((key.to_owned(), value.into()));
        }
    }

    /// Ends the open phase with a status and more details.
    pub fn end(&self, status: PhaseStatus, more: Detail) {
        let mut inner = self.lock();
        if let Some((name, began, mut detail)) = inner.open.take() {
            detail.extend(more);
            let phase = self.close(name, began, status, detail);
            inner.done.push(phase);
        }
    }

    /// Records a phase that took no time (e.g. a `--resolve` override or a skipped layer).
    pub fn instant(&self, name: PhaseName, status: PhaseStatus, detail: Detail) {
        let now = Instant::now();
        self.lock().done.push(self.close(name, now, status, detail));
    }

    /// Ends the open phase as if it had lasted `duration`, and returns the instant it ended
    /// at. For layers that report their own step timings (AMQP open, then auth).
    pub fn end_after(&self, duration: Duration, status: PhaseStatus, more: Detail) -> Instant {
        let mut inner = self.lock();
        match inner.open.take() {
            Some((name, began, mut detail)) => {
                detail.extend(more);
                let mut phase = self.close(name, began, status, detail);
                phase.duration = duration;
                inner.done.push(phase);
                began + duration
            }
            None => Instant::now(),
        }
    }

    /// Adds a finished phase that began at `began` and lasted `duration`.
    pub fn push(
        &self,
        name: PhaseName,
        began: Instant,
        duration: Duration,
        status: PhaseStatus,
        detail: Detail,
    ) {
        let mut phase = self.close(name, began, status, detail);
        phase.duration = duration;
        self.lock().done.push(phase);
    }

    /// The phases finished so far (the open one is not included).
    pub fn finished(&self) -> Vec<Phase> {
        self.lock().done.clone()
    }

    /// The phase in progress, if any.
    pub fn open_phase(&self) -> Option<PhaseName> {
        self.lock().open.as_ref().map(|(name, _, _)| *name)
    }

    /// All phases so far; an open phase is closed as failed at this instant.
    pub fn finish(&self) -> Vec<Phase> {
        let mut inner = self.lock();
        if let Some((name, began, detail)) = inner.open.take() {
            let phase = self.close(name, began, PhaseStatus::Fail, detail);
            inner.done.push(phase);
        }
        inner.done.clone()
    }

    /// Time since the check started.
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    fn close(&self, name: PhaseName, began: Instant, status: PhaseStatus, detail: Detail) -> Phase {
        Phase {
            name,
            status,
            started: began.saturating_duration_since(self.origin),
            duration: began.elapsed(),
            detail,
        }
    }
}

impl Default for PhaseRecorder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_phase_is_closed_as_failed() {
        let rec = PhaseRecorder::new();
        rec.start(PhaseName::Dns);
        rec.end(PhaseStatus::Ok, vec![("a".into(), 1.into())]);
        rec.start(PhaseName::Tcp);
        rec.note("address", "192.0.2.1:8883");
        assert_eq!(rec.open_phase(), Some(PhaseName::Tcp));
        let phases = rec.finish();
        assert_eq!(phases.len(), 2);
        assert_eq!(phases[0].status, PhaseStatus::Ok);
        assert_eq!(phases[1].name, PhaseName::Tcp);
        assert_eq!(phases[1].status, PhaseStatus::Fail);
        assert_eq!(phases[1].detail("address").unwrap(), "192.0.2.1:8883");
        assert!(phases[1].started >= phases[0].started);
    }
}

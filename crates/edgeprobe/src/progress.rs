//! A progress indicator on stderr for people at a terminal, only when a run takes longer
//! than a second; nothing when piped, with `--quiet`, or under `NO_COLOR`-style automation.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Shows nothing for the first second.
const GRACE: Duration = Duration::from_secs(1);

/// A running indicator; `finish` clears it.
pub struct Progress {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the indicator when stderr is a terminal and `enabled`.
    pub fn start(
        done: Arc<AtomicUsize>,
        total: usize,
        deadline: Instant,
        enabled: bool,
    ) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress {
                stop: None,
                task: None,
            };
        }
        let (tx, mut rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = &mut rx => return,
                _ = tokio::time::sleep(GRACE) => {}
            }
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {pos}/{len} checks done, {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            loop {
                bar.set_position(done.load(Ordering::Relaxed) as u64);
                let left = deadline.saturating_duration_since(Instant::now());
                bar.set_message(format!(
                    "{:.0} s to the deadline",
                    left.as_secs_f64().ceil()
                ));
                bar.tick();
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            bar.finish_and_clear();
        });
        Progress {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops and clears the indicator.
    pub async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

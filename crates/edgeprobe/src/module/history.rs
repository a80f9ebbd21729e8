//! What `serve` remembers between runs: a bounded ring of past runs (per protocol: checked,
//! works, credentials, reason) and failure counters, kept in a state directory (the module's
//! mounted volume) so that a restart does not forget when Mqtt last worked. The file is
//! replaced atomically; a missing or corrupt one starts a fresh history with a note, never a
//! crash.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use edgeprobe_core::Status;
use edgeprobe_report::json::rfc3339;
use edgeprobe_report::RunReport;
use serde::{Deserialize, Serialize};

/// The state file inside `--state-dir`.
pub const STATE_FILE: &str = "history.json";
/// The state file's format version.
const VERSION: u32 = 1;
/// More than this is not our state file (a ring of a few hundred runs is ~100 KB).
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

/// One protocol in one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProtocolRecord {
    pub checked: bool,
    pub works: bool,
    /// `ok`, `rejected` or `untested`.
    pub auth: String,
    pub reason: String,
}

/// One run, as remembered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub started_at: String,
    /// Unix seconds, for arithmetic.
    pub started_unix: f64,
    pub duration_ms: u64,
    pub ready: bool,
    pub reason: String,
    pub protocols: BTreeMap<String, ProtocolRecord>,
}

impl RunRecord {
    pub fn from_report(report: &RunReport) -> Self {
        let started_unix = report
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        RunRecord {
            started_at: rfc3339(report.started_at),
            started_unix,
            duration_ms: report.duration.as_millis() as u64,
            ready: report.readiness.ready,
            reason: report.readiness.reason.as_str().to_owned(),
            protocols: report
                .verdict
                .protocols
                .iter()
                .map(|v| {
                    (
                        v.protocol.as_str().to_owned(),
                        ProtocolRecord {
                            checked: v.tested,
                            works: v.works,
                            auth: v.auth.as_str().to_owned(),
                            reason: v.reason.as_str().to_owned(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// A failure counter's labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FailureKey {
    pub endpoint: String,
    pub protocol: String,
    pub vantage: String,
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    runs: Vec<RunRecord>,
    runs_total: u64,
    failures: Vec<(FailureKey, u64)>,
}

/// The ring and the counters.
#[derive(Debug)]
pub struct History {
    runs: VecDeque<RunRecord>,
    capacity: usize,
    /// Runs since the history began (a counter: it survives restarts with the state).
    pub runs_total: u64,
    /// Warned or failed checks per endpoint, protocol, vantage and reason.
    pub failures: BTreeMap<FailureKey, u64>,
    path: Option<PathBuf>,
}

impl History {
    /// Loads the history kept in `dir`, or starts a fresh one. The note says why a fresh
    /// one was started when a state file was there and could not be used.
    pub fn load(dir: Option<&Path>, capacity: usize) -> (History, Option<String>) {
        let mut history = History {
            runs: VecDeque::new(),
            capacity: capacity.max(1),
            runs_total: 0,
            failures: BTreeMap::new(),
            path: dir.map(|d| d.join(STATE_FILE)),
        };
        let Some(path) = history.path.clone() else {
            return (history, None);
        };
        let state = match read_state(&path) {
            Ok(None) => return (history, None),
            Ok(Some(s)) => s,
            Err(why) => {
                return (
                    history,
                    Some(format!(
                        "{}: {why}; started a fresh history",
                        path.display()
                    )),
                )
            }
        };
        history.runs_total = state.runs_total;
        history.failures = state.failures.into_iter().collect();
        for run in state.runs {
            history.remember(run);
        }
        (history, None)
    }

    fn remember(&mut self, run: RunRecord) {
        if self.runs.len() == self.capacity {
            self.runs.pop_front();
        }
        self.runs.push_back(run);
    }

    /// Adds a run (and counts its failures), then saves the state when it has a home.
    pub fn push(&mut self, report: &RunReport) -> Result<(), String> {
        self.runs_total += 1;
        for r in &report.results {
            if matches!(r.outcome.status, Status::Warn | Status::Fail) {
                let key = FailureKey {
                    endpoint: r.def.endpoint.as_str().to_owned(),
                    protocol: r.def.protocol.as_str().to_owned(),
                    vantage: r.vantage.to_string(),
                    reason: r.outcome.reason.as_str().to_owned(),
                };
                *self.failures.entry(key).or_default() += 1;
            }
        }
        self.remember(RunRecord::from_report(report));
        self.save()
    }

    pub fn runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs.iter()
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let state = StateFile {
            version: VERSION,
            runs: self.runs.iter().cloned().collect(),
            runs_total: self.runs_total,
            failures: self.failures.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        };
        let bytes = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        crate::safe_write::write(path, &bytes, crate::safe_write::WriteOptions::STATE)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Per protocol: when it last worked, when it last failed, whether it is down now and
    /// since when, and how many outages the ring holds. `now` is Unix seconds.
    pub fn summary(&self, now: f64) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for p in ["Amqp", "Mqtt", "AmqpWs", "MqttWs"] {
            out.insert(
                p.to_owned(),
                serde_json::to_value(self.protocol(p, now)).unwrap_or_default(),
            );
        }
        serde_json::Value::Object(out)
    }

    /// What the ring says about one protocol.
    pub fn protocol(&self, name: &str, now: f64) -> ProtocolHistory {
        let mut h = ProtocolHistory::default();
        let mut down_since: Option<&RunRecord> = None;
        for run in &self.runs {
            let Some(p) = run.protocols.get(name).filter(|p| p.checked) else {
                continue;
            };
            h.runs += 1;
            if p.works {
                h.last_worked = Some(run.started_at.clone());
                h.last_worked_unix = Some(run.started_unix);
                down_since = None;
            } else {
                h.last_failed = Some(run.started_at.clone());
                h.last_failed_reason = Some(p.reason.clone());
                if down_since.is_none() {
                    h.outages += 1;
                    down_since = Some(run);
                }
            }
        }
        h.down = down_since.is_some();
        h.down_since = down_since.map(|r| r.started_at.clone());
        h.down_for_secs = down_since.map(|r| (now - r.started_unix).max(0.0));
        h
    }
}

/// One protocol over the remembered runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProtocolHistory {
    /// Runs in the ring that checked it.
    pub runs: usize,
    pub last_worked: Option<String>,
    #[serde(skip)]
    pub last_worked_unix: Option<f64>,
    pub last_failed: Option<String>,
    pub last_failed_reason: Option<String>,
    /// It failed in the latest run that checked it.
    pub down: bool,
    pub down_since: Option<String>,
    pub down_for_secs: Option<f64>,
    /// Times it went from working (or unknown) to failing within the ring.
    pub outages: usize,
}

/// Reads the state file: `None` when there is none. Only a regular file of bounded size.
fn read_state(path: &Path) -> Result<Option<StateFile>, String> {
    let bytes = match edgeprobe_core::bounded::read(path, MAX_STATE_BYTES) {
        Ok(b) => b,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let state: StateFile =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a history file ({e})"))?;
    if state.version != VERSION {
        return Err(format!(
            "history version {} is not {VERSION}",
            state.version
        ));
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(at: f64, mqtt_works: bool) -> RunRecord {
        let protocols = [("Mqtt", mqtt_works), ("Amqp", true)]
            .into_iter()
            .map(|(p, works)| {
                (
                    p.to_owned(),
                    ProtocolRecord {
                        checked: true,
                        works,
                        auth: "ok".into(),
                        reason: if works { "ok" } else { "tcp_refused" }.into(),
                    },
                )
            })
            .collect();
        RunRecord {
            started_at: format!("t{at}"),
            started_unix: at,
            duration_ms: 10,
            ready: true,
            reason: "ok".into(),
            protocols,
        }
    }

    #[test]
    fn outages_and_down_time_come_from_the_ring() {
        let (mut h, note) = History::load(None, 3);
        assert!(note.is_none());
        for r in [
            run(0.0, true),
            run(10.0, false),
            run(20.0, true),
            run(30.0, false),
        ] {
            h.remember(r);
        }
        // The ring keeps three: 10 (down), 20 (up), 30 (down).
        assert_eq!(h.runs().count(), 3);
        let mqtt = h.protocol("Mqtt", 45.0);
        assert!(mqtt.down);
        assert_eq!(mqtt.down_since.as_deref(), Some("t30"));
        assert_eq!(mqtt.down_for_secs, Some(15.0));
        assert_eq!(mqtt.last_worked.as_deref(), Some("t20"));
        assert_eq!(mqtt.outages, 2);
        let amqp = h.protocol("Amqp", 45.0);
        assert!(!amqp.down && amqp.outages == 0);
        assert_eq!(h.protocol("MqttWs", 45.0).runs, 0);
    }

    #[test]
    fn the_state_survives_a_restart_and_a_corrupt_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let (mut h, _) = History::load(Some(dir.path()), 10);
        h.remember(run(5.0, false));
        h.runs_total = 1;
        h.save().unwrap();
        let (again, note) = History::load(Some(dir.path()), 10);
        assert!(note.is_none());
        assert_eq!(again.runs().count(), 1);
        assert_eq!(again.runs_total, 1);

        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let (fresh, note) = History::load(Some(dir.path()), 10);
        assert_eq!(fresh.runs().count(), 0);
        assert!(note.unwrap().contains("started a fresh history"));
    }
}

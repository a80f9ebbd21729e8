//! `edgeprobe serve`: the checks on an interval and on demand, for fleets. As an IoT Edge
//! module it lives on the modules' own network and exposes Prometheus metrics on 9600, like
//! edgeHub and edgeAgent, for metrics-collector or any Prometheus to scrape:
//!
//! - `/metrics`: the latest run (the families of `check -o prometheus`) and the history
//!   (runs, failures per protocol and reason, when each protocol last worked, outages),
//!   labelled with IoT Edge's `iothub`, `edge_device` and `module_name`;
//! - `/probe?only=IDS`: blackbox_exporter style, a run now (or the cached one when the last is
//!   younger than `--min-interval`) and its metrics;
//! - `/report.json` (the `check -o json` report of the latest run), `/history.json`, `/healthz`.
//!
//! Runs never overlap and never come more often than the floor, whatever the scrapers do.
//! SIGTERM (docker stop) lets a run in flight finish (it removes its own containers) within
//! its deadline, then exits 0.

/// The HTTP endpoints: /metrics with the history's families, /probe, /report.json,
/// /history.json, /healthz.
mod endpoints;
/// The ring of past runs and the failure counters, kept in the state directory.
mod history;
/// `edgeprobe image`: the probe image, tagged as the module image.
mod image;
/// The module's twin (reported and desired properties) and its direct method `check`.
mod twin;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeprobe_core::Vantage;
use edgeprobe_report::{RunContext, RunReport};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::cli::{ModuleArgs, VantageChoice};
use crate::AppError;
use endpoints::handle;
use history::History;
pub use image::image;

/// A run in hand.
struct Latest {
    at: Instant,
    report: RunReport,
}

/// What the twin's desired properties set; `None` keeps the command line's value.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub interval: Option<f64>,
    pub timeout: Option<f64>,
    pub only: Option<Vec<String>>,
    pub skip: Option<Vec<String>>,
    /// Desired values that were refused, with why (reported back, never fatal).
    pub errors: serde_json::Map<String, serde_json::Value>,
}

/// Everything the endpoints and the scheduler share.
struct Module {
    args: ModuleArgs,
    /// The network this process runs on, when it runs in a container: its vantage.
    network: Option<String>,
    floor: Duration,
    identity: Vec<(&'static str, String)>,
    /// The latest full run, and the latest run per `/probe?only=` selection.
    runs: Mutex<HashMap<String, Arc<Latest>>>,
    history: Mutex<History>,
    notes: Vec<String>,
    /// Held while a run is in flight: runs never overlap.
    running: tokio::sync::Mutex<()>,
    /// The twin's desired properties in force.
    desired: Mutex<Desired>,
    /// Bumped after each full run and each change of settings (the twin reports then).
    runs_changed: tokio::sync::watch::Sender<u64>,
    /// Wakes the scheduler when the interval changed.
    reschedule: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One line on stdout, the module's log (`docker logs`, `iotedge logs`).
fn log(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "edgeprobe serve: {line}");
    let _ = out.flush();
}

/// The network a containerised edgeprobe runs on: `--network`, else IoT Edge's default.
/// An IoT Edge module says so in its environment; any other container is one without the
/// engine's socket (a host that is itself a container, with the socket, is a host here).
fn container_network(args: &ModuleArgs) -> Option<String> {
    let exists = |p: &str| std::path::Path::new(p).exists();
    let in_container = std::env::var_os("IOTEDGE_MODULEID").is_some()
        || ((exists("/.dockerenv") || exists("/run/.containerenv"))
            && !exists("/var/run/docker.sock")
            && !exists("/run/docker.sock"));
    in_container.then(|| {
        args.check
            .network
            .clone()
            .unwrap_or_else(|| edgeprobe_iotedge::config::DEFAULT_NETWORK.to_owned())
    })
}

/// Inside IoT Edge a module authenticates as itself through the workload API (see
/// `crate::workload`). Without it (a container started by hand with IoT Edge's variables),
/// the hub and device come from `IOTEDGE_IOTHUBHOSTNAME` and `IOTEDGE_DEVICEID`, and with no
/// credentials the paths are proven without presenting any (`--no-auth`). Flags and a
/// mounted configuration win; no key ever needs to be in a deployment manifest.
fn module_defaults(args: &mut ModuleArgs, notes: &mut Vec<String>) {
    if std::env::var_os("IOTEDGE_WORKLOADURI").is_some() {
        // The module's own identity, signed by the workload API (`crate::workload`).
        return;
    }
    let c = &mut args.check;
    let named = c.iothub_hostname.is_some() || c.connection_string.is_some() || c.config.is_some();
    if !named {
        if let Ok(hub) = std::env::var("IOTEDGE_IOTHUBHOSTNAME") {
            c.iothub_hostname = Some(hub);
            if c.device_id.is_none() {
                c.device_id = std::env::var("IOTEDGE_DEVICEID").ok();
            }
            notes.push(
                "the hub and device come from IoT Edge (IOTEDGE_IOTHUBHOSTNAME, IOTEDGE_DEVICEID)"
                    .into(),
            );
        }
    }
    let credentials = c.sas_key.is_some()
        || c.connection_string.is_some()
        || c.x509_cert.is_some()
        || c.config.is_some();
    if std::env::var_os("IOTEDGE_MODULEID").is_some() && !credentials && !c.no_auth {
        c.no_auth = true;
        notes.push(
            "no credentials were given: the paths are proven without presenting any (--no-auth)"
                .into(),
        );
    }
}

pub async fn run(mut args: ModuleArgs) -> Result<u8, AppError> {
    let mut notes = Vec::new();
    module_defaults(&mut args, &mut notes);
    // Bad inputs end here, before anything listens: the same validation as `check`.
    crate::run::dry_run(&args.check)?;
    let network = container_network(&args);
    if network.is_some() {
        // Inside a container the vantage is the container's: never start a second one.
        args.check.vantage = VantageChoice::Host;
    }
    args.check.quiet = true;
    args.interval = args.interval.max(args.min_interval);
    let (history, note) = History::load(args.state_dir.as_deref(), args.history as usize);
    notes.extend(note);
    for n in &notes {
        log(n);
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| AppError::Usage(format!("--listen {}: {e}", args.listen)))?;
    let bound = listener
        .local_addr()
        .map_err(|e| AppError::Internal(format!("--listen: {e}")))?;
    let module_name = args
        .module_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "edgeprobe".into());
    let module = Arc::new(Module {
        floor: Duration::from_secs_f64(args.min_interval),
        identity: vec![("module_name", module_name)],
        network,
        runs: Mutex::new(HashMap::new()),
        history: Mutex::new(history),
        notes,
        running: tokio::sync::Mutex::new(()),
        desired: Mutex::new(Desired::default()),
        runs_changed: tokio::sync::watch::channel(0).0,
        reschedule: tokio::sync::Notify::new(),
        args,
    });
    log(&format!(
        "listening on {bound} (every {} s, at most every {} s{}{})",
        module.args.interval,
        module.args.min_interval,
        module
            .network
            .as_ref()
            .map(|n| format!(", from the container network {n}"))
            .unwrap_or_default(),
        module
            .args
            .state_dir
            .as_ref()
            .map(|d| format!(", history in {}", d.display()))
            .unwrap_or_default(),
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(schedule(module.clone(), stop_rx.clone()));
    // As an IoT Edge module: the twin and the direct method, over edgeHub.
    let twin = std::env::var_os("IOTEDGE_WORKLOADURI")
        .map(|_| tokio::spawn(twin::run(module.clone(), stop_rx)));
    let mut stop = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let module = module.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(module.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    log("stopping: waiting for a run in flight to finish");
    let _ = stop_tx.send(true);
    // A run in flight ends by its own deadline and removes its containers; wait for it.
    let budget = Duration::from_secs_f64(module.args.check.timeout) + Duration::from_secs(5);
    let _ = tokio::time::timeout(budget, module.running.lock()).await;
    scheduler.abort();
    if let Some(t) = twin {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    log("stopped");
    Ok(0)
}

/// SIGTERM (docker stop, systemd) or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Runs the full selection every interval (with jitter) until told to stop.
async fn schedule(module: Arc<Module>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let seed = {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    };
    let mut n: u64 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let ran = Instant::now();
        if let Err(e) = module.run_now(Vec::new(), None).await {
            log(&format!("run failed: {}", crate::error_line(&e)));
        }
        n += 1;
        // The next run is an interval after this one; a new interval (the twin's desired
        // properties) takes effect at once.
        loop {
            let interval = module
                .desired()
                .interval
                .unwrap_or(module.args.interval)
                .max(module.args.min_interval);
            let next = ran + jittered(interval, seed.wrapping_add(n));
            tokio::select! {
                _ = tokio::time::sleep_until(next) => break,
                _ = module.reschedule.notified() => continue,
                _ = stop.changed() => return,
            }
        }
    }
}

/// `interval` ±10%, from a per-process random seed.
fn jittered(interval: f64, seed: u64) -> Duration {
    let r = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_secs_f64(interval * (0.9 + 0.2 * r))
}

impl Module {
    /// The twin's desired properties in force.
    fn desired(&self) -> Desired {
        lock(&self.desired).clone()
    }

    /// Takes desired properties (the whole document or a patch).
    fn apply_desired(&self, desired: &serde_json::Value) {
        lock(&self.desired).apply(desired, self.args.min_interval);
        self.reschedule.notify_waiters();
        self.runs_changed.send_modify(|n| *n += 1);
    }

    /// The latest full run.
    fn latest(&self) -> Option<Arc<Latest>> {
        lock(&self.runs).get("").cloned()
    }

    /// The latest run of a selection (`""` is the full one), when it is younger than the floor.
    fn fresh(&self, key: &str) -> Option<Arc<Latest>> {
        lock(&self.runs)
            .get(key)
            .filter(|l| l.at.elapsed() < self.floor)
            .cloned()
    }

    /// Runs the checks now, or hands back the last run of the same selection when it is
    /// younger than the floor. Runs never overlap: a burst of requests waits for one run.
    async fn run_now(
        &self,
        only: Vec<String>,
        timeout: Option<f64>,
    ) -> Result<Arc<Latest>, AppError> {
        let key = only.join(",");
        if let Some(l) = self.fresh(&key) {
            return Ok(l);
        }
        let _running = self.running.lock().await;
        if let Some(l) = self.fresh(&key) {
            return Ok(l);
        }
        let mut args = self.args.check.clone();
        let desired = self.desired();
        if !only.is_empty() {
            args.only = only;
        } else if let Some(o) = desired.only {
            args.only = o;
        }
        if let Some(s) = desired.skip {
            args.skip = s;
        }
        if let Some(t) = timeout.or(desired.timeout) {
            args.timeout = t;
        }
        let mut report = crate::stages::check(&args, RunContext::default()).await?;
        if let Some(network) = &self.network {
            let vantage = Vantage::Container(network.clone());
            for r in &mut report.results {
                r.vantage = vantage.clone();
            }
            report.vantage = vantage.to_string();
        }
        if key.is_empty() {
            let mut history = lock(&self.history);
            if let Err(e) = history.push(&report) {
                log(&format!("cannot save the history: {e}"));
            }
            log(&format!(
                "{} in {} ms",
                report.readiness.message,
                report.duration.as_millis()
            ));
        }
        let latest = Arc::new(Latest {
            at: Instant::now(),
            report,
        });
        let full = key.is_empty();
        lock(&self.runs).insert(key, latest.clone());
        if full {
            self.runs_changed.send_modify(|n| *n += 1);
        }
        Ok(latest)
    }
}

#[cfg(test)]
mod tests;

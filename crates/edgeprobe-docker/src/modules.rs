//! The IoT Edge modules as the engine sees them, for support bundles: which containers are
//! the runtime's (edgeAgent, edgeHub, what edgeAgent started, what sits on the modules'
//! network), their inspect output and their logs within a window, bounded in size.

use std::collections::HashMap;

use bollard::container::LogOutput;
use bollard::query_parameters::{ListContainersOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;
use tokio::time::{timeout_at, Instant};

use crate::error::{api, is_not_found, DockerError};
use crate::Engine;

/// The label edgeAgent puts on every module it creates.
pub const EDGE_OWNER_LABEL: (&str, &str) = (
    "net.azure-devices.edge.owner",
    "Microsoft.Azure.Devices.Edge.Agent",
);

/// The runtime's own containers, by the names IoT Edge gives them.
pub const RUNTIME_MODULES: [&str; 2] = ["edgeAgent", "edgeHub"];

/// Most modules a bundle collects (a device runs a handful; this bounds a misconfigured one).
pub const MAX_MODULES: usize = 64;

/// Which containers are IoT Edge modules.
#[derive(Debug, Clone)]
pub struct ModuleSelector {
    /// The modules' network (`moby_runtime.network`): containers on it are modules.
    pub network: String,
    /// Only containers whose name starts with this (empty: all). The names edgeAgent and
    /// edgeHub are matched after it, so `e2e-42-edgeHub` is edgeHub under `e2e-42-`.
    pub name_prefix: String,
}

/// A container that is an IoT Edge module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeModule {
    /// The container's name, without the leading `/`.
    pub name: String,
    pub id: String,
    /// Why it was selected: `runtime name`, `IoT Edge label`, `on network NAME`.
    pub selected_by: String,
}

/// The time window and the size bound of a log collection.
#[derive(Debug, Clone, Copy)]
pub struct LogWindow {
    /// Unix seconds; logs from then on.
    pub since: i64,
    /// Unix seconds; logs up to then (`None`: now).
    pub until: Option<i64>,
    /// The last this many bytes are kept; older lines are dropped (and said so).
    pub max_bytes: usize,
}

/// A module's logs within a window.
#[derive(Debug, Clone)]
pub struct ContainerLogs {
    /// Timestamped lines, stdout and stderr interleaved as the engine sent them.
    pub text: String,
    /// Bytes dropped from the front to keep within `max_bytes`.
    pub dropped_bytes: u64,
    /// The deadline came before the engine finished sending: what came is kept.
    pub timed_out: bool,
}

/// Keeps the last `max` bytes of a stream, cut at a line start.
/// Keeps the last `max` bytes of a stream (module logs, a command's output), from a line
/// start, and counts what it dropped.
#[derive(Debug)]
pub struct Tail {
    max: usize,
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    pub fn new(max: usize) -> Tail {
        Tail {
            max,
            buf: Vec::new(),
            dropped: 0,
        }
    }

    /// The most it keeps.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Nothing kept (and nothing dropped).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.dropped == 0
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.max.saturating_mul(2).max(64 * 1024) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() <= self.max {
            return;
        }
        let mut cut = self.buf.len() - self.max;
        // Start at a whole line when there is one in the kept part.
        if let Some(nl) = self.buf[cut..].iter().position(|b| *b == b'\n') {
            if cut + nl + 1 < self.buf.len() {
                cut += nl + 1;
            }
        }
        self.buf.drain(..cut);
        self.dropped += cut as u64;
    }

    /// The kept text and how many bytes were dropped before it.
    pub fn finish(mut self) -> (String, u64) {
        self.trim();
        (
            String::from_utf8_lossy(&self.buf).into_owned(),
            self.dropped,
        )
    }
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(0, i64::from(i32::MAX)) as i32
}

impl ModuleSelector {
    /// Why `c` is a module, or `None`.
    fn selects(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        networks: &[String],
    ) -> Option<String> {
        let short = name.strip_prefix(self.name_prefix.as_str())?;
        if RUNTIME_MODULES.contains(&short) {
            return Some("runtime name".into());
        }
        if labels.get(EDGE_OWNER_LABEL.0).map(String::as_str) == Some(EDGE_OWNER_LABEL.1) {
            return Some("IoT Edge label".into());
        }
        if networks.contains(&self.network) {
            return Some(format!("on network {}", self.network));
        }
        None
    }
}

pub(crate) async fn edge_modules(
    engine: &Engine,
    selector: &ModuleSelector,
    deadline: Instant,
) -> Result<Vec<EdgeModule>, DockerError> {
    let shared = engine.shared();
    let options = ListContainersOptionsBuilder::default().all(true).build();
    let list = timeout_at(deadline, shared.docker.list_containers(Some(options)))
        .await
        .map_err(|_| DockerError::Timeout("listing containers"))?
        .map_err(|e| api("listing containers", &shared.uri, e))?;
    let mut out = Vec::new();
    for c in list {
        let Some(name) = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_owned())
        else {
            continue;
        };
        let networks: Vec<String> = c
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        let labels = c.labels.clone().unwrap_or_default();
        if let Some(why) = selector.selects(&name, &labels, &networks) {
            out.push(EdgeModule {
                name,
                id: c.id.clone().unwrap_or_default(),
                selected_by: why,
            });
        }
    }
    // The runtime first, then by name; a stable order for the bundle.
    out.sort_by(|a, b| {
        let rank = |m: &EdgeModule| {
            let short = m
                .name
                .strip_prefix(selector.name_prefix.as_str())
                .unwrap_or(&m.name);
            RUNTIME_MODULES
                .iter()
                .position(|r| *r == short)
                .unwrap_or(RUNTIME_MODULES.len())
        };
        (rank(a), &a.name).cmp(&(rank(b), &b.name))
    });
    out.truncate(MAX_MODULES);
    Ok(out)
}

pub(crate) async fn container_inspect_json(
    engine: &Engine,
    name: &str,
    deadline: Instant,
) -> Result<Option<String>, DockerError> {
    let shared = engine.shared();
    match timeout_at(deadline, shared.docker.inspect_container(name, None)).await {
        Err(_) => Err(DockerError::Timeout("inspecting a container")),
        Ok(Err(e)) if is_not_found(&e) => Ok(None),
        Ok(Err(e)) => Err(api(&format!("inspecting container {name}"), &shared.uri, e)),
        Ok(Ok(c)) => Ok(Some(serde_json::to_string_pretty(&c).unwrap_or_default())),
    }
}

pub(crate) async fn container_logs(
    engine: &Engine,
    name: &str,
    window: LogWindow,
    deadline: Instant,
) -> Result<ContainerLogs, DockerError> {
    let shared = engine.shared();
    let mut options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(clamp_i32(window.since));
    if let Some(until) = window.until {
        options = options.until(clamp_i32(until));
    }
    let mut stream = shared.docker.logs(name, Some(options.build()));
    let mut tail = Tail::new(window.max_bytes);
    let mut timed_out = false;
    loop {
        match timeout_at(deadline, stream.next()).await {
            Err(_) => {
                timed_out = true;
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) if is_not_found(&e) => {
                return Err(DockerError::Api(format!("no container named {name}")))
            }
            Ok(Some(Err(e))) => {
                return Err(api(&format!("reading the logs of {name}"), &shared.uri, e))
            }
            Ok(Some(Ok(out))) => match out {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => tail.push(&message),
                LogOutput::StdIn { .. } => {}
            },
        }
    }
    let (text, dropped_bytes) = tail.finish();
    Ok(ContainerLogs {
        text,
        dropped_bytes,
        timed_out,
    })
}

pub(crate) async fn version_json(
    engine: &Engine,
    deadline: Instant,
) -> Result<String, DockerError> {
    let shared = engine.shared();
    match timeout_at(deadline, shared.docker.version()).await {
        Err(_) => Err(DockerError::Timeout("asking the engine for its version")),
        Ok(Err(e)) => Err(api("asking the engine for its version", &shared.uri, e)),
        Ok(Ok(v)) => Ok(serde_json::to_string_pretty(&v).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes_from_a_line_start() {
        let mut t = Tail::new(10);
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let (text, dropped) = t.finish();
        assert_eq!(text, "line 99\n");
        assert!(dropped > 0);
        assert_eq!(
            dropped as usize + text.len(),
            (0..100).map(|i| format!("line {i}\n").len()).sum::<usize>()
        );
    }

    #[test]
    fn modules_are_selected_by_name_label_or_network() {
        let s = ModuleSelector {
            network: "azure-iot-edge".into(),
            name_prefix: "e2e-1-".into(),
        };
        let none = HashMap::new();
        let labelled: HashMap<String, String> =
            [(EDGE_OWNER_LABEL.0.to_owned(), EDGE_OWNER_LABEL.1.to_owned())].into();
        assert_eq!(
            s.selects("e2e-1-edgeHub", &none, &[]).as_deref(),
            Some("runtime name")
        );
        assert_eq!(
            s.selects("e2e-1-sensor", &labelled, &[]).as_deref(),
            Some("IoT Edge label")
        );
        assert!(s
            .selects("e2e-1-other", &none, &["azure-iot-edge".into()])
            .is_some());
        assert_eq!(
            s.selects("edgeHub", &labelled, &[]),
            None,
            "outside the prefix"
        );
        assert_eq!(s.selects("e2e-1-web", &none, &["bridge".into()]), None);
    }
}

//! Renderers for a finished run. The public JSON has its own `Serialize` types
//! ([`json`]), so the schema (`report.schema.json`) is explicit and internal types can
//! change freely. Colour and terminal decisions live only in the text renderer. The JUnit,
//! Prometheus and HTML renderers serve CI pipelines, fleet dashboards and support engineers.

/// One self-contained HTML page with timing waterfalls, for support engineers.
pub mod html;
/// The JSON report, schema_version 1.
pub mod json;
/// JUnit XML, one test case per check, for CI pipelines.
pub mod junit;
/// Prometheus text exposition for node_exporter's textfile collector.
pub mod prometheus;
/// The text report for people.
pub mod text;

use std::time::{Duration, SystemTime};

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::Status;
use edgeprobe_iotedge::verdict::{Readiness, Verdict};

/// What the run was about, as shown in the report header and the JSON `context`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunContext {
    pub iothub_hostname: Option<String>,
    pub device_id: Option<String>,
    pub dps: Option<String>,
    pub parent_hostname: Option<String>,
    /// The gateway a downstream device is checked through.
    pub gateway_hostname: Option<String>,
    /// Redacted proxy URL.
    pub proxy: Option<String>,
    pub configured_upstream_protocol: Option<String>,
    pub network: Option<String>,
    /// The root certificates that verified servers ("os (146 roots) + trust bundle (1)").
    pub trust_roots: Option<String>,
    /// Notes about the run itself (e.g. why a vantage was not used).
    pub notes: Vec<String>,
}

impl RunContext {
    /// The context values that are known, in report order: (key as in JSON, label for
    /// people, value). Every renderer lists the context from here.
    pub fn known(&self) -> Vec<(&'static str, &'static str, String)> {
        [
            ("iothub_hostname", "IoT Hub", &self.iothub_hostname),
            ("device_id", "Device", &self.device_id),
            ("dps", "DPS", &self.dps),
            ("parent_hostname", "Parent", &self.parent_hostname),
            ("gateway_hostname", "Gateway", &self.gateway_hostname),
            ("proxy", "Proxy", &self.proxy),
            (
                "configured_upstream_protocol",
                "Configured UpstreamProtocol",
                &self.configured_upstream_protocol,
            ),
            ("network", "Docker network", &self.network),
            ("trust_roots", "Trust roots", &self.trust_roots),
        ]
        .into_iter()
        .filter_map(|(key, label, v)| v.clone().map(|v| (key, label, v)))
        .collect()
    }
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub started_at: SystemTime,
    pub duration: Duration,
    pub vantage: String,
    pub context: RunContext,
    pub results: Vec<CheckResult>,
    pub verdict: Verdict,
    /// Whether the device can run: what the exit code and every renderer state.
    pub readiness: Readiness,
}

/// Counts per status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

impl RunReport {
    /// Whether this check is one that makes the device not ready.
    pub fn blocks(&self, r: &CheckResult) -> bool {
        !self.readiness.ready
            && self.readiness.blocking.iter().any(|b| {
                b == &r.def.id
                    || b.strip_prefix(r.def.id.as_str())
                        .is_some_and(|rest| rest == format!(" ({})", r.vantage))
            })
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for r in &self.results {
            match r.outcome.status {
                Status::Pass => s.pass += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skip => s.skip += 1,
            }
        }
        s
    }
}

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    Junit,
    Prometheus,
    Html,
}

/// Renders a report in a format.
pub trait Renderer {
    fn render(&self, report: &RunReport) -> String;
}

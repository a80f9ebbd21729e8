//! The JSON contract of PRODUCT.md. These types are the schema; `report.schema.json` in this
//! crate describes them and a test validates real output against it.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::{Renderer, RunReport};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JsonReport {
    pub schema_version: u32,
    pub tool: Tool,
    pub started_at: String,
    pub duration_ms: u64,
    pub vantage: String,
    /// The run's one answer: can the device run? The exit code says the same (0 or 1).
    pub ready: bool,
    /// Why, and which checks stand in the way.
    pub readiness: Readiness,
    pub context: Context,
    pub checks: Vec<Check>,
    pub upstream_protocols: BTreeMap<String, UpstreamVerdict>,
    pub recommendation: Recommendation,
    pub summary: Summary,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Readiness {
    /// `ok`, or the reason of the first check that makes the device not ready.
    pub reason: String,
    pub message: String,
    pub fix: Option<String>,
    /// Ids of the checks that make the device not ready.
    pub blocking: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Context {
    pub iothub_hostname: Option<String>,
    pub device_id: Option<String>,
    pub dps: Option<String>,
    pub parent_hostname: Option<String>,
    #[serde(default)]
    pub gateway_hostname: Option<String>,
    pub proxy: Option<String>,
    pub configured_upstream_protocol: Option<String>,
    pub network: Option<String>,
    /// The root set that verified servers, and the trust bundle's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_roots: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Check {
    pub id: String,
    pub title: String,
    pub endpoint: String,
    pub protocol: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub vantage: String,
    pub via_proxy: bool,
    pub required: bool,
    pub status: String,
    pub reason: String,
    /// More reason codes that also apply (e.g. `not_proxiable`).
    #[serde(default)]
    pub also: Vec<String>,
    pub message: String,
    pub fix: Option<String>,
    /// `ok`, `rejected` or `untested`; absent for checks without credentials.
    pub auth: Option<String>,
    pub duration_ms: f64,
    pub phases: Vec<Phase>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub status: String,
    /// Offset from the start of the check.
    pub started_ms: f64,
    pub duration_ms: f64,
    pub detail: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UpstreamVerdict {
    /// Whether a probe of this protocol ran; `false` when the selection left it out or no
    /// upstream is configured.
    pub checked: bool,
    /// Whether the network path reaches the real service (its protocol answered); `null`
    /// when not checked. Says nothing of the credentials: see `auth`.
    pub works: Option<bool>,
    pub auth: String,
    pub via_proxy: bool,
    pub evidence: Vec<String>,
    pub reason: String,
    pub why: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub upstream_protocol: Option<String>,
    pub change_needed: bool,
    pub why: String,
    pub setting: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// RFC 3339 in UTC, seconds precision.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl UpstreamVerdict {
    /// Checked and working.
    pub fn works(&self) -> bool {
        self.works == Some(true)
    }
}

impl JsonReport {
    pub fn from_run(report: &RunReport) -> Self {
        let checks = report
            .results
            .iter()
            .map(|r| Check {
                id: r.def.id.clone(),
                title: r.def.title.clone(),
                endpoint: r.def.endpoint.as_str().into(),
                protocol: r.def.protocol.as_str().into(),
                host: r
                    .target
                    .as_ref()
                    .map(|t| t.host.clone())
                    .filter(|h| !h.is_empty()),
                port: r.target.as_ref().and_then(|t| t.port).or(r.def.port),
                vantage: r.vantage.to_string(),
                via_proxy: r.outcome.via_proxy,
                required: r.def.required,
                status: r.outcome.status.as_str().into(),
                reason: r.outcome.reason.as_str().into(),
                also: r
                    .outcome
                    .also
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
                message: r.outcome.message.clone(),
                fix: r.outcome.fix.clone(),
                auth: r.outcome.auth.map(|a| a.as_str().to_owned()),
                duration_ms: ms(r.duration),
                phases: r
                    .outcome
                    .phases
                    .iter()
                    .map(|p| Phase {
                        name: p.name.as_str().into(),
                        status: p.status.as_str().into(),
                        started_ms: ms(p.started),
                        duration_ms: ms(p.duration),
                        detail: p.detail.iter().cloned().collect(),
                    })
                    .collect(),
            })
            .collect();
        let upstream_protocols = report
            .verdict
            .protocols
            .iter()
            .map(|v| {
                (
                    v.protocol.as_str().to_owned(),
                    UpstreamVerdict {
                        checked: v.tested,
                        works: v.tested.then_some(v.works),
                        auth: v.auth.as_str().into(),
                        via_proxy: v.via_proxy,
                        evidence: v.evidence.clone(),
                        reason: v.reason.as_str().into(),
                        why: v.why.clone(),
                    },
                )
            })
            .collect();
        let rec = &report.verdict.recommendation;
        let s = report.summary();
        let c = &report.context;
        JsonReport {
            schema_version: SCHEMA_VERSION,
            tool: Tool {
                name: "edgeprobe".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            started_at: rfc3339(report.started_at),
            duration_ms: report.duration.as_millis() as u64,
            vantage: report.vantage.clone(),
            ready: report.readiness.ready,
            readiness: Readiness {
                reason: report.readiness.reason.as_str().into(),
                message: report.readiness.message.clone(),
                fix: report.readiness.fix.clone(),
                blocking: report.readiness.blocking.clone(),
            },
            context: Context {
                iothub_hostname: c.iothub_hostname.clone(),
                device_id: c.device_id.clone(),
                dps: c.dps.clone(),
                parent_hostname: c.parent_hostname.clone(),
                gateway_hostname: c.gateway_hostname.clone(),
                proxy: c.proxy.clone(),
                configured_upstream_protocol: c.configured_upstream_protocol.clone(),
                network: c.network.clone(),
                trust_roots: c.trust_roots.clone(),
                notes: c.notes.clone(),
            },
            checks,
            upstream_protocols,
            recommendation: Recommendation {
                upstream_protocol: rec.upstream_protocol.map(|p| p.as_str().to_owned()),
                change_needed: rec.change_needed,
                why: rec.why.clone(),
                setting: rec.setting.clone(),
            },
            summary: Summary {
                pass: s.pass,
                warn: s.warn,
                fail: s.fail,
                skip: s.skip,
            },
        }
    }
}

/// Pretty-printed JSON.
#[derive(Debug, Default)]
pub struct JsonRenderer;

impl Renderer for JsonRenderer {
    fn render(&self, report: &RunReport) -> String {
        let mut s = serde_json::to_string_pretty(&JsonReport::from_run(report))
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise the report: {e}\"}}"));
        s.push('\n');
        s
    }
}

/// The JSON Schema of the report, shipped with the crate.
pub const SCHEMA: &str = include_str!("../report.schema.json");

impl Check {
    /// Rebuilds an internal result from a report's check, e.g. one produced by a run inside a
    /// container, so results from several vantages merge into one report. `None` when a code
    /// is unknown to this version.
    pub fn to_result(&self) -> Option<edgeprobe_core::runner::CheckResult> {
        use edgeprobe_core::catalog::{CheckDef, Target};
        use edgeprobe_core::{
            AuthState, Endpoint, Outcome, Phase, PhaseName, PhaseStatus, Protocol, Reason, Status,
            Vantage,
        };
        use std::time::Duration;
        let ms = |v: f64| Duration::from_secs_f64((v.max(0.0)) / 1000.0);
        let mut outcome = Outcome::new(
            Status::from_code(&self.status)?,
            Reason::from_code(&self.reason)?,
            self.message.clone(),
        );
        outcome.fix = self.fix.clone();
        outcome.auth = self.auth.as_deref().and_then(AuthState::from_code);
        outcome.via_proxy = self.via_proxy;
        outcome.also = self
            .also
            .iter()
            .filter_map(|a| Reason::from_code(a))
            .collect();
        outcome.phases = self
            .phases
            .iter()
            .filter_map(|p| {
                Some(Phase {
                    name: PhaseName::from_code(&p.name)?,
                    status: PhaseStatus::from_code(&p.status)?,
                    started: ms(p.started_ms),
                    duration: ms(p.duration_ms),
                    detail: p
                        .detail
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
            })
            .collect();
        let vantage = match self.vantage.strip_prefix("container:") {
            Some(net) => Vantage::Container(net.to_owned()),
            None => Vantage::Host,
        };
        Some(edgeprobe_core::runner::CheckResult {
            def: CheckDef {
                id: self.id.clone(),
                title: self.title.clone(),
                endpoint: Endpoint::from_code(&self.endpoint)?,
                protocol: Protocol::from_code(&self.protocol)?,
                host: self.host.clone().unwrap_or_default(),
                port: self.port,
                required: self.required,
                requires: Vec::new(),
                unless: Vec::new(),
                source: "report".into(),
                expect: Default::default(),
                credentials: false,
                limits: Default::default(),
                send: None,
            },
            target: self.host.as_ref().map(|h| Target {
                host: h.clone(),
                port: self.port,
            }),
            vantage,
            outcome,
            duration: ms(self.duration_ms),
        })
    }
}

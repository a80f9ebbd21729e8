//! Prometheus text exposition (format 0.0.4) for node_exporter's textfile collector, so a
//! fleet dashboard can graph and alert on connectivity without parsing JSON: write the
//! output to `<dir>/edgeprobe.prom` (via a temporary file and a rename) after each run.
//! Every family is a gauge, carries no timestamp (the collector rejects them) and appears
//! once with all its samples together; label values are escaped as the format requires.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use edgeprobe_core::{AuthState, Phase, PhaseName, Status};

use crate::{Renderer, RunReport};

/// Prometheus renderer.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrometheusRenderer;

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as the format spells it (Go's float syntax for the special values).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// One metric family: HELP, TYPE and its samples, each label set at most once.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<String>,
    seen: BTreeSet<String>,
}

impl Family {
    /// A gauge.
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind: "gauge",
            samples: Vec::new(),
            seen: BTreeSet::new(),
        }
    }

    /// A counter (its name ends in `_total`).
    pub fn counter(name: &'static str, help: &'static str) -> Self {
        Family {
            kind: "counter",
            ..Family::new(name, help)
        }
    }

    /// Adds a sample; a label set already present keeps its first value, since a
    /// duplicate series makes the whole file unreadable for the collector.
    pub fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
            .collect::<Vec<_>>()
            .join(",");
        if !self.seen.insert(labels.clone()) {
            return;
        }
        let series = if labels.is_empty() {
            self.name.to_owned()
        } else {
            format!("{}{{{labels}}}", self.name)
        };
        self.samples.push(format!("{series} {}", number(value)));
    }

    /// Appends the family to an exposition; an empty family writes nothing.
    pub fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for s in &self.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
}

/// The phases of a check with repeated names folded into one (durations added, the last
/// status kept), so each phase is one series.
fn folded_phases(phases: &[Phase]) -> Vec<(PhaseName, &'static str, f64)> {
    let mut out: Vec<(PhaseName, &'static str, f64)> = Vec::new();
    for p in phases {
        let secs = p.duration.as_secs_f64();
        match out.iter_mut().find(|(name, _, _)| *name == p.name) {
            Some(entry) => {
                entry.1 = p.status.as_str();
                entry.2 += secs;
            }
            None => out.push((p.name, p.status.as_str(), secs)),
        }
    }
    out
}

/// The leaf certificate's subject and expiry (Unix seconds) from a `tls` phase.
fn leaf_certificate(phase: &Phase) -> Option<(String, f64)> {
    let leaf = phase.detail("chain")?.as_array()?.first()?;
    let not_after = leaf.get("not_after")?.as_str()?;
    let t = time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let subject = leaf
        .get("subject")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    Some((subject, t.unix_timestamp() as f64))
}

impl Renderer for PrometheusRenderer {
    fn render(&self, report: &RunReport) -> String {
        let mut out = header(report);
        for family in families(report, &[]) {
            family.write(&mut out);
        }
        out
    }
}

/// The verdict in words, for a person reading the file (comments to parsers).
pub fn header(report: &RunReport) -> String {
    let mut out = format!(
        "# edgeprobe: {}\n",
        report.readiness.message.replace('\n', " ")
    );
    if let Some(fix) = &report.readiness.fix {
        let _ = writeln!(out, "# edgeprobe: fix: {}", fix.replace('\n', " "));
    }
    out
}

/// The report's metric families; `identity` adds labels to `edgeprobe_info` (a module's
/// `module_name`).
pub fn families(report: &RunReport, identity: &[(&str, &str)]) -> Vec<Family> {
    let mut ready = Family::new(
        "edgeprobe_ready",
        "Whether the device can run (1) or not (0): the run's verdict, as its exit code says.",
    );
    let mut info = Family::new(
        "edgeprobe_info",
        "The edgeprobe version and the device it checked (always 1).",
    );
    let mut failure = Family::new(
        "edgeprobe_check_failure_reason",
        "The reason a check warned or failed (1); checks that passed or were skipped are omitted.",
    );
    let mut success = Family::new(
        "edgeprobe_check_success",
        "Whether the check passed (1 for pass or warn, 0 for fail); skipped checks are omitted.",
    );
    let mut status = Family::new(
        "edgeprobe_check_status",
        "The status of the check, one-hot over pass, warn and fail; skipped checks are omitted.",
    );
    let mut phase_duration = Family::new(
        "edgeprobe_phase_duration_seconds",
        "How long each layer of the check took (dns, tcp, proxy, tls, ws, protocol, auth).",
    );
    let mut works = Family::new(
            "edgeprobe_upstream_protocol_works",
            "Whether the UpstreamProtocol value works from this device (its protocol got an answer from the service).",
        );
    let mut auth_ok = Family::new(
            "edgeprobe_upstream_protocol_auth_ok",
            "Whether the device credentials were accepted over the UpstreamProtocol value; omitted when untested.",
        );
    let mut change_needed = Family::new(
        "edgeprobe_recommendation_change_needed",
        "Whether the configured UpstreamProtocol has to change for the runtime to connect.",
    );
    let mut cert_expiry = Family::new(
        "edgeprobe_tls_certificate_not_after_timestamp_seconds",
        "When the leaf certificate the server presented expires, in Unix seconds.",
    );
    let mut clock_skew = Family::new(
        "edgeprobe_clock_skew_seconds",
        "The services' clocks minus the device clock: the median over the HTTP Date headers seen.",
    );
    let mut run_duration = Family::new(
        "edgeprobe_run_duration_seconds",
        "How long the edgeprobe run took.",
    );
    let mut run_timestamp = Family::new(
        "edgeprobe_run_timestamp_seconds",
        "When the edgeprobe run started, in Unix seconds.",
    );

    for r in &report.results {
        let id = r.def.id.as_str();
        let vantage = r.vantage.to_string();
        let vantage = vantage.as_str();
        let o = &r.outcome;
        if o.status == Status::Skip {
            continue;
        }
        success.add(
            &[
                ("id", id),
                ("endpoint", r.def.endpoint.as_str()),
                ("protocol", r.def.protocol.as_str()),
                ("vantage", vantage),
            ],
            if o.status == Status::Fail { 0.0 } else { 1.0 },
        );
        if matches!(o.status, Status::Warn | Status::Fail) {
            failure.add(
                &[
                    ("id", id),
                    ("vantage", vantage),
                    ("reason", o.reason.as_str()),
                ],
                1.0,
            );
        }
        for s in Status::ALL.iter().filter(|s| **s != Status::Skip) {
            status.add(
                &[("id", id), ("vantage", vantage), ("status", s.as_str())],
                if *s == o.status { 1.0 } else { 0.0 },
            );
        }
        for (name, st, secs) in folded_phases(&o.phases) {
            phase_duration.add(
                &[
                    ("id", id),
                    ("vantage", vantage),
                    ("phase", name.as_str()),
                    ("status", st),
                ],
                secs,
            );
        }
        if let Some((subject, expiry)) = o.phase(PhaseName::Tls).and_then(leaf_certificate) {
            cert_expiry.add(
                &[("id", id), ("vantage", vantage), ("subject", &subject)],
                expiry,
            );
        }
    }

    if report.verdict.tested() {
        for v in report.verdict.protocols.iter().filter(|v| v.tested) {
            let protocol = [("protocol", v.protocol.as_str())];
            works.add(&protocol, if v.works { 1.0 } else { 0.0 });
            match v.auth {
                AuthState::Ok => auth_ok.add(&protocol, 1.0),
                AuthState::Rejected => auth_ok.add(&protocol, 0.0),
                AuthState::Untested => {}
            }
        }
        let needed = report.verdict.recommendation.change_needed;
        change_needed.add(&[], if needed { 1.0 } else { 0.0 });
    }

    let offsets: Vec<f64> = report
        .results
        .iter()
        .filter_map(|r| r.outcome.clock_offset_secs)
        .collect();
    if let Some(m) = edgeprobe_iotedge::clock::median(&offsets) {
        clock_skew.add(&[], m);
    }

    run_duration.add(&[], report.duration.as_secs_f64());
    let started = report
        .started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    run_timestamp.add(&[], started);

    ready.add(&[], if report.readiness.ready { 1.0 } else { 0.0 });
    let c = &report.context;
    let mut labels = vec![
        ("version", env!("CARGO_PKG_VERSION")),
        ("iothub", c.iothub_hostname.as_deref().unwrap_or_default()),
        ("edge_device", c.device_id.as_deref().unwrap_or_default()),
    ];
    labels.extend_from_slice(identity);
    info.add(&labels, 1.0);

    vec![
        ready,
        info,
        success,
        failure,
        status,
        phase_duration,
        works,
        auth_ok,
        change_needed,
        cert_expiry,
        clock_skew,
        run_duration,
        run_timestamp,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(
            escape_label_value("C:\\dir \"x\"\nnext"),
            "C:\\\\dir \\\"x\\\"\\nnext"
        );
    }

    #[test]
    fn special_values_use_the_exposition_spelling() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1_795_000_000.0), "1795000000");
    }
}

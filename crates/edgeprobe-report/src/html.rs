//! One self-contained HTML page for the support engineer who receives a report: the
//! verdict and recommendation first, then every check with a timing waterfall that shows
//! where the time went and where the probe stopped. The page has inline CSS only — no
//! script, font, image or link to anything outside it — and a Content-Security-Policy that
//! forbids fetching anything, so opening it makes no network request (it may be opened on
//! a locked-down machine, or from a support ticket). Every string is HTML-escaped.

use std::fmt::Write as _;
use std::time::Duration;

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{AuthState, PhaseName, Protocol, Status};

use crate::{Renderer, RunReport};

/// HTML renderer.
#[derive(Clone, Copy, Debug, Default)]
pub struct HtmlRenderer;

/// Escapes text for HTML element content and quoted attribute values. C0 controls other
/// than tab, line feed and carriage return, DEL and the noncharacters U+FFFE and U+FFFF
/// are not allowed in HTML and become U+FFFD.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{7f}' | '\u{FFFE}' | '\u{FFFF}') => {
                out.push('\u{FFFD}')
            }
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root {
  --ink: #1b1f24; --muted: #5b6570; --line: #d8dee4; --panel: #ffffff; --page: #f3f5f7;
  --ok: #1a7f37; --ok-bg: #dafbe1; --warn: #9a6700; --warn-bg: #fff3c4;
  --fail: #cf222e; --fail-bg: #ffebe9; --skip: #6e7781; --skip-bg: #eaeef2;
  --accent: #0b5cad;
}
* { box-sizing: border-box; }
html { background: var(--page); }
body { margin: 0; color: var(--ink); font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header.top { background: #14212e; color: #fff; padding: 22px 0 20px; }
header.top h1 { margin: 0; font-size: 20px; font-weight: 600; letter-spacing: .2px; }
header.top h1 .ver { color: #9fb3c8; font-weight: 400; font-size: 14px; margin-left: 6px; }
header.top .sub { color: #c9d6e2; margin-top: 2px; }
.ctx { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 6px 24px; margin: 16px 0 0; }
.ctx div { min-width: 0; }
.ctx dt { color: #9fb3c8; font-size: 11px; text-transform: uppercase; letter-spacing: .6px; }
.ctx dd { margin: 0; overflow-wrap: anywhere; }
.notes { margin: 12px 0 0; padding-left: 18px; color: #ffd98a; }
main { padding: 20px 0 40px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 18px 20px; margin-bottom: 18px; }
h2 { font-size: 16px; margin: 0 0 12px; font-weight: 600; }
.summary { display: flex; flex-wrap: wrap; align-items: center; gap: 10px 18px; }
.verdict-line { font-size: 16px; font-weight: 600; margin-right: auto; }
.verdict-line.bad { color: var(--fail); } .verdict-line.good { color: var(--ok); }
.counts { display: flex; gap: 8px; }
.badge { display: inline-block; min-width: 44px; text-align: center; padding: 1px 8px; border-radius: 999px; font-size: 11.5px; font-weight: 700; letter-spacing: .4px; text-transform: uppercase; }
.badge.pass, .badge.ok, .badge.yes { color: var(--ok); background: var(--ok-bg); }
.badge.warn { color: var(--warn); background: var(--warn-bg); }
.badge.fail, .badge.no { color: var(--fail); background: var(--fail-bg); }
.badge.skip, .badge.untested { color: var(--skip); background: var(--skip-bg); }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-size: 11.5px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--line); padding: 6px 10px; }
td { border-bottom: 1px solid #eef1f4; padding: 7px 10px; vertical-align: baseline; }
td.nowrap { white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.rec { margin-top: 16px; border-left: 4px solid var(--ok); background: var(--ok-bg); padding: 12px 14px; border-radius: 4px; }
.rec.change { border-color: var(--warn); background: var(--warn-bg); }
.rec.none { border-color: var(--fail); background: var(--fail-bg); }
.rec strong { display: block; font-size: 15px; margin-bottom: 2px; }
.rec code.setting { display: block; margin-top: 8px; padding: 8px 10px; background: rgba(255,255,255,.7); border-radius: 4px; white-space: pre-wrap; overflow-wrap: anywhere; }
section.check { background: var(--panel); border: 1px solid var(--line); border-left: 4px solid var(--skip); border-radius: 8px; padding: 14px 20px 16px; margin-bottom: 14px; break-inside: avoid; }
section.check[data-status="pass"] { border-left-color: var(--ok); }
section.check[data-status="warn"] { border-left-color: #d4a72c; }
section.check[data-status="fail"] { border-left-color: var(--fail); }
.check-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 12px; }
.check-head h3 { margin: 0; font-size: 15px; font-weight: 600; }
.check-head .id { color: var(--muted); }
.check-head .meta { color: var(--muted); font-size: 12.5px; margin-left: auto; }
dl.facts { display: grid; grid-template-columns: 80px 1fr; gap: 4px 12px; margin: 10px 0 0; }
dl.facts dt { color: var(--muted); font-size: 12px; padding-top: 1px; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
dl.facts dd.fix { font-weight: 500; }
.wf { margin-top: 12px; border-top: 1px dashed var(--line); padding-top: 10px; }
.wf-row { display: grid; grid-template-columns: 200px 1fr 82px; align-items: center; gap: 10px; height: 22px; }
.wf-name { font-size: 12.5px; white-space: nowrap; }
.wf-name .st { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px; background: var(--skip); }
.wf-name .st.ok { background: var(--ok); } .wf-name .st.warn { background: #d4a72c; } .wf-name .st.fail { background: var(--fail); }
.wf-name .stop { color: var(--fail); font-size: 11px; font-weight: 600; margin-left: 4px; }
.wf-track { position: relative; height: 12px; background: repeating-linear-gradient(to right, #f3f5f7 0, #f3f5f7 calc(25% - 1px), #e3e8ed calc(25% - 1px), #e3e8ed 25%); border-radius: 2px; }
.wf-bar { position: absolute; top: 0; bottom: 0; min-width: 2px; border-radius: 2px; background: var(--skip); }
.wf-bar.ok { background: #2da44e; } .wf-bar.warn { background: #d4a72c; } .wf-bar.skip { background: #afb8c1; }
.wf-bar.fail { background: repeating-linear-gradient(135deg, #cf222e 0, #cf222e 6px, #e5534b 6px, #e5534b 12px); }
.wf-ms { text-align: right; font-size: 12px; font-variant-numeric: tabular-nums; white-space: nowrap; }
.wf-row.unreached { color: var(--muted); }
.wf-row.unreached .wf-track { background: none; border-top: 1px dashed var(--line); height: 0; }
.wf-axis { display: grid; grid-template-columns: 200px 1fr 82px; gap: 10px; font-size: 10.5px; color: var(--muted); margin-top: 2px; }
.wf-axis .ticks { display: flex; justify-content: space-between; }
.nophases { margin-top: 10px; color: var(--muted); font-size: 12.5px; }
details { margin-top: 10px; }
summary { cursor: pointer; color: var(--accent); font-size: 12.5px; }
table.detail td { font-size: 12.5px; padding: 4px 10px; }
table.detail td:first-child { white-space: nowrap; color: var(--muted); width: 1%; }
table.detail td code { white-space: pre-wrap; overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: 12px; padding: 0 0 30px; }
@media print {
  html { background: #fff; } header.top { background: #fff; color: var(--ink); border-bottom: 2px solid var(--ink); }
  header.top .sub, .ctx dt, header.top h1 .ver { color: var(--muted); }
  .panel, section.check { border-color: #bbb; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        Status::Skip => "skip",
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Where a check's time line ends: the later of its duration and its last phase's end.
fn span_ms(r: &CheckResult) -> f64 {
    r.outcome
        .phases
        .iter()
        .map(|p| ms(p.started + p.duration))
        .fold(ms(r.duration), f64::max)
}

/// The layers the runtime walks for a protocol, in order, for showing the ones a failed
/// probe never reached. Empty for checks that are not network paths.
fn expected_phases(r: &CheckResult) -> Vec<PhaseName> {
    let o = &r.outcome;
    let mut v = vec![PhaseName::Dns, PhaseName::Tcp];
    match r.def.protocol {
        Protocol::Mqtt | Protocol::Amqp => v.push(PhaseName::Tls),
        Protocol::MqttWs | Protocol::AmqpWs => {
            if o.via_proxy {
                v.push(PhaseName::Proxy);
            }
            v.extend([PhaseName::Tls, PhaseName::Ws]);
        }
        Protocol::Https | Protocol::Registry => {
            if o.via_proxy {
                v.push(PhaseName::Proxy);
            }
            v.push(PhaseName::Tls);
        }
        // The catalog's plain probes: a protocol phase only when they exchange bytes.
        Protocol::Tcp | Protocol::Tls => {
            if r.def.protocol == Protocol::Tls {
                v.push(PhaseName::Tls);
            }
            if r.def.send.is_none() && !r.def.expect.wants_banner() {
                return v;
            }
        }
        Protocol::Dns | Protocol::Time | Protocol::Config => return Vec::new(),
    }
    v.push(PhaseName::Protocol);
    if o.auth.is_some() {
        v.push(PhaseName::Auth);
    }
    v
}

fn detail_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn write_waterfall(out: &mut String, r: &CheckResult, scale_ms: f64) {
    let o = &r.outcome;
    if o.phases.is_empty() {
        out.push_str(if o.status == Status::Skip {
            "<p class=\"nophases\">Not run, so no phases to time.</p>\n"
        } else {
            "<p class=\"nophases\">No network phases: this check reads local facts.</p>\n"
        });
        return;
    }
    let pct = |v: f64| (v / scale_ms * 100.0).clamp(0.0, 100.0);
    // The phase a failed check stopped at: its last failed phase.
    let stop = if o.status == Status::Fail {
        o.phases
            .iter()
            .rposition(|p| p.status == edgeprobe_core::PhaseStatus::Fail)
    } else {
        None
    };
    out.push_str("<div class=\"wf\" role=\"table\" aria-label=\"timing waterfall\">\n");
    for (i, p) in o.phases.iter().enumerate() {
        let st = p.status.as_str();
        let left = pct(ms(p.started));
        let width = pct(ms(p.duration)).min(100.0 - left);
        let stopped = if stop == Some(i) {
            "<span class=\"stop\">stopped here</span>"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<div class=\"wf-row\" role=\"row\" data-phase=\"{name}\" data-phase-status=\"{st}\">\
             <div class=\"wf-name\" role=\"cell\"><span class=\"st {st}\"></span>{name} \
             <span class=\"mono\" style=\"color:var(--muted)\">{st}</span>{stopped}</div>\
             <div class=\"wf-track\" role=\"cell\"><div class=\"wf-bar {st}\" style=\"left:{left:.3}%;width:{width:.3}%\" \
             title=\"{name}: {st}, {ms_text} from {from}\"></div></div>\
             <div class=\"wf-ms\" role=\"cell\">{ms_text}</div></div>",
            name = p.name.as_str(),
            ms_text = fmt_ms(ms(p.duration)),
            from = fmt_ms(ms(p.started)),
        );
    }
    if o.status == Status::Fail {
        let expected = expected_phases(r);
        let last = o
            .phases
            .last()
            .and_then(|p| expected.iter().position(|e| *e == p.name));
        if let Some(last) = last {
            for name in &expected[last + 1..] {
                if o.phase(*name).is_none() {
                    let _ = writeln!(
                        out,
                        "<div class=\"wf-row unreached\" role=\"row\" data-phase=\"{n}\" data-phase-status=\"unreached\">\
                         <div class=\"wf-name\" role=\"cell\"><span class=\"st\"></span>{n} \
                         <span class=\"mono\">not reached</span></div><div class=\"wf-track\" role=\"cell\"></div>\
                         <div class=\"wf-ms\" role=\"cell\">—</div></div>",
                        n = name.as_str()
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "<div class=\"wf-axis\" aria-hidden=\"true\"><span></span><div class=\"ticks\">\
         <span>0</span><span>{}</span><span>{}</span><span>{}</span><span>{}</span></div><span></span></div>",
        fmt_ms(scale_ms * 0.25),
        fmt_ms(scale_ms * 0.5),
        fmt_ms(scale_ms * 0.75),
        fmt_ms(scale_ms)
    );
    out.push_str("</div>\n");

    if o.phases.iter().any(|p| !p.detail.is_empty()) {
        out.push_str("<details><summary>Phase details</summary><table class=\"detail\">\n");
        for p in &o.phases {
            for (k, v) in &p.detail {
                let _ = writeln!(
                    out,
                    "<tr><td>{} · {}</td><td><code>{}</code></td></tr>",
                    p.name.as_str(),
                    escape_html(k),
                    escape_html(&detail_value(v))
                );
            }
        }
        out.push_str("</table></details>\n");
    }
}

fn write_check(out: &mut String, index: usize, r: &CheckResult, scale_ms: f64) {
    let o = &r.outcome;
    let status = status_word(o.status);
    let vantage = r.vantage.to_string();
    let _ = writeln!(
        out,
        "<section class=\"check\" data-id=\"{id}\" data-status=\"{status}\" data-vantage=\"{v}\" id=\"check-{index}\">",
        id = escape_html(&r.def.id),
        v = escape_html(&vantage),
    );
    let mut meta = Vec::new();
    if let Some(t) = &r.target {
        if !t.host.is_empty() {
            meta.push(match t.port.or(r.def.port) {
                Some(port) => format!("{}:{port}", escape_html(&t.host)),
                None => escape_html(&t.host),
            });
        }
    }
    meta.push(escape_html(&vantage));
    if o.via_proxy {
        meta.push("via proxy".into());
    }
    meta.push(
        if r.def.required {
            "required"
        } else {
            "optional"
        }
        .into(),
    );
    meta.push(fmt_ms(ms(r.duration)));
    let _ = writeln!(
        out,
        "<div class=\"check-head\"><span class=\"badge {status}\">{status}</span><h3>{title}</h3>\
         <code class=\"id\">{id}</code><span class=\"meta\">{meta}</span></div>",
        title = escape_html(&r.def.title),
        id = escape_html(&r.def.id),
        meta = meta.join(" · "),
    );
    out.push_str("<dl class=\"facts\">\n");
    let mut reason = format!(
        "<code>{}</code> — {}",
        o.reason.as_str(),
        escape_html(o.reason.describe())
    );
    for also in &o.also {
        let _ = write!(
            reason,
            "; also <code>{}</code> — {}",
            also.as_str(),
            escape_html(also.describe())
        );
    }
    let _ = writeln!(out, "<dt>Reason</dt><dd class=\"reason\">{reason}</dd>");
    let _ = writeln!(
        out,
        "<dt>Message</dt><dd class=\"message\">{}</dd>",
        escape_html(&o.message)
    );
    if let Some(fix) = &o.fix {
        let _ = writeln!(
            out,
            "<dt>Fix</dt><dd class=\"fix\">{}</dd>",
            escape_html(fix)
        );
    }
    if let Some(auth) = o.auth {
        let word = match auth {
            AuthState::Ok => "credentials accepted",
            AuthState::Rejected => "credentials refused",
            AuthState::Untested => "not tested",
        };
        let _ = writeln!(out, "<dt>Auth</dt><dd>{word}</dd>");
    }
    out.push_str("</dl>\n");
    write_waterfall(out, r, scale_ms);
    out.push_str("</section>\n");
}

impl Renderer for HtmlRenderer {
    fn render(&self, report: &RunReport) -> String {
        let ctx = &report.context;
        let s = report.summary();
        let mut out = String::new();
        let title = match (&ctx.iothub_hostname, &ctx.device_id) {
            (Some(h), Some(d)) => format!("edgeprobe report — {d} @ {h}"),
            (Some(h), None) => format!("edgeprobe report — {h}"),
            _ => "edgeprobe report".to_owned(),
        };
        let started = crate::json::rfc3339(report.started_at);
        let _ = writeln!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
             <meta name=\"generator\" content=\"edgeprobe {version}\">\n\
             <title>{title}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>{STYLE}</style>\n</head>\n<body>",
            version = env!("CARGO_PKG_VERSION"),
            title = escape_html(&title),
        );

        // Header: what the run was about.
        let _ = writeln!(
            out,
            "<header class=\"top\"><div class=\"wrap\"><h1>edgeprobe<span class=\"ver\">{}</span></h1>\
             <div class=\"sub\">Azure IoT Edge connectivity report · started {} · took {}</div>",
            env!("CARGO_PKG_VERSION"),
            escape_html(&started),
            fmt_ms(ms(report.duration))
        );
        let mut facts: Vec<(&str, String)> = ctx
            .known()
            .into_iter()
            .map(|(_, label, v)| (label, v))
            .collect();
        facts.push(("Vantage", report.vantage.clone()));
        out.push_str("<dl class=\"ctx\">");
        for (k, v) in facts {
            let _ = write!(
                out,
                "<div><dt>{k}</dt><dd class=\"mono\">{}</dd></div>",
                escape_html(&v)
            );
        }
        out.push_str("</dl>\n");
        if !ctx.notes.is_empty() {
            out.push_str("<ul class=\"notes\">");
            for n in &ctx.notes {
                let _ = write!(out, "<li>{}</li>", escape_html(n));
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</div></header>\n<main><div class=\"wrap\">\n");

        // Summary: the run's verdict (what the exit code says), and the counts.
        let r = &report.readiness;
        let class = if r.ready { "good" } else { "bad" };
        let mut line = escape_html(&r.message);
        if let Some(fix) = &r.fix {
            let _ = write!(line, "<div class=\"fix\">fix: {}</div>", escape_html(fix));
        }
        let _ = writeln!(
            out,
            "<section class=\"panel summary\" aria-label=\"summary\"><div class=\"verdict-line {class}\">{line}</div>\
             <div class=\"counts\"><span class=\"badge pass\">{} pass</span><span class=\"badge warn\">{} warn</span>\
             <span class=\"badge fail\">{} fail</span><span class=\"badge skip\">{} skip</span></div></section>",
            s.pass, s.warn, s.fail, s.skip
        );

        // The UpstreamProtocol verdict and the recommendation.
        if report.verdict.tested() {
            out.push_str(
                "<section class=\"panel verdict\"><h2>UpstreamProtocol</h2>\n<table>\
                 <thead><tr><th>Protocol</th><th>Port</th><th>Works</th><th>Why</th></tr></thead><tbody>\n",
            );
            for v in &report.verdict.protocols {
                let (cls, word) = if v.works && v.auth == AuthState::Rejected {
                    ("warn", "path only")
                } else if v.works {
                    ("yes", "yes")
                } else if v.tested {
                    ("no", "no")
                } else {
                    ("untested", "not checked")
                };
                let why = if v.works {
                    let mut w = String::from("works");
                    if v.via_proxy {
                        w.push_str(" through the proxy");
                    }
                    match v.auth {
                        AuthState::Rejected => {
                            w.push_str(", but the service refused the device's credentials")
                        }
                        AuthState::Ok => w.push_str(", device authenticated"),
                        AuthState::Untested => {}
                    }
                    escape_html(&w)
                } else {
                    format!(
                        "<code>{}</code> — {}",
                        v.reason.as_str(),
                        escape_html(&v.why)
                    )
                };
                let port = v.port.map(|p| p.to_string()).unwrap_or_else(|| "—".into());
                let configured = if report.verdict.configured == Some(v.protocol) {
                    " <span class=\"badge skip\">configured</span>"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "<tr data-protocol=\"{p}\"><td class=\"nowrap\"><code>{p}</code>{configured}</td><td class=\"num\">{port}</td>\
                     <td><span class=\"badge {cls}\">{word}</span></td><td>{why}</td></tr>",
                    p = v.protocol.as_str()
                );
            }
            out.push_str("</tbody></table>\n");
            let rec = &report.verdict.recommendation;
            let (cls, head) = match (rec.upstream_protocol, rec.change_needed) {
                _ if rec.credentials_refused => (
                    "none",
                    "Fix the device's credentials, not the protocol".to_owned(),
                ),
                (Some(p), false) => ("keep", format!("Keep UpstreamProtocol {p}")),
                (Some(p), true) => ("change", format!("Switch to UpstreamProtocol {p}")),
                (None, true) => ("none", "No UpstreamProtocol works".to_owned()),
                (None, false) => ("none", "none".to_owned()),
            };
            let _ = write!(
                out,
                "<div class=\"rec {cls}\"><strong>Recommendation: {}</strong>{}",
                escape_html(&head),
                escape_html(&rec.why)
            );
            if let Some(setting) = &rec.setting {
                let _ = write!(
                    out,
                    "<code class=\"setting\">{}</code>",
                    escape_html(setting)
                );
            }
            out.push_str("</div></section>\n");
        }

        // Overview: one row per check, linking to its section.
        out.push_str(
            "<section class=\"panel overview\"><h2>Checks</h2>\n<table><thead><tr><th>Status</th><th>Check</th>\
             <th>Vantage</th><th>Reason</th><th style=\"text-align:right\">Time</th></tr></thead><tbody>\n",
        );
        // Worst first; skipped checks are collapsed into one line below the table.
        let severity = |st: Status| match st {
            Status::Fail => 0,
            Status::Warn => 1,
            Status::Pass => 2,
            Status::Skip => 3,
        };
        let mut order: Vec<(usize, &CheckResult)> = report
            .results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.outcome.status != Status::Skip)
            .collect();
        order.sort_by_key(|(i, r)| (severity(r.outcome.status), !report.blocks(r), *i));
        let skipped: Vec<&CheckResult> = report
            .results
            .iter()
            .filter(|r| r.outcome.status == Status::Skip)
            .collect();
        for (i, r) in order.iter().copied() {
            let status = status_word(r.outcome.status);
            let _ = writeln!(
                out,
                "<tr><td><span class=\"badge {status}\">{status}</span></td><td><a href=\"#check-{i}\">{title}</a> \
                 <code style=\"color:var(--muted)\">{id}</code></td><td class=\"mono\">{v}</td>\
                 <td><code>{reason}</code></td><td class=\"num\">{t}</td></tr>",
                title = escape_html(&r.def.title),
                id = escape_html(&r.def.id),
                v = escape_html(&r.vantage.to_string()),
                reason = r.outcome.reason.as_str(),
                t = fmt_ms(ms(r.duration)),
            );
        }
        out.push_str("</tbody></table>");
        if !skipped.is_empty() {
            let ids: Vec<String> = skipped
                .iter()
                .map(|r| {
                    format!(
                        "<code title=\"{}\">{}</code>",
                        escape_html(&r.outcome.message),
                        escape_html(&r.def.id)
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<p class=\"skipped\"><span class=\"badge skip\">{} skipped</span> not applicable or not selected: {}</p>",
                skipped.len(),
                ids.join(", ")
            );
        }
        out.push_str("</section>\n");

        // One section per check that ran, worst first; each waterfall on its own scale.
        for (i, r) in order.iter().copied() {
            write_check(&mut out, i, r, span_ms(r).max(1.0));
        }

        let _ = writeln!(
            out,
            "</div></main>\n<footer><div class=\"wrap\">Generated by edgeprobe {} · each waterfall is scaled to \
             its own check's duration · bar colour is the phase status</div></footer>\n</body>\n</html>",
            env!("CARGO_PKG_VERSION"),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup_and_controls() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"q\"\u{0}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;\u{FFFD}"
        );
    }
}

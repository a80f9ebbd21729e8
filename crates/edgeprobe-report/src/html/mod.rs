//! One self-contained HTML page for the support engineer who receives a report: the
//! verdict and recommendation first, then every check with a timing waterfall that shows
//! where the time went and where the probe stopped. The page has inline CSS only — no
//! script, font, image or link to anything outside it — and a Content-Security-Policy that
//! forbids fetching anything, so opening it makes no network request (it may be opened on
//! a locked-down machine, or from a support ticket). Every string is HTML-escaped.

/// Each check's section and its timing waterfall.
mod check;
/// The page's inline CSS.
mod style;

use std::fmt::Write as _;

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{AuthState, Status};

use crate::{Renderer, RunReport};
use check::{fmt_ms, ms, span_ms, status_word, write_check};
use style::STYLE;

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
mod tests;

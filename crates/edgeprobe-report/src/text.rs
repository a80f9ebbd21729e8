//! The report for people: one line per check with a mark, the reason in plain words and the
//! fix where one is known; phases with durations under `--verbose`; then the table of
//! UpstreamProtocol values and the recommendation. Colour only when asked (the binary
//! decides from the TTY and `NO_COLOR`).

use std::fmt::Write as _;

use edgeprobe_core::{Phase, Status};

use crate::{Renderer, RunReport};

/// Text renderer settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextRenderer {
    pub color: bool,
    pub verbose: bool,
}

const RESET: &str = "\x1b[0m";

fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}{RESET}")
    } else {
        text.to_owned()
    }
}

fn mark(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Pass => ("PASS", "32"),
        Status::Warn => ("WARN", "33"),
        Status::Fail => ("FAIL", "31;1"),
        Status::Skip => ("SKIP", "2"),
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn phase_line(p: &Phase) -> String {
    let ms = p.duration.as_secs_f64() * 1000.0;
    let mut s = format!(
        "{:<8} {:>4} {:>10}",
        p.name.as_str(),
        p.status.as_str(),
        fmt_ms(ms)
    );
    let interesting = [
        "source",
        "addresses",
        "a",
        "aaaa",
        "address",
        "proxy",
        "status",
        "version",
        "cipher",
        "subprotocol",
        "accepted_subprotocol",
        "connack_code",
        "connack",
        "request",
        "iothub-errorcode",
        "server",
        "title",
        "error",
        "cbs_status",
        "link",
        "sasl",
    ];
    let parts: Vec<String> = p
        .detail
        .iter()
        .filter(|(k, _)| interesting.contains(&k.as_str()))
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    if !parts.is_empty() {
        s.push_str("  ");
        s.push_str(&parts.join(" "));
    }
    if let Some(serde_json::Value::Array(chain)) = p.detail("chain") {
        for (i, c) in chain.iter().enumerate() {
            let subject = c.get("subject").and_then(|v| v.as_str()).unwrap_or("?");
            let issuer = c.get("issuer").and_then(|v| v.as_str()).unwrap_or("?");
            let not_after = c.get("not_after").and_then(|v| v.as_str()).unwrap_or("?");
            let _ = write!(
                s,
                "\n{:>19}cert {i}: {subject} (issuer {issuer}, not after {not_after})",
                ""
            );
        }
    }
    s
}

impl Renderer for TextRenderer {
    fn render(&self, report: &RunReport) -> String {
        let c = self.color;
        let mut out = String::new();
        let ctx = &report.context;
        let mut about = Vec::new();
        if let Some(h) = &ctx.iothub_hostname {
            about.push(format!("IoT Hub {h}"));
        }
        if let Some(d) = &ctx.device_id {
            about.push(format!("device {d}"));
        }
        if let Some(p) = &ctx.parent_hostname {
            about.push(format!("nested under {p}"));
        }
        if let Some(g) = &ctx.gateway_hostname {
            about.push(format!("downstream of gateway {g}"));
        }
        if let Some(p) = &ctx.proxy {
            about.push(format!("proxy {p}"));
        }
        about.push(format!("from {}", report.vantage));
        let _ = writeln!(
            out,
            "{} {} — {}",
            paint(c, "1", "edgeprobe"),
            env!("CARGO_PKG_VERSION"),
            about.join(", ")
        );
        for note in &ctx.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out.push('\n');

        let id_width = report
            .results
            .iter()
            .map(|r| r.def.id.len())
            .max()
            .unwrap_or(10);
        // Checks that do not apply are grouped by why, unless --verbose asks for each.
        let mut skipped: Vec<(&str, Vec<&str>)> = Vec::new();
        for r in &report.results {
            if !self.verbose && r.outcome.status == Status::Skip {
                match skipped
                    .iter_mut()
                    .find(|(why, _)| *why == r.outcome.message)
                {
                    Some((_, ids)) => ids.push(&r.def.id),
                    None => skipped.push((&r.outcome.message, vec![&r.def.id])),
                }
                continue;
            }
            let (word, code) = mark(r.outcome.status);
            let vantage = match &r.vantage {
                edgeprobe_core::Vantage::Host => String::new(),
                other => format!(" [{other}]"),
            };
            let _ = writeln!(
                out,
                "{} {:<id_width$}  {}{}",
                paint(c, code, word),
                r.def.id,
                r.def.title,
                vantage
            );
            let why = if r.outcome.status == Status::Pass || r.outcome.status == Status::Skip {
                r.outcome.message.clone()
            } else {
                format!(
                    "{} ({}): {}",
                    r.outcome.reason.describe(),
                    r.outcome.reason,
                    r.outcome.message
                )
            };
            let _ = writeln!(out, "     {why}");
            if let Some(fix) = &r.outcome.fix {
                if r.outcome.status != Status::Pass {
                    let _ = writeln!(out, "     {} {fix}", paint(c, "36", "fix:"));
                }
            }
            if self.verbose {
                for p in &r.outcome.phases {
                    let _ = writeln!(out, "       {}", phase_line(p));
                }
            }
        }

        for (why, ids) in &skipped {
            let (word, code) = mark(Status::Skip);
            let _ = writeln!(out, "{} {}", paint(c, code, word), ids.join(", "));
            let _ = writeln!(out, "     {why}");
        }

        // Side by side when the checks ran from more than one vantage.
        let mut vantages: Vec<&edgeprobe_core::Vantage> = Vec::new();
        for r in &report.results {
            if !vantages.contains(&&r.vantage) {
                vantages.push(&r.vantage);
            }
        }
        if vantages.len() > 1 {
            out.push('\n');
            let mut head = format!("{:<id_width$}", "check");
            for v in &vantages {
                head.push_str(&format!("  {:<28}", v.to_string()));
            }
            let _ = writeln!(out, "{}", paint(c, "1", head.trim_end()));
            let mut seen: Vec<&str> = Vec::new();
            for r in &report.results {
                if seen.contains(&r.def.id.as_str()) {
                    continue;
                }
                seen.push(&r.def.id);
                let mut line = format!("{:<id_width$}", r.def.id);
                for v in &vantages {
                    let cell = report
                        .results
                        .iter()
                        .find(|x| x.def.id == r.def.id && &x.vantage == *v)
                        .map(|x| {
                            let (word, _) = mark(x.outcome.status);
                            if x.outcome.status == Status::Pass {
                                word.to_owned()
                            } else {
                                format!("{word} {}", x.outcome.reason)
                            }
                        })
                        .unwrap_or_else(|| "-".into());
                    line.push_str(&format!("  {cell:<28}"));
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }

        if report.verdict.tested() {
            out.push('\n');
            let _ = writeln!(
                out,
                "{}",
                paint(c, "1", "UpstreamProtocol  port  works  why")
            );
            for v in &report.verdict.protocols {
                let refused = v.auth == edgeprobe_core::AuthState::Rejected;
                let works = if v.works && refused {
                    paint(c, "33", "path ")
                } else if v.works {
                    paint(c, "32", "yes  ")
                } else if v.tested {
                    paint(c, "31", "no   ")
                } else {
                    "-    ".to_owned()
                };
                let port = v.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                let why = if v.works {
                    let mut w = String::from("works");
                    if v.via_proxy {
                        w.push_str(" through the proxy");
                    }
                    if refused {
                        w.push_str(", but the service refused the device's credentials");
                    } else if v.auth == edgeprobe_core::AuthState::Ok {
                        w.push_str(", device authenticated");
                    }
                    w
                } else if !v.tested {
                    v.why.clone()
                } else {
                    format!("{}: {}", v.reason, v.reason.describe())
                };
                let _ = writeln!(
                    out,
                    "{:<16}  {:<4}  {works}  {why}",
                    v.protocol.as_str(),
                    port
                );
            }
            let rec = &report.verdict.recommendation;
            out.push('\n');
            let head = match (rec.upstream_protocol, rec.change_needed) {
                _ if rec.credentials_refused => paint(
                    c,
                    "31;1",
                    "Recommendation: fix the device's credentials, not the protocol",
                ),
                (Some(p), false) => paint(
                    c,
                    "32;1",
                    &format!("Recommendation: keep UpstreamProtocol {p}"),
                ),
                (Some(p), true) => paint(
                    c,
                    "33;1",
                    &format!("Recommendation: switch to UpstreamProtocol {p}"),
                ),
                (None, true) => paint(c, "31;1", "Recommendation: no UpstreamProtocol works"),
                (None, false) => paint(c, "1", "Recommendation: none"),
            };
            let _ = writeln!(out, "{head} — {}", rec.why);
            if let Some(setting) = &rec.setting {
                let _ = writeln!(out, "  {setting}");
            }
        }

        let s = report.summary();
        let _ = writeln!(
            out,
            "\n{} pass, {} warn, {} fail, {} skip in {}",
            s.pass,
            s.warn,
            s.fail,
            s.skip,
            fmt_ms(report.duration.as_secs_f64() * 1000.0)
        );
        // The verdict last, where a person (or a log tail) looks; the exit code says the same.
        let r = &report.readiness;
        let head = if r.ready {
            paint(c, "32;1", "READY")
        } else {
            paint(c, "31;1", "NOT READY")
        };
        let message = r
            .message
            .strip_prefix("ready: ")
            .or_else(|| r.message.strip_prefix("not ready: "))
            .unwrap_or(&r.message);
        let _ = writeln!(out, "{head}: {message}");
        if let Some(fix) = &r.fix {
            let _ = writeln!(out, "  {} {fix}", paint(c, "36", "fix:"));
        }
        out
    }
}

//! JUnit XML, so a CI pipeline (Azure Pipelines, GitLab, Jenkins, GitHub test reporters)
//! shows each check as a test case and fails the stage exactly when the run says the device
//! is not ready: only the checks that make it not ready are `<failure>`s (so the pipeline's
//! red or green matches the exit code); other failures and warnings go to `<system-out>`, so
//! they are still visible. Everything that came from a peer or a person is
//! escaped, and characters XML 1.0 cannot carry at all are replaced, so the document is
//! well-formed whatever a server answered.

use std::fmt::Write as _;

use edgeprobe_core::Status;

use crate::{Renderer, RunReport};

/// JUnit renderer.
#[derive(Clone, Copy, Debug, Default)]
pub struct JunitRenderer;

/// Escapes text for an XML 1.0 attribute value (and so for element text too): markup
/// characters become entities, whitespace that attribute normalisation would fold becomes a
/// character reference, and characters XML 1.0 forbids (C0 controls other than tab, line
/// feed and carriage return; U+FFFE, U+FFFF) become U+FFFD, since no escape can carry them.
pub fn escape_xml(s: &str) -> String {
    escape(s, true)
}

/// Like [`escape_xml`], but keeps line feeds and tabs literal: for element text, where they
/// survive parsing and read better in a CI log.
fn escape_text(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' if !attribute => out.push(c),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The JUnit schema wants the timestamp without a zone designator; ours is UTC.
fn junit_timestamp(t: std::time::SystemTime) -> String {
    let s = crate::json::rfc3339(t);
    s.strip_suffix('Z').map(str::to_owned).unwrap_or(s)
}

fn failure_body(r: &edgeprobe_core::runner::CheckResult) -> String {
    let o = &r.outcome;
    let mut body = format!("{} ({}): {}\n", o.reason.describe(), o.reason, o.message);
    if let Some(fix) = &o.fix {
        let _ = writeln!(body, "fix: {fix}");
    }
    if !o.phases.is_empty() {
        body.push_str("phases:\n");
        for p in &o.phases {
            let _ = writeln!(
                body,
                "  {:<8} {:<4} {:>10.1} ms",
                p.name.as_str(),
                p.status.as_str(),
                p.duration.as_secs_f64() * 1000.0
            );
        }
    }
    body
}

impl Renderer for JunitRenderer {
    fn render(&self, report: &RunReport) -> String {
        let s = report.summary();
        let failures = report.results.iter().filter(|r| report.blocks(r)).count();
        let attrs = format!(
            "name=\"edgeprobe\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{}\" time=\"{}\"",
            report.results.len(),
            s.skip,
            secs(report.duration)
        );
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(out, "<testsuites {attrs}>");
        let _ = writeln!(
            out,
            "  <testsuite {attrs} timestamp=\"{}\">",
            junit_timestamp(report.started_at)
        );

        let ctx = &report.context;
        let rec = &report.verdict.recommendation;
        let mut props: Vec<(&str, String)> = vec![
            ("ready", report.readiness.ready.to_string()),
            ("readiness", report.readiness.message.clone()),
        ];
        if let Some(fix) = &report.readiness.fix {
            props.push(("readiness_fix", fix.clone()));
        }
        props.push(("vantage", report.vantage.clone()));
        props.extend(ctx.known().into_iter().map(|(key, _, v)| (key, v)));
        if report.verdict.tested() {
            if let Some(p) = rec.upstream_protocol {
                props.push(("recommended_upstream_protocol", p.as_str().to_owned()));
            }
            props.push(("recommendation", rec.why.clone()));
        }
        out.push_str("    <properties>\n");
        for (k, v) in props {
            let _ = writeln!(
                out,
                "      <property name=\"{k}\" value=\"{}\"/>",
                escape_xml(&v)
            );
        }
        out.push_str("    </properties>\n");

        for r in &report.results {
            let o = &r.outcome;
            let _ = write!(
                out,
                "    <testcase classname=\"edgeprobe.{}\" name=\"{}\" time=\"{}\"",
                r.def.endpoint.as_str(),
                escape_xml(&format!("{} [{}]", r.def.id, r.vantage)),
                secs(r.duration)
            );
            match o.status {
                Status::Pass => out.push_str("/>\n"),
                Status::Skip => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape_xml(&o.message)
                    );
                }
                Status::Warn | Status::Fail => {
                    out.push_str(">\n");
                    let blocks = report.blocks(r);
                    if blocks {
                        let _ = writeln!(
                            out,
                            "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                            o.reason.as_str(),
                            escape_xml(&o.message),
                            escape_text(&failure_body(r))
                        );
                    }
                    if !blocks || o.status == Status::Warn {
                        let mut text = format!(
                            "{}: {} ({}): {}",
                            if o.status == Status::Warn {
                                "warning"
                            } else {
                                "failed, not required"
                            },
                            o.reason.describe(),
                            o.reason,
                            o.message
                        );
                        if let Some(fix) = &o.fix {
                            let _ = write!(text, "\nfix: {fix}");
                        }
                        let _ =
                            writeln!(out, "      <system-out>{}</system-out>", escape_text(&text));
                    }
                    out.push_str("    </testcase>\n");
                }
            }
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_whitespace_and_forbidden_characters() {
        assert_eq!(
            escape_xml("a<b>&\"c'\n\t\u{0}\u{1b}\u{FFFF}é"),
            "a&lt;b&gt;&amp;&quot;c&apos;&#10;&#9;\u{FFFD}\u{FFFD}\u{FFFD}é"
        );
        assert_eq!(escape_text("x\ny\r&"), "x\ny&#13;&amp;");
    }
}

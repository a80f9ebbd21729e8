//! One check's section of the page: its status, facts and fix, then a waterfall of its
//! phases on the report's common time scale, with the layers a failed probe never reached.

use std::fmt::Write as _;
use std::time::Duration;

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{AuthState, PhaseName, Protocol, Status};

use super::escape_html;

pub(super) fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        Status::Skip => "skip",
    }
}

pub(super) fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Where a check's time line ends: the later of its duration and its last phase's end.
pub(super) fn span_ms(r: &CheckResult) -> f64 {
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

pub(super) fn write_check(out: &mut String, index: usize, r: &CheckResult, scale_ms: f64) {
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

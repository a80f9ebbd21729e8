//! The HTTP endpoints of `edgeprobe serve`: `/metrics` (the latest run's families and the
//! history's), `/probe?only=IDS` (a run now, or the cached one within the floor),
//! `/report.json`, `/history.json` and `/healthz`. Only GET and HEAD.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use edgeprobe_report::json::JsonRenderer;
use edgeprobe_report::prometheus::{self, Family};
use edgeprobe_report::{Renderer, RunReport};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::{history, lock, Latest, Module};
use crate::AppError;

impl Module {
    fn labels(&self, report: Option<&RunReport>) -> Vec<(&'static str, String)> {
        let ctx = report.map(|r| &r.context);
        let mut labels = vec![
            (
                "iothub",
                ctx.and_then(|c| c.iothub_hostname.clone())
                    .unwrap_or_default(),
            ),
            (
                "edge_device",
                ctx.and_then(|c| c.device_id.clone()).unwrap_or_default(),
            ),
        ];
        labels.extend(self.identity.iter().cloned());
        labels
    }

    /// `/metrics`: the latest run's families and the history's.
    fn metrics(&self, latest: Option<&Latest>) -> String {
        let report = latest.map(|l| &l.report);
        let identity: Vec<(&str, &str)> = self
            .identity
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let mut out = report.map(prometheus::header).unwrap_or_default();
        if let Some(r) = report {
            for family in prometheus::families(r, &identity) {
                family.write(&mut out);
            }
        }
        let labels = self.labels(report);
        let with = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
            let mut l: Vec<(&'static str, String)> =
                extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
            l.extend(labels.iter().cloned());
            l
        };
        let add = |f: &mut Family, l: &[(&'static str, String)], v: f64| {
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.add(&l, v);
        };
        let history = lock(&self.history);
        let mut runs = Family::counter(
            "edgeprobe_runs_total",
            "Runs since the history began (scheduled and /probe runs of the full selection).",
        );
        add(&mut runs, &with(&[]), history.runs_total as f64);
        let mut failures = Family::counter(
            "edgeprobe_check_failures_total",
            "Checks that warned or failed, per endpoint, protocol, vantage and reason, since the history began.",
        );
        for (k, n) in &history.failures {
            let l = with(&[
                ("endpoint", &k.endpoint),
                ("protocol", &k.protocol),
                ("vantage", &k.vantage),
                ("reason", &k.reason),
            ]);
            add(&mut failures, &l, *n as f64);
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut last_worked = Family::new(
            "edgeprobe_upstream_protocol_last_success_timestamp_seconds",
            "When the UpstreamProtocol value last worked, in Unix seconds; omitted when it never did in the history.",
        );
        let mut down = Family::new(
            "edgeprobe_upstream_protocol_down_seconds",
            "How long the UpstreamProtocol value has failed without a break (0 when it works now).",
        );
        let mut outages = Family::new(
            "edgeprobe_upstream_protocol_outages",
            "Times the UpstreamProtocol value went from working to failing within the history.",
        );
        for p in ["Amqp", "Mqtt", "AmqpWs", "MqttWs"] {
            let h = history.protocol(p, now);
            if h.runs == 0 {
                continue;
            }
            let l = with(&[("protocol", p)]);
            if let Some(t) = h.last_worked_unix {
                add(&mut last_worked, &l, t);
            }
            add(&mut down, &l, h.down_for_secs.unwrap_or(0.0));
            add(&mut outages, &l, h.outages as f64);
        }
        for f in [runs, failures, last_worked, down, outages] {
            f.write(&mut out);
        }
        out
    }

    fn history_json(&self) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let history = lock(&self.history);
        let runs: Vec<&history::RunRecord> = history.runs().collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "runs_total": history.runs_total,
            "protocols": history.summary(now),
            "runs": runs,
            "notes": self.notes,
        }))
        .unwrap_or_default()
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// The `only` of a `/probe` query: comma-separated ids or prefixes, repeatable.
pub(super) fn selection(query: Option<&str>) -> Vec<String> {
    let mut only = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        if k == "only" {
            only.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    only
}

pub(super) async fn handle(
    module: Arc<Module>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".into(),
        ));
    }
    let latest = || module.latest();
    Ok(match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            PROMETHEUS_TEXT,
            module.metrics(latest().as_deref()),
        ),
        "/probe" => {
            let only = selection(req.uri().query());
            match module.run_now(only, None).await {
                Ok(l) => {
                    let identity: Vec<(&str, &str)> = module
                        .identity
                        .iter()
                        .map(|(k, v)| (*k, v.as_str()))
                        .collect();
                    let mut out = prometheus::header(&l.report);
                    for f in prometheus::families(&l.report, &identity) {
                        f.write(&mut out);
                    }
                    reply(StatusCode::OK, PROMETHEUS_TEXT, out)
                }
                Err(AppError::Usage(m)) => reply(StatusCode::BAD_REQUEST, TEXT, format!("{m}\n")),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    format!("{}\n", crate::error_line(&e)),
                ),
            }
        }
        "/report.json" => match latest() {
            Some(l) => reply(StatusCode::OK, JSON, JsonRenderer.render(&l.report)),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "no run has finished yet\n".into(),
            ),
        },
        "/history.json" => reply(StatusCode::OK, JSON, module.history_json()),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: /metrics, /probe, /report.json, /history.json, /healthz\n".into(),
        ),
    })
}

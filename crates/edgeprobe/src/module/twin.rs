//! The module's twin and direct method, over one MQTT connection to edgeHub as the module
//! (the way module SDKs do it): reported properties a fleet query can filter on (per protocol
//! works/auth/reason, `ready`, the settings in force, the version), written only when they
//! change; desired properties that set `interval`, `timeout`, `only` and `skip` (a bad value
//! is reported back under `desired_errors` and ignored); and the direct method `check`,
//! which runs now and answers the JSON report, trimmed to IoT Hub's payload limit.
//!
//! The token comes from the workload API and is renewed with every connection; while edgeHub
//! cannot be reached the local endpoints still answer and the state is reported once the
//! connection is back. The device's own credentials are never used, nothing is published
//! but twin and method traffic, and no other module's twin is touched.

use std::sync::Arc;
use std::time::Duration;

use edgeprobe_iotedge::identity::{Credentials, DeviceIdentity};
use edgeprobe_report::json::JsonRenderer;
use edgeprobe_report::Renderer;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{log, Desired, Module};

/// IoT Hub's largest direct-method payload.
pub const METHOD_PAYLOAD_LIMIT: usize = 128 * 1024;
/// How long to wait before reconnecting after edgeHub could not be reached.
const BACKOFF: Duration = Duration::from_secs(5);
/// Reported properties are rewritten at least this often even when nothing changed, so
/// `last_run` does not go stale for ever.
const HEARTBEAT: Duration = Duration::from_secs(3600);

/// The port edgeHub's MQTT listens on; `--connect-to GW:8883:ADDR:PORT` moves it (tests).
fn edgehub_port(module: &Module, gateway: &str) -> u16 {
    let prefix = format!("{gateway}:8883:");
    module
        .args
        .check
        .connect_to
        .iter()
        .filter_map(|c| c.strip_prefix(&prefix))
        .filter_map(|rest| rest.rsplit(':').next()?.parse().ok())
        .next()
        .unwrap_or(8883)
}

/// Keeps the twin current and answers direct methods until told to stop.
pub async fn run(module: Arc<Module>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        match connect_and_serve(&module, &mut stop).await {
            Ok(()) => return,
            Err(e) => log(&format!("twin: {e}; retrying in {} s", BACKOFF.as_secs())),
        }
        tokio::select! {
            _ = tokio::time::sleep(BACKOFF) => {}
            _ = stop.changed() => return,
        }
    }
}

/// What the twin reports: small and stable, so that fleet queries can filter on it.
fn reported(module: &Module) -> Value {
    let desired = module.desired();
    let mut out = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "settings": {
            "interval": desired.interval.unwrap_or(module.args.interval).max(module.args.min_interval),
            "timeout": desired.timeout.unwrap_or(module.args.check.timeout),
            "only": desired.only.clone().unwrap_or_else(|| module.args.check.only.clone()).join(","),
            "skip": desired.skip.clone().unwrap_or_else(|| module.args.check.skip.clone()).join(","),
        },
        "desired_errors": Value::Object(desired.errors.clone()),
    });
    if let Some(latest) = module.latest() {
        let r = &latest.report;
        out["ready"] = r.readiness.ready.into();
        out["reason"] = r.readiness.reason.as_str().into();
        out["protocols"] = r
            .verdict
            .protocols
            .iter()
            .map(|v| {
                (
                    v.protocol.as_str().to_owned(),
                    json!({
                        "checked": v.tested,
                        "works": v.tested.then_some(v.works),
                        "auth": v.auth.as_str(),
                        "reason": v.reason.as_str(),
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        out["last_run"] = edgeprobe_report::json::rfc3339(r.started_at).into();
    }
    json!({ "edgeprobe": out })
}

/// The reported state without the run's time: what "changed" means.
fn stable(reported: &Value) -> Value {
    let mut v = reported.clone();
    if let Some(o) = v["edgeprobe"].as_object_mut() {
        o.remove("last_run");
    }
    v
}

async fn connect_and_serve(
    module: &Arc<Module>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let identity = crate::workload::module_identity(&module.args.check, deadline)
        .await
        .map_err(|e| crate::error_line(&e).to_owned())?
        .ok_or("not an IoT Edge module with a workload API: no twin")?;
    let gateway = identity
        .gateway
        .clone()
        .ok_or("IOTEDGE_GATEWAYHOSTNAME is not set: no edgeHub to reach")?;
    let device = DeviceIdentity {
        hub: identity.hub.clone(),
        device_id: identity.device_id.clone(),
        module_id: Some(identity.module_id.clone()),
        credentials: Credentials::SignedToken(identity.token.clone()),
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in edgeprobe_probes::tls::parse_pem_certs(identity.trust_pem.as_bytes(), "trust bundle")
        .map_err(|e| e.to_string())?
    {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut options = MqttOptions::new(
        device.client_id(),
        gateway.clone(),
        edgehub_port(module, &gateway),
    );
    options
        .set_credentials(device.mqtt_username(), identity.token.expose())
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true)
        .set_max_packet_size(METHOD_PAYLOAD_LIMIT * 2, METHOD_PAYLOAD_LIMIT * 2)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    let (client, mut events) = AsyncClient::new(options, 32);
    let mut runs = module.runs_changed.subscribe();
    let mut last_written: Option<(Value, Instant)> = None;
    let mut rid: u64 = 0;
    let mut connected = false;
    loop {
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    log(&format!("twin: connected to edgeHub at {gateway} as {}", device.client_id()));
                    for topic in [
                        "$iothub/twin/res/#",
                        "$iothub/twin/PATCH/properties/desired/#",
                        "$iothub/methods/POST/#",
                    ] {
                        client.subscribe(topic, QoS::AtMostOnce).await.map_err(|e| e.to_string())?;
                    }
                    client
                        .publish("$iothub/twin/GET/?$rid=get", QoS::AtMostOnce, false, Vec::new())
                        .await
                        .map_err(|e| e.to_string())?;
                    // Whatever happened while edgeHub was away is reported now.
                    last_written = None;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = p.topic.clone();
                    if topic.starts_with("$iothub/twin/res/200/") && topic.contains("$rid=get") {
                        let twin: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                        module.apply_desired(&twin["desired"]);
                    } else if topic.starts_with("$iothub/twin/PATCH/properties/desired/") {
                        let patch: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                        module.apply_desired(&patch);
                    } else if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
                        let (name, query) = rest.split_once('/').unwrap_or((rest, ""));
                        let method_rid = query.split_once("$rid=").map(|(_, r)| r.to_owned()).unwrap_or_default();
                        let payload: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let module = module.clone();
                        let client = client.clone();
                        let name = name.to_owned();
                        tokio::spawn(async move {
                            let (status, body) = method(&module, &name, &payload).await;
                            let _ = client
                                .publish(
                                    format!("$iothub/methods/res/{status}/?$rid={method_rid}"),
                                    QoS::AtMostOnce,
                                    false,
                                    body.into_bytes(),
                                )
                                .await;
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("edgeHub at {gateway}: {e}")),
            },
            _ = runs.changed() => {}
            _ = stop.changed() => {
                let _ = client.disconnect().await;
                return Ok(());
            }
        }
        if !connected {
            continue;
        }
        let now = reported(module);
        let due = match &last_written {
            None => true,
            Some((prev, at)) => stable(prev) != stable(&now) || at.elapsed() > HEARTBEAT,
        };
        if due && now["edgeprobe"].get("ready").is_some() {
            rid += 1;
            client
                .publish(
                    format!("$iothub/twin/PATCH/properties/reported/?$rid=r{rid}"),
                    QoS::AtMostOnce,
                    false,
                    now.to_string().into_bytes(),
                )
                .await
                .map_err(|e| e.to_string())?;
            last_written = Some((now, Instant::now()));
        }
    }
}

/// A direct method: `check` runs now (within the floor, the last run of the same selection)
/// and answers the JSON report.
async fn method(module: &Module, name: &str, payload: &Value) -> (u16, String) {
    if name != "check" {
        return (
            404,
            json!({"error": format!("no method {name:?}; edgeprobe answers \"check\"")})
                .to_string(),
        );
    }
    let only = match list(&payload["only"]) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return (400, json!({"error": format!("only: {e}")}).to_string()),
    };
    let timeout = match &payload["timeout"] {
        Value::Null => None,
        v => match v.as_f64().filter(|t| (0.1..=3600.0).contains(t)) {
            Some(t) => Some(t),
            None => {
                return (
                    400,
                    json!({"error": "timeout: a number of seconds from 0.1 to 3600"}).to_string(),
                )
            }
        },
    };
    match module.run_now(only, timeout).await {
        Ok(latest) => (200, trimmed(&JsonRenderer.render(&latest.report))),
        Err(crate::AppError::Usage(m)) => (400, json!({"error": m}).to_string()),
        Err(e) => (500, json!({"error": crate::error_line(&e)}).to_string()),
    }
}

/// The report as it fits a direct-method answer: phases go first, then passing checks; a
/// note says what was left out.
pub fn trimmed(report_json: &str) -> String {
    if report_json.len() <= METHOD_PAYLOAD_LIMIT {
        return report_json.to_owned();
    }
    let Ok(mut v) = serde_json::from_str::<Value>(report_json) else {
        return json!({"error": "the report could not be trimmed"}).to_string();
    };
    if let Some(checks) = v["checks"].as_array_mut() {
        for c in checks.iter_mut() {
            c["phases"] = json!([]);
        }
    }
    v["trimmed"] = "phases left out: the report exceeds the direct-method payload limit (128 KB); /report.json has it whole".into();
    let s = v.to_string();
    if s.len() <= METHOD_PAYLOAD_LIMIT {
        return s;
    }
    if let Some(checks) = v["checks"].as_array_mut() {
        checks.retain(|c| c["status"] != "pass" && c["status"] != "skip");
        checks.truncate(200);
    }
    v["trimmed"] = "phases and passing or skipped checks left out: the report exceeds the direct-method payload limit (128 KB); /report.json has it whole".into();
    let s = v.to_string();
    if s.len() <= METHOD_PAYLOAD_LIMIT {
        return s;
    }
    v["checks"] = json!([]);
    v["trimmed"] = "every check left out: the report exceeds the direct-method payload limit (128 KB); /report.json has it whole".into();
    v.to_string()
}

/// A list setting: `"a,b"` or `["a", "b"]`; `None` when absent.
pub fn list(v: &Value) -> Result<Option<Vec<String>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "a list of check ids".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err("check ids, as \"a,b\" or [\"a\", \"b\"]".into()),
    }
}

impl Desired {
    /// Applies a desired-properties document (or patch): each valid value is taken, each
    /// bad one is recorded under `errors` and ignored.
    pub fn apply(&mut self, desired: &Value, min_interval: f64) {
        let Some(d) = desired.as_object() else {
            return;
        };
        for (key, range) in [
            ("interval", min_interval..=86_400.0),
            ("timeout", 0.1..=3600.0),
        ] {
            let Some(v) = d.get(key) else { continue };
            let parsed = match v {
                Value::Null => Ok(None),
                v => v
                    .as_f64()
                    .filter(|x| range.contains(x))
                    .map(Some)
                    .ok_or_else(|| {
                        format!(
                            "{v} is not a number of seconds from {} to {}",
                            range.start(),
                            range.end()
                        )
                    }),
            };
            match parsed {
                Ok(x) => {
                    self.errors.remove(key);
                    if key == "interval" {
                        self.interval = x;
                    } else {
                        self.timeout = x;
                    }
                }
                Err(why) => {
                    self.errors.insert(key.to_owned(), why.into());
                }
            }
        }
        for key in ["only", "skip"] {
            let Some(v) = d.get(key) else { continue };
            match list(v) {
                Ok(ids) => {
                    self.errors.remove(key);
                    if key == "only" {
                        self.only = ids;
                    } else {
                        self.skip = ids;
                    }
                }
                Err(why) => {
                    self.errors.insert(key.to_owned(), why.into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_values_are_taken_or_reported_and_ignored() {
        let mut d = Desired::default();
        d.apply(
            &json!({"interval": 120, "timeout": 5, "only": "iothub-*", "$version": 3}),
            60.0,
        );
        assert_eq!((d.interval, d.timeout), (Some(120.0), Some(5.0)));
        assert_eq!(d.only, Some(vec!["iothub-*".to_owned()]));
        assert!(d.errors.is_empty());
        // A bad value is reported and the previous one stays.
        d.apply(&json!({"interval": "soon", "skip": 7}), 60.0);
        assert_eq!(d.interval, Some(120.0));
        assert!(d.errors["interval"].as_str().unwrap().contains("\"soon\""));
        assert!(d.errors.contains_key("skip"));
        // Below the floor is bad too; fixing it clears the error; null resets.
        d.apply(&json!({"interval": 10}), 60.0);
        assert_eq!(d.interval, Some(120.0));
        d.apply(&json!({"interval": null, "skip": []}), 60.0);
        assert_eq!(d.interval, None);
        assert!(!d.errors.contains_key("interval") && !d.errors.contains_key("skip"));
    }

    #[test]
    fn an_oversized_report_is_trimmed_with_a_note() {
        let big = json!({
            "checks": (0..400).map(|i| json!({
                "id": format!("c{i}"),
                "status": if i % 2 == 0 { "pass" } else { "fail" },
                "phases": [{"detail": "x".repeat(1000)}],
            })).collect::<Vec<_>>(),
        })
        .to_string();
        assert!(big.len() > METHOD_PAYLOAD_LIMIT);
        let t = trimmed(&big);
        assert!(t.len() <= METHOD_PAYLOAD_LIMIT);
        let v: Value = serde_json::from_str(&t).unwrap();
        assert!(v["trimmed"].as_str().unwrap().contains("128 KB"));
        assert_eq!(
            v["checks"].as_array().unwrap().len(),
            400,
            "phases go first"
        );
        assert_eq!(trimmed("{\"small\":1}"), "{\"small\":1}");
    }
}

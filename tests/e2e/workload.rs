//! A module's own identity (issue 17): with IoT Edge's environment and a stand-in workload API
//! on a unix socket, the probes authenticate as `{device}/modules/{module}` with tokens the
//! workload API signed, trust the Edge CA it hands out, and probe the module's edgeHub. No
//! key is on the command line, in the environment or in any output.

use fixtures::{HubFaults, WorkloadApi, WorkloadOptions};

use crate::support::{check, run_env, Hub, DEVICE, HUB, KEY};

/// The module's key: only the workload API and the hub know it.
const MODULE_KEY: &str = "bW9kdWxlLWtleS1mb3ItZWRnZXByb2JlLXRlc3RzLTE=";
const MODULE: &str = "edgeprobe";
const GENERATION: &str = "637890123456789012";

/// A hub named `hostname` that knows the module identity only (not the device's key), and
/// the workload API, whose trust bundle is the hub's CA.
async fn setup_named(hostname: &str) -> (Hub, WorkloadApi, tempfile::TempDir) {
    let hub = Hub::start_with(HubFaults::default(), |o| {
        o.hostname = hostname.into();
        o.devices = vec![(
            format!("{DEVICE}/modules/{MODULE}"),
            edgeprobe_iotedge::secret::Secret::new(MODULE_KEY),
        )];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let api = WorkloadApi::start(
        dir.path(),
        WorkloadOptions {
            module_id: MODULE.into(),
            generation_id: GENERATION.into(),
            key: edgeprobe_iotedge::secret::Secret::new(MODULE_KEY),
            trust_bundle_pem: hub.hub.ca_pem.clone(),
        },
    )
    .await
    .unwrap();
    (hub, api, dir)
}

async fn setup() -> (Hub, WorkloadApi, tempfile::TempDir) {
    setup_named(HUB).await
}

fn module_env(api: &WorkloadApi, generation: &str) -> Vec<(String, String)> {
    [
        ("IOTEDGE_IOTHUBHOSTNAME", HUB.to_owned()),
        ("IOTEDGE_DEVICEID", DEVICE.to_owned()),
        ("IOTEDGE_MODULEID", MODULE.to_owned()),
        ("IOTEDGE_MODULEGENERATIONID", generation.to_owned()),
        (
            "IOTEDGE_WORKLOADURI",
            format!("unix://{}", api.socket.display()),
        ),
        ("IOTEDGE_APIVERSION", "2019-01-30".to_owned()),
        ("IOTEDGE_AUTHSCHEME", "sasToken".to_owned()),
        // edgeHub answers where the simulated hub does (its ports are mapped below).
        ("IOTEDGE_GATEWAYHOSTNAME", HUB.to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// `check` with no identity flag and no trust bundle: everything comes from IoT Edge.
fn args(hub: &Hub) -> Vec<String> {
    let mut a: Vec<String> = [
        "check",
        "--no-config",
        "--vantage",
        "host",
        "--timeout",
        "5",
        "--output",
        "json",
    ]
    .map(String::from)
    .to_vec();
    a.extend(hub.hub.connect_to_args());
    a
}

async fn run_module(args: Vec<String>, env: &[(String, String)]) -> crate::support::Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_env(args, &env).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_authenticates_as_itself_with_tokens_from_the_workload_api() {
    let (hub, api, _dir) = setup().await;
    let r = run_module(args(&hub), &module_env(&api, GENERATION)).await;
    let rep = r.json();
    assert_eq!(r.code(), 0, "{:?}\n{}", rep.readiness, r.stderr());
    for id in [
        "iothub-mqtt",
        "iothub-amqp",
        "iothub-mqtt-ws",
        "iothub-amqp-ws",
    ] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.auth.as_deref()),
            ("pass", Some("ok")),
            "{id}: {}",
            c.message
        );
    }
    // The module's own edgeHub, verified with the Edge CA from /trust-bundle.
    for id in [
        "edgehub-mqtt",
        "edgehub-amqp",
        "edgehub-mqtt-ws",
        "edgehub-amqp-ws",
    ] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.auth.as_deref()),
            ("pass", Some("ok")),
            "{id}: {}",
            c.message
        );
    }
    assert!(
        rep.context
            .notes
            .iter()
            .any(|n| n.contains("authenticating as the module dev-1/edgeprobe")),
        "{:?}",
        rep.context.notes
    );
    assert!(api.signatures() >= 1);
    let out = r.stdout() + &r.stderr();
    for secret in [MODULE_KEY, KEY, "sig="] {
        assert!(!out.contains(secret), "{secret} in the output");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_generation_or_a_missing_socket_is_one_line_naming_the_socket() {
    let (hub, api, _dir) = setup().await;
    let r = run_module(args(&hub), &module_env(&api, "not-my-generation")).await;
    assert_eq!(r.code(), 2, "{}", r.stdout());
    let err = r.stderr();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&api.socket.display().to_string()) && err.contains("HTTP 404"),
        "{err}"
    );
    assert_eq!(api.signatures(), 0);

    let mut env = module_env(&api, GENERATION);
    for (k, v) in &mut env {
        if k == "IOTEDGE_WORKLOADURI" {
            *v = "unix:///nonexistent/workload.sock".into();
        }
    }
    let r = run_module(args(&hub), &env).await;
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("unix:///nonexistent/workload.sock"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("cannot connect"), "{}", r.stderr());
}

/// Polls `done` until it holds (the module's twin traffic is asynchronous; bounded).
fn eventually(what: &str, done: impl Fn() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < until, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_as_a_module_keeps_its_twin_current_and_answers_the_check_method() {
    // One simulated service plays IoT Hub and the module's edgeHub, named like the gateway
    // (`localhost`), so the module's MQTT connection verifies with the Edge CA by name.
    let (hub, api, _dir) = setup_named("localhost").await;
    let mut env = module_env(&api, GENERATION);
    for (k, v) in &mut env {
        if k == "IOTEDGE_IOTHUBHOSTNAME" || k == "IOTEDGE_GATEWAYHOSTNAME" {
            *v = "localhost".into();
        }
    }
    let mut args: Vec<String> = [
        "serve",
        "--no-config",
        "--vantage",
        "host",
        "--timeout",
        "5",
        "--interval",
        "3600",
        "--min-interval",
        "0.2",
    ]
    .map(String::from)
    .to_vec();
    args.extend(hub.hub.connect_to_args());
    let s = crate::module::Serve::start_env(&args, &env);
    let twin = hub.hub.twin.clone();

    // The first run lands in the reported properties, written once.
    eventually("the first run is reported", || {
        twin.reported()["edgeprobe"]["ready"] == serde_json::json!(true)
    });
    let reported = twin.reported();
    let amqp = &reported["edgeprobe"]["protocols"]["Amqp"];
    assert_eq!(
        (amqp["works"].clone(), amqp["auth"].clone()),
        (true.into(), "ok".into()),
        "{reported}"
    );
    assert_eq!(reported["edgeprobe"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(twin.reported_patches(), 1);

    // A second run with the same results writes nothing; a desired interval does.
    s.wait_for("/probe", |_, _| {
        s.get("/history.json").1.contains("\"runs_total\": 2")
    });
    twin.set_desired(serde_json::json!({"interval": 7200}));
    eventually("the new interval is reported", || {
        twin.reported()["edgeprobe"]["settings"]["interval"] == serde_json::json!(7200.0)
    });
    assert_eq!(twin.reported_patches(), 2, "{}", twin.reported());

    // A bad desired value is reported and ignored, never a crash.
    twin.set_desired(serde_json::json!({"timeout": "fast"}));
    eventually("the bad value is reported", || {
        twin.reported()["edgeprobe"]["desired_errors"]["timeout"].is_string()
    });
    assert_eq!(
        twin.reported()["edgeprobe"]["settings"]["timeout"],
        serde_json::json!(5.0)
    );
    assert_eq!(s.get("/healthz").0, 200);

    // The direct method `check` answers the report; its verdict is /report.json's.
    let wait = std::time::Duration::from_secs(20);
    let (status, report) = twin
        .invoke("check", serde_json::json!({}), wait)
        .await
        .expect("an answer");
    assert_eq!(status, 200, "{report}");
    let (_, local) = s.get("/report.json");
    let local: serde_json::Value = serde_json::from_str(&local).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["ready"], local["ready"]);
    assert_eq!(
        report["upstream_protocols"]["Amqp"]["works"],
        local["upstream_protocols"]["Amqp"]["works"]
    );
    let (status, _) = twin
        .invoke("check", serde_json::json!({"timeout": "x"}), wait)
        .await
        .expect("an answer");
    assert_eq!(status, 400);
    let (status, _) = twin
        .invoke("reboot", serde_json::json!({}), wait)
        .await
        .expect("an answer");
    assert_eq!(status, 404);
    // No key or token in what the module logged or answered.
    assert!(!report.to_string().contains(MODULE_KEY));
}

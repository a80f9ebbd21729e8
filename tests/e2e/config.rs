//! A pre-flight run needs no flags: it reads the device's own IoT Edge configuration, as the
//! runtime does. Flags still override it; broken files are exit 2 naming file, line and key.

use fixtures::{HubFaults, PortFault};

use crate::support::{check, drop_arg, run, Hub, DEVICE, HUB, KEY};

const PROXY_PASSWORD: &str = "cfg-proxy-pw-778";
const REGISTRY_PASSWORD: &str = "cfg-registry-pw-991";

/// Arguments that point a check at `config` but keep every probe on the simulated hub.
fn args_for(hub: &Hub, config: &std::path::Path) -> Vec<String> {
    let mut args = vec![
        "check".to_owned(),
        "--config".into(),
        config.display().to_string(),
        "--timeout".into(),
        "5".into(),
        "--output".into(),
        "json".into(),
        // The configuration names mcr.microsoft.com; registries are tested in registry.rs,
        // and nothing here may reach beyond this machine.
        "--skip".into(),
        "registry-*".into(),
    ];
    args.extend(hub.hub.connect_to_args());
    args
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn toml_config(hub: &Hub, extra: &str) -> String {
    format!(
        "hostname = \"edge-1\"\ntrust_bundle_cert = \"file://{}\"\n\n[provisioning]\nsource = \"manual\"\n\
         iothub_hostname = \"{HUB}\"\ndevice_id = \"{DEVICE}\"\n\n[provisioning.authentication]\nmethod = \"sas\"\n\
         device_id_pk = {{ value = \"{KEY}\" }}\n\n[agent]\nname = \"edgeAgent\"\ntype = \"docker\"\n\n\
         [agent.config]\nimage = \"mcr.microsoft.com/azureiotedge-agent:1.5\"\n\n[agent.config.auth]\n\
         serveraddress = \"myacr.azurecr.io\"\nusername = \"acr-user\"\npassword = \"{REGISTRY_PASSWORD}\"\n\n{extra}",
        hub.bundle.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_toml_drives_every_check_without_identity_flags() {
    let faults = HubFaults {
        mqtt: PortFault::Closed,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "config.toml",
        &toml_config(&hub, "[agent.env]\nUpstreamProtocol = \"Mqtt\"\n"),
    );
    let r = run(args_for(&hub, &cfg)).await;
    let rep = r.json();
    assert_eq!(rep.context.iothub_hostname.as_deref(), Some(HUB));
    assert_eq!(rep.context.device_id.as_deref(), Some(DEVICE));
    assert_eq!(
        rep.context.configured_upstream_protocol.as_deref(),
        Some("Mqtt")
    );
    assert_eq!(rep.context.network.as_deref(), Some("azure-iot-edge"));
    // The key from the file authenticates; the trust bundle from the file is trusted.
    assert_eq!(check(&rep, "iothub-amqp").auth.as_deref(), Some("ok"));
    assert_eq!(check(&rep, "iothub-mqtt").reason, "tcp_refused");
    let c = check(&rep, "config-upstream-protocol");
    assert_eq!(c.status, "fail", "the configured Mqtt cannot work");
    assert!(c.fix.as_deref().unwrap().contains("UpstreamProtocol=Amqp"));
    assert_eq!(r.code(), 1);
    for secret in [KEY, REGISTRY_PASSWORD] {
        assert!(!r.stdout().contains(secret), "{secret} leaked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1_1_config_yaml_with_a_connection_string_is_read_too() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "provisioning:\n  source: \"manual\"\n  device_connection_string: \"HostName={HUB};DeviceId={DEVICE};SharedAccessKey={KEY}\"\n\
         agent:\n  name: \"edgeAgent\"\n  type: \"docker\"\n  env:\n    UpstreamProtocol: \"AmqpWs\"\n  config:\n    image: \"mcr.microsoft.com/azureiotedge-agent:1.1\"\n\
         hostname: \"edge-1\"\nmoby_runtime:\n  docker_uri: \"unix:///var/run/docker.sock\"\n  network: \"my-edge-net\"\n"
    );
    let cfg = write(&dir, "config.yaml", &yaml);
    let mut args = args_for(&hub, &cfg);
    args.extend(["--trust-bundle".into(), hub.bundle.display().to_string()]);
    let rep = run(args).await.json();
    assert_eq!(
        rep.context.configured_upstream_protocol.as_deref(),
        Some("AmqpWs")
    );
    assert_eq!(rep.context.network.as_deref(), Some("my-edge-net"));
    assert_eq!(check(&rep, "iothub-amqp-ws").auth.as_deref(), Some("ok"));
    assert_eq!(check(&rep, "config-upstream-protocol").status, "pass");
    assert!(!rep.recommendation.change_needed);
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_override_the_file() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "config.toml",
        &toml_config(&hub, "[agent.env]\nUpstreamProtocol = \"Mqtt\"\n"),
    );
    let mut args = args_for(&hub, &cfg);
    args.extend([
        "--upstream-protocol".into(),
        "AmqpWs".into(),
        "--no-auth".into(),
    ]);
    let rep = run(args).await.json();
    assert_eq!(
        rep.context.configured_upstream_protocol.as_deref(),
        Some("AmqpWs")
    );
    assert_eq!(
        check(&rep, "iothub-amqp").auth.as_deref(),
        Some("untested"),
        "--no-auth wins over the file's key"
    );
}

/// Flags override the file value by value: `--device-id` alone checks another device on the
/// configured hub (its key is the configured device's, so nothing is presented); `--sas-key`
/// alone tries another key for the configured device. Before, either flag alone dropped the
/// file's whole identity: no hub, every hub check skipped, and exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn one_flag_overrides_one_value_and_the_key_goes_only_with_its_own_device() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir, "config.toml", &toml_config(&hub, ""));
    let only = ["--only".to_owned(), "iothub-*".to_owned()];

    let mut args = args_for(&hub, &cfg);
    args.extend(["--device-id".into(), "another-device".into()]);
    args.extend(only.clone());
    let r = run(args).await;
    let rep = r.json();
    assert_eq!(rep.context.iothub_hostname.as_deref(), Some(HUB));
    assert_eq!(rep.context.device_id.as_deref(), Some("another-device"));
    for id in ["iothub-mqtt", "iothub-amqp", "iothub-https"] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.auth.as_deref()),
            ("pass", Some("untested")),
            "{id}: {}",
            c.message
        );
    }
    assert_eq!(r.code(), 0, "{}", r.stdout());

    let mut args = args_for(&hub, &cfg);
    args.extend([
        "--sas-key".into(),
        "d3Jvbmcta2V5LW9mLWFub3RoZXItZGV2aWNlLTAxMjM=".into(),
    ]);
    args.extend(only);
    let r = run(args).await;
    let rep = r.json();
    assert_eq!(rep.context.device_id.as_deref(), Some(DEVICE));
    let c = check(&rep, "iothub-amqp");
    assert_eq!(
        (c.reason.as_str(), c.auth.as_deref()),
        ("auth_rejected", Some("rejected")),
        "the flag's key, for the configured device: {}",
        c.message
    );
    assert_eq!(r.code(), 1);
    assert!(!r.stdout().contains(KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_key_file_leaves_auth_untested_with_the_reason() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let text = toml_config(&hub, "").replace(
        &format!("device_id_pk = {{ value = \"{KEY}\" }}"),
        "device_id_pk = { uri = \"file:///nonexistent/keys/device-id.key\" }",
    );
    let cfg = write(&dir, "config.toml", &text);
    let rep = run(args_for(&hub, &cfg)).await.json();
    let c = check(&rep, "iothub-mqtt");
    assert_eq!(
        (c.status.as_str(), c.auth.as_deref()),
        ("pass", Some("untested")),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("credentials not tested"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("/nonexistent/keys/device-id.key"),
        "{}",
        c.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_config_files_exit_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("syntax.toml", "hostname = \"x\"\n[provisioning\nsource = \"manual\"\n", "line 2"),
        ("source.toml", "[provisioning]\nsource = \"manul\"\n", "line 2: provisioning.source"),
        ("upstream.toml", "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey=YWJj\"\n[agent.env]\nUpstreamProtocol = \"Websocket\"\n", "agent.env.UpstreamProtocol \"Websocket\""),
    ];
    for (name, text, want) in cases {
        let cfg = write(&dir, name, text);
        let r = run([
            "check".to_owned(),
            "--config".into(),
            cfg.display().to_string(),
        ])
        .await;
        assert_eq!(r.code(), 2, "{name}: {}", r.stderr());
        let err = r.stderr();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let r = run(["check", "--config", "/nonexistent/config.toml"]).await;
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("/nonexistent/config.toml"),
        "{}",
        r.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_mismatch_between_edge_agent_and_aziot_edged_is_a_warning_without_passwords() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // The config's proxy is unreachable on purpose: only the consistency check matters here.
    let extra =
        format!("[agent.env]\nhttps_proxy = \"http://alice:{PROXY_PASSWORD}@127.0.0.1:9\"\n");
    let cfg = write(&dir, "config.toml", &toml_config(&hub, &extra));
    let root = tempfile::tempdir().unwrap();
    write(
        &root,
        "etc/systemd/system/aziot-edged.service.d/proxy.conf",
        "[Service]\nEnvironment=\"https_proxy=http://other-proxy.corp:8080\"\n",
    );
    write(
        &root,
        "etc/systemd/system/aziot-identityd.service.d/proxy.conf",
        &format!(
            "[Service]\nEnvironment=\"https_proxy=http://alice:{PROXY_PASSWORD}@127.0.0.1:9\"\n"
        ),
    );
    for output in ["json", "text"] {
        let mut args = args_for(&hub, &cfg);
        drop_arg(&mut args, "--output");
        args.extend([
            "--output".into(),
            output.into(),
            "--verbose".into(),
            "--system-root".into(),
            root.path().display().to_string(),
        ]);
        let r = run(args).await;
        assert!(
            !r.stdout().contains(PROXY_PASSWORD),
            "{output}: the proxy password leaked"
        );
        if output == "json" {
            let rep = r.json();
            let c = check(&rep, "proxy-consistency");
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("warn", "proxy_mismatch"),
                "{}",
                c.message
            );
            assert!(
                c.message.contains("aziot-edged") && c.message.contains("other-proxy.corp"),
                "{}",
                c.message
            );
            assert!(
                check(&rep, "iothub-https").via_proxy,
                "the config's proxy is used"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_parent_hostname_is_checked_and_the_flag_overrides_it() {
    const PARENT: &str = "parent.plant.local";
    const OTHER: &str = "other-parent.plant.local";
    let parent = Hub::start_edge(HubFaults::default(), PARENT).await;
    let other = Hub::start_edge(HubFaults::default(), OTHER).await;
    let dir = tempfile::tempdir().unwrap();
    // A top-level key: before the file's first table. Its trust bundle is the parent's CA.
    let text = format!(
        "parent_hostname = \"{PARENT}\"\n{}",
        toml_config(&parent, "")
    );
    let cfg = write(&dir, "config.toml", &text);
    let parent_checks = |rep: &edgeprobe_report::json::JsonReport, host: &str| {
        assert_eq!(rep.context.parent_hostname.as_deref(), Some(host));
        for p in ["mqtt", "amqp", "mqtt-ws", "amqp-ws", "https"] {
            let c = check(rep, &format!("parent-{p}"));
            assert_eq!(
                (c.status.as_str(), c.endpoint.as_str(), c.host.as_deref()),
                ("pass", "parent", Some(host)),
                "{p}: {}",
                c.message
            );
            // The HTTPS path is probed unauthenticated (a 401 proves it); the others sign in.
            let auth = if p == "https" { "untested" } else { "ok" };
            assert_eq!(
                c.auth.as_deref(),
                Some(auth),
                "{p}: the parent accepted the device's key: {}",
                c.message
            );
        }
        let hub = check(rep, "iothub-amqp");
        assert_eq!(hub.status, "skip");
        assert!(hub.message.contains("nested"), "{}", hub.message);
    };

    // No flag names the parent: the file's parent is checked, with the file's credentials.
    let r = run(args_for(&parent, &cfg)).await;
    let rep = r.json();
    parent_checks(&rep, PARENT);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(!r.stdout().contains(KEY), "the key leaked");
    let reached = parent.hub.connections();
    assert!(reached > 0);

    // --parent-hostname overrides the file: only the other parent is reached.
    let mut args = args_for(&parent, &cfg);
    args.extend(other.hub.connect_to_args());
    args.extend([
        "--parent-hostname".into(),
        OTHER.into(),
        "--trust-bundle".into(),
        other.bundle.display().to_string(),
    ]);
    let r = run(args).await;
    let rep = r.json();
    parent_checks(&rep, OTHER);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(other.hub.connections() > 0);
    assert_eq!(
        parent.hub.connections(),
        reached,
        "the file's parent is not reached once the flag names another"
    );
}

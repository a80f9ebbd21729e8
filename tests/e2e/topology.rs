//! Beyond a device talking straight to IoT Hub: a downstream device behind an edge gateway
//! (`GatewayHostName`), and a nested edge device under its parent.

use fixtures::{HubFaults, PortFault};

use crate::support::{check, drop_arg, run, Hub, DEVICE, HUB, KEY};

const GATEWAY: &str = "gateway.plant.local";
const PARENT: &str = "parent.plant.local";
const FAMILY: [&str; 5] = ["mqtt", "amqp", "mqtt-ws", "amqp-ws", "https"];

fn downstream_args(gw: &Hub, timeout: f64) -> Vec<String> {
    let mut args = gw.args(timeout);
    for flag in ["--iothub-hostname", "--device-id", "--sas-key"] {
        drop_arg(&mut args, flag);
    }
    args.extend([
        "--connection-string".into(),
        format!("HostName={HUB};DeviceId={DEVICE};SharedAccessKey={KEY};GatewayHostName={GATEWAY}"),
    ]);
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn a_downstream_device_sees_what_it_can_use_through_its_gateway() {
    let faults = HubFaults {
        amqp: PortFault::Closed,
        ..HubFaults::default()
    };
    let gw = Hub::start_edge(faults, GATEWAY).await;
    let r = run(downstream_args(&gw, 5.0)).await;
    let rep = r.json();
    assert_eq!(rep.context.gateway_hostname.as_deref(), Some(GATEWAY));
    for p in ["mqtt", "mqtt-ws", "amqp-ws", "https"] {
        let c = check(&rep, &format!("gateway-{p}"));
        assert_eq!(
            (c.status.as_str(), c.endpoint.as_str()),
            ("pass", "gateway"),
            "{p}: {}",
            c.message
        );
        assert_eq!(c.host.as_deref(), Some(GATEWAY));
    }
    assert_eq!(
        check(&rep, "gateway-mqtt").auth.as_deref(),
        Some("ok"),
        "edgeHub accepted the downstream device's own key"
    );
    assert_eq!(check(&rep, "gateway-amqp").reason, "tcp_refused");
    for p in FAMILY {
        let c = check(&rep, &format!("iothub-{p}"));
        assert_eq!(c.status, "skip");
        assert!(c.message.contains("through its gateway"), "{}", c.message);
    }
    let summary = check(&rep, "config-upstream-protocol");
    assert_eq!(summary.status, "pass", "{}", summary.message);
    assert!(
        summary.message.contains("Mqtt, AmqpWs, MqttWs"),
        "{}",
        summary.message
    );
    assert_eq!(rep.upstream_protocols["Mqtt"].evidence, ["gateway-mqtt"]);
    assert_eq!(r.code(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_downstream_device_that_does_not_trust_the_edge_ca_is_told_which_issuer_to_trust() {
    let gw = Hub::start_edge(HubFaults::default(), GATEWAY).await;
    let mut args = downstream_args(&gw, 5.0);
    drop_arg(&mut args, "--trust-bundle");
    let r = run(args).await;
    let rep = r.json();
    for p in FAMILY {
        let c = check(&rep, &format!("gateway-{p}"));
        assert_eq!(c.reason, "tls_untrusted", "{p}");
        assert!(
            c.message.contains("edgeprobe test root CA"),
            "{}",
            c.message
        );
    }
    let summary = check(&rep, "config-upstream-protocol");
    assert_eq!(
        (summary.status.as_str(), summary.reason.as_str()),
        ("fail", "tls_untrusted")
    );
    assert!(summary.fix.as_deref().unwrap().contains("Edge CA"));
    assert_eq!(r.code(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_device_is_checked_against_its_parent_not_iot_hub() {
    if !fixtures::needs_root() {
        return;
    }
    let faults = HubFaults {
        mqtt: PortFault::StallAfterTls,
        ..HubFaults::default()
    };
    let parent = Hub::start_edge(faults, PARENT).await;
    let mut args = parent.args(2.0);
    args.extend([
        "--parent-hostname".into(),
        PARENT.into(),
        "--upstream-protocol".into(),
        "Mqtt".into(),
    ]);
    let r = run(args).await;
    let rep = r.json();
    assert_eq!(rep.context.parent_hostname.as_deref(), Some(PARENT));
    for p in ["amqp", "mqtt-ws", "amqp-ws", "https"] {
        let c = check(&rep, &format!("parent-{p}"));
        assert_eq!(
            (c.status.as_str(), c.endpoint.as_str()),
            ("pass", "parent"),
            "{p}: {}",
            c.message
        );
    }
    assert_eq!(check(&rep, "parent-mqtt").reason, "protocol_timeout");
    assert_eq!(check(&rep, "iothub-amqp").status, "skip");
    assert!(check(&rep, "iothub-amqp").message.contains("nested"));
    // The verdict is about the parent: Mqtt fails there, Amqp is recommended.
    assert_eq!(rep.upstream_protocols["Amqp"].evidence, ["parent-amqp"]);
    assert!(!rep.upstream_protocols["Mqtt"].works());
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("Amqp")
    );
    assert_eq!(check(&rep, "config-upstream-protocol").status, "fail");
}

/// A created (never started) container that publishes ports, as edgeHub's createOptions would,
/// removed on drop with its image.
struct FakeEdgeHub {
    name: String,
    image: String,
}

impl FakeEdgeHub {
    fn create(publish: &[&str]) -> FakeEdgeHub {
        let pid = std::process::id();
        let name = format!("ep-edgehub-{pid}");
        let image = format!("edgeprobe-test-empty:{pid}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("placeholder"), "edgeprobe test image\n").unwrap();
        let tar = dir.path().join("rootfs.tar");
        crate::support::sh(&[
            "tar",
            "-cf",
            tar.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
            "placeholder",
        ]);
        crate::support::sh(&["docker", "import", tar.to_str().unwrap(), &image]);
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &name])
            .output();
        let mut args = vec![
            "create".to_owned(),
            "--name".into(),
            name.clone(),
            "--label".into(),
            "edgeprobe-test=1".into(),
        ];
        for p in publish {
            args.extend(["-p".to_owned(), p.to_string()]);
        }
        args.extend([image.clone(), "/placeholder".into()]);
        let a: Vec<&str> = std::iter::once("docker")
            .chain(args.iter().map(String::as_str))
            .collect();
        crate::support::sh(&a);
        FakeEdgeHub { name, image }
    }
}

impl Drop for FakeEdgeHub {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// An INPUT rule on an interface that does not exist: visible to the gateway view, harmless
/// to everything else on the machine.
fn drop_inbound(port: u16) -> crate::support::IptablesRule {
    crate::support::IptablesRule::insert(
        "INPUT",
        &[
            "-i",
            "epnope0",
            "-p",
            "tcp",
            "--dport",
            &port.to_string(),
            "-j",
            "DROP",
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_view_reads_edge_hubs_published_ports_the_firewall_and_port_holders() {
    if !fixtures::needs_root() {
        return;
    }
    let (mqtt, amqp, https) = (18883u16, 15671u16, 18443u16);
    let hub = FakeEdgeHub::create(&[
        &format!("127.0.0.1:{mqtt}:8883"),
        &format!("127.0.0.1:{amqp}:5671"),
        &format!("127.0.0.1:{https}:443"),
    ]);
    let _rule = drop_inbound(mqtt);
    // Another program already listens where edgeHub wants 443.
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", https)).unwrap();
    let r = run([
        "check",
        "--only",
        "gateway-inbound,inbound-*",
        "--output",
        "json",
        "--timeout",
        "5",
        "--edgehub-container",
        &hub.name,
    ])
    .await;
    let rep = r.json();
    let m = check(&rep, "inbound-mqtt");
    assert_eq!(
        (m.status.as_str(), m.reason.as_str()),
        ("fail", "tcp_timeout"),
        "{}",
        m.message
    );
    assert!(
        m.message.contains(&format!("--dport {mqtt}")),
        "the rule is named: {}",
        m.message
    );
    let a = check(&rep, "inbound-amqp");
    assert_eq!(a.status, "pass", "{}", a.message);
    assert!(
        a.message.contains(&format!("127.0.0.1:{amqp}")),
        "{}",
        a.message
    );
    let h = check(&rep, "inbound-https");
    assert_eq!(
        (h.status.as_str(), h.reason.as_str()),
        ("fail", "wrong_service"),
        "{}",
        h.message
    );
    assert!(
        h.message.contains("pid"),
        "the holder is named: {}",
        h.message
    );
    let s = check(&rep, "gateway-inbound");
    assert_eq!(s.status, "pass");
    assert!(
        s.message.contains("1 of 3 inbound paths open (5671)"),
        "{}",
        s.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_without_published_edge_hub_ports_is_not_a_gateway() {
    if !fixtures::needs_root() {
        return;
    }
    let r = run([
        "check",
        "--only",
        "gateway-inbound",
        "--output",
        "json",
        "--timeout",
        "5",
        "--edgehub-container",
        "no-such-edgehub-container",
    ])
    .await;
    let rep = r.json();
    let s = check(&rep, "gateway-inbound");
    // Nothing to pass on a device that is not a gateway: it does not apply (issue 12).
    assert_eq!(
        (s.status.as_str(), s.reason.as_str()),
        ("skip", "not_configured")
    );
    assert!(s.message.starts_with("not a gateway"), "{}", s.message);
    assert_eq!(rep.checks.len(), 1);
}

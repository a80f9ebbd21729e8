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
    assert!(!rep.upstream_protocols["Mqtt"].works);
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("Amqp")
    );
    assert_eq!(check(&rep, "config-upstream-protocol").status, "fail");
}

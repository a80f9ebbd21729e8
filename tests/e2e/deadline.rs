//! Whatever the network does, a run ends within `--timeout` plus a small margin.

use std::time::Duration;

use fixtures::{HubFaults, PortFault};

use crate::support::{check, run, run_prefixed, Hub, Netns, HUB};

/// The margin PRODUCT.md allows past `--timeout`.
const MARGIN: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread")]
async fn with_every_port_blackholed_the_run_ends_inside_its_deadline() {
    // A namespace whose firewall drops every TCP segment: SYNs vanish, as behind a DROP rule.
    let ns = Netns::new("blackhole");
    ns.exec(&["iptables", "-A", "INPUT", "-p", "tcp", "-j", "DROP"]);
    let args: Vec<String> = [
        "check",
        "--iothub-hostname",
        HUB,
        "--resolve",
        &format!("{HUB}:127.0.0.1"),
        "--timeout",
        "2",
        "--output",
        "json",
        "--no-auth",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = run_prefixed(&ns.prefix(), args).await;
    let rep = r.json();
    // The namespace entry itself costs a few ms; the bound is the contract's.
    assert!(
        r.elapsed < Duration::from_secs(2) + MARGIN,
        "took {:?}",
        r.elapsed
    );
    for id in [
        "iothub-mqtt",
        "iothub-amqp",
        "iothub-mqtt-ws",
        "iothub-amqp-ws",
        "iothub-https",
    ] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "tcp_timeout"),
            "{id}"
        );
        assert!(
            c.message.contains("a firewall is dropping port"),
            "{}",
            c.message
        );
    }
    assert!(rep.upstream_protocols.values().all(|v| !v.works));
    assert_eq!(rep.recommendation.upstream_protocol, None);
    assert_eq!(r.code(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_service_stalling_after_tls_the_run_ends_inside_its_deadline() {
    let faults = HubFaults {
        mqtt: PortFault::StallAfterTls,
        amqp: PortFault::StallAfterTls,
        https: PortFault::StallAfterTls,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let r = run(hub.args(1.5)).await;
    let rep = r.json();
    assert!(
        r.elapsed < Duration::from_secs_f64(1.5) + MARGIN,
        "took {:?}",
        r.elapsed
    );
    for c in rep.checks.iter().filter(|c| c.id.starts_with("iothub-")) {
        assert_eq!(c.reason, "protocol_timeout", "{}: {}", c.id, c.message);
    }
}

//! Whatever the network does, a run ends within `--timeout` plus a small margin.

use std::time::Duration;

use fixtures::{HubFaults, PortFault};

use crate::support::{check, run, run_prefixed, FixtureProcess, Hub, Netns, HUB};

/// The margin PRODUCT.md allows past `--timeout`.
const MARGIN: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread")]
async fn with_every_port_blackholed_the_run_ends_inside_its_deadline() {
    if !fixtures::needs_root() {
        return;
    }
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
    assert!(rep.upstream_protocols.values().all(|v| !v.works()));
    assert_eq!(rep.recommendation.upstream_protocol, None);
    assert_eq!(r.code(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_service_stalling_after_tls_the_run_ends_inside_its_deadline() {
    if !fixtures::needs_root() {
        return;
    }
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

/// Files under /etc/netns/<ns>/ that `ip netns exec` mounts over /etc; removed on drop.
struct NetnsEtc(std::path::PathBuf);

impl NetnsEtc {
    fn new(ns: &Netns, files: &[(&str, &str)]) -> NetnsEtc {
        let dir = std::path::Path::new("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        NetnsEtc(dir)
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// Regression: a resolver that drops AAAA queries while /etc/hosts answers A cost the whole
// deadline in DNS, and the probes then blamed a firewall on every port.
#[tokio::test(flavor = "multi_thread")]
async fn a_resolver_that_drops_aaaa_costs_only_the_resolution_delay() {
    if !fixtures::needs_root() {
        return;
    }
    let ns = Netns::new("aaaa");
    // The nameserver never answers: UDP and TCP 53 are dropped.
    ns.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "53", "-j", "DROP",
    ]);
    ns.exec(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "53", "-j", "DROP",
    ]);
    let _etc = NetnsEtc::new(
        &ns,
        &[
            ("hosts", &format!("127.0.0.1 localhost\n127.0.0.1 {HUB}\n")),
            ("resolv.conf", "nameserver 127.0.0.53\n"),
        ],
    );
    let fixture = FixtureProcess::start(&ns, &["--real-ports"]);
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, fixture.get("ca_pem")).unwrap();
    let args: Vec<String> = [
        "check",
        "--iothub-hostname",
        HUB,
        "--no-auth",
        "--trust-bundle",
        &bundle.display().to_string(),
        "--timeout",
        "4",
        "--vantage",
        "host",
        "--output",
        "json",
        "--only",
        "iothub-mqtt,iothub-https",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = run_prefixed(&ns.prefix(), args).await;
    drop(fixture);
    let rep = r.json();
    for id in ["iothub-mqtt", "iothub-https"] {
        let c = check(&rep, id);
        assert_eq!(c.status, "pass", "{id}: {}", c.message);
        let dns = c.phases.iter().find(|p| p.name == "dns").unwrap();
        assert!(
            dns.duration_ms < 1000.0,
            "{id}: DNS took {} ms",
            dns.duration_ms
        );
        assert_eq!(dns.detail["aaaa"], "timeout", "{id}: {:?}", dns.detail);
    }
}

//! The container vantage against the real Docker engine: the same checks from a container on
//! a test-scoped bridge network, merged into one report, and a DOCKER-USER rule that breaks
//! one port for the containers only — the "host works, modules do not" case.
//!
//! The hub runs as its own process in a network namespace behind the host, so traffic from
//! the containers crosses the host's FORWARD chain exactly as it would to reach Azure.

use std::process::{Command, Stdio};

use crate::support::{check, run, sh, FixtureProcess, IptablesRule, Netns, DEVICE, HUB, KEY};

/// The fixture process in its namespace, with the addresses it printed.
pub struct RemoteHub {
    _process: FixtureProcess,
    pub mqtt: String,
    pub amqp: String,
    pub https: String,
    pub ca_pem: String,
}

pub fn start_remote_hub(ns: &Netns, ip: &str, faults: &[&str]) -> RemoteHub {
    let device = format!("{DEVICE}:{KEY}");
    let mut args = vec!["--bind", ip, "--device", &device];
    for f in faults {
        args.extend(["--fault", f]);
    }
    let process = FixtureProcess::start(ns, &args);
    RemoteHub {
        mqtt: process.get("mqtt"),
        amqp: process.get("amqp"),
        https: process.get("https"),
        ca_pem: process.get("ca_pem"),
        _process: process,
    }
}

/// A Docker network for one test, removed on drop.
pub struct DockerNet {
    pub name: String,
    pub subnet: String,
}

impl DockerNet {
    pub fn new(tag: &str) -> DockerNet {
        let name = format!("edgeprobe-e2e-{tag}-{}", std::process::id());
        let _ = Command::new("docker")
            .args(["network", "rm", &name])
            .output();
        sh(&["docker", "network", "create", "--driver", "bridge", &name]);
        let out = Command::new("docker")
            .args([
                "network",
                "inspect",
                "-f",
                "{{(index .IPAM.Config 0).Subnet}}",
                &name,
            ])
            .output()
            .unwrap();
        let subnet = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        DockerNet { name, subnet }
    }
}

impl Drop for DockerNet {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// A veth pair from the host into the hub's namespace, with routes both ways.
pub struct Link {
    host_if: String,
}

impl Link {
    pub fn new(ns: &Netns, tag: char, host_ip: &str, ns_ip: &str) -> Link {
        let host_if = format!("ep{tag}{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        sh(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", "eth-hub", "netns",
            &ns.name,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_if,
        ]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            "eth-hub",
        ]);
        ns.exec(&["ip", "link", "set", "eth-hub", "up"]);
        ns.exec(&["ip", "route", "add", "default", "via", host_ip]);
        Link { host_if }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

fn leftover_containers(network: &str) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            "label=edgeprobe=1",
            "--filter",
        ])
        .arg(format!("network={network}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_container_vantage_runs_the_same_checks_and_a_docker_user_rule_is_caught() {
    if !fixtures::needs_root() {
        return;
    }
    let ns = Netns::new("dockerhub");
    let _link = Link::new(&ns, 'v', "10.213.7.1", "10.213.7.2");
    let hub = start_remote_hub(&ns, "10.213.7.2", &[]);
    let net = DockerNet::new("vantage");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &hub.ca_pem).unwrap();
    let checks = tempfile::tempdir().unwrap();
    std::fs::write(
        checks.path().join("plant.toml"),
        "[[check]]\nid = \"plant-api\"\ntitle = \"Plant API\"\nendpoint = \"device\"\nprotocol = \"https\"\nhost = \"{plant_host}\"\n",
    )
    .unwrap();
    let args = |timeout: &str| -> Vec<String> {
        let mut a: Vec<String> = [
            "check",
            "--iothub-hostname",
            HUB,
            "--device-id",
            DEVICE,
            "--sas-key",
            KEY,
            "--trust-bundle",
            &bundle.display().to_string(),
            "--timeout",
            timeout,
            "--output",
            "json",
            "--vantage",
            "both",
            "--network",
            &net.name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (port, addr) in [(8883, &hub.mqtt), (5671, &hub.amqp), (443, &hub.https)] {
            a.extend(["--connect-to".into(), format!("{HUB}:{port}:{addr}")]);
        }
        // A user's own check, its host from a --var: it runs from both vantages too.
        a.extend([
            "--checks-dir".into(),
            checks.path().display().to_string(),
            "--var".into(),
            format!("plant_host={HUB}"),
        ]);
        a
    };

    let r = run(args("15")).await;
    let rep = r.json();
    let container = format!("container:{}", net.name);
    assert_eq!(
        rep.vantage,
        format!("host+{container}"),
        "notes: {:?}",
        rep.context.notes
    );
    for id in [
        "iothub-mqtt",
        "iothub-amqp",
        "iothub-mqtt-ws",
        "iothub-amqp-ws",
        "iothub-https",
        "plant-api",
    ] {
        let both: Vec<_> = rep.checks.iter().filter(|c| c.id == id).collect();
        assert_eq!(both.len(), 2, "{id} from both vantages");
        assert_eq!(both[0].vantage, "host");
        assert_eq!(both[1].vantage, container);
        // Roots like the runtime's: the OS store on the host, the Mozilla set the module
        // images carry in the network; each with the trust bundle.
        let roots = |c: &edgeprobe_report::json::Check| {
            c.phases
                .iter()
                .find(|p| p.name == "tls")
                .and_then(|p| p.detail.get("roots"))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            roots(both[0]).starts_with("os ("),
            "{id}: {}",
            roots(both[0])
        );
        assert!(
            roots(both[1]).starts_with("mozilla ("),
            "{id}: {}",
            roots(both[1])
        );
        for c in both {
            assert_eq!(c.status, "pass", "{id} from {}: {}", c.vantage, c.message);
        }
    }
    let netcheck = check(&rep, "docker-network");
    assert_eq!(netcheck.status, "pass", "{}", netcheck.message);
    assert!(
        netcheck.message.contains(&net.subnet),
        "{}",
        netcheck.message
    );
    assert!(
        netcheck.message.contains("127.0.0.11"),
        "Docker's embedded DNS: {}",
        netcheck.message
    );
    assert_eq!(check(&rep, "vantage-compare").status, "pass");
    assert_eq!(r.code(), 0);
    assert_eq!(
        leftover_containers(&net.name),
        "",
        "every probe container is removed"
    );

    // The text report puts the two vantages side by side.
    let mut text_args = args("15");
    crate::support::set_arg(&mut text_args, "--output", "text");
    let out = run(text_args).await.stdout();
    let header = out
        .lines()
        .find(|l| l.starts_with("check "))
        .unwrap_or_else(|| panic!("no side-by-side table:\n{out}"));
    assert!(
        header.contains("host") && header.contains(&container),
        "{header}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("iothub-amqp ") && l.matches("PASS").count() == 2),
        "{out}"
    );

    // Drop the network's AMQP traffic in DOCKER-USER: the host still passes, the modules cannot.
    let amqp_port = hub.amqp.rsplit(':').next().unwrap().to_owned();
    let _rule = IptablesRule::insert(
        "DOCKER-USER",
        &[
            "-s",
            &net.subnet,
            "-p",
            "tcp",
            "--dport",
            &amqp_port,
            "-j",
            "DROP",
        ],
    );
    let r = run(args("5")).await;
    let rep = r.json();
    let amqp: Vec<_> = rep
        .checks
        .iter()
        .filter(|c| c.id == "iothub-amqp")
        .collect();
    assert_eq!(amqp.len(), 2, "both vantages: {:?}", rep.context.notes);
    assert_eq!(
        (amqp[0].vantage.as_str(), amqp[0].status.as_str()),
        ("host", "pass")
    );
    assert_eq!(
        (amqp[1].status.as_str(), amqp[1].reason.as_str()),
        ("fail", "tcp_timeout"),
        "{}",
        amqp[1].message
    );
    let cmp = check(&rep, "vantage-compare");
    assert_eq!(cmp.status, "warn");
    assert!(
        cmp.message.contains("iothub-amqp") && cmp.message.contains("DOCKER-USER"),
        "{}",
        cmp.message
    );
    assert!(
        cmp.message.contains(&format!("--dport {amqp_port}")),
        "the rule is named: {}",
        cmp.message
    );
    // Modules run in the container: Amqp does not work for them, whatever the host says.
    assert!(!rep.upstream_protocols["Amqp"].works());
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("Mqtt")
    );
    assert_eq!(leftover_containers(&net.name), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_network_the_run_degrades_to_the_host_with_a_note() {
    if !fixtures::needs_root() {
        return;
    }
    let r = run([
        "check",
        "--iothub-hostname",
        HUB,
        "--resolve",
        &format!("{HUB}:127.0.0.1"),
        "--timeout",
        "1",
        "--output",
        "json",
        "--no-auth",
        "--network",
        "no-such-network-edgeprobe",
    ])
    .await;
    let rep = r.json();
    assert_eq!(rep.vantage, "host");
    assert!(
        rep.context
            .notes
            .iter()
            .any(|n| n.contains("host only") && n.contains("no-such-network-edgeprobe")),
        "{:?}",
        rep.context.notes
    );
    let r = run([
        "check",
        "--iothub-hostname",
        HUB,
        "--timeout",
        "1",
        "--vantage",
        "container",
        "--network",
        "no-such-network-edgeprobe",
    ])
    .await;
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("--vantage container") && r.stderr().contains("does not exist"),
        "{}",
        r.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_removes_the_probe_container_and_exits_130() {
    if !fixtures::needs_root() {
        return;
    }
    let ns = Netns::new("dockerint");
    let _link = Link::new(&ns, 'i', "10.213.8.1", "10.213.8.2");
    // Every service stalls after TLS: the container's run lasts until its deadline.
    let hub = start_remote_hub(
        &ns,
        "10.213.8.2",
        &[
            "mqtt=stall-after-tls",
            "amqp=stall-after-tls",
            "https=stall-after-tls",
        ],
    );
    let net = DockerNet::new("interrupt");
    let mut args: Vec<String> = [
        "check",
        "--iothub-hostname",
        HUB,
        "--no-auth",
        "--timeout",
        "60",
        "--output",
        "json",
        "--vantage",
        "container",
        "--network",
        &net.name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (port, addr) in [(8883, &hub.mqtt), (5671, &hub.amqp), (443, &hub.https)] {
        args.extend(["--connect-to".into(), format!("{HUB}:{port}:{addr}")]);
    }
    let child = tokio::process::Command::new(crate::support::bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (polling the engine, bounded) until the probe container exists, then interrupt.
    let started = std::time::Instant::now();
    while leftover_containers(&net.name).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no probe container appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    sh(&["kill", "-INT", &pid]);
    let out = tokio::time::timeout(std::time::Duration::from_secs(25), child.wait_with_output())
        .await
        .expect("edgeprobe exits promptly after Ctrl-C")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        leftover_containers(&net.name),
        "",
        "the probe container was removed"
    );
}

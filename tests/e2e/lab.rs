//! The network lab: edgeprobe against servers we did not write (Debian's dnsmasq, mosquitto,
//! nginx, squid, RabbitMQ and docker-registry), across a router namespace whose FORWARD chain
//! fails the way real firewalls do. Names resolve through dnsmasq via the device namespace's
//! resolv.conf — no `--resolve`, no `--connect-to`.
//!
//! ```text
//!  [device ns]               [router ns]                     [cloud ns 10.10.2.2]
//!  edgeprobe --vantage host   iptables FORWARD   ──────────►  dnsmasq :53  (labhub.azure-devices.net)
//!  10.10.1.2 ── veth ── 10.10.1.1 | 10.10.2.1 ── veth ──     mosquitto :8883 TLS, :8080 WebSocket (loopback use)
//!  resolv.conf → 10.10.2.2                                    nginx :443 TLS  /$iothub/websocket by subprotocol:
//!                                                               mqtt → mosquitto ws, AMQPWSB10 → serve-fixture
//!                                                               anything else → 401 IotHubUnauthorizedAccess
//!                                                             RabbitMQ :5671 TLS, AMQP 1.0 (all-open scenario)
//!                                                             squid :3128 (proxy scenarios)
//!                                                           [cloud ns 10.10.2.3, 10.10.2.4] (registry scenarios)
//!                                                             docker-registry 10.10.2.3:443 TLS
//!                                                               (myregistry.azurecr.io), blobs 307 →
//!                                                             nginx 10.10.2.4:443 TLS, 404 to all
//!                                                               (myregistry.westeurope.data.azurecr.io)
//! ```
//!
//! Each test builds its own lab (namespaces named per test), so the tests run in parallel.

mod net;
mod servers;

use std::path::PathBuf;

use edgeprobe_report::json::{Check, JsonReport};

use crate::support::{check, run_prefixed, Run, DEVICE, KEY};
use net::{Net, CLOUD_IP, DATA_IP, DEVICE_IP, DEVICE_SUBNET, REGISTRY_IP};
use servers::{
    DataSite, Fixture, MosquittoOptions, NginxOptions, Pki, Proc, Rabbit, ACR, ACR_DATA, ACR_REPO,
    ACR_TAG, INSPECT_CA, LAB_HUB,
};

const ALL: [&str; 5] = [
    "iothub-mqtt",
    "iothub-amqp",
    "iothub-mqtt-ws",
    "iothub-amqp-ws",
    "iothub-https",
];
const OVER_443: [&str; 3] = ["iothub-mqtt-ws", "iothub-amqp-ws", "iothub-https"];
/// The checks of the lab's registry and of the data endpoint its blobs redirect to.
const ACR_CHECK: &str = "registry-myregistry-azurecr-io";
const ACR_DATA_CHECK: &str = "registry-data-myregistry-westeurope-data-azurecr-io";

#[derive(Default)]
struct LabOptions {
    rabbitmq: bool,
    intercept_443: bool,
    https_on_8883: bool,
    reject_device: bool,
    /// Start squid; `Some(Some((user, pass)))` demands Basic credentials.
    squid: Option<Option<(&'static str, &'static str)>>,
    /// Start docker-registry (`ACR` on `REGISTRY_IP`, the tiny image pushed) and its data
    /// endpoint (`ACR_DATA` on `DATA_IP`, an nginx site).
    registry: bool,
}

/// One lab. Field order is drop order: servers first, then the network, then the files.
struct Lab {
    _squid: Option<Proc>,
    nginx: Proc,
    _fixture: Fixture,
    mosquitto: Proc,
    rabbit: Option<Rabbit>,
    registry: Option<Proc>,
    _dns: Proc,
    net: Net,
    dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Lab {
    fn start(tag: &str, o: LabOptions) -> Lab {
        let net = Net::new(tag);
        let dir = tempfile::tempdir().unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // squid and dnsmasq drop privileges and write their logs here.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let d = dir.path();
        let pki = Pki::new(d);
        let mut records = vec![(LAB_HUB, CLOUD_IP)];
        let mut acr = None;
        if o.registry {
            net.add_cloud_address(REGISTRY_IP);
            net.add_cloud_address(DATA_IP);
            records.extend([(ACR, REGISTRY_IP), (ACR_DATA, DATA_IP)]);
            acr = Some((
                pki.issue(d, "registry", ACR),
                pki.issue(d, "registry-data", ACR_DATA),
            ));
        }
        let cloud = &net.cloud;
        // RabbitMQ takes seconds to boot: start it while the others come up.
        let (rabbit, registry, dns, mosquitto, fixture, nginx, squid) = std::thread::scope(|s| {
            let rabbit = o
                .rabbitmq
                .then(|| s.spawn(|| servers::rabbitmq(cloud, d, CLOUD_IP, &pki)));
            let registry = acr.as_ref().map(|(cert, _)| {
                s.spawn(|| {
                    servers::push_test_image(d, cert, &pki.root);
                    servers::docker_registry(cloud, d, REGISTRY_IP, cert, ACR_DATA)
                })
            });
            let dns = servers::dnsmasq(cloud, d, CLOUD_IP, &records);
            let mosquitto = servers::mosquitto(
                cloud,
                d,
                CLOUD_IP,
                &pki,
                &MosquittoOptions {
                    tls_8883: !o.https_on_8883,
                    reject_device: o.reject_device,
                },
            );
            let fixture = servers::fixture(cloud);
            let nginx = servers::nginx(
                cloud,
                d,
                CLOUD_IP,
                &pki,
                &NginxOptions {
                    intercept_443: o.intercept_443,
                    https_on_8883: o.https_on_8883,
                    amqp_ws_backend: Some(format!("https://{}", fixture.https)),
                    data_endpoint: acr.as_ref().map(|(_, data)| DataSite {
                        ip: DATA_IP.into(),
                        host: ACR_DATA.into(),
                        cert: data.clone(),
                    }),
                },
            );
            let squid = o
                .squid
                .map(|auth| servers::squid(cloud, d, CLOUD_IP, DEVICE_SUBNET, auth));
            let rabbit = rabbit.map(|h| h.join().expect("RabbitMQ starts"));
            let registry = registry.map(|h| h.join().expect("docker-registry starts"));
            (rabbit, registry, dns, mosquitto, fixture, nginx, squid)
        });
        Lab {
            _squid: squid,
            nginx,
            _fixture: fixture,
            mosquitto,
            rabbit,
            registry,
            _dns: dns,
            net,
            bundle: pki.root.pem.clone(),
            dir,
        }
    }

    /// `check` arguments for the lab's hub: JSON, host vantage, the lab's root trusted.
    fn args(&self, hub: &str, timeout: f64, auth: bool) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "check".into(),
            "--iothub-hostname".into(),
            hub.into(),
            "--trust-bundle".into(),
            self.bundle.display().to_string(),
            "--timeout".into(),
            timeout.to_string(),
            "--output".into(),
            "json".into(),
            "--vantage".into(),
            "host".into(),
        ];
        if auth {
            a.extend([
                "--device-id".into(),
                DEVICE.into(),
                "--sas-key".into(),
                KEY.into(),
            ]);
        } else {
            a.push("--no-auth".into());
        }
        a
    }

    /// `check` arguments for the registry checks only: an IoT Edge config naming the image on
    /// the lab's registry, mcr.microsoft.com skipped (it is never contacted), the lab's root
    /// trusted.
    fn registry_args(&self, timeout: f64) -> Vec<String> {
        assert!(self.registry.is_some(), "a lab without its registry");
        let config = self.dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("[agent.config]\nimage = \"{ACR}/{ACR_REPO}:{ACR_TAG}\"\n"),
        )
        .unwrap();
        crate::support::registry_check_args(&config, &self.bundle, timeout)
    }

    /// Runs edgeprobe inside the device namespace.
    async fn run(&self, args: Vec<String>) -> Run {
        run_prefixed(&self.net.device.prefix(), args).await
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// The log once `done` holds of it. nginx, squid, docker-registry and RabbitMQ write a
    /// request's line after answering it (squid when the tunnel closes), so a line may land
    /// just after edgeprobe has its answer.
    fn log_until(&self, name: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        crate::thirdparty::log_when(&self.dir.path().join(name), what, done)
    }

    fn names(&self) -> Vec<String> {
        vec![
            self.net.device.name.clone(),
            self.net.router.name.clone(),
            self.net.cloud.name.clone(),
        ]
    }
}

/// Asserts (status, reason) of a check, printing its message and the router's rules.
fn expect(rep: &JsonReport, lab: &Lab, id: &str, status: &str, reason: &str) {
    let c = check(rep, id);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        (status, reason),
        "{id}: {}\nrouter:\n{}",
        c.message,
        lab.net.rules()
    );
}

/// The DNS phase of a check: answered by the lab's dnsmasq (A record `ip`), not by a flag.
fn assert_resolved_by_dnsmasq(rep: &JsonReport, id: &str, ip: &str) {
    let c = check(rep, id);
    let dns = c
        .phases
        .iter()
        .find(|p| p.name == "dns")
        .expect("dns phase");
    assert_eq!(dns.status, "ok", "{id}: {:?}", dns.detail);
    assert!(dns.detail.get("source").is_none(), "{id}: {:?}", dns.detail);
    assert_eq!(
        dns.detail["a"],
        serde_json::json!([ip]),
        "{id}: {:?}",
        dns.detail
    );
}

/// The registry check pulled the configured image's manifest from docker-registry by its
/// name, as dnsmasq gave it, and learned the data endpoint from the blob's 307; mcr was
/// neither checked nor looked up.
fn assert_registry_pulled<'a>(rep: &'a JsonReport, lab: &Lab) -> &'a Check {
    expect(rep, lab, ACR_CHECK, "pass", "ok");
    assert_resolved_by_dnsmasq(rep, ACR_CHECK, REGISTRY_IP);
    let c = check(rep, ACR_CHECK);
    assert!(c.required, "the configured image's registry is required");
    assert!(c.message.contains(ACR_DATA), "{}", c.message);
    assert!(c.message.contains("linux/amd64"), "{}", c.message);
    let names: Vec<&str> = c.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["dns", "tcp", "tls", "protocol", "auth"]);
    let auth = c.phases.iter().find(|p| p.name == "auth").unwrap();
    assert_eq!(auth.detail["data_endpoint"], ACR_DATA, "{:?}", auth.detail);
    assert_eq!(
        auth.detail["requests"].as_array().map(Vec::len),
        Some(3),
        "manifest list, manifest, blob: {:?}",
        auth.detail
    );
    assert!(
        rep.checks.iter().all(|c| !c.id.contains("mcr")),
        "mcr.microsoft.com was checked"
    );
    let dns = lab.log("dnsmasq.log");
    for name in [ACR, ACR_DATA] {
        assert!(
            dns.contains(&format!("query[A] {name} from {DEVICE_IP}")),
            "dnsmasq log:\n{dns}"
        );
    }
    assert!(!dns.contains("mcr.microsoft.com"), "dnsmasq log:\n{dns}");
    // docker-registry answered the device itself: the blob's redirect, to the device's address.
    lab.log_until(
        "registry.log",
        "docker-registry's 307 for the blob, to the device",
        |log| {
            log.lines().any(|l| {
                l.starts_with(&format!("{DEVICE_IP} "))
                    && l.contains(&format!("\"HEAD /v2/{ACR_REPO}/blobs/sha256:"))
                    && l.contains("\" 307 ")
            })
        },
    );
    c
}

/// No namespace, /etc/netns entry or process of the lab outlives it.
fn assert_cleaned_up(names: Vec<String>, dir: PathBuf) {
    net::assert_gone(&names);
    let needle = dir.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !cmd.contains(&needle),
                "process {:?} of the lab is still running: {cmd}",
                entry.file_name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_all_open_every_protocol_works_against_real_servers_through_real_dns() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start(
        "lopen",
        LabOptions {
            rabbitmq: true,
            registry: true,
            ..Default::default()
        },
    );
    // Paths only: every protocol proven by a real server's protocol answer.
    let rep = lab.run(lab.args(LAB_HUB, 10.0, false)).await.json();
    for id in ALL {
        expect(&rep, &lab, id, "pass", "ok");
        assert_resolved_by_dnsmasq(&rep, id, CLOUD_IP);
    }
    assert!(rep.upstream_protocols.values().all(|v| v.works()));
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("Amqp")
    );
    // RabbitMQ's AMQP 1.0 answer: SASL ANONYMOUS and open.
    let amqp = check(&rep, "iothub-amqp");
    let proto = amqp.phases.iter().find(|p| p.name == "protocol").unwrap();
    assert_eq!(proto.detail["sasl"], "ANONYMOUS", "{:?}", proto.detail);

    // With the device's key: mosquitto (anonymous allowed) accepts the CONNECT; RabbitMQ has no
    // IoT Hub CBS node, so the put-token on $cbs is never answered — a warning, not a pass.
    let mut args = lab.args(LAB_HUB, 3.0, true);
    args.extend(["--only".into(), "iothub-mqtt,iothub-amqp".into()]);
    let rep = lab.run(args).await.json();
    expect(&rep, &lab, "iothub-mqtt", "pass", "ok");
    assert_eq!(check(&rep, "iothub-mqtt").auth.as_deref(), Some("ok"));
    let amqp = check(&rep, "iothub-amqp");
    assert_eq!(
        (amqp.status.as_str(), amqp.reason.as_str()),
        ("warn", "protocol_timeout"),
        "{}",
        amqp.message
    );
    assert!(amqp.message.contains("$cbs"), "{}", amqp.message);

    // The real servers really answered.
    assert!(
        std::fs::read_to_string(&lab.mosquitto.log)
            .unwrap()
            .contains("New client connected"),
        "mosquitto log:\n{}",
        std::fs::read_to_string(&lab.mosquitto.log).unwrap()
    );
    lab.log_until(
        "nginx-access.log",
        "nginx's 101 for the WebSocket upgrade and its 401",
        |access| {
            access.contains("GET /$iothub/websocket")
                && access.contains(" 101 ")
                && access.contains(" 401 ")
        },
    );
    let dns = lab.log("dnsmasq.log");
    assert!(
        dns.contains(&format!("query[A] {LAB_HUB}")),
        "dnsmasq log:\n{dns}"
    );
    assert!(lab.rabbit.is_some());
    lab.log_until("rabbitmq.log", "RabbitMQ's AMQP 1.0 connection", |log| {
        log.contains("AMQP 1.0")
    });
    let _ = &lab.nginx;

    // The registry an IoT Edge config names (docker-registry by an ACR-like name) and the data
    // endpoint its blobs redirect to (nginx): both reached, both named by dnsmasq.
    let r = lab.run(lab.registry_args(5.0)).await;
    let rep = r.json();
    let c = assert_registry_pulled(&rep, &lab);
    assert!(c.message.contains(ACR_DATA_CHECK), "{}", c.message);
    expect(&rep, &lab, ACR_DATA_CHECK, "pass", "ok");
    assert_resolved_by_dnsmasq(&rep, ACR_DATA_CHECK, DATA_IP);
    let d = check(&rep, ACR_DATA_CHECK);
    assert_eq!(
        (d.protocol.as_str(), d.host.as_deref(), d.port),
        ("https", Some(ACR_DATA), Some(443))
    );
    assert!(d.message.contains(ACR), "{}", d.message);
    assert_eq!(r.code(), 0, "{}", r.stdout());
    lab.log_until(
        "nginx-data-access.log",
        "the data endpoint's 404 to the device",
        |data| {
            data.lines()
                .any(|l| l.starts_with(&format!("{DEVICE_IP} ")) && l.contains(" 404 "))
        },
    );

    let (names, dir) = (lab.names(), lab.dir.path().to_owned());
    drop(lab);
    assert_cleaned_up(names, dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_registry_data_endpoint_dropped_by_the_router_means_pulls_stall() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start(
        "lacr",
        LabOptions {
            registry: true,
            ..Default::default()
        },
    );
    lab.net
        .forward(&["-p", "tcp", "-d", DATA_IP, "--dport", "443", "-j", "DROP"]);
    let timeout = 2.0;
    let r = lab.run(lab.registry_args(timeout)).await;
    let rep = r.json();
    // The registry works: /v2/, the manifests and the blob's redirect...
    let c = assert_registry_pulled(&rep, &lab);
    assert!(
        c.message
            .contains(&format!("data endpoint {ACR_DATA} is unreachable"))
            && c.message.contains("stall"),
        "{}",
        c.message
    );
    // ...but the layers would come from the data endpoint, which the router blackholes.
    expect(&rep, &lab, ACR_DATA_CHECK, "fail", "tcp_timeout");
    assert_resolved_by_dnsmasq(&rep, ACR_DATA_CHECK, DATA_IP);
    let d = check(&rep, ACR_DATA_CHECK);
    assert!(
        d.required,
        "the configured image's data endpoint is required"
    );
    assert!(d.message.contains("stall"), "{}", d.message);
    assert!(
        d.fix.as_deref().unwrap_or_default().contains(ACR_DATA),
        "{:?}",
        d.fix
    );
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(
        r.elapsed.as_secs_f64() <= timeout + 0.5,
        "the run took {:?} with --timeout {timeout}",
        r.elapsed
    );
    // The router's rule dropped the device's SYNs; nothing reached nginx's data site.
    let rules = lab.net.rules();
    let line = rules.lines().find(|l| l.contains("DROP")).unwrap();
    let packets: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(packets > 0, "the DROP rule saw no packet:\n{rules}");
    assert_eq!(lab.log("nginx-data-access.log"), "");

    let (names, dir) = (lab.names(), lab.dir.path().to_owned());
    drop(lab);
    assert_cleaned_up(names, dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_8883_dropped_by_the_router_is_a_tcp_timeout_and_mqtt_ws_still_works() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start("ldrop", LabOptions::default());
    lab.net
        .forward(&["-p", "tcp", "--dport", "8883", "-j", "DROP"]);
    let r = lab.run(lab.args(LAB_HUB, 2.0, true)).await;
    let rep = r.json();
    expect(&rep, &lab, "iothub-mqtt", "fail", "tcp_timeout");
    for id in OVER_443 {
        expect(&rep, &lab, id, "pass", "ok");
    }
    assert!(!rep.upstream_protocols["Mqtt"].works());
    assert!(rep.upstream_protocols["MqttWs"].works());
    assert!(r.elapsed.as_secs_f64() < 2.5, "{:?}", r.elapsed);
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_5671_rejected_with_a_tcp_reset_is_tcp_refused() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start("lrej", LabOptions::default());
    lab.net.forward(&[
        "-p",
        "tcp",
        "--dport",
        "5671",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]);
    let rep = lab.run(lab.args(LAB_HUB, 3.0, false)).await.json();
    expect(&rep, &lab, "iothub-amqp", "fail", "tcp_refused");
    expect(&rep, &lab, "iothub-mqtt", "pass", "ok");
    // It was the router's rule that answered, not a closed port in the cloud.
    let rules = lab.net.rules();
    let line = rules.lines().find(|l| l.contains("REJECT")).unwrap();
    let packets: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(packets > 0, "the REJECT rule saw no packet:\n{rules}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_only_443_open_leaves_the_websocket_protocols_and_recommends_one() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start("l443", LabOptions::default());
    lab.net.only_allow(&["443"]);
    let rep = lab.run(lab.args(LAB_HUB, 2.0, true)).await.json();
    expect(&rep, &lab, "iothub-mqtt", "fail", "tcp_timeout");
    expect(&rep, &lab, "iothub-amqp", "fail", "tcp_timeout");
    for id in OVER_443 {
        expect(&rep, &lab, id, "pass", "ok");
    }
    // mosquitto behind nginx took the device's credentials over WebSocket.
    assert_eq!(check(&rep, "iothub-mqtt-ws").auth.as_deref(), Some("ok"));
    assert!(!rep.upstream_protocols["Mqtt"].works() && !rep.upstream_protocols["Amqp"].works());
    assert!(rep.upstream_protocols["MqttWs"].works());
    let rec = rep
        .recommendation
        .upstream_protocol
        .as_deref()
        .unwrap_or("");
    assert!(
        rec == "AmqpWs" || rec == "MqttWs",
        "recommendation {rec:?}: {}",
        rep.recommendation.why
    );
    assert!(rep.recommendation.change_needed);
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_proxy_only_network_carries_the_websocket_protocols_through_squid() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start(
        "lprx",
        LabOptions {
            squid: Some(None),
            ..Default::default()
        },
    );
    lab.net.only_allow(&[&format!("{CLOUD_IP}:3128")]);
    let mut args = lab.args(LAB_HUB, 2.0, true);
    args.extend(["--proxy".into(), format!("http://{CLOUD_IP}:3128")]);
    let rep = lab.run(args).await.json();
    for id in OVER_443 {
        expect(&rep, &lab, id, "pass", "ok");
        assert!(check(&rep, id).via_proxy, "{id}");
    }
    for id in ["iothub-mqtt", "iothub-amqp"] {
        let c = check(&rep, id);
        assert_eq!(c.status, "fail", "{id}: {}", c.message);
        assert!(!c.via_proxy, "{id}");
    }
    assert!(rep.upstream_protocols["MqttWs"].via_proxy);
    lab.log_until("squid-access.log", "squid's CONNECT to the hub", |log| {
        log.contains(&format!("CONNECT {LAB_HUB}:443"))
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_squid_with_basic_auth_says_proxy_auth_required_then_accepts_credentials() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start(
        "lpxa",
        LabOptions {
            squid: Some(Some(("alice", "lab-proxy-pw"))),
            ..Default::default()
        },
    );
    lab.net.only_allow(&[&format!("{CLOUD_IP}:3128")]);
    let mut args = lab.args(LAB_HUB, 2.0, false);
    args.extend(["--proxy".into(), format!("http://{CLOUD_IP}:3128")]);
    let rep = lab.run(args.clone()).await.json();
    for id in OVER_443 {
        expect(&rep, &lab, id, "fail", "proxy_auth_required");
    }
    let n = args.len();
    args[n - 1] = format!("http://alice:lab-proxy-pw@{CLOUD_IP}:3128");
    let r = lab.run(args).await;
    let rep = r.json();
    for id in OVER_443 {
        expect(&rep, &lab, id, "pass", "ok");
    }
    assert!(!r.stdout().contains("lab-proxy-pw"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_tls_interception_on_443_is_untrusted_and_names_the_issuer() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start(
        "ltls",
        LabOptions {
            intercept_443: true,
            ..Default::default()
        },
    );
    let rep = lab.run(lab.args(LAB_HUB, 3.0, false)).await.json();
    for id in OVER_443 {
        expect(&rep, &lab, id, "fail", "tls_untrusted");
        let c = check(&rep, id);
        assert!(c.message.contains(INSPECT_CA), "{id}: {}", c.message);
    }
    expect(&rep, &lab, "iothub-mqtt", "pass", "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_a_web_server_on_8883_is_the_wrong_service() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start(
        "lwrong",
        LabOptions {
            https_on_8883: true,
            ..Default::default()
        },
    );
    let rep = lab.run(lab.args(LAB_HUB, 3.0, false)).await.json();
    expect(&rep, &lab, "iothub-mqtt", "fail", "wrong_service");
    expect(&rep, &lab, "iothub-mqtt-ws", "pass", "ok");
    assert!(!rep.upstream_protocols["Mqtt"].works());
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_a_hub_name_dnsmasq_does_not_know_is_nxdomain() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start("lnx", LabOptions::default());
    let rep = lab
        .run(lab.args("nosuchhub.azure-devices.net", 3.0, false))
        .await
        .json();
    for id in ALL {
        expect(&rep, &lab, id, "fail", "dns_nxdomain");
    }
    let dns = lab.log("dnsmasq.log");
    assert!(
        dns.contains("nosuchhub.azure-devices.net"),
        "dnsmasq log:\n{dns}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_everything_blackholed_times_out_every_check_within_the_deadline() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start("lhole", LabOptions::default());
    // Names still resolve (DNS is allowed); every TCP packet from the device is dropped.
    lab.net.only_allow(&[]);
    let timeout = 2.0;
    let r = lab.run(lab.args(LAB_HUB, timeout, true)).await;
    let rep = r.json();
    for id in ALL {
        expect(&rep, &lab, id, "fail", "tcp_timeout");
    }
    assert_eq!(r.code(), 1);
    assert!(
        r.elapsed.as_secs_f64() <= timeout + 0.5,
        "the run took {:?} with --timeout {timeout}",
        r.elapsed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_mosquitto_refusing_the_device_is_auth_rejected_with_the_path_proven() {
    if !fixtures::needs_root() {
        return;
    }
    let lab = Lab::start(
        "lauth",
        LabOptions {
            reject_device: true,
            ..Default::default()
        },
    );
    let mut args = lab.args(LAB_HUB, 3.0, true);
    args.extend(["--only".into(), "iothub-mqtt*".into()]);
    let rep = lab.run(args).await.json();
    for id in ["iothub-mqtt", "iothub-mqtt-ws"] {
        expect(&rep, &lab, id, "fail", "auth_rejected");
        assert_eq!(check(&rep, id).auth.as_deref(), Some("rejected"), "{id}");
    }
    assert!(rep.upstream_protocols["Mqtt"].works());
    assert_eq!(rep.upstream_protocols["Mqtt"].auth, "rejected");
}

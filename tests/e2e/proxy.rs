//! HTTP proxies as corporate networks run them: real squid and tinyproxy, and squid behind
//! stunnel as an `https://` proxy. Only the WebSocket protocols and HTTPS go through the
//! proxy; Mqtt and Amqp are still tried directly and, when they fail, say `not_proxiable`.
//! Proxy credentials never appear in any output.

use fixtures::pki::{Ca, Validity};
use fixtures::HubFaults;

use crate::support::{check, run, run_env, set_arg, Hub, IptablesRule, HUB};
use crate::thirdparty::{self, ProxyOptions, Server};

const PROXIED: [&str; 3] = ["iothub-mqtt-ws", "iothub-amqp-ws", "iothub-https"];
const PASSWORD: &str = "pr0xy-s3cret-pw";

fn options(hub: &Hub, auth: bool) -> ProxyOptions {
    ProxyOptions {
        auth: auth.then(|| ("alice".to_owned(), PASSWORD.to_owned())),
        hosts: vec![(HUB.to_owned(), hub.hub.https.ip())],
        ..ProxyOptions::default()
    }
}

fn proxy_url(p: &Server, creds: Option<(&str, &str)>) -> String {
    match creds {
        Some((u, pw)) => format!("http://{u}:{pw}@{}", p.addr),
        None => format!("http://{}", p.addr),
    }
}

/// Drops root's own direct connections to the hub's address, leaving the proxy (which runs
/// as another user) free: a network where only the proxy gets out.
fn block_direct_egress(ip: &str) -> IptablesRule {
    IptablesRule::insert(
        "OUTPUT",
        &[
            "-d",
            ip,
            "-p",
            "tcp",
            "-m",
            "owner",
            "--uid-owner",
            "0",
            "-j",
            "DROP",
        ],
    )
}

fn assert_no_password(label: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{label}: the proxy password leaked:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn squid_carries_the_websocket_protocols_and_https_while_mqtt_and_amqp_stay_direct() {
    if !fixtures::needs_root() {
        return;
    }
    let hub = Hub::start_real_ports(HubFaults::default(), "127.0.20.1").await;
    let squid = thirdparty::squid(&options(&hub, false));
    let mut args = hub.args_real_ports(10.0);
    args.extend(["--proxy".into(), proxy_url(&squid, None)]);
    let r = run(args).await;
    let rep = r.json();
    for id in PROXIED {
        let c = check(&rep, id);
        assert_eq!(c.status, "pass", "{id}: {}", c.message);
        assert!(c.via_proxy, "{id} should go through the proxy");
        let proxy = c
            .phases
            .iter()
            .find(|p| p.name == "proxy")
            .expect("a proxy phase");
        assert_eq!(proxy.status, "ok");
        assert_eq!(proxy.detail["status"], 200);
        assert_eq!(proxy.detail["connect"], format!("{HUB}:443"));
    }
    for id in ["iothub-mqtt", "iothub-amqp"] {
        let c = check(&rep, id);
        assert_eq!(c.status, "pass", "{id}: {}", c.message);
        assert!(
            !c.via_proxy && c.phases.iter().all(|p| p.name != "proxy"),
            "{id} must not use the proxy"
        );
    }
    assert!(
        rep.upstream_protocols["AmqpWs"].via_proxy && !rep.upstream_protocols["Amqp"].via_proxy
    );
    assert_eq!(
        rep.context.proxy.as_deref(),
        Some(format!("http://{}", squid.addr).as_str())
    );
    // squid really carried the tunnels.
    let log = std::fs::read_to_string(squid.dir.path().join("access.log")).unwrap();
    assert!(
        log.contains(&format!("CONNECT {HUB}:443")),
        "squid access log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn squid_with_basic_auth_wants_credentials_and_accepts_the_right_ones() {
    if !fixtures::needs_root() {
        return;
    }
    let hub = Hub::start_real_ports(HubFaults::default(), "127.0.20.2").await;
    let squid = thirdparty::squid(&options(&hub, true));

    let mut args = hub.args_real_ports(10.0);
    args.extend(["--proxy".into(), proxy_url(&squid, None)]);
    let rep = run(args).await.json();
    for id in PROXIED {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "proxy_auth_required"),
            "{id}: {}",
            c.message
        );
        assert!(c.message.contains("407"), "{}", c.message);
    }

    for output in ["json", "text"] {
        let mut args = hub.args_real_ports(10.0);
        set_arg(&mut args, "--output", output);
        args.extend([
            "--proxy".into(),
            proxy_url(&squid, Some(("alice", PASSWORD))),
            "--verbose".into(),
        ]);
        let r = run(args).await;
        assert_no_password(output, &r.stdout());
        assert_no_password(output, &r.stderr());
        if output == "json" {
            let rep = r.json();
            for id in PROXIED {
                assert_eq!(
                    check(&rep, id).status,
                    "pass",
                    "{id}: {}",
                    check(&rep, id).message
                );
            }
            assert_eq!(
                rep.context.proxy.as_deref(),
                Some(format!("http://alice:<redacted>@{}", squid.addr).as_str())
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn squid_refusing_connect_to_another_port_is_proxy_denied() {
    if !fixtures::needs_root() {
        return;
    }
    let hub = Hub::start_real_ports(HubFaults::default(), "127.0.20.3").await;
    let squid = thirdparty::squid(&options(&hub, false));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("odd-port.toml"),
        format!("[[check]]\nid = \"odd-port\"\ntitle = \"HTTPS on 5671\"\nendpoint = \"device\"\nprotocol = \"https\"\nhost = \"{HUB}\"\nport = 5671\n"),
    )
    .unwrap();
    let mut args = hub.args_real_ports(10.0);
    args.extend([
        "--proxy".into(),
        proxy_url(&squid, None),
        "--checks-dir".into(),
        dir.path().display().to_string(),
        "--only".into(),
        "odd-port".into(),
    ]);
    let rep = run(args).await.json();
    let c = check(&rep, "odd-port");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "proxy_denied"),
        "{}",
        c.message
    );
    assert!(c.message.contains("403"), "{}", c.message);
    assert!(c.fix.as_deref().unwrap().contains(&format!("{HUB}:5671")));
}

#[tokio::test(flavor = "multi_thread")]
async fn tinyproxy_with_basic_auth_carries_the_tunnels_and_refuses_a_wrong_password() {
    if !fixtures::needs_root() {
        return;
    }
    let hub = Hub::start_real_ports(HubFaults::default(), "127.0.20.4").await;
    let tiny = thirdparty::tinyproxy(&options(&hub, true));

    let mut args = hub.args_real_ports(10.0);
    args.extend([
        "--proxy".into(),
        proxy_url(&tiny, Some(("alice", PASSWORD))),
    ]);
    let r = run(args).await;
    assert_no_password("tinyproxy", &r.stdout());
    let rep = r.json();
    for id in PROXIED {
        let c = check(&rep, id);
        assert_eq!(c.status, "pass", "{id}: {}", c.message);
        assert!(c.via_proxy);
    }

    let mut args = hub.args_real_ports(10.0);
    args.extend([
        "--proxy".into(),
        proxy_url(&tiny, Some(("alice", "wrong-password"))),
    ]);
    let rep = run(args).await.json();
    let c = check(&rep, "iothub-https");
    assert_eq!(c.reason, "proxy_auth_required", "{}", c.message);
    assert!(
        c.message.contains("refused the credentials"),
        "{}",
        c.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_proxy_only_network_only_the_websocket_protocols_work_and_amqp_ws_is_recommended() {
    if !fixtures::needs_root() {
        return;
    }
    let ip = "127.0.20.5";
    let hub = Hub::start_real_ports(HubFaults::default(), ip).await;
    let squid = thirdparty::squid(&options(&hub, false));
    let _blocked = block_direct_egress(ip);
    let mut args = hub.args_real_ports(3.0);
    args.extend(["--proxy".into(), proxy_url(&squid, None)]);
    let r = run(args).await;
    let rep = r.json();
    for id in ["iothub-mqtt", "iothub-amqp"] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "tcp_timeout"),
            "{id}: {}",
            c.message
        );
        assert_eq!(c.also, ["not_proxiable"], "{id}");
        assert!(c.message.contains("cannot use the proxy"), "{}", c.message);
    }
    for id in PROXIED {
        assert_eq!(
            check(&rep, id).status,
            "pass",
            "{id}: {}",
            check(&rep, id).message
        );
    }
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("AmqpWs")
    );
    assert!(
        rep.recommendation.change_needed,
        "unset means Amqp for edgeHub, which cannot work here"
    );
    assert_eq!(check(&rep, "config-upstream-protocol").status, "fail");
    assert_eq!(r.code(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_proxy_is_named_as_such() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = hub.args(5.0);
    let closed = fixtures::ClosedPort::loopback().unwrap();
    args.extend(["--proxy".into(), format!("http://{}", closed.addr())]);
    let rep = run(args).await.json();
    for id in PROXIED {
        let c = check(&rep, id);
        assert_eq!(c.reason, "proxy_unreachable", "{id}: {}", c.message);
    }
    assert_eq!(
        check(&rep, "iothub-mqtt").status,
        "pass",
        "MQTT never uses the proxy"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_proxy_from_the_environment_is_used_and_no_proxy_is_honoured() {
    if !fixtures::needs_root() {
        return;
    }
    let hub = Hub::start_real_ports(HubFaults::default(), "127.0.20.6").await;
    let squid = thirdparty::squid(&options(&hub, false));
    let url = proxy_url(&squid, None);
    let rep = run_env(hub.args_real_ports(10.0), &[("HTTPS_PROXY", &url)])
        .await
        .json();
    assert!(check(&rep, "iothub-https").via_proxy);
    assert_eq!(check(&rep, "iothub-https").status, "pass");
    let rep = run_env(
        hub.args_real_ports(10.0),
        &[("HTTPS_PROXY", &url), ("NO_PROXY", ".azure-devices.net")],
    )
    .await
    .json();
    assert!(
        !check(&rep, "iothub-https").via_proxy,
        "NO_PROXY exempts the hub"
    );
    assert_eq!(check(&rep, "iothub-https").status, "pass");
}

/// The name on the `https://` proxy's certificate (resolved with `--resolve`, never by DNS).
const TLS_PROXY: &str = "proxy.corp.test";
const TLS_PROXY_CA: &str = "edgeprobe proxy test CA";

/// An `https://` proxy: stunnel speaking TLS with a certificate for [`TLS_PROXY`] from its
/// own CA, forwarding to squid. Both are killed on drop.
struct TlsProxy {
    stunnel: Server,
    squid: Server,
    ca: Ca,
}

impl TlsProxy {
    fn start(hub: &Hub) -> TlsProxy {
        let squid = thirdparty::squid(&options(hub, false));
        let ca = Ca::new(TLS_PROXY_CA);
        let stunnel = thirdparty::stunnel(&ca.leaf(&[TLS_PROXY], Validity::Valid), squid.addr);
        TlsProxy { stunnel, squid, ca }
    }

    fn url(&self) -> String {
        format!("https://{TLS_PROXY}:{}", self.stunnel.addr.port())
    }

    /// A run through the proxy. The trust bundle holds the hub's CA and, when
    /// `trust_proxy`, the proxy's: `--trust-bundle` is the one set of extra roots for both.
    fn args(&self, hub: &Hub, trust_proxy: bool) -> Vec<String> {
        let mut args = hub.args_real_ports(10.0);
        if trust_proxy {
            let bundle = self.stunnel.dir.path().join("bundle.pem");
            std::fs::write(&bundle, format!("{}{}", hub.hub.ca_pem, self.ca.cert_pem)).unwrap();
            set_arg(&mut args, "--trust-bundle", &bundle.display().to_string());
        }
        args.extend([
            "--proxy".into(),
            self.url(),
            "--resolve".into(),
            format!("{TLS_PROXY}:{}", self.stunnel.addr.ip()),
        ]);
        args
    }

    /// squid's CONNECT lines so far.
    fn connects(log: &str) -> Vec<&str> {
        log.lines().filter(|l| l.contains(" CONNECT ")).collect()
    }
}

fn phase_names(c: &edgeprobe_report::json::Check) -> Vec<&str> {
    c.phases.iter().map(|p| p.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_proxy_is_reached_over_tls_and_carries_the_tunnels_inside_it() {
    if !fixtures::needs_root() {
        return;
    }
    let hub = Hub::start_real_ports(HubFaults::default(), "127.0.20.7").await;
    let proxy = TlsProxy::start(&hub);
    let r = run(proxy.args(&hub, true)).await;
    let rep = r.json();
    for id in PROXIED {
        let c = check(&rep, id);
        assert_eq!(c.status, "pass", "{id}: {}", c.message);
        assert!(c.via_proxy, "{id} should go through the proxy");
        // The proxy's TLS belongs to the proxy phase: the one `tls` phase is the hub's.
        let names = phase_names(c);
        assert_eq!(
            names[..4],
            ["dns", "tcp", "proxy", "tls"],
            "{id}: {names:?}"
        );
        assert_eq!(
            names.iter().filter(|n| **n == "tls").count(),
            1,
            "{id}: {names:?}"
        );
        let proxy_phase = &c.phases[2];
        assert_eq!(proxy_phase.status, "ok", "{id}");
        assert_eq!(proxy_phase.detail["proxy"], proxy.url(), "{id}");
        assert_eq!(
            proxy_phase.detail["tls"], "TLS 1.3",
            "{id}: {:?}",
            proxy_phase.detail
        );
        assert_eq!(proxy_phase.detail["status"], 200, "{id}");
        assert_eq!(proxy_phase.detail["connect"], format!("{HUB}:443"), "{id}");
        let tls = &c.phases[3];
        assert_eq!(tls.detail["sni"], HUB, "{id}");
        let issuer = tls.detail["chain"][0]["issuer"]
            .as_str()
            .unwrap_or_default();
        assert!(
            !issuer.is_empty() && !issuer.contains(TLS_PROXY_CA),
            "{id}: the tls phase shows the hub's chain, not the proxy's: {issuer:?}"
        );
    }
    for id in ["iothub-mqtt", "iothub-amqp"] {
        let c = check(&rep, id);
        assert_eq!(c.status, "pass", "{id}: {}", c.message);
        assert!(!c.via_proxy, "{id} must not use the proxy");
    }
    assert_eq!(rep.context.proxy.as_deref(), Some(proxy.url().as_str()));
    assert_eq!(r.code(), 0, "{}", r.stdout());
    // The tunnels really crossed stunnel's TLS into squid: one CONNECT per proxied check.
    let log = proxy
        .squid
        .log_once("access.log", "three CONNECTs to the hub", |log| {
            TlsProxy::connects(log)
                .iter()
                .filter(|l| l.contains(&format!("CONNECT {HUB}:443")))
                .count()
                >= PROXIED.len()
        });
    assert!(
        TlsProxy::connects(&log)
            .iter()
            .all(|l| l.contains(&format!("CONNECT {HUB}:443"))),
        "squid access log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_proxy_whose_ca_is_not_trusted_fails_at_the_proxy_not_at_the_hub() {
    if !fixtures::needs_root() {
        return;
    }
    let hub = Hub::start_real_ports(HubFaults::default(), "127.0.20.8").await;
    let proxy = TlsProxy::start(&hub);
    let r = run(proxy.args(&hub, false)).await;
    let rep = r.json();
    for id in PROXIED {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "proxy_unreachable"),
            "{id}: {}",
            c.message
        );
        assert!(c.via_proxy, "{id}");
        for needle in [
            "TLS to the proxy",
            proxy.url().as_str(),
            "not trusted",
            TLS_PROXY_CA,
        ] {
            assert!(
                c.message.contains(needle),
                "{id}: {needle:?} not in {}",
                c.message
            );
        }
        assert!(
            !c.message.contains(HUB),
            "{id} blames the hub: {}",
            c.message
        );
        assert!(
            c.fix.as_deref().unwrap_or_default().contains("trust"),
            "{id}: the fix should point at the proxy's certificate: {:?}",
            c.fix
        );
        // It never got past the proxy: no TLS with the hub was tried.
        assert_eq!(phase_names(c), ["dns", "tcp", "proxy"], "{id}");
        let proxy_phase = &c.phases[2];
        assert_eq!(proxy_phase.status, "fail", "{id}");
        assert!(
            proxy_phase.detail["tls_error"]
                .as_str()
                .is_some_and(|e| e.contains("UnknownIssuer")),
            "{id}: {:?}",
            proxy_phase.detail
        );
    }
    for id in ["iothub-mqtt", "iothub-amqp"] {
        assert_eq!(check(&rep, id).status, "pass", "{id} never uses the proxy");
    }
    assert_eq!(r.code(), 1, "{}", r.stdout());
    // stunnel accepted the connections and forwarded nothing to squid, which never got a
    // request.
    let log = proxy
        .stunnel
        .log_once("stunnel.log", "every connection closed", |log| {
            let closed = log.matches("Connection reset/closed").count();
            closed >= PROXIED.len() && closed == log.matches("accepted connection").count()
        });
    assert!(
        log.lines()
            .filter(|l| l.contains("Connection reset/closed"))
            .all(|l| l.contains(" 0 byte(s) sent to socket")),
        "stunnel log:\n{log}"
    );
    let log =
        std::fs::read_to_string(proxy.squid.dir.path().join("access.log")).unwrap_or_default();
    assert!(
        TlsProxy::connects(&log).is_empty(),
        "squid access log:\n{log}"
    );
    // The text report names the proxy as what failed.
    let mut args = proxy.args(&hub, false);
    set_arg(&mut args, "--output", "text");
    let text = run(args).await.stdout();
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("FAIL iothub-https "))
        .nth(1)
        .unwrap_or_default();
    assert!(
        line.contains("TLS with it failed")
            && line.contains(&format!("TLS to the proxy {}", proxy.url())),
        "{text}"
    );
}

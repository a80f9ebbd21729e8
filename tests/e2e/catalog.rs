//! Catalog v2 against real listeners: the tcp and tls probe kinds, header, CONNACK and TLS
//! expectations, a check's own timeout and address family, and trust roots like the
//! runtime's (the OS store on the host, the Mozilla set for modules).

use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use fixtures::{HubFaults, PortFault};

use crate::support::{assert_check, check, run, run_env, Hub};

/// Writes `text` as the only catalog file of a new directory.
fn catalog(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.toml"), format!("version = 2\n{text}")).unwrap();
    dir
}

fn check_toml(id: &str, protocol: &str, host: &str, port: u16, more: &str) -> String {
    format!(
        "[[check]]\nid = \"{id}\"\ntitle = \"{id}\"\nendpoint = \"device\"\nprotocol = \"{protocol}\"\nhost = \"{host}\"\nport = {port}\n{more}\n"
    )
}

/// The hub's arguments, on the host, with a catalog directory and an `--only` selection.
fn args_with(hub: &Hub, dir: &Path, only: &str) -> Vec<String> {
    let mut args = hub.args(8.0);
    args.extend(
        [
            "--vantage",
            "host",
            "--checks-dir",
            &dir.display().to_string(),
            "--only",
            only,
        ]
        .map(String::from),
    );
    args
}

/// A line server: sends a banner on connect, then answers each line with `PONG <line>`; a
/// second listener accepts and says nothing.
async fn line_server() -> (u16, u16) {
    let talker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ports = (
        talker.local_addr().unwrap().port(),
        silent.local_addr().unwrap().port(),
    );
    tokio::spawn(async move {
        while let Ok((mut s, _)) = talker.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"HISTORIAN 2.1 ready\r\n").await;
                let (r, mut w) = s.split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = w.write_all(format!("PONG {line}\r\n").as_bytes()).await;
                }
            });
        }
    });
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    ports
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_checks_prove_a_port_and_judge_what_the_server_says() {
    let hub = Hub::start(HubFaults::default()).await;
    let (talker, silent) = line_server().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = catalog(
        &[
            check_toml("plain", "tcp", "127.0.0.1", talker, ""),
            check_toml(
                "banner",
                "tcp",
                "127.0.0.1",
                talker,
                "[check.expect]\nbody_matches = \"^HISTORIAN 2\\\\.\"",
            ),
            check_toml(
                "query",
                "tcp",
                "127.0.0.1",
                talker,
                "send = \"status\\r\\n\"\n[check.expect]\nbody_matches = \"PONG status\"",
            ),
            check_toml(
                "wrong-banner",
                "tcp",
                "127.0.0.1",
                talker,
                "[check.expect]\nbody_not_matches = \"HISTORIAN\"",
            ),
            check_toml(
                "silent",
                "tcp",
                "127.0.0.1",
                silent,
                "timeout = 0.5\n[check.expect]\nbody_matches = \"ready\"",
            ),
            check_toml("closed", "tcp", "127.0.0.1", closed, ""),
        ]
        .concat(),
    );
    let r = run(args_with(
        &hub,
        dir.path(),
        "plain,banner,query,wrong-banner,silent,closed",
    ))
    .await;
    let rep = r.json();
    for (id, status, reason, words) in [
        ("plain", "pass", "ok", "accepted a TCP connection"),
        ("banner", "pass", "ok", "HISTORIAN 2.1 ready"),
        ("query", "pass", "ok", "PONG status"),
        (
            "wrong-banner",
            "fail",
            "expectation_failed",
            "which the check forbids",
        ),
        ("silent", "fail", "protocol_timeout", "sent nothing"),
        ("closed", "fail", "tcp_refused", ""),
    ] {
        let c = assert_check(&rep, id, status, reason, words);
        assert_eq!(c.protocol, "tcp");
    }
    // The silent server's check gave up at its own timeout, not at the run's 8 s deadline.
    let silent_ms = check(&rep, "silent").duration_ms;
    assert!(silent_ms < 4000.0, "silent took {silent_ms} ms");
    // Checks named with --only that fail make the device not ready; those that pass do not.
    let mut blocking = rep.readiness.blocking.clone();
    blocking.sort();
    assert_eq!(blocking, ["closed", "silent", "wrong-banner"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_checks_and_tls_expectations_judge_the_handshake() {
    let hub = Hub::start(HubFaults::default()).await;
    // The hub's MQTT port is a TLS port like any other: 8883, mapped by --connect-to.
    let host = "testhub.azure-devices.net";
    let dir = catalog(
        &[
            check_toml("tls-any", "tls", host, 8883, ""),
            check_toml(
                "tls-strict",
                "tls",
                host,
                8883,
                "[check.expect]\ntls_min_version = \"1.3\"\nissuer_matches = \"edgeprobe test root CA\"\nsan = \"testhub.azure-devices.net\"",
            ),
            check_toml(
                "tls-wrong-issuer",
                "tls",
                host,
                8883,
                "[check.expect]\nissuer_matches = \"DigiCert\"",
            ),
            check_toml(
                "tls-wrong-san",
                "tls",
                host,
                8883,
                "[check.expect]\nsan = \"otherhub.azure-devices.net\"",
            ),
            check_toml(
                "https-headers",
                "https",
                host,
                443,
                "[check.expect]\nstatus = [401]\nheader_matches = { iothub-errorcode = \"Unauthorized\" }",
            ),
            check_toml(
                "https-no-such-header",
                "https",
                host,
                443,
                "[check.expect]\nheader_matches = { x-portal = \".\" }",
            ),
            check_toml(
                "https-forbidden-header",
                "https",
                host,
                443,
                "[check.expect]\nheader_not_matches = { iothub-errorcode = \"Unauthorized\" }",
            ),
            check_toml("mqtt-wants-0", "mqtt", host, 8883, "[check.expect]\nconnack = [0]"),
            check_toml("mqtt-wants-5", "mqtt", host, 8883, "[check.expect]\nconnack = [5]"),
        ]
        .concat(),
    );
    let rep = run(args_with(&hub, dir.path(), "tls-*,https-*,mqtt-*"))
        .await
        .json();
    for (id, status, reason, words) in [
        ("tls-any", "pass", "ok", "completed a TLS 1.3 handshake"),
        ("tls-strict", "pass", "ok", "edgeprobe test root CA"),
        (
            "tls-wrong-issuer",
            "fail",
            "expectation_failed",
            "issued by \"DigiCert\"",
        ),
        (
            "tls-wrong-san",
            "fail",
            "expectation_failed",
            "does not list otherhub.azure-devices.net",
        ),
        ("https-headers", "pass", "ok", "401"),
        (
            "https-no-such-header",
            "fail",
            "expectation_failed",
            "no x-portal header",
        ),
        (
            "https-forbidden-header",
            "fail",
            "expectation_failed",
            "which the check forbids",
        ),
        (
            "mqtt-wants-0",
            "fail",
            "expectation_failed",
            "expects CONNACK 0",
        ),
        ("mqtt-wants-5", "pass", "ok", "CONNACK 5"),
    ] {
        assert_check(&rep, id, status, reason, words);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captive_portal_s_200_and_a_web_filter_s_403_fail_an_https_check_that_expects_the_service(
) {
    // The service: a plant API that answers 200 with its own JSON. Its expectations: status
    // 200, a JSON content type, no login or block words.
    let expect = "[check.expect]\nstatus = [200]\nheader_matches = { content-type = \"json\" }\nbody_not_matches = \"(?i)log ?in|blocked\"";
    let dir = catalog(&check_toml(
        "plant-api",
        "https",
        "testhub.azure-devices.net",
        443,
        expect,
    ));
    for (fault, words) in [
        // A captive portal answers 200: the status alone would pass it.
        (
            PortFault::WrongService,
            "its content-type header \"text/html\" does not match",
        ),
        (PortFault::BlockPage, "the check expects HTTP 200"),
    ] {
        let hub = Hub::start(HubFaults {
            https: fault,
            ..HubFaults::default()
        })
        .await;
        let r = run(args_with(&hub, dir.path(), "plant-api")).await;
        let rep = r.json();
        let c = check(&rep, "plant-api");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "expectation_failed"),
            "{fault:?}: {}",
            c.message
        );
        assert!(c.message.contains(words), "{fault:?}: {}", c.message);
        assert!(c
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("captive portal")));
        assert_eq!(r.code(), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_family_puts_the_preferred_family_first() {
    let hub = Hub::start(HubFaults::default()).await;
    // Listening on IPv4 only; the name resolves to ::1 and 127.0.0.1.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let dir = catalog(
        &[
            check_toml(
                "v4-first",
                "tcp",
                "dual.plant.test",
                port,
                "ip_family = \"ipv4\"",
            ),
            check_toml(
                "v6-first",
                "tcp",
                "dual.plant.test",
                port,
                "ip_family = \"ipv6\"",
            ),
        ]
        .concat(),
    );
    let mut args = args_with(&hub, dir.path(), "v4-first,v6-first");
    args.extend(
        [
            "--resolve",
            "dual.plant.test:[::1]",
            "--resolve",
            "dual.plant.test:127.0.0.1",
        ]
        .map(String::from),
    );
    let rep = run(args).await.json();
    let first_attempt = |id: &str| -> String {
        let c = check(&rep, id);
        let tcp = c
            .phases
            .iter()
            .find(|p| p.name == "tcp")
            .expect("a tcp phase");
        tcp.detail["attempts"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(first_attempt("v4-first"), format!("127.0.0.1:{port}"));
    assert_eq!(check(&rep, "v4-first").status, "pass");
    assert_eq!(first_attempt("v6-first"), format!("[::1]:{port}"));
    // IPv6 was preferred and did not connect; IPv4 did: said, not hidden.
    let v6 = check(&rep, "v6-first");
    assert_eq!(
        (v6.status.as_str(), v6.reason.as_str()),
        ("warn", "ipv6_fallback")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trust_roots_are_the_runtime_s_and_a_root_only_one_side_trusts_is_called_out() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // An OS store without the hub's root: another CA's certificate only.
    let other_ca = fixtures::pki::Ca::new("some other root CA");
    let without = dir.path().join("os-without.pem");
    std::fs::write(&without, &other_ca.cert_pem).unwrap();
    // An OS store with it, as when a TLS-inspection CA is installed on the host only.
    let with = dir.path().join("os-with.pem");
    std::fs::copy(&hub.bundle, &with).unwrap();

    // No --trust-bundle: the hub's root must come from the root set.
    let mut args = hub.args(8.0);
    crate::support::drop_arg(&mut args, "--trust-bundle");
    args.extend(["--vantage", "host", "--only", "iothub-*"].map(String::from));
    // SSL_CERT_FILE is the OS store (as OpenSSL reads it); an empty SSL_CERT_DIR keeps
    // this machine's /etc/ssl/certs out.
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    let env_without = [
        ("SSL_CERT_FILE", without.to_str().unwrap()),
        ("SSL_CERT_DIR", empty),
    ];
    let env_with = [
        ("SSL_CERT_FILE", with.to_str().unwrap()),
        ("SSL_CERT_DIR", empty),
    ];

    // Host default = the OS store. Without the root: untrusted, the root named.
    let r = run_env(args.clone(), &env_without).await;
    let rep = r.json();
    assert!(
        rep.context
            .trust_roots
            .as_deref()
            .is_some_and(|t| t.starts_with("os (1 roots)")),
        "{:?}",
        rep.context.trust_roots
    );
    let c = check(&rep, "iothub-https");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "tls_untrusted"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("edgeprobe test root CA"),
        "{}",
        c.message
    );
    assert!(c.message.contains("roots: os"), "{}", c.message);
    assert_eq!(r.code(), 1);

    // With the root in the OS store: it works on the host, but the Mozilla set the module
    // images carry lacks it: edgeHub would refuse the hub. A warning that names the root.
    let rep = run_env(args.clone(), &env_with).await.json();
    for id in ["iothub-mqtt", "iothub-amqp", "iothub-https"] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("warn", "tls_roots_differ"),
            "{id}: {}",
            c.message
        );
        assert!(
            c.message.contains("not with the Mozilla root set"),
            "{}",
            c.message
        );
        assert!(
            c.message.contains("edgeprobe test root CA"),
            "{}",
            c.message
        );
        let tls = c.phases.iter().find(|p| p.name == "tls").unwrap();
        assert_eq!(tls.detail["roots"], "os (1 roots)");
        assert_eq!(tls.detail["other_roots"]["set"], "mozilla");
    }

    // --roots mozilla, as a module sees it: untrusted, and the OS store's trust said.
    let mut mozilla = args.clone();
    mozilla.extend(["--roots", "mozilla"].map(String::from));
    let rep = run_env(mozilla, &env_with).await.json();
    assert!(rep
        .context
        .trust_roots
        .as_deref()
        .is_some_and(|t| t.starts_with("mozilla (")));
    let c = check(&rep, "iothub-https");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "tls_untrusted"),
        "{}",
        c.message
    );
    assert!(
        c.message
            .contains("the OS store does trust \"CN=edgeprobe test root CA"),
        "{}",
        c.message
    );

    // bundle-only with the bundle: trusted, nothing to compare with.
    let mut bundle_only = args;
    bundle_only.extend(
        [
            "--roots",
            "bundle-only",
            "--trust-bundle",
            hub.bundle.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let rep = run_env(bundle_only, &env_without).await.json();
    assert_eq!(
        rep.context.trust_roots.as_deref(),
        Some("bundle-only + trust bundle (1)")
    );
    assert_eq!(check(&rep, "iothub-https").status, "pass");
}

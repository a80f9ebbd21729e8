//! One test per fault mode: the check that meets the fault reports the right status and
//! reason, the others still pass, and the UpstreamProtocol verdict follows.

use fixtures::{HubFaults, PortFault, WsFault};

use crate::support::{check, drop_arg, run, set_arg, Hub, WRONG_KEY};

async fn report(faults: HubFaults, timeout: f64) -> (edgeprobe_report::json::JsonReport, i32) {
    let hub = Hub::start(faults).await;
    let r = run(hub.args(timeout)).await;
    (r.json(), r.code())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_hub_passes_every_protocol_with_the_device_authenticated() {
    let (rep, code) = report(HubFaults::default(), 10.0).await;
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
            ("pass", "ok"),
            "{id}: {}",
            c.message
        );
    }
    for id in [
        "iothub-mqtt",
        "iothub-amqp",
        "iothub-mqtt-ws",
        "iothub-amqp-ws",
    ] {
        assert_eq!(check(&rep, id).auth.as_deref(), Some("ok"), "{id}");
    }
    assert!(rep
        .upstream_protocols
        .values()
        .all(|v| v.works() && v.auth == "ok"));
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("Amqp")
    );
    assert!(!rep.recommendation.change_needed);
    assert_eq!(code, 0);
    // Every phase is timed and the layers come in order.
    let names: Vec<&str> = check(&rep, "iothub-amqp-ws")
        .phases
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["dns", "tcp", "tls", "ws", "protocol", "auth"]);
    let tls = check(&rep, "iothub-mqtt")
        .phases
        .iter()
        .find(|p| p.name == "tls")
        .unwrap();
    assert!(tls.detail["version"]
        .as_str()
        .unwrap()
        .starts_with("TLS 1."));
    assert_eq!(
        tls.detail["chain"][0]["issuer"].as_str().unwrap(),
        "CN=edgeprobe test root CA, O=edgeprobe fixtures"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_mqtt_port_is_refused_and_amqp_is_still_recommended() {
    let faults = HubFaults {
        mqtt: PortFault::Closed,
        ..HubFaults::default()
    };
    let (rep, code) = report(faults, 10.0).await;
    let c = check(&rep, "iothub-mqtt");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "tcp_refused")
    );
    assert!(c.fix.as_deref().unwrap().contains("8883"));
    assert!(!rep.upstream_protocols["Mqtt"].works());
    assert!(rep.upstream_protocols["Amqp"].works());
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("Amqp")
    );
    // Mqtt is not required: the device can still run on Amqp.
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_that_accepts_and_stalls_is_a_tls_timeout() {
    let faults = HubFaults {
        mqtt: PortFault::StallAfterAccept,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 2.0).await;
    let c = check(&rep, "iothub-mqtt");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "tls_timeout")
    );
    assert_eq!(c.phases.last().unwrap().name, "tls");
}

#[tokio::test(flavor = "multi_thread")]
async fn silence_after_tls_is_a_protocol_timeout_for_mqtt_and_amqp() {
    let faults = HubFaults {
        mqtt: PortFault::StallAfterTls,
        amqp: PortFault::StallAfterTls,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 2.0).await;
    for id in ["iothub-mqtt", "iothub-amqp"] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "protocol_timeout"),
            "{id}: {}",
            c.message
        );
        // TLS worked: a TLS-only checker would have passed this port.
        assert_eq!(
            c.phases.iter().find(|p| p.name == "tls").unwrap().status,
            "ok"
        );
    }
    assert!(!rep.upstream_protocols["Mqtt"].works());
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("AmqpWs")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_instead_of_tls_is_not_tls_and_says_what_answered() {
    let faults = HubFaults {
        mqtt: PortFault::PlainHttp,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 5.0).await;
    let c = check(&rep, "iothub-mqtt");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "tls_not_tls")
    );
    assert!(c.message.contains("HTTP/1.1 400"), "{}", c.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_server_on_8883_is_the_wrong_service_not_a_pass() {
    let faults = HubFaults {
        mqtt: PortFault::WrongService,
        amqp: PortFault::WrongService,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 5.0).await;
    for id in ["iothub-mqtt", "iothub-amqp"] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "wrong_service"),
            "{id}: {}",
            c.message
        );
    }
    assert!(!rep.upstream_protocols["Mqtt"].works());
    assert!(!rep.upstream_protocols["Amqp"].works());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captive_portal_on_443_is_caught_by_the_https_check() {
    let faults = HubFaults {
        https: PortFault::WrongService,
        ..HubFaults::default()
    };
    let (rep, code) = report(faults, 5.0).await;
    let c = check(&rep, "iothub-https");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "wrong_service")
    );
    assert!(c.message.contains("Guest Wi-Fi login"), "{}", c.message);
    assert!(c.message.contains("HTTP 200"), "{}", c.message);
    // HTTPS to IoT Hub is required (aziot-edged needs it).
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_interception_names_the_untrusted_issuer() {
    let faults = HubFaults {
        https: PortFault::UntrustedCert,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 5.0).await;
    for id in ["iothub-https", "iothub-mqtt-ws", "iothub-amqp-ws"] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "tls_untrusted"),
            "{id}"
        );
        assert!(c.message.contains("XYZ_Access_SSLInspect"), "{}", c.message);
        assert!(c.fix.as_deref().unwrap().contains("trust_bundle_cert"));
    }
    assert!(!rep.upstream_protocols["MqttWs"].works());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_name_is_a_name_mismatch() {
    let faults = HubFaults {
        amqp: PortFault::WrongName,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 5.0).await;
    let c = check(&rep, "iothub-amqp");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "tls_name_mismatch")
    );
    assert!(c.message.contains("portal.example.net"), "{}", c.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_is_tls_expired_and_mentions_the_clock() {
    let faults = HubFaults {
        mqtt: PortFault::ExpiredCert,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 5.0).await;
    let c = check(&rep, "iothub-mqtt");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "tls_expired")
    );
    assert!(c.fix.as_deref().unwrap().contains("clock"));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_trust_bundle_the_hub_is_untrusted() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = hub.args(5.0);
    drop_arg(&mut args, "--trust-bundle");
    let rep = run(args).await.json();
    let c = check(&rep, "iothub-mqtt");
    assert_eq!(c.reason, "tls_untrusted");
    assert!(
        c.message.contains("edgeprobe test root CA"),
        "{}",
        c.message
    );
}

#[tokio::test(flavor = "multi_thread")]
/// The path works and the device cannot connect: a failure, not a warning (issue 12).
async fn refused_credentials_mean_the_path_works_and_the_device_is_not_ready() {
    let faults = HubFaults {
        reject_credentials: true,
        ..HubFaults::default()
    };
    let (rep, code) = report(faults, 10.0).await;
    for id in [
        "iothub-mqtt",
        "iothub-amqp",
        "iothub-mqtt-ws",
        "iothub-amqp-ws",
    ] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("fail", "auth_rejected"),
            "{id}: {}",
            c.message
        );
        assert_eq!(c.auth.as_deref(), Some("rejected"));
    }
    for v in rep.upstream_protocols.values() {
        assert!(v.works() && v.auth == "rejected");
    }
    assert!(!rep.ready);
    assert_eq!(rep.readiness.reason, "auth_rejected");
    assert!(
        rep.recommendation
            .why
            .contains("refused the device's credentials")
            && !rep.recommendation.change_needed,
        "the advice is about the credentials, not a protocol switch: {:?}",
        rep.recommendation
    );
    assert_eq!(code, 1, "a device whose credentials are refused cannot run");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_device_key_is_rejected_by_the_hub() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = hub.args(10.0);
    set_arg(&mut args, "--sas-key", WRONG_KEY);
    let r = run(args).await;
    let rep = r.json();
    assert_eq!(check(&rep, "iothub-mqtt").reason, "auth_rejected");
    assert_eq!(check(&rep, "iothub-amqp").reason, "auth_rejected");
    assert_eq!(r.code(), 1, "a wrong key makes the device not ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_auth_proves_every_path_from_the_services_refusal() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = hub.args(10.0);
    drop_arg(&mut args, "--sas-key");
    args.push("--no-auth".into());
    let rep = run(args).await.json();
    for id in [
        "iothub-mqtt",
        "iothub-amqp",
        "iothub-mqtt-ws",
        "iothub-amqp-ws",
    ] {
        let c = check(&rep, id);
        assert_eq!(c.status, "pass", "{id}: {}", c.message);
        assert_eq!(c.auth.as_deref(), Some("untested"));
    }
    assert!(check(&rep, "iothub-mqtt").message.contains("CONNACK 5"));
    assert!(rep
        .upstream_protocols
        .values()
        .all(|v| v.works() && v.auth == "untested"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_upgrade_and_a_wrong_subprotocol_are_named() {
    let faults = HubFaults {
        mqtt_ws: WsFault::RefuseUpgrade,
        amqp_ws: WsFault::WrongSubprotocol,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 5.0).await;
    let m = check(&rep, "iothub-mqtt-ws");
    assert_eq!(
        (m.status.as_str(), m.reason.as_str()),
        ("fail", "ws_rejected")
    );
    assert!(m.message.contains("403"), "{}", m.message);
    let a = check(&rep, "iothub-amqp-ws");
    assert_eq!(
        (a.status.as_str(), a.reason.as_str()),
        ("fail", "ws_subprotocol")
    );
    assert!(a.message.contains("AMQPWSB10"), "{}", a.message);
    assert!(!rep.upstream_protocols["MqttWs"].works() && !rep.upstream_protocols["AmqpWs"].works());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_configured_protocol_is_judged_and_the_fix_is_named() {
    let faults = HubFaults {
        amqp: PortFault::Closed,
        mqtt: PortFault::Closed,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let mut args = hub.args(5.0);
    args.extend(["--upstream-protocol".into(), "Amqp".into()]);
    let r = run(args).await;
    let rep = r.json();
    let c = check(&rep, "config-upstream-protocol");
    assert_eq!(c.status, "fail");
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains("UpstreamProtocol=AmqpWs"));
    assert_eq!(
        rep.recommendation.upstream_protocol.as_deref(),
        Some("AmqpWs")
    );
    assert!(rep.recommendation.change_needed);
    assert_eq!(r.code(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skewed_service_clock_is_reported_as_clock_skew() {
    let faults = HubFaults {
        date_skew_secs: 2 * 3600,
        ..HubFaults::default()
    };
    let (rep, code) = report(faults, 10.0).await;
    let c = check(&rep, "device-clock");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("warn", "clock_skew"),
        "{}",
        c.message
    );
    assert!(c.message.contains("2.0 hours behind"), "{}", c.message);
    assert!(c.fix.as_deref().unwrap().contains("NTP"));
    assert_eq!(code, 0, "a skewed clock is a warning");
    let (rep, _) = report(HubFaults::default(), 10.0).await;
    assert_eq!(check(&rep, "device-clock").status, "pass");
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_addresses_that_do_not_connect_are_a_warning_when_ipv4_works() {
    if !fixtures::needs_root() {
        return;
    }
    // The hub answers on IPv4 only; the name also resolves to an IPv6 address where nothing listens.
    let hub = Hub::start_real_ports(HubFaults::default(), "127.0.20.9").await;
    let mut args = hub.args_real_ports(5.0);
    let i = args.iter().position(|a| a == "--resolve").unwrap();
    args[i + 1] = format!("{}:[::1]", crate::support::HUB);
    args.extend([
        "--resolve".into(),
        format!("{}:127.0.20.9", crate::support::HUB),
    ]);
    let rep = run(args).await.json();
    let c = check(&rep, "iothub-mqtt");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("warn", "ipv6_fallback"),
        "{}",
        c.message
    );
    let tcp = c.phases.iter().find(|p| p.name == "tcp").unwrap();
    assert_eq!(tcp.status, "warn");
    assert_eq!(tcp.detail["address"], "127.0.20.9:8883");
    assert!(
        rep.upstream_protocols["Mqtt"].works(),
        "the protocol still works over IPv4"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_x509_device_authenticates_with_its_client_certificate() {
    let hub = crate::support::Hub::start_x509().await;
    let ca = hub
        .hub
        .device_ca
        .as_ref()
        .expect("the hub accepts X.509 devices");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, leaf: &fixtures::pki::Leaf| {
        let cert = dir.path().join(format!("{name}.pem"));
        let key = dir.path().join(format!("{name}.key.pem"));
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        (cert.display().to_string(), key.display().to_string())
    };
    for (cn, want_auth, want_reason) in [
        (crate::support::DEVICE, "ok", "ok"),
        ("another-device", "rejected", "auth_rejected"),
    ] {
        let (cert, key) = write(cn, &ca.client_leaf(cn));
        let mut args = hub.args(5.0);
        drop_arg(&mut args, "--sas-key");
        args.extend([
            "--x509-cert".into(),
            cert,
            "--x509-key".into(),
            key,
            "--only".into(),
            "iothub-mqtt,iothub-amqp,iothub-mqtt-ws,iothub-amqp-ws".into(),
        ]);
        let r = run(args).await;
        let rep = r.json();
        // MQTT: CONNACK for the certificate's device; AMQP: no token at all, the telemetry
        // link is authorized (or refused) by the certificate alone; over the WebSocket too
        // (the certificate is in the TLS under the upgrade).
        for id in [
            "iothub-mqtt",
            "iothub-amqp",
            "iothub-mqtt-ws",
            "iothub-amqp-ws",
        ] {
            let c = check(&rep, id);
            assert_eq!(
                (c.auth.as_deref(), c.reason.as_str()),
                (Some(want_auth), want_reason),
                "{cn} {id}: {}",
                c.message
            );
        }
        let amqp = check(&rep, "iothub-amqp");
        assert!(
            amqp.phases
                .iter()
                .all(|p| p.detail.get("cbs_status").is_none()),
            "no CBS token with X.509: {:?}",
            amqp.phases
        );
        if want_auth == "ok" {
            assert!(
                amqp.message.contains("certificate accepted"),
                "{}",
                amqp.message
            );
        }
        assert!(
            !r.stdout().contains("PRIVATE KEY"),
            "the private key never reaches the output"
        );
    }
}

/// Regression: a self-signed server certificate (CA:TRUE) was `tls_failed`
/// ("CaUsedAsEndEntity"); it is untrusted, and the message names its subject.
#[tokio::test(flavor = "multi_thread")]
async fn a_self_signed_certificate_is_untrusted_and_named() {
    let faults = HubFaults {
        mqtt: PortFault::SelfSigned,
        ..HubFaults::default()
    };
    let (rep, _) = report(faults, 5.0).await;
    let c = check(&rep, "iothub-mqtt");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "tls_untrusted"),
        "{}",
        c.message
    );
    assert!(c.message.contains("self-signed appliance"), "{}", c.message);
}

/// Regression: IoT Hub's 401 headers followed by an endless chunked body was
/// `protocol_timeout`; the headers decide (IoT Hub answered: the HTTPS path works).
#[tokio::test(flavor = "multi_thread")]
async fn iot_hub_headers_decide_even_when_the_body_never_ends() {
    let faults = HubFaults {
        https: PortFault::EndlessBody,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let mut args = hub.args(6.0);
    args.extend(["--only".into(), "iothub-https".into()]);
    let started = std::time::Instant::now();
    let r = run(args).await;
    let rep = r.json();
    let c = check(&rep, "iothub-https");
    assert_ne!(c.reason.as_str(), "protocol_timeout", "{}", c.message);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("pass", "ok"),
        "{}",
        c.message
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(6));
}

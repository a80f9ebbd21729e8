//! Golden tests: a fixed report renders to exactly the text in `tests/golden/`. Run with
//! `UPDATE_GOLDEN=1` to rewrite the files after an intended change, and review the diff.

use std::time::{Duration, UNIX_EPOCH};

use edgeprobe_core::catalog::{CheckDef, Target};
use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{
    AuthState, Endpoint, Outcome, Phase, PhaseName, PhaseStatus, Protocol, Reason, Status, Vantage,
};
use edgeprobe_iotedge::verdict::{judge, UpstreamProtocol};
use edgeprobe_report::json::{JsonRenderer, JsonReport};
use edgeprobe_report::text::TextRenderer;
use edgeprobe_report::{Renderer, RunContext, RunReport};

fn phase(
    name: PhaseName,
    status: PhaseStatus,
    started: u64,
    ms: u64,
    detail: &[(&str, &str)],
) -> Phase {
    Phase {
        name,
        status,
        started: Duration::from_millis(started),
        duration: Duration::from_millis(ms),
        detail: detail
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect(),
    }
}

fn result(protocol: Protocol, outcome: Outcome) -> CheckResult {
    let port = protocol.default_port();
    CheckResult {
        def: CheckDef {
            id: format!("iothub-{protocol}"),
            title: format!("IoT Hub over {} ({})", protocol.title(), port.unwrap()),
            endpoint: Endpoint::Iothub,
            protocol,
            host: "{iothub_hostname}".into(),
            port,
            required: protocol == Protocol::Https,
            requires: Vec::new(),
            unless: Vec::new(),
            source: "builtin:iothub.toml".into(),
        },
        target: Some(Target {
            host: "myhub.azure-devices.net".into(),
            port,
        }),
        vantage: Vantage::Host,
        outcome,
        duration: Duration::from_millis(40),
    }
}

fn report() -> RunReport {
    let dns = phase(PhaseName::Dns, PhaseStatus::Ok, 0, 3, &[("a", "20.1.2.3")]);
    let tcp_ok = phase(
        PhaseName::Tcp,
        PhaseStatus::Ok,
        3,
        12,
        &[("address", "20.1.2.3:5671")],
    );
    let tls_ok = phase(
        PhaseName::Tls,
        PhaseStatus::Ok,
        15,
        20,
        &[("version", "TLS 1.3")],
    );

    let mut mqtt = Outcome::new(Status::Fail, Reason::TcpTimeout, "no answer from 20.1.2.3 on port 8883 within 15.0 s: a firewall is dropping port 8883")
        .with_fix("allow outbound TCP 8883 to myhub.azure-devices.net in the firewall — or use UpstreamProtocol MqttWs over 443");
    mqtt.phases = vec![
        dns.clone(),
        phase(PhaseName::Tcp, PhaseStatus::Fail, 3, 15000, &[]),
    ];

    let mut amqp = Outcome::new(
        Status::Pass,
        Reason::Ok,
        "IoT Hub accepted the device over AMQP (token accepted, telemetry link attached)",
    );
    amqp.auth = Some(AuthState::Ok);
    amqp.phases = vec![
        dns.clone(),
        tcp_ok.clone(),
        tls_ok.clone(),
        phase(
            PhaseName::Protocol,
            PhaseStatus::Ok,
            35,
            30,
            &[("sasl", "ANONYMOUS")],
        ),
        phase(
            PhaseName::Auth,
            PhaseStatus::Ok,
            65,
            25,
            &[("cbs_status", "200")],
        ),
    ];

    let mut amqp_ws = Outcome::new(
        Status::Warn,
        Reason::AuthRejected,
        "the AMQP path works, but IoT Hub refused the credentials: CBS put-token answered 401",
    )
    .with_fix("check the device id and key (regenerated key? wrong hub?) and the device clock");
    amqp_ws.auth = Some(AuthState::Rejected);
    amqp_ws.phases = vec![
        dns.clone(),
        tcp_ok.clone(),
        tls_ok.clone(),
        phase(
            PhaseName::Ws,
            PhaseStatus::Ok,
            35,
            5,
            &[("accepted_subprotocol", "AMQPWSB10")],
        ),
        phase(PhaseName::Protocol, PhaseStatus::Ok, 40, 30, &[]),
        phase(PhaseName::Auth, PhaseStatus::Fail, 70, 20, &[]),
    ];

    let mut mqtt_ws = Outcome::new(Status::Fail, Reason::TlsUntrusted, "the certificate for myhub.azure-devices.net chains to \"CN=XYZ_Access_SSLInspect\", which is not trusted: a TLS-inspecting proxy, or a CA missing from the trust bundle")
        .with_fix("exempt the Azure endpoints from TLS inspection");
    mqtt_ws.phases = vec![
        dns.clone(),
        tcp_ok.clone(),
        phase(PhaseName::Tls, PhaseStatus::Fail, 15, 8, &[]),
    ];

    let mut https = Outcome::new(Status::Pass, Reason::Ok, "IoT Hub answered an unauthenticated request with 401 IotHubUnauthorizedAccess: the HTTPS path works");
    https.phases = vec![
        dns,
        tcp_ok,
        tls_ok,
        phase(
            PhaseName::Protocol,
            PhaseStatus::Ok,
            35,
            9,
            &[("status", "401")],
        ),
    ];

    let results = vec![
        result(Protocol::Mqtt, mqtt),
        result(Protocol::Amqp, amqp),
        result(Protocol::MqttWs, mqtt_ws),
        result(Protocol::AmqpWs, amqp_ws),
        result(Protocol::Https, https),
    ];
    let verdict = judge(&results, Endpoint::Iothub, Some(UpstreamProtocol::Mqtt));
    RunReport {
        started_at: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        duration: Duration::from_millis(15_012),
        vantage: "host".into(),
        context: RunContext {
            iothub_hostname: Some("myhub.azure-devices.net".into()),
            device_id: Some("dev-1".into()),
            configured_upstream_protocol: Some("Mqtt".into()),
            ..RunContext::default()
        },
        results,
        verdict,
    }
}

fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(expected == actual, "{name} differs from the golden file; rerun with UPDATE_GOLDEN=1 and review.\n--- actual ---\n{actual}");
}

#[test]
fn text_report_matches_the_golden_file() {
    golden(
        "check.txt",
        &TextRenderer {
            color: false,
            verbose: false,
        }
        .render(&report()),
    );
    golden(
        "check-verbose.txt",
        &TextRenderer {
            color: false,
            verbose: true,
        }
        .render(&report()),
    );
}

#[test]
fn colour_is_only_added_when_asked() {
    let plain = TextRenderer {
        color: false,
        verbose: false,
    }
    .render(&report());
    let coloured = TextRenderer {
        color: true,
        verbose: false,
    }
    .render(&report());
    assert!(!plain.contains('\x1b'));
    assert!(coloured.contains("\x1b[31;1mFAIL\x1b[0m"));
}

#[test]
fn json_report_round_trips_and_carries_the_verdict() {
    let text = JsonRenderer.render(&report());
    let parsed: JsonReport = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed.started_at, "2026-11-18T11:06:40Z");
    assert_eq!(
        parsed.recommendation.upstream_protocol.as_deref(),
        Some("Amqp")
    );
    assert!(parsed.recommendation.change_needed);
    assert!(parsed.upstream_protocols["AmqpWs"].works);
    assert_eq!(parsed.upstream_protocols["AmqpWs"].auth, "rejected");
    assert!(!parsed.upstream_protocols["MqttWs"].works);
    assert_eq!(parsed.summary.fail, 2);
    assert_eq!(parsed.checks[0].phases[1].duration_ms, 15000.0);
}

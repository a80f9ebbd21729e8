//! The crate's integration tests, one module per output format. Text: a fixed report
//! renders to exactly the text in `tests/golden/` (run with `UPDATE_GOLDEN=1` to rewrite the
//! files after an intended change, and review the diff). JSON, JUnit and Prometheus output
//! is parsed back with a real parser before asserting; HTML is checked as text and, in a
//! headless Chromium, as a page.

use std::time::{Duration, UNIX_EPOCH};

use edgeprobe_core::catalog::{CheckDef, Target};
use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{
    AuthState, Endpoint, Outcome, Phase, PhaseName, PhaseStatus, Protocol, Reason, Status, Vantage,
};
use edgeprobe_iotedge::verdict::{judge, readiness, ReadinessPolicy, UpstreamProtocol};
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
            expect: Default::default(),
            credentials: false,
            limits: Default::default(),
            send: None,
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
        .with_fix("allow outbound TCP 8883 to myhub.azure-devices.net in the firewall — or use UpstreamProtocol Amqp, which works here");
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
    let verdict = judge(
        &results,
        Endpoint::Iothub,
        Some(UpstreamProtocol::Mqtt),
        |_| true,
    );
    // As a run with `--only iothub-*` judges it: each named check that fails blocks.
    let readiness = readiness(&results, &verdict, ONLY);
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
        readiness,
    }
}

/// The golden run's policy: its checks were named with `--only`.
const ONLY: ReadinessPolicy = ReadinessPolicy {
    warnings_as_errors: false,
    only: true,
};

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
    assert!(parsed.upstream_protocols["AmqpWs"].works());
    assert_eq!(parsed.upstream_protocols["AmqpWs"].auth, "rejected");
    assert!(!parsed.upstream_protocols["MqttWs"].works());
    assert_eq!(parsed.summary.fail, 2);
    assert_eq!(parsed.checks[0].phases[1].duration_ms, 15000.0);
}

/// A hostile string: markup, entities, quotes, `]]>`, a script, a remote image, and
/// control characters that XML 1.0 cannot carry at all.
const HOSTILE: &str = "peer said <b>&amp;</b> \"quoted\" 'single' ]]> <script>alert(1)</script> <img src=https://evil.example/x.png> bell\u{7} nul\u{0} esc\u{1b} tab\tcr\rlf\nend \u{FFFF}";

/// The golden report plus what the golden one lacks: a skipped check, a check from the
/// container vantage, a TLS chain with an awkward subject, clock offsets, and a failing
/// check whose message, fix and phase detail are hostile.
fn rich_report() -> RunReport {
    let mut report = report();
    // iothub-mqtt: hostile message and fix.
    report.results[0].outcome.message = HOSTILE.into();
    report.results[0].outcome.fix = Some(format!("fix: {HOSTILE}"));
    report.results[0].outcome.phases[1]
        .detail
        .push(("error".into(), serde_json::json!(HOSTILE)));
    // iothub-https: the presented chain, and a Date header.
    let https = &mut report.results[4];
    let tls = https
        .outcome
        .phases
        .iter_mut()
        .find(|p| p.name == PhaseName::Tls)
        .unwrap();
    tls.detail.push((
        "chain".into(),
        serde_json::json!([
            {"subject": "CN=myhub.azure-devices.net, O=\"Contoso\\Ops\"", "issuer": "CN=Microsoft Azure RSA TLS Issuing CA 03", "not_after": "2027-03-01T12:00:00Z"},
            {"subject": "CN=Microsoft Azure RSA TLS Issuing CA 03", "issuer": "CN=DigiCert Global Root G2", "not_after": "2028-06-27T23:59:59Z"}
        ]),
    ));
    https.outcome.clock_offset_secs = Some(4.0);
    report.results[1].outcome.clock_offset_secs = Some(100.0);
    report.results[3].outcome.clock_offset_secs = Some(2.0);
    // The same HTTPS check from inside the Docker network.
    let mut container = report.results[4].clone();
    container.vantage = Vantage::Container("azure-iot-edge".into());
    report.results.push(container);
    // A check that did not apply.
    let mut dps = result(
        Protocol::Https,
        Outcome::skip(Reason::NotConfigured, "no DPS id scope configured"),
    );
    dps.def.id = "dps-https".into();
    dps.def.endpoint = Endpoint::Dps;
    dps.def.required = false;
    dps.target = None;
    report.results.push(dps);
    report
}

/// The hostile string as XML 1.0 can carry it: forbidden characters replaced.
fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

mod junit {
    use super::*;
    use edgeprobe_report::junit::JunitRenderer;

    fn suite<'a>(doc: &'a roxmltree::Document<'a>) -> roxmltree::Node<'a, 'a> {
        let suites: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        assert_eq!(suites.len(), 1, "exactly one testsuite");
        suites[0]
    }

    fn case<'a>(suite: roxmltree::Node<'a, 'a>, name: &str) -> roxmltree::Node<'a, 'a> {
        suite
            .children()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name}"))
    }

    fn child<'a>(node: roxmltree::Node<'a, 'a>, tag: &str) -> Option<roxmltree::Node<'a, 'a>> {
        node.children().find(|n| n.has_tag_name(tag))
    }

    #[test]
    fn junit_counts_and_attributes_parse_back() {
        let xml = JunitRenderer.render(&rich_report());
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let suite = suite(&doc);
        assert_eq!(suite.attribute("name"), Some("edgeprobe"));
        assert_eq!(suite.attribute("tests"), Some("7"));
        assert_eq!(suite.attribute("failures"), Some("2"));
        assert_eq!(suite.attribute("errors"), Some("0"));
        assert_eq!(suite.attribute("skipped"), Some("1"));
        assert_eq!(suite.attribute("time"), Some("15.012"));
        assert_eq!(suite.attribute("timestamp"), Some("2026-11-18T11:06:40"));
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 7);

        let mqtt = case(suite, "iothub-mqtt [host]");
        assert_eq!(mqtt.attribute("classname"), Some("edgeprobe.iothub"));
        assert_eq!(mqtt.attribute("time"), Some("0.040"));
        let failure = child(mqtt, "failure").expect("a failure");
        assert_eq!(failure.attribute("type"), Some("tcp_timeout"));
        let body = failure.text().unwrap();
        assert!(body.contains("dns      ok"), "{body}");
        assert!(body.contains("tcp      fail    15000.0 ms"), "{body}");

        let ws = case(suite, "iothub-mqtt-ws [host]");
        let failure = child(ws, "failure").unwrap();
        assert_eq!(failure.attribute("type"), Some("tls_untrusted"));
        assert!(failure
            .attribute("message")
            .unwrap()
            .contains("\"CN=XYZ_Access_SSLInspect\""));
        assert!(failure
            .text()
            .unwrap()
            .contains("fix: exempt the Azure endpoints from TLS inspection"));

        // A warning passes, with its message in system-out.
        let warn = case(suite, "iothub-amqp-ws [host]");
        assert!(child(warn, "failure").is_none());
        let out = child(warn, "system-out").unwrap().text().unwrap();
        assert!(out.contains("auth_rejected") && out.contains("CBS put-token answered 401"));

        let pass = case(suite, "iothub-amqp [host]");
        assert_eq!(pass.children().filter(|n| n.is_element()).count(), 0);
        assert!(suite
            .children()
            .any(|n| n.attribute("name") == Some("iothub-https [container:azure-iot-edge]")));

        let skip = case(suite, "dps-https [host]");
        assert_eq!(skip.attribute("classname"), Some("edgeprobe.dps"));
        assert_eq!(
            child(skip, "skipped").unwrap().attribute("message"),
            Some("no DPS id scope configured")
        );

        let props = child(suite, "properties").unwrap();
        let prop = |k: &str| {
            props
                .children()
                .find(|n| n.attribute("name") == Some(k))
                .and_then(|n| n.attribute("value"))
        };
        assert_eq!(prop("device_id"), Some("dev-1"));
        assert_eq!(prop("recommended_upstream_protocol"), Some("Amqp"));
    }

    #[test]
    fn warnings_count_as_failures_only_when_asked() {
        let mut report = report();
        let policy = ReadinessPolicy {
            warnings_as_errors: true,
            ..ONLY
        };
        report.readiness = readiness(&report.results, &report.verdict, policy);
        let xml = JunitRenderer.render(&report);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let suite = suite(&doc);
        assert_eq!(suite.attribute("failures"), Some("3"));
        let warn = case(suite, "iothub-amqp-ws [host]");
        let failure = child(warn, "failure").unwrap();
        assert_eq!(failure.attribute("type"), Some("auth_rejected"));
        assert!(child(warn, "system-out").is_some());
    }

    #[test]
    fn xml_hostile_message_stays_well_formed_and_round_trips() {
        let xml = JunitRenderer.render(&rich_report());
        assert!(!xml.contains('\u{0}') && !xml.contains('\u{7}') && !xml.contains('\u{1b}'));
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let failure = child(case(suite(&doc), "iothub-mqtt [host]"), "failure").unwrap();
        // Attributes keep even tabs and line breaks (as character references).
        assert_eq!(
            failure.attribute("message"),
            Some(xml_safe(HOSTILE).as_str())
        );
        let body = failure.text().unwrap();
        assert!(body.contains(&xml_safe(HOSTILE)), "{body}");
        assert!(body.contains(&format!("fix: fix: {}", xml_safe(HOSTILE))));
        assert!(!doc.descendants().any(|n| n.has_tag_name("script")));
    }
}

mod prometheus {
    use super::*;
    use edgeprobe_report::prometheus::PrometheusRenderer;
    use openmetrics_parser::prometheus::parse_prometheus;
    use openmetrics_parser::{PrometheusType, PrometheusValue};

    type Exposition = openmetrics_parser::MetricsExposition<PrometheusType, PrometheusValue>;

    /// Every sample of a family as (labels, value).
    fn samples(e: &Exposition, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        let family = e
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"));
        family
            .iter_samples()
            .map(|s| {
                let labels = s
                    .get_labelset()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let value = match &s.value {
                    PrometheusValue::Gauge(n) => n.as_f64(),
                    other => panic!("{name} is not a gauge: {other:?}"),
                };
                (labels, value)
            })
            .collect()
    }

    /// The value of the one sample whose labels include all of `want`.
    fn value(e: &Exposition, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let hits: Vec<f64> = samples(e, name)
            .into_iter()
            .filter(|(labels, _)| {
                want.iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| v)
            .collect();
        assert!(
            hits.len() <= 1,
            "{name} {want:?} matches {} samples",
            hits.len()
        );
        hits.first().copied()
    }

    fn parse(text: &str) -> Exposition {
        parse_prometheus(text).unwrap_or_else(|e| panic!("unparsable exposition: {e:?}\n{text}"))
    }

    #[test]
    fn prometheus_exposition_parses_with_help_type_and_expected_samples() {
        let text = PrometheusRenderer.render(&rich_report());
        let e = parse(&text);
        for (name, family) in &e.families {
            assert!(name.starts_with("edgeprobe_"), "{name}");
            assert_eq!(family.family_type, PrometheusType::Gauge, "{name}");
            assert!(!family.help.is_empty(), "{name} has no HELP");
        }
        assert!(text.ends_with('\n'));

        let host = ("vantage", "host");
        let success = |id| value(&e, "edgeprobe_check_success", &[("id", id), host]);
        let mut labels = samples(&e, "edgeprobe_check_success")
            .into_iter()
            .find(|(l, _)| l.contains(&("id".into(), "iothub-mqtt".into())))
            .unwrap()
            .0;
        labels.sort();
        let expected = [
            ("endpoint", "iothub"),
            ("id", "iothub-mqtt"),
            ("protocol", "mqtt"),
            ("vantage", "host"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            labels, expected,
            "no reason label: it would churn the series"
        );
        let reason = |id, r| {
            value(
                &e,
                "edgeprobe_check_failure_reason",
                &[("id", id), host, ("reason", r)],
            )
        };
        assert_eq!(reason("iothub-mqtt", "tcp_timeout"), Some(1.0));
        assert_eq!(reason("iothub-amqp-ws", "auth_rejected"), Some(1.0));
        assert_eq!(
            samples(&e, "edgeprobe_check_failure_reason").len(),
            3,
            "only checks that warned or failed"
        );
        assert_eq!(value(&e, "edgeprobe_ready", &[]), Some(0.0));
        let info = samples(&e, "edgeprobe_info");
        assert_eq!(info.len(), 1);
        for label in [
            ("iothub", "myhub.azure-devices.net"),
            ("edge_device", "dev-1"),
            ("version", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(
                info[0]
                    .0
                    .contains(&(label.0.to_owned(), label.1.to_owned())),
                "{label:?}: {:?}",
                info[0].0
            );
        }
        assert_eq!(success("iothub-mqtt"), Some(0.0));
        assert_eq!(success("iothub-amqp"), Some(1.0));
        assert_eq!(
            success("iothub-amqp-ws"),
            Some(1.0),
            "warn counts as success"
        );
        assert_eq!(success("dps-https"), None, "skipped checks are omitted");
        assert_eq!(
            value(
                &e,
                "edgeprobe_check_success",
                &[
                    ("id", "iothub-https"),
                    ("vantage", "container:azure-iot-edge")
                ]
            ),
            Some(1.0)
        );

        // One-hot status over pass, warn and fail; the skipped check is omitted.
        let status = samples(&e, "edgeprobe_check_status");
        assert_eq!(status.len(), 6 * 3);
        assert_eq!(status.iter().map(|(_, v)| v).sum::<f64>(), 6.0);
        let st = |id, s| {
            value(
                &e,
                "edgeprobe_check_status",
                &[("id", id), host, ("status", s)],
            )
        };
        assert_eq!(st("iothub-amqp-ws", "warn"), Some(1.0));
        assert_eq!(st("iothub-amqp-ws", "pass"), Some(0.0));
        assert_eq!(st("dps-https", "skip"), None);

        let phase = |id, p| {
            value(
                &e,
                "edgeprobe_phase_duration_seconds",
                &[("id", id), host, ("phase", p)],
            )
        };
        assert_eq!(phase("iothub-mqtt", "tcp"), Some(15.0));
        assert_eq!(phase("iothub-amqp", "dns"), Some(0.003));
        assert_eq!(
            value(
                &e,
                "edgeprobe_phase_duration_seconds",
                &[
                    ("id", "iothub-amqp-ws"),
                    ("phase", "auth"),
                    ("status", "fail")
                ]
            ),
            Some(0.02)
        );

        let works = |p| value(&e, "edgeprobe_upstream_protocol_works", &[("protocol", p)]);
        assert_eq!(works("Amqp"), Some(1.0));
        assert_eq!(works("Mqtt"), Some(0.0));
        assert_eq!(works("AmqpWs"), Some(1.0));
        assert_eq!(works("MqttWs"), Some(0.0));
        let auth = |p| {
            value(
                &e,
                "edgeprobe_upstream_protocol_auth_ok",
                &[("protocol", p)],
            )
        };
        assert_eq!(auth("Amqp"), Some(1.0));
        assert_eq!(auth("AmqpWs"), Some(0.0));
        assert_eq!(auth("Mqtt"), None, "untested credentials are omitted");

        assert_eq!(
            value(&e, "edgeprobe_recommendation_change_needed", &[]),
            Some(1.0)
        );
        assert_eq!(value(&e, "edgeprobe_clock_skew_seconds", &[]), Some(4.0));
        assert_eq!(
            value(&e, "edgeprobe_run_duration_seconds", &[]),
            Some(15.012)
        );
        assert_eq!(
            value(&e, "edgeprobe_run_timestamp_seconds", &[]),
            Some(1_795_000_000.0)
        );
    }

    #[test]
    fn certificate_expiry_label_survives_escaping() {
        let text = PrometheusRenderer.render(&rich_report());
        // The subject holds a quote and a backslash; both are escaped on the wire.
        assert!(
            text.contains(r#"subject="CN=myhub.azure-devices.net, O=\"Contoso\\Ops\"""#),
            "{text}"
        );
        let e = parse(&text);
        assert_eq!(
            value(
                &e,
                "edgeprobe_tls_certificate_not_after_timestamp_seconds",
                &[
                    ("id", "iothub-https"),
                    ("vantage", "host"),
                    ("subject", "CN=myhub.azure-devices.net, O=\"Contoso\\Ops\""),
                ]
            ),
            Some(1_803_902_400.0)
        );
        assert_eq!(
            samples(&e, "edgeprobe_tls_certificate_not_after_timestamp_seconds").len(),
            2,
            "one per vantage, from the leaf only"
        );
    }

    #[test]
    fn absent_data_leaves_families_out() {
        // The golden report has no clock offsets and no TLS chain.
        let e = parse(&PrometheusRenderer.render(&report()));
        assert!(!e.families.contains_key("edgeprobe_clock_skew_seconds"));
        assert!(!e
            .families
            .contains_key("edgeprobe_tls_certificate_not_after_timestamp_seconds"));
        assert!(e.families.contains_key("edgeprobe_run_timestamp_seconds"));
    }
}

mod html {
    use super::*;
    use edgeprobe_report::html::HtmlRenderer;

    /// Every place in real markup (tags and the style sheet) that could load a resource.
    fn resource_references(html: &str) -> Vec<String> {
        let mut markup = String::new();
        let mut rest = html;
        // Text from the report is escaped, so every raw `<` starts real markup.
        while let Some(start) = rest.find('<') {
            let end = rest[start..]
                .find('>')
                .map(|e| start + e + 1)
                .unwrap_or(rest.len());
            markup.push_str(&rest[start..end]);
            markup.push('\n');
            rest = &rest[end..];
        }
        if let (Some(a), Some(b)) = (html.find("<style>"), html.find("</style>")) {
            markup.push_str(&html[a..b]);
        }
        let lower = markup.to_ascii_lowercase();
        let mut refs = Vec::new();
        for needle in ["src=", "href=", "url(", "@import"] {
            for (i, _) in lower.match_indices(needle) {
                let value: String = lower[i + needle.len()..]
                    .trim_start_matches(['"', '\'', ' '])
                    .chars()
                    .take_while(|c| !matches!(c, '"' | '\'' | ')' | ' ' | '>'))
                    .collect();
                refs.push(format!("{needle}{value}"));
            }
        }
        refs
    }

    #[test]
    fn html_has_a_section_per_check_and_the_verdict() {
        let report = rich_report();
        let html = HtmlRenderer.render(&report);
        assert!(html.starts_with("<!DOCTYPE html>"));
        // A section per check that ran; the skipped one is a line in the overview.
        let ran: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.outcome.status != Status::Skip)
            .collect();
        assert_eq!(html.matches("<section class=\"check\" ").count(), ran.len());
        assert!(
            html.contains("1 skipped</span>"),
            "skipped checks collapse into one line"
        );
        assert!(html.contains(">dps-https</code>"));
        // Worst first: the failures come before the warning, the warning before the passes.
        let at = |id: &str| {
            html.find(&format!("<section class=\"check\" data-id=\"{id}\""))
                .unwrap_or_else(|| panic!("no section for {id}"))
        };
        assert!(at("iothub-mqtt") < at("iothub-amqp-ws"));
        assert!(at("iothub-amqp-ws") < at("iothub-amqp"));
        // The verdict the exit code states.
        assert!(html.contains("verdict-line bad"));
        assert!(
            html.contains(&report.readiness.message.replace('"', "&quot;"))
                || html.contains("not ready: ")
        );
        for r in ran {
            assert!(
                html.contains(&format!(
                    "<section class=\"check\" data-id=\"{}\" data-status=\"{}\" data-vantage=\"{}\"",
                    r.def.id, r.outcome.status, r.vantage
                )),
                "no section for {} [{}]",
                r.def.id,
                r.vantage
            );
        }
        for p in ["Amqp", "Mqtt", "AmqpWs", "MqttWs"] {
            assert!(html.contains(&format!("<tr data-protocol=\"{p}\">")), "{p}");
        }
        assert!(html.contains("Recommendation: Switch to UpstreamProtocol Amqp"));
        assert!(html.contains("myhub.azure-devices.net"));
        // The waterfall: iothub-mqtt's tcp bar fills the scale from 3 ms to its end.
        assert!(html.contains("data-phase=\"tcp\" data-phase-status=\"fail\""));
        assert!(html.contains("stopped here"));
        assert!(html.contains("15.00 s"));
        // iothub-mqtt stopped at tcp, so tls and protocol were never reached.
        assert!(html.contains("data-phase=\"protocol\" data-phase-status=\"unreached\""));
    }

    #[test]
    fn html_loads_nothing_from_outside() {
        let html = HtmlRenderer.render(&rich_report());
        for r in resource_references(&html) {
            let value = r.split_once(['=', '(']).map(|(_, v)| v).unwrap_or(&r);
            assert!(
                !r.starts_with("@import")
                    && !value.starts_with("http:")
                    && !value.starts_with("https:")
                    && !value.starts_with("//"),
                "external resource reference: {r}"
            );
        }
        let lower = html.to_ascii_lowercase();
        for tag in [
            "<script",
            "<img",
            "<iframe",
            "<object",
            "<embed",
            "<link rel=\"stylesheet\"",
        ] {
            assert!(!lower.contains(tag), "the page has {tag}");
        }
        assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    }

    #[test]
    fn html_escapes_a_hostile_message() {
        let html = HtmlRenderer.render(&rich_report());
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;img src=https://evil.example/x.png&gt;"));
        assert!(html.contains("&lt;b&gt;&amp;amp;&lt;/b&gt; &quot;quoted&quot; &#39;single&#39;"));
        assert!(!html.contains('\u{0}') && !html.contains('\u{1b}'));
    }
}

/// The HTML page in a real browser. Chromium is a test dependency (`make test-deps`
/// installs it), so a missing one fails the test rather than skipping it.
mod browser {
    use super::*;
    use edgeprobe_report::html::HtmlRenderer;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    fn chromium() -> PathBuf {
        let path = std::env::var_os("PATH").unwrap_or_default();
        for name in ["chromium", "chromium-browser"] {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return candidate;
                }
            }
        }
        panic!(
            "chromium is not installed (neither `chromium` nor `chromium-browser` is on PATH): \
             run `make test-deps`"
        );
    }

    /// Runs headless Chromium with `args`, stdout to `stdout`, killing it after a minute.
    fn run(args: &[String], stdout: &Path, profile: &Path) {
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(stdout).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "chromium {args:?} exited with {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium {args:?} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn chromium_renders_every_check_and_takes_a_screenshot() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let report = rich_report();
        let page = dir.join("report.html");
        std::fs::write(&page, HtmlRenderer.render(&report)).unwrap();
        let url = format!("file://{}", page.display());

        let dom_file = dir.join("report.dom.html");
        run(
            &["--dump-dom".into(), url.clone()],
            &dom_file,
            &dir.join("chromium-profile-dom"),
        );
        let dom = std::fs::read_to_string(&dom_file).unwrap();
        let ran = report
            .results
            .iter()
            .filter(|r| r.outcome.status != Status::Skip)
            .count();
        assert_eq!(
            dom.matches("<section class=\"check\" ").count(),
            ran,
            "one section per check that ran: {dom}"
        );
        for r in &report.results {
            let shown = if r.outcome.status == Status::Skip {
                format!(">{}</code>", r.def.id)
            } else {
                format!("data-id=\"{}\"", r.def.id)
            };
            assert!(dom.contains(&shown), "{} missing from the DOM", r.def.id);
        }
        assert!(!dom.contains("<script"), "a hostile message became markup");
        assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

        let png = dir.join("report.png");
        let _ = std::fs::remove_file(&png);
        run(
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1280,2000".into(),
                "--hide-scrollbars".into(),
                url,
            ],
            &dir.join("report.screenshot.log"),
            &dir.join("chromium-profile-shot"),
        );
        let bytes = std::fs::read(&png).expect("the screenshot exists");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), (1280, 2000));
        // A blank 1280×2000 page compresses to a few kilobytes; a rendered report does not.
        assert!(
            bytes.len() > 50_000,
            "screenshot is only {} bytes",
            bytes.len()
        );
    }
}

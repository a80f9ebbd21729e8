//! The report formats against their contracts: JSON validated by its schema, the text
//! report's shape, `list`, and `demo` as the README promises it.

use fixtures::{HubFaults, PortFault};

use crate::support::{run, Hub};

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(edgeprobe_report::json::SCHEMA).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn assert_valid(stdout: &str) {
    let instance: serde_json::Value = serde_json::from_str(stdout).expect("report is JSON");
    let v = validator();
    let errors: Vec<String> = v
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_reports_validate_against_the_schema_in_success_and_failure() {
    let faults = HubFaults {
        mqtt: PortFault::Closed,
        https: PortFault::UntrustedCert,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let r = run(hub.args(5.0)).await;
    assert_valid(&r.stdout());
    let rep = r.json();
    assert_eq!(rep.schema_version, 1);
    assert_eq!(
        rep.summary.pass + rep.summary.warn + rep.summary.fail + rep.summary.skip,
        rep.checks.len()
    );
    // Every phase carries a duration, and phases do not start before the check.
    for c in &rep.checks {
        for p in &c.phases {
            assert!(
                p.duration_ms >= 0.0 && p.started_ms >= 0.0,
                "{}: {p:?}",
                c.id
            );
        }
    }
    let demo = run(["demo", "--output", "json"]).await;
    assert_eq!(demo.code(), 0, "{}", demo.stderr());
    assert_valid(&demo.stdout());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_text_report_has_a_line_per_check_the_fix_and_the_verdict_table() {
    let faults = HubFaults {
        mqtt: PortFault::Closed,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let mut args = hub.args(5.0);
    let i = args.iter().position(|a| a == "json").unwrap();
    args[i] = "text".into();
    args.push("--verbose".into());
    let r = run(args).await;
    let out = r.stdout();
    assert!(out.contains("FAIL iothub-mqtt "), "{out}");
    assert!(out.contains("PASS iothub-amqp "), "{out}");
    assert!(out.contains("fix: allow outbound TCP 8883"), "{out}");
    assert!(out.contains("UpstreamProtocol  port  works  why"), "{out}");
    assert!(
        out.contains("Mqtt              8883  no     tcp_refused"),
        "{out}"
    );
    assert!(
        out.contains("Recommendation: keep UpstreamProtocol Amqp")
            || out.contains("Recommendation: switch"),
        "{out}"
    );
    // --verbose adds phases with durations.
    assert!(out.contains("tls        ok"), "{out}");
    assert!(
        !out.contains("\x1b["),
        "no colour when NO_COLOR is set and stdout is a pipe"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_prints_the_catalog_including_user_checks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("historian.toml"),
        "[[check]]\nid = \"historian-https\"\ntitle = \"Plant historian\"\nendpoint = \"device\"\nprotocol = \"https\"\nhost = \"historian.plant.example\"\nport = 8443\n",
    )
    .unwrap();
    let r = run([
        "list".to_string(),
        "--checks-dir".into(),
        dir.path().display().to_string(),
    ])
    .await;
    assert_eq!(r.code(), 0);
    let out = r.stdout();
    for id in [
        "iothub-mqtt",
        "iothub-amqp-ws",
        "iothub-https",
        "config-upstream-protocol",
        "historian-https",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(id)),
            "{id} missing from:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_check_from_checks_dir_runs_against_a_real_listener() {
    // The user's own endpoint: the simulated hub's HTTPS port, probed as a generic service.
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.toml"),
        "[[check]]\nid = \"my-service\"\ntitle = \"My service\"\nendpoint = \"device\"\nprotocol = \"https\"\nhost = \"testhub.azure-devices.net\"\nport = 443\nrequired = true\n",
    )
    .unwrap();
    let mut args = hub.args(5.0);
    args.extend([
        "--checks-dir".into(),
        dir.path().display().to_string(),
        "--only".into(),
        "my-service".into(),
    ]);
    let r = run(args).await;
    let rep = r.json();
    assert_eq!(rep.checks.len(), 1, "--only keeps just the user's check");
    let c = &rep.checks[0];
    assert_eq!(
        (c.id.as_str(), c.status.as_str()),
        ("my-service", "pass"),
        "{}",
        c.message
    );
    assert!(c.message.contains("HTTP 401"), "{}", c.message);
    assert_eq!(r.code(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_as_the_readme_says() {
    let r = run(["demo"]).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    assert!(out.contains("FAIL iothub-mqtt"), "{out}");
    assert!(out.contains("PASS iothub-amqp-ws"), "{out}");
    assert!(
        out.contains("Recommendation: switch to UpstreamProtocol Amqp"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_and_the_man_page_come_from_the_clap_definitions() {
    let bash = run(["completions", "bash"]).await;
    assert_eq!(bash.code(), 0);
    assert!(
        bash.stdout().contains("--iothub-hostname") && bash.stdout().contains("complete -F"),
        "{}",
        bash.stdout()
    );
    let man = run(["man"]).await;
    assert_eq!(man.code(), 0);
    assert!(
        man.stdout().starts_with(".ie") || man.stdout().contains(".TH edgeprobe"),
        "{}",
        man.stdout()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_prints_nothing_and_keeps_the_exit_code() {
    let faults = HubFaults {
        https: PortFault::Closed,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let mut args = hub.args(5.0);
    args.push("--quiet".into());
    let r = run(args).await;
    assert_eq!(r.code(), 1, "HTTPS is required and closed");
    assert!(
        r.stdout().is_empty() && r.stderr().is_empty(),
        "{}{}",
        r.stdout(),
        r.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_progress_indicator_appears_on_a_terminal_only_when_a_run_is_slow() {
    let faults = HubFaults {
        mqtt: PortFault::StallAfterTls,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let mut args = hub.args(2.5);
    crate::support::set_arg(&mut args, "--output", "text");
    // `script` gives the binary a terminal; its transcript holds what the terminal showed.
    let line = std::iter::once(crate::support::bin().to_owned())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = tokio::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("script (util-linux) runs");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("checks done"),
        "no progress on a terminal:\n{shown}"
    );
    // Piped (the other tests), there is none.
    let piped = run(hub.args(2.5)).await;
    assert!(!piped.stderr().contains("checks done"));
}

#[tokio::test(flavor = "multi_thread")]
async fn junit_and_prometheus_outputs_parse_with_real_parsers() {
    let faults = HubFaults {
        mqtt: PortFault::Closed,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let json = run(hub.args(5.0)).await.json();

    let mut args = hub.args(5.0);
    crate::support::set_arg(&mut args, "--output", "junit");
    let xml = run(args).await.stdout();
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("not XML ({e}):\n{xml}"));
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), json.checks.len(), "one testcase per check");
    let mqtt = cases
        .iter()
        .find(|c| {
            c.attribute("name")
                .is_some_and(|n| n.starts_with("iothub-mqtt "))
        })
        .expect("a testcase for iothub-mqtt");
    // Amqp (the default) works, so the device is ready: MQTT's refusal is reported, but it
    // is not a failed test case (the pipeline's colour matches the exit code).
    assert!(mqtt.children().all(|n| !n.has_tag_name("failure")));
    let out = mqtt
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .expect("iothub-mqtt's failure is in system-out");
    assert!(out.contains("tcp_refused"), "{out}");

    let mut args = hub.args(5.0);
    crate::support::set_arg(&mut args, "--output", "prometheus");
    let text = run(args).await.stdout();
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("unparsable exposition: {e:?}\n{text}"));
    for family in [
        "edgeprobe_check_success",
        "edgeprobe_phase_duration_seconds",
        "edgeprobe_upstream_protocol_works",
        "edgeprobe_run_duration_seconds",
    ] {
        assert!(
            exposition.families.contains_key(family),
            "{family} missing:\n{text}"
        );
    }
    assert!(
        text.contains("edgeprobe_upstream_protocol_works{protocol=\"Mqtt\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("edgeprobe_upstream_protocol_works{protocol=\"Amqp\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_check_takes_its_host_from_a_var() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plant.toml"),
        "[[check]]\nid = \"plant-api\"\ntitle = \"Plant API\"\nendpoint = \"device\"\nprotocol = \"https\"\nhost = \"{plant_host}\"\nrequired = true\n",
    )
    .unwrap();
    let mut args = hub.args(5.0);
    args.extend(
        [
            "--vantage",
            "host",
            "--checks-dir",
            &dir.path().display().to_string(),
            "--var",
            "plant_host=testhub.azure-devices.net",
            "--only",
            "plant-api",
        ]
        .map(String::from),
    );
    let r = run(args.clone()).await;
    let rep = r.json();
    let c = crate::support::check(&rep, "plant-api");
    assert_eq!(c.host.as_deref(), Some("testhub.azure-devices.net"));
    assert_eq!(c.status, "pass", "{}", c.message);
    assert_eq!(r.code(), 0);
    // Without the variable the template cannot be filled: it is named, at load time.
    let i = args.iter().position(|a| a == "--var").unwrap();
    args.drain(i..i + 2);
    let r = run(args).await;
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("unknown variable \"plant_host\""),
        "{}",
        r.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_check_s_expectations_fail_an_answer_that_is_not_the_service() {
    // The simulated hub's HTTPS answers 401 with IoT Hub's error body: stand-in for any
    // service, and for a captive portal when the check expects something else.
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let check = |id: &str, expect: &str| {
        format!(
            "[[check]]\nid = \"{id}\"\ntitle = \"t\"\nendpoint = \"device\"\nprotocol = \"https\"\nhost = \"testhub.azure-devices.net\"\n[check.expect]\n{expect}\n"
        )
    };
    let file = [
        check("wants-200", "status = [200]"),
        check(
            "wants-its-body",
            "status = [401]\nbody_matches = \"IotHubUnauthorized\"",
        ),
        check("no-block-page", "body_not_matches = \"(?i)unauthorized\""),
        check("cert-100-years", "min_cert_days = 36500"),
        check("cert-1-day", "min_cert_days = 1"),
    ]
    .join("\n");
    std::fs::write(dir.path().join("expect.toml"), file).unwrap();
    let mut args = hub.args(5.0);
    args.extend(
        [
            "--vantage",
            "host",
            "--checks-dir",
            &dir.path().display().to_string(),
            "--only",
            "wants-*,no-block-page,cert-*",
        ]
        .map(String::from),
    );
    let rep = run(args).await.json();
    for (id, status, reason, words) in [
        (
            "wants-200",
            "fail",
            "expectation_failed",
            "expects HTTP 200",
        ),
        ("wants-its-body", "pass", "ok", "answered"),
        (
            "no-block-page",
            "fail",
            "expectation_failed",
            "which the check forbids",
        ),
        (
            "cert-100-years",
            "fail",
            "cert_expiring",
            "sooner than the 36500 days",
        ),
        ("cert-1-day", "pass", "ok", "answered"),
    ] {
        crate::support::assert_check(&rep, id, status, reason, words);
    }
    // A bad pattern is refused when the file loads.
    std::fs::write(
        dir.path().join("expect.toml"),
        check("bad", "body_matches = \"(unclosed\""),
    )
    .unwrap();
    let r = run([
        "list".to_owned(),
        "--checks-dir".into(),
        dir.path().display().to_string(),
    ])
    .await;
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr()
            .contains("expect.body_matches in \"bad\": not a regular expression"),
        "{}",
        r.stderr()
    );
}

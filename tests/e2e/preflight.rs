//! The pre-flight contract (issue 12): one verdict (`ready`) that the exit code and every
//! output format state; refused credentials are not a pass; only what ran is judged;
//! `iotedge check`'s `-o json` works.

use fixtures::{HubFaults, PortFault};

use crate::support::{check, drop_arg, run, run_in, set_arg, Hub, WRONG_KEY};

/// Runs `args` in every format and returns (format, exit code, stdout).
async fn every_format(args: &[String]) -> Vec<(&'static str, i32, String)> {
    let mut out = Vec::new();
    for format in ["json", "text", "junit", "prometheus", "html"] {
        let mut a = args.to_vec();
        set_arg(&mut a, "--output", format);
        let r = run(a).await;
        out.push((format, r.code(), r.stdout()));
    }
    out
}

/// The JUnit `<failure>` elements, by the test case's check id.
fn junit_failures(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML ({e}):\n{xml}"));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite");
    let failures: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .map(|c| {
            let name = c.attribute("name").unwrap_or_default();
            name.split(" [").next().unwrap_or(name).to_owned()
        })
        .collect();
    assert_eq!(
        suite.attribute("failures"),
        Some(failures.len().to_string().as_str()),
        "the failures attribute counts the <failure> elements"
    );
    failures
}

/// One sample: (family, labels, value).
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of a Prometheus exposition, parsed by a real parser.
fn prometheus_samples(text: &str) -> Vec<Sample> {
    let exposition = openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("unparsable exposition: {e:?}\n{text}"));
    let mut out = Vec::new();
    for (name, family) in &exposition.families {
        for s in family.iter_samples() {
            let labels: Vec<(String, String)> = s
                .get_labelset()
                .map(|set| set.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let value = match &s.value {
                openmetrics_parser::PrometheusValue::Gauge(g) => g.as_f64(),
                other => panic!("{name}: not a gauge: {other:?}"),
            };
            out.push((name.clone(), labels, value));
        }
    }
    out
}

// Regression: a device whose key is wrong got "works yes", "keep Amqp" and exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_is_not_ready_with_the_credential_advice_in_every_format() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = hub.args(10.0);
    set_arg(&mut args, "--sas-key", WRONG_KEY);
    args.extend(["--vantage".into(), "host".into()]);
    let advice = "check the device id, its key";
    for (format, code, out) in every_format(&args).await {
        assert_eq!(code, 1, "{format}: a refused device is not ready:\n{out}");
        assert!(
            out.contains(advice),
            "{format} lacks the credential advice:\n{out}"
        );
        assert!(!out.contains(WRONG_KEY), "{format} shows the key");
        match format {
            "json" => {
                let rep: edgeprobe_report::json::JsonReport = serde_json::from_str(&out).unwrap();
                assert!(!rep.ready);
                assert_eq!(rep.readiness.reason, "auth_rejected");
                for id in [
                    "iothub-mqtt",
                    "iothub-amqp",
                    "iothub-mqtt-ws",
                    "iothub-amqp-ws",
                ] {
                    assert!(
                        rep.readiness.blocking.contains(&id.to_owned()),
                        "{id}: {:?}",
                        rep.readiness
                    );
                }
                // The path works: the network is not to blame, and no switch is advised.
                assert!(rep
                    .upstream_protocols
                    .values()
                    .all(|v| v.works() && v.auth == "rejected"));
                assert!(
                    !rep.recommendation.change_needed,
                    "{:?}",
                    rep.recommendation
                );
            }
            "text" => {
                assert!(out.contains("NOT READY"), "{out}");
                assert!(!out.contains("keep UpstreamProtocol Amqp —"), "{out}");
            }
            "junit" => {
                let failures = junit_failures(&out);
                assert!(failures.iter().any(|f| f == "iothub-amqp"), "{failures:?}");
            }
            "prometheus" => {
                let samples = prometheus_samples(&out);
                let ready = samples
                    .iter()
                    .find(|(n, _, _)| n == "edgeprobe_ready")
                    .expect("edgeprobe_ready");
                assert_eq!(ready.2, 0.0);
            }
            _ => assert!(out.contains("class=\"verdict-line bad\""), "{out}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_format_states_the_same_verdict_and_junit_fails_only_what_blocks() {
    // MQTT refused, Amqp (the default) works: the device is ready, and iothub-mqtt's failure
    // is visible but not a failed test case. Configured for Mqtt, it is not ready.
    let hub = Hub::start(HubFaults {
        mqtt: PortFault::Closed,
        ..HubFaults::default()
    })
    .await;
    let mut args = hub.args(10.0);
    args.extend(["--vantage".into(), "host".into()]);
    for (configured, ready) in [(None, true), (Some("Mqtt"), false)] {
        let mut a = args.clone();
        if let Some(p) = configured {
            a.extend(["--upstream-protocol".into(), p.into()]);
        }
        let json = run(a.clone()).await;
        let rep = json.json();
        assert_eq!(rep.ready, ready, "{configured:?}: {:?}", rep.readiness);
        assert_eq!(json.code(), i32::from(!ready));
        assert_eq!(check(&rep, "iothub-mqtt").status, "fail");
        for (format, code, out) in every_format(&a).await {
            assert_eq!(code, i32::from(!ready), "{format}");
            match format {
                "junit" => {
                    let mut failures = junit_failures(&out);
                    failures.sort();
                    let mut blocking = rep.readiness.blocking.clone();
                    blocking.sort();
                    assert_eq!(failures, blocking, "{configured:?}");
                    if ready {
                        assert!(out.contains("failed, not required: "), "{out}");
                    }
                }
                "prometheus" => {
                    let samples = prometheus_samples(&out);
                    let value = |name: &str| {
                        samples
                            .iter()
                            .find(|(n, _, _)| n == name)
                            .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
                            .clone()
                    };
                    assert_eq!(value("edgeprobe_ready").2, f64::from(u8::from(ready)));
                    let info = value("edgeprobe_info");
                    assert!(
                        info.1
                            .contains(&("iothub".into(), crate::support::HUB.into())),
                        "{info:?}"
                    );
                    assert!(
                        info.1
                            .contains(&("edge_device".into(), crate::support::DEVICE.into())),
                        "{info:?}"
                    );
                    assert!(info.1.iter().any(|(k, _)| k == "version"), "{info:?}");
                    // Success series carry no reason label (it would churn series).
                    for (name, labels, _) in &samples {
                        if name == "edgeprobe_check_success" {
                            assert!(labels.iter().all(|(k, _)| k != "reason"), "{labels:?}");
                        }
                    }
                    let reason = samples.iter().find(|(n, l, _)| {
                        n == "edgeprobe_check_failure_reason"
                            && l.contains(&("id".into(), "iothub-mqtt".into()))
                    });
                    assert_eq!(
                        reason.map(|r| r.1.contains(&("reason".into(), "tcp_refused".into()))),
                        Some(true),
                        "{out}"
                    );
                }
                "text" => {
                    let last = out
                        .trim_end()
                        .lines()
                        .rev()
                        .find(|l| l.contains("READY"))
                        .unwrap_or_default();
                    assert_eq!(last.starts_with("READY"), ready, "{out}");
                    if ready {
                        // The per-check fix names the protocol recommended, never another.
                        assert!(!out.contains("MqttWs over 443"), "{out}");
                    }
                }
                "html" => assert!(
                    out.contains(if ready {
                        "verdict-line good"
                    } else {
                        "verdict-line bad"
                    }),
                    "{format}"
                ),
                _ => {}
            }
        }
    }
}

// Regression: `--only iothub-amqp` failing exited 0 and judged protocols never tried.
#[tokio::test(flavor = "multi_thread")]
async fn only_judges_what_ran_and_a_named_check_that_fails_is_not_ready() {
    let hub = Hub::start(HubFaults {
        amqp: PortFault::Closed,
        ..HubFaults::default()
    })
    .await;
    let mut args = hub.args(10.0);
    args.extend([
        "--vantage".into(),
        "host".into(),
        "--only".into(),
        "iothub-amqp".into(),
    ]);
    let r = run(args).await;
    let rep = r.json();
    assert_eq!(r.code(), 1, "{:?}", rep.readiness);
    assert_eq!(rep.readiness.blocking, vec!["iothub-amqp".to_owned()]);
    for p in ["Mqtt", "MqttWs", "AmqpWs"] {
        let v = &rep.upstream_protocols[p];
        assert!(!v.checked && v.works.is_none(), "{p}: {v:?}");
        assert!(v.why.starts_with("not checked"), "{p}: {}", v.why);
    }
    assert!(rep.upstream_protocols["Amqp"].checked);
    assert_eq!(rep.upstream_protocols["Amqp"].works, Some(false));
    let why = &rep.recommendation.why;
    assert!(
        why.contains("Amqp (5671)") && !why.contains("8883"),
        "only the checked port is named: {why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_o_is_the_format_as_in_iotedge_check() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = hub.args(10.0);
    drop_arg(&mut args, "--output");
    args.extend([
        "--vantage".into(),
        "host".into(),
        "-o".into(),
        "json".into(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(dir.path(), args).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.json().ready);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file named json (or anything else) was written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_selection_without_a_protocol_check_says_so() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = hub.args(10.0);
    args.extend([
        "--vantage".into(),
        "host".into(),
        "--only".into(),
        "iothub-https".into(),
    ]);
    let rep = run(args).await.json();
    assert!(rep.ready);
    assert!(
        rep.context
            .notes
            .iter()
            .any(|n| n.contains("no upstream protocol check")),
        "{:?}",
        rep.context.notes
    );
    assert!(rep.upstream_protocols.values().all(|v| !v.checked));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_with_resolved_hosts_and_sends_nothing() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = hub.args(10.0);
    args.push("--dry-run".into());
    let r = run(args).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    for line in [
        format!("run   iothub-mqtt      {}:8883", crate::support::HUB),
        format!("run   iothub-amqp-ws   {}:443", crate::support::HUB),
    ] {
        assert!(out.contains(&line), "{line:?} missing:\n{out}");
    }
    assert!(out.contains("skip  parent-mqtt"), "{out}");
    assert!(out.contains("then  config-upstream-protocol"), "{out}");
    assert_eq!(hub.hub.connections(), 0, "a dry run connects to nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn man_pages_exist_for_every_subcommand() {
    for sub in ["check", "bundle", "list", "demo", "completions", "man"] {
        let r = run(["man", sub]).await;
        assert_eq!(r.code(), 0, "{sub}: {}", r.stderr());
        assert!(
            r.stdout().contains(&format!(".TH edgeprobe-{sub}")),
            "{sub}: {}",
            r.stdout()
        );
    }
    let check = run(["man", "check"]).await.stdout();
    assert!(check.contains("output\\-file"), "{check}");
    let dir = tempfile::tempdir().unwrap();
    let r = run(["man", "--out-dir", &dir.path().display().to_string()]).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    for page in ["edgeprobe.1", "edgeprobe-check.1", "edgeprobe-bundle.1"] {
        assert!(dir.path().join(page).is_file(), "{page} not written");
    }
}

//! No secret reaches any output: runs that succeed, fail and are refused are scanned for the
//! device keys and for anything token-shaped.

use fixtures::{HubFaults, PortFault};

use crate::support::{run, set_arg, Hub, DEVICE, HUB, KEY, WRONG_KEY};

fn assert_clean(label: &str, text: &str) {
    for needle in [KEY, WRONG_KEY, "SharedAccessSignature", "sig=", "&se="] {
        assert!(
            !text.contains(needle),
            "{label}: output contains {needle:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_output_contains_a_key_or_a_token() {
    let faults = HubFaults {
        reject_credentials: false,
        mqtt: PortFault::StallAfterTls,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    for output in ["json", "text"] {
        for key in [KEY, WRONG_KEY] {
            let mut args = hub.args(2.0);
            set_arg(&mut args, "--output", output);
            set_arg(&mut args, "--sas-key", key);
            args.push("--verbose".into());
            let r = run(args).await;
            assert_clean(&format!("{output}/{key}"), &r.stdout());
            assert_clean(&format!("{output}/{key} stderr"), &r.stderr());
        }
    }
    // The connection-string path, with a refusing hub.
    let refusing = Hub::start(HubFaults {
        reject_credentials: true,
        ..HubFaults::default()
    })
    .await;
    let mut args = refusing.args(5.0);
    set_arg(&mut args, "--sas-key", KEY);
    let i = args.iter().position(|a| a == "--sas-key").unwrap();
    args.drain(i..i + 2);
    args.extend([
        "--connection-string".into(),
        format!("HostName={HUB};DeviceId={DEVICE};SharedAccessKey={KEY}"),
    ]);
    let r = run(args).await;
    assert!(r.stdout().contains("auth_rejected"));
    assert_clean("connection string", &r.stdout());
    assert_clean("connection string stderr", &r.stderr());
    // A bad connection string's error must not echo the key either.
    let r = run([
        "check",
        "--connection-string",
        &format!("HostName={HUB};SharedAccessKey={KEY}"),
    ])
    .await;
    assert_eq!(r.code(), 2);
    assert_clean("bad connection string", &r.stderr());
}

/// Every form a key can travel in: raw, URL-encoded, base64.
fn key_forms(key: &str) -> Vec<String> {
    use base64::Engine as _;
    let url: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    vec![
        key.to_owned(),
        url.clone(),
        url.to_ascii_lowercase(),
        base64::engine::general_purpose::STANDARD.encode(key),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(key),
        // Long enough to be the key, short enough to catch a cut-off echo.
        key[..16].to_owned(),
    ]
}

/// No key form, no token, and no `sig=` value that is not redacted.
fn assert_nothing_secret(label: &str, text: &str) {
    for needle in key_forms(KEY) {
        assert!(
            !text.contains(&needle),
            "{label}: output contains {needle:?}:\n{text}"
        );
    }
    for needle in ["SharedAccessSignature sr", "&se=1", "sr=testhub"] {
        assert!(
            !text.contains(needle),
            "{label}: output contains {needle:?}:\n{text}"
        );
    }
    let lower = text.to_ascii_lowercase();
    for (i, _) in lower.match_indices("sig=") {
        assert!(
            ["<redacted>", "&lt;redacted&gt;", "\\u003credacted"]
                .iter()
                .any(|m| text[i + 4..].starts_with(m)),
            "{label}: a sig= value shows at {i}:\n{text}"
        );
    }
}

/// Regression: a TLS peer that echoes what it read handed the device's SAS token (MQTT
/// CONNECT password, HTTP Authorization header, AMQP CBS token) back into the report.
#[tokio::test(flavor = "multi_thread")]
async fn an_echoing_peer_never_gets_a_secret_into_the_report() {
    let hub = Hub::start(HubFaults {
        mqtt: PortFault::Echo,
        amqp: PortFault::Echo,
        https: PortFault::Echo,
        ..HubFaults::default()
    })
    .await;
    for output in ["json", "text", "junit", "html"] {
        let mut args = hub.args(3.0);
        set_arg(&mut args, "--output", output);
        args.push("--verbose".into());
        let r = run(args).await;
        assert!(matches!(r.code(), 0 | 1), "{output}: {}", r.stderr());
        if output == "json" {
            // The peer did send the token back (MQTT's password), and it was scrubbed.
            let rep = r.json();
            let mqtt = crate::support::check(&rep, "iothub-mqtt");
            assert!(mqtt.message.contains("<redacted>"), "{}", mqtt.message);
        }
        assert_nothing_secret(&format!("{output} stdout"), &r.stdout());
        assert_nothing_secret(&format!("{output} stderr"), &r.stderr());
    }
    // A support bundle and an output file: every file in them.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.tar.gz");
    let mut args = vec![
        "bundle".to_owned(),
        "--vantage".into(),
        "host".into(),
        "--output-file".into(),
        bundle.display().to_string(),
    ];
    args.extend(hub.args(3.0).into_iter().skip(1));
    let r = run(args).await;
    assert!(matches!(r.code(), 0 | 1), "bundle: {}", r.stderr());
    let files = crate::bundle::unpack(&std::fs::read(&bundle).unwrap());
    assert!(files.len() > 3);
    for (path, text) in &files {
        assert_nothing_secret(&format!("bundle {path}"), text);
    }
    let report = dir.path().join("r.txt");
    let mut args = hub.args(3.0);
    set_arg(&mut args, "--output", "text");
    args.extend(["--output-file".into(), report.display().to_string()]);
    run(args).await;
    assert_nothing_secret("output file", &std::fs::read_to_string(&report).unwrap());
    // The same through a connection string (the key in another form on the command line).
    let mut args = hub.args(3.0);
    let i = args.iter().position(|a| a == "--sas-key").unwrap();
    args.drain(i..i + 2);
    let i = args.iter().position(|a| a == "--device-id").unwrap();
    args.drain(i..i + 2);
    let i = args.iter().position(|a| a == "--iothub-hostname").unwrap();
    args.drain(i..i + 2);
    args.extend([
        "--connection-string".into(),
        format!("HostName={HUB};DeviceId={DEVICE};SharedAccessKey={KEY}"),
        "--verbose".into(),
    ]);
    let r = run(args).await;
    assert_nothing_secret("connection string", &r.stdout());
}

// Regression (issue 14): a user's check of another host was handed the device's SAS token
// (and its client certificate). Credentials go only to the services they belong to.
#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_check_of_another_host_never_gets_the_device_s_credentials() {
    // A broker that would accept the device's key, had it been given.
    let broker = Hub::start_with(HubFaults::default(), |o| {
        o.hostname = "broker.example".into();
    })
    .await;
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.toml"),
        "[[check]]\nid = \"plant-broker\"\ntitle = \"Plant broker\"\nendpoint = \"device\"\nprotocol = \"mqtt\"\nhost = \"broker.example\"\n\n\
         [[check]]\nid = \"sneaky-broker\"\ntitle = \"Declared as IoT Hub\"\nendpoint = \"iothub\"\nprotocol = \"amqp\"\nhost = \"broker.example\"\n",
    )
    .unwrap();
    let both = dir.path().join("both.pem");
    std::fs::write(&both, format!("{}{}", hub.hub.ca_pem, broker.hub.ca_pem)).unwrap();
    let mut args = hub.args(5.0);
    set_arg(&mut args, "--trust-bundle", &both.display().to_string());
    args.extend(broker.hub.connect_to_args());
    args.extend([
        "--vantage".into(),
        "host".into(),
        "--checks-dir".into(),
        dir.path().display().to_string(),
        "--only".into(),
        "plant-broker,sneaky-broker,iothub-mqtt".into(),
    ]);
    let rep = run(args).await.json();
    // The device's own hub still gets them (and accepts them)...
    let own = crate::support::check(&rep, "iothub-mqtt");
    assert_eq!(own.auth.as_deref(), Some("ok"), "{}", own.message);
    // ...the other host does not: the broker saw no token, so it never accepted the device.
    for id in ["plant-broker", "sneaky-broker"] {
        let c = crate::support::check(&rep, id);
        assert_ne!(
            c.auth.as_deref(),
            Some("ok"),
            "{id} presented credentials: {}",
            c.message
        );
        assert_ne!(
            c.reason, "auth_rejected",
            "{id}: nothing was presented to refuse: {}",
            c.message
        );
    }
}

/// `credentials = "device"` is for the device's own services only: for any other host the
/// catalog is refused at load time, naming the file and line (issue 14).
#[tokio::test(flavor = "multi_thread")]
async fn a_credentialed_check_is_allowed_only_for_the_device_s_own_services() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let entry = |id: &str, host: &str| {
        format!("[[check]]\nid = \"{id}\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\nhost = \"{host}\"\ncredentials = \"device\"\n")
    };
    std::fs::write(
        dir.path().join("own.toml"),
        entry("own-hub", "{iothub_hostname}"),
    )
    .unwrap();
    let mut args = hub.args(5.0);
    args.extend(
        [
            "--vantage",
            "host",
            "--checks-dir",
            &dir.path().display().to_string(),
            "--only",
            "own-hub",
        ]
        .map(String::from),
    );
    let rep = run(args.clone()).await.json();
    let own = crate::support::check(&rep, "own-hub");
    assert_eq!(own.auth.as_deref(), Some("ok"), "{}", own.message);

    std::fs::write(
        dir.path().join("own.toml"),
        entry("elsewhere", "broker.example"),
    )
    .unwrap();
    set_arg(&mut args, "--only", "elsewhere");
    let r = run(args).await;
    assert_eq!(r.code(), 2, "{}", r.stdout());
    let err = r.stderr();
    assert!(
        err.contains("own.toml: line 7: credentials: check \"elsewhere\" asks for the device's credentials for \"broker.example\""),
        "{err}"
    );
}

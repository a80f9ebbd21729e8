//! Bad input gets exit 2 and exactly one line that names the culprit — never a panic,
//! a stack trace or a hang.

use crate::support::run;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// clap's usage errors stay whole: the suggestion, the valid values, the missing argument.
#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_keep_clap_s_suggestions_and_valid_values() {
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["check", "--bogus"], &["--bogus"]),
        (vec!["check", "--outptu", "json"], &["--outptu", "--output"]),
        (vec!["check", "--timeout"], &["--timeout", "SECONDS"]),
        (
            vec!["check", "--timeout", "soon"],
            &["soon", "not a number of seconds"],
        ),
        (
            vec!["check", "--output", "xml"],
            &["xml", "text", "json", "junit", "prometheus", "html"],
        ),
        (vec!["check", "-o", "yaml"], &["yaml", "json"]),
        (vec!["frobnicate"], &["frobnicate"]),
        (vec!["chek"], &["chek", "check"]),
    ];
    for (args, wanted) in cases {
        let r = run(args.clone()).await;
        let err = r.stderr();
        assert_eq!(r.code(), 2, "{args:?} exited {} with {err}", r.code());
        for w in wanted {
            assert!(err.contains(w), "{args:?}: {err:?} does not say {w:?}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(r.stdout().is_empty(), "{args:?} printed a report on error");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_and_files_exit_2_with_one_line_naming_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write(&dir, "garbage.pem", "this is not a certificate\n");
    let bad_pem = write(
        &dir,
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    let checks = tempfile::tempdir().unwrap();
    write(&checks, "mine.toml", "[[check]]\nid = \"my-check\"\ntitle = \"t\"\nendpoint = \"device\"\nprotocol = \"smtp\"\nhost = \"h\"\n");
    let checks_dir = checks.path().display().to_string();
    // A misspelt template variable and a protocol that is not a probe kind: errors at load
    // time naming file, line and key, never a silent skip (issue 14).
    let misspelt = tempfile::tempdir().unwrap();
    write(&misspelt, "typo.toml", "[[check]]\nid = \"typo\"\ntitle = \"t\"\nendpoint = \"device\"\nprotocol = \"https\"\nhost = \"{iothub_host}\"\n");
    let misspelt_dir = misspelt.path().display().to_string();
    let not_a_probe = tempfile::tempdir().unwrap();
    write(&not_a_probe, "dns.toml", "[[check]]\nid = \"resolver\"\ntitle = \"t\"\nendpoint = \"device\"\nprotocol = \"dns\"\nhost = \"h\"\n");
    let not_a_probe_dir = not_a_probe.path().display().to_string();
    let base = ["check", "--iothub-hostname", "h.example", "--timeout", "1"];
    let dps = [
        "check",
        "--id-scope",
        "0ne0",
        "--registration-id",
        "r",
        "--timeout",
        "1",
    ];
    let bad_state = write(&dir, "device_info", "hub_name = [unclosed\n");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [&base[..], &["--trust-bundle", "/nonexistent/ca.pem"]].concat(),
            "--trust-bundle: /nonexistent/ca.pem: cannot read",
        ),
        (
            [&base[..], &["--trust-bundle", &garbage]].concat(),
            "holds no PEM certificate",
        ),
        (
            [&base[..], &["--trust-bundle", &bad_pem]].concat(),
            "--trust-bundle",
        ),
        (
            [&base[..], &["--resolve", "h.example"]].concat(),
            "--resolve \"h.example\": expected HOST:ADDR",
        ),
        (
            [&base[..], &["--resolve", "h.example:999.1.1.1"]].concat(),
            "is not an IP address",
        ),
        (
            [&base[..], &["--connect-to", "h.example:x:127.0.0.1:1"]].concat(),
            "--connect-to",
        ),
        (
            [&base[..], &["--checks-dir", &checks_dir]].concat(),
            "mine.toml: line 5: unknown variant `smtp`",
        ),
        (
            [&base[..], &["--checks-dir", &misspelt_dir]].concat(),
            "typo.toml: line 6: host: unknown variable \"iothub_host\" in check \"typo\"",
        ),
        (
            [&base[..], &["--checks-dir", &not_a_probe_dir]].concat(),
            "dns.toml: line 5: protocol: \"dns\" in \"resolver\" is not a probe kind",
        ),
        (
            [&base[..], &["--var", "iothub_hostname=x"]].concat(),
            "--var iothub_hostname: the run sets iothub_hostname itself",
        ),
        (
            [&base[..], &["--var", "Plant=x"]].concat(),
            "NAME is lowercase letters, digits and _",
        ),
        (
            [&base[..], &["--checks-dir", "/nonexistent/dir"]].concat(),
            "--checks-dir: /nonexistent/dir: cannot read",
        ),
        (
            [
                &base[..],
                &["--device-id", "d", "--sas-key", "%%%not-base64"],
            ]
            .concat(),
            "--sas-key: the shared access key is not valid base64",
        ),
        (
            [&base[..], &["--connection-string", "HostName=h;DeviceId=d"]].concat(),
            "--connection-string: connection string lacks SharedAccessKey",
        ),
        (
            [&base[..], &["--proxy", "socks5://p:1080"]].concat(),
            "--proxy: proxy scheme \"socks5\" is not supported",
        ),
        (
            [&base[..], &["--only", "no-such-check"]].concat(),
            "\"no-such-check\" matches no check",
        ),
        (
            [
                &base[..],
                &[
                    "--x509-cert",
                    "/nonexistent/c.pem",
                    "--x509-key",
                    "/nonexistent/k.pem",
                ],
            ]
            .concat(),
            "--x509-cert: /nonexistent/c.pem: cannot read",
        ),
        (
            [&dps[..], &["--identity-state", "/nonexistent/device_info"]].concat(),
            "--identity-state: /nonexistent/device_info does not exist",
        ),
        (
            [&dps[..], &["--identity-state", &bad_state]].concat(),
            "device_info: not a provisioning state: TOML",
        ),
        // `iotedge check -o json` muscle memory, with the file flag.
        (
            [&base[..], &["--output-file", "json"]].concat(),
            "--output-file json: that is a format name; use -o json",
        ),
        // Nothing to check is not a green run.
        (
            vec!["check", "--no-config", "--timeout", "1"],
            "nothing to check: --no-config was given",
        ),
        (
            vec!["man", "frobnicate"],
            "man: no subcommand \"frobnicate\"",
        ),
    ];
    for (args, culprit) in cases {
        let r = run(args.clone()).await;
        let err = r.stderr();
        assert_eq!(r.code(), 2, "{args:?} exited {} with {err}", r.code());
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?} printed more than one line:\n{err}"
        );
        assert!(
            err.contains(culprit),
            "{args:?}: {err:?} does not name {culprit:?}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
        assert!(r.stdout().is_empty(), "{args:?} printed a report on error");
    }
}

/// Runs each case and checks: exit 2, one line, names the culprit, quickly, no secret.
async fn assert_refused(cases: Vec<(Vec<String>, String)>, within: std::time::Duration) {
    for (args, culprit) in cases {
        let started = std::time::Instant::now();
        let r = run(args.clone()).await;
        let took = started.elapsed();
        let err = r.stderr();
        let shown: Vec<String> = args.iter().map(|a| a.chars().take(60).collect()).collect();
        assert_eq!(r.code(), 2, "{shown:?} exited {} with {err}", r.code());
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{shown:?} printed more than one line:\n{err}"
        );
        assert!(
            err.contains(&culprit),
            "{shown:?}: {err:?} does not name {culprit:?}"
        );
        assert!(took < within, "{shown:?} took {took:?}");
        assert!(err.len() < 1000, "{shown:?}: an overlong error line");
        assert!(!err.contains('\u{1b}'), "{shown:?}: a terminal escape");
        assert!(r.stdout().is_empty(), "{shown:?} printed a report on error");
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Regression: `--config` on a FIFO blocked forever (ignoring `--timeout`), and /dev/zero as
/// any input file was read without limit.
#[tokio::test(flavor = "multi_thread")]
async fn fifos_and_devices_as_input_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let fifo = fifo.display().to_string();
    let with_zero_bundle = write(
        &dir,
        "zero-bundle.toml",
        "trust_bundle_cert = \"file:///dev/zero\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h.example;DeviceId=d;SharedAccessKey=YWJjZA==\"\n",
    );
    let checks = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", checks.path().join("zero.toml")).unwrap();
    let checks_dir = checks.path().display().to_string();
    let base = ["check", "--iothub-hostname", "h.example", "--timeout", "1"];
    let dps = [
        "check",
        "--id-scope",
        "0ne0",
        "--registration-id",
        "r",
        "--timeout",
        "1",
    ];
    let mut cases: Vec<(Vec<String>, String)> = Vec::new();
    for file in [fifo.as_str(), "/dev/zero"] {
        let kind = if file == "/dev/zero" {
            "character device"
        } else {
            "FIFO"
        };
        cases.extend([
            (
                strings(&["check", "--config", file, "--timeout", "1"]),
                format!("--config: cannot read {file}: is a {kind}"),
            ),
            (
                strings(&[&base[..], &["--trust-bundle", file]].concat()),
                format!("--trust-bundle: {file}: cannot read: is a {kind}"),
            ),
            (
                strings(
                    &[
                        &base[..],
                        &["--device-id", "d", "--x509-cert", file, "--x509-key", file],
                    ]
                    .concat(),
                ),
                format!("--x509-cert: {file}: cannot read: is a {kind}"),
            ),
            (
                strings(&[&dps[..], &["--identity-state", file]].concat()),
                format!("--identity-state: {file}: cannot read it: is a {kind}"),
            ),
        ]);
    }
    cases.push((
        strings(&["check", "--config", &with_zero_bundle, "--timeout", "1"]),
        "trust_bundle_cert: /dev/zero: cannot read: is a character device".into(),
    ));
    cases.push((
        strings(&[&base[..], &["--checks-dir", &checks_dir]].concat()),
        "zero.toml: cannot read: is a character device".into(),
    ));
    // A usable certificate with a FIFO or /dev/zero as its key.
    let cert = write(
        &dir,
        "device.pem",
        &fixtures::pki::Ca::new("edgeprobe test CA")
            .client_leaf("d")
            .cert_pem,
    );
    for (file, kind) in [(fifo.as_str(), "FIFO"), ("/dev/zero", "character device")] {
        cases.push((
            strings(
                &[
                    &base[..],
                    &["--device-id", "d", "--x509-cert", &cert, "--x509-key", file],
                ]
                .concat(),
            ),
            format!("--x509-key: {file}: cannot read: is a {kind}"),
        ));
    }
    assert_refused(cases, std::time::Duration::from_secs(5)).await;
}

/// Regression: a 200 KB deeply nested YAML (or TOML) took 19 s to parse.
#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_documents_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!(
        "agent:\n  env:\n    x: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let yaml = write(&dir, "config.yaml", &deep);
    let toml = write(
        &dir,
        "config.toml",
        &format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
    );
    let checks = tempfile::tempdir().unwrap();
    write(
        &checks,
        "deep.toml",
        &format!("x = {}1{}\n", "{a=".repeat(50_000), "}".repeat(50_000)),
    );
    let checks_dir = checks.path().display().to_string();
    let cases = vec![
        (
            strings(&["check", "--config", &yaml, "--timeout", "1"]),
            "nests deeper than".to_owned(),
        ),
        (
            strings(&["check", "--config", &toml, "--timeout", "1"]),
            "nests deeper than".to_owned(),
        ),
        (
            strings(&[
                "check",
                "--iothub-hostname",
                "h.example",
                "--checks-dir",
                &checks_dir,
            ]),
            "deep.toml: cannot read: nests deeper than".to_owned(),
        ),
    ];
    assert_refused(cases, std::time::Duration::from_secs(3)).await;
}

/// Strict inputs: what was silently accepted, echoed whole or printed on two lines.
#[tokio::test(flavor = "multi_thread")]
async fn strict_inputs_exit_2_with_one_short_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty_toml = write(&dir, "config.toml", "");
    let empty_yaml = write(&dir, "config.yaml", "# nothing\n\n");
    let checks = tempfile::tempdir().unwrap();
    write(&checks, "broken.toml", "[[check]\nid = \"x\"\n");
    let checks_dir = checks.path().display().to_string();
    let long = "a".repeat(100_000);
    let long_host = format!("{}.example", "h".repeat(100_000));
    let base = ["check", "--iothub-hostname", "h.example", "--timeout", "1"];
    let key = "c2VjcmV0LWtleS1mb3ItZWRnZXByb2JlLXRlc3RzLTE=";
    let cs_twice =
        format!("HostName=h.example;DeviceId=d;SharedAccessKey={key};SharedAccessKey={key}");
    let cs_unpadded = "HostName=h.example;DeviceId=d;c2VjcmV0LWtleS1mb3ItZWRnZXByb2JlLXRlc3RzLTE";
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            strings(&["check", "--config", &empty_toml]),
            format!("--config: cannot read {empty_toml}: the file is empty"),
        ),
        (
            strings(&["check", "--config", &empty_yaml]),
            "the file is empty".into(),
        ),
        (
            strings(&[&base[..], &["--device-id", "d", "--sas-key", ""]].concat()),
            "--sas-key: the shared access key is empty".into(),
        ),
        (
            strings(
                &[
                    &base[..],
                    &[
                        "--connection-string",
                        "HostName=h;DeviceId=d;SharedAccessKey=",
                    ],
                ]
                .concat(),
            ),
            "--connection-string: connection string SharedAccessKey is empty".into(),
        ),
        (
            strings(&[&base[..], &["--connection-string", &cs_twice]].concat()),
            "connection string names SharedAccessKey twice".into(),
        ),
        (
            strings(&[&base[..], &["--connection-string", cs_unpadded]].concat()),
            "connection string part 3 is not Key=Value".into(),
        ),
        (
            strings(&[&base[..], &["--connect-to", "h.example:443:127.0.0.1:0"]].concat()),
            "--connect-to \"h.example:443:127.0.0.1:0\": port 0".into(),
        ),
        (
            strings(&[&base[..], &["--proxy", "http://p.example:0"]].concat()),
            "--proxy: proxy port 0 is not usable".into(),
        ),
        (
            strings(&["check", "--iothub-hostname", &long_host]),
            "--iothub-hostname".into(),
        ),
        (
            strings(&[&base[..], &["--device-id", &long]].concat()),
            "--device-id: the device id is longer than 128 characters".into(),
        ),
        // A bad value is named after where it came from, not after a flag not given.
        (
            strings(&[
                "check",
                "--connection-string",
                "HostName=bad host;DeviceId=d;SharedAccessKey=YWJjZA==",
            ]),
            "--connection-string: HostName \"bad host\" is not a host name".into(),
        ),
        (
            strings(&[
                "check",
                "--connection-string",
                "HostName=h.example;DeviceId=dev ice;SharedAccessKey=YWJjZA==",
            ]),
            "--connection-string: DeviceId: the device id holds spaces".into(),
        ),
        (
            strings(
                &[
                    &base[..],
                    &["--id-scope", "bad scope", "--registration-id", "r"],
                ]
                .concat(),
            ),
            "--id-scope \"bad scope\" is not a usable name".into(),
        ),
        (
            strings(&[&base[..], &["--device-id", "dev\nice"]].concat()),
            "--device-id: the device id holds spaces, control characters".into(),
        ),
        (
            strings(&[&base[..], &["--device-id", "dev\u{1b}[31mice"]].concat()),
            "--device-id: the device id holds spaces, control characters".into(),
        ),
        (
            strings(&[&base[..], &["--checks-dir", &checks_dir]].concat()),
            "broken.toml: line".into(),
        ),
        (
            strings(&[&base[..], &["--only", &long]].concat()),
            "...\" matches no check".into(),
        ),
    ];
    assert_refused(cases, std::time::Duration::from_secs(5)).await;
}

/// Regression: a proxy password holding `/` was read as the port and printed; a password
/// never appears in an error, from `--proxy` or from the configuration.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_url_errors_never_print_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://alice:Pr0xyP4ss/x@proxy.corp:3128";
    let config = write(
        &dir,
        "config.toml",
        &format!(
            "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h.example;DeviceId=d;SharedAccessKey=YWJjZA==\"\n[agent.env]\nhttps_proxy = \"{url}\"\n"
        ),
    );
    for args in [
        strings(&["check", "--iothub-hostname", "h.example", "--proxy", url]),
        strings(&["check", "--config", &config]),
    ] {
        let r = run(args.clone()).await;
        let err = r.stderr();
        assert_eq!(r.code(), 2, "{args:?}: {err}");
        assert!(!err.contains("Pr0xyP4ss"), "{args:?}: {err}");
        assert!(err.contains("proxy"), "{args:?}: {err}");
    }
}

/// A non-UTF-8 value names its flag.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_utf8_argument_names_its_flag() {
    use std::os::unix::ffi::OsStrExt as _;
    let bad = std::ffi::OsStr::from_bytes(b"d\xffx");
    let out = tokio::process::Command::new(crate::support::bin())
        .arg("check")
        .arg("--device-id")
        .arg(bad)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--device-id"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

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

//! Support bundles: one file with the reports and the facts support asks for, and not one
//! secret in any of its files — tested in a failing scenario, where messages are richest.

use std::io::Read;

use fixtures::{HubFaults, PortFault};

use crate::support::{run, Hub, DEVICE, HUB, KEY};

const PROXY_PASSWORD: &str = "bundle-proxy-pw-4711";
const REGISTRY_PASSWORD: &str = "bundle-registry-pw-0815";

/// Every file of a .tar.gz bundle: (path, contents).
pub fn unpack(bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    for entry in archive.entries().expect("a tar.gz") {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        out.push((path, text));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_from_a_failing_run_holds_the_facts_and_no_secret() {
    let faults = HubFaults {
        mqtt: PortFault::UntrustedCert,
        reject_credentials: true,
        ..HubFaults::default()
    };
    let hub = Hub::start(faults).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "trust_bundle_cert = \"file://{}\"\n[provisioning]\nsource = \"manual\"\n\
             connection_string = \"HostName={HUB};DeviceId={DEVICE};SharedAccessKey={KEY}\"\n\
             [agent.config.auth]\nserveraddress = \"myacr.azurecr.io\"\nusername = \"u\"\npassword = \"{REGISTRY_PASSWORD}\"\n\
             [agent.env]\nhttps_proxy = \"http://alice:{PROXY_PASSWORD}@127.0.0.1:9\"\nUpstreamProtocol = \"Mqtt\"\n",
            hub.bundle.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("support.tar.gz");
    let mut args = vec![
        "bundle".to_owned(),
        "--config".into(),
        config.display().to_string(),
        "--timeout".into(),
        "5".into(),
        "--vantage".into(),
        "host".into(),
        "--output-file".into(),
        out.display().to_string(),
        // A configuration is read, so mcr.microsoft.com would be checked: not from a test.
        "--skip".into(),
        "registry-*".into(),
    ];
    args.extend(hub.hub.connect_to_args());
    let r = run(args).await;
    assert_eq!(
        r.code(),
        1,
        "the device cannot run (Mqtt is configured and untrusted): {}",
        r.stderr()
    );
    // The bundle goes to the file; stdout says where, and the verdict (issue 12).
    let said = r.stdout();
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.starts_with(&format!("wrote {} (", out.display())) && said.contains("not ready"),
        "{said}"
    );
    for secret in [KEY, REGISTRY_PASSWORD, PROXY_PASSWORD] {
        assert!(!said.contains(secret));
    }
    let files = unpack(&std::fs::read(&out).unwrap());
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "manifest.json",
        "report.json",
        "report.txt",
        "config/config.toml",
        "host/resolv.conf",
        "tls/iothub-mqtt.pem",
        "tls/iothub-amqp.pem",
    ] {
        assert!(
            names.contains(&format!("edgeprobe-bundle/{want}").as_str()),
            "{want} missing from {names:?}"
        );
    }
    for (path, text) in &files {
        for secret in [
            KEY,
            PROXY_PASSWORD,
            REGISTRY_PASSWORD,
            "SharedAccessSignature",
            "sig=",
        ] {
            assert!(
                !text.contains(secret),
                "{path} contains {secret:?}:\n{text}"
            );
        }
    }
    let get = |p: &str| &files.iter().find(|(n, _)| n.ends_with(p)).unwrap().1;
    // The intercepted chain is kept, so support sees who signed it.
    assert!(get("tls/iothub-mqtt.pem").contains("BEGIN CERTIFICATE"));
    let config = get("config/config.toml");
    assert!(
        config.contains("SharedAccessKey=<redacted>") && config.contains("alice:<redacted>@"),
        "{config}"
    );
    let manifest: serde_json::Value = serde_json::from_str(get("manifest.json")).unwrap();
    let entries = manifest["files"].as_array().unwrap();
    assert!(entries
        .iter()
        .all(|e| e["collected_by"].is_string() && e["status"].is_string()));
    let container = entries
        .iter()
        .find(|e| e["path"] == "container/resolv.conf")
        .unwrap();
    assert_eq!(container["status"], "unavailable");
    let state = entries
        .iter()
        .find(|e| e["path"] == "iotedge/provisioning-state.toml")
        .unwrap();
    assert_eq!(
        (state["status"].as_str(), state["reason"].as_str()),
        (
            Some("unavailable"),
            Some("the device is not provisioned by DPS")
        )
    );
    assert!(container["reason"]
        .as_str()
        .unwrap()
        .contains("container vantage"));
    let report: edgeprobe_report::json::JsonReport =
        serde_json::from_str(get("report.json")).unwrap();
    assert_eq!(
        report.context.configured_upstream_protocol.as_deref(),
        Some("Mqtt")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_can_go_to_stdout_and_defaults_to_a_new_file_named_for_the_host() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut args = vec![
        "bundle".to_owned(),
        "--vantage".into(),
        "host".into(),
        "--output-file".into(),
        "-".into(),
    ];
    args.extend(hub.args(5.0).into_iter().skip(1));
    let r = run(args).await;
    let files = unpack(&r.output.stdout);
    assert!(files.iter().any(|(p, _)| p.ends_with("report.json")));
    // With the bundle on stdout, where it went and the verdict go to stderr.
    assert!(r.stderr().contains("wrote - ("), "{}", r.stderr());

    // No destination: edgeprobe-bundle-<host>-<UTC time>.tar.gz in the working directory,
    // and the path and the verdict on stdout.
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["bundle".to_owned(), "--vantage".into(), "host".into()];
    args.extend(hub.args(5.0).into_iter().skip(1));
    let r = crate::support::run_in(dir.path(), args.clone()).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "one file and no temporary one: {names:?}");
    let name = &names[0];
    assert!(
        name.starts_with("edgeprobe-bundle-") && name.ends_with("Z.tar.gz"),
        "{name}"
    );
    let out = r.stdout();
    assert!(
        out.contains(&format!("wrote {name} (")) && out.contains("ready"),
        "{out}"
    );
    let path = dir.path().join(name);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "a bundle describes the device: owner only"
    );
    let first = std::fs::read(&path).unwrap();
    assert!(unpack(&first)
        .iter()
        .any(|(p, _)| p.ends_with("report.json")));

    // A bundle never replaces a file: naming an existing one is refused, and it is untouched.
    args.extend(["--output-file".into(), path.display().to_string()]);
    let r = crate::support::run_in(dir.path(), args).await;
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("the file exists"), "{}", r.stderr());
    assert_eq!(std::fs::read(&path).unwrap(), first);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_file_replaces_the_report_atomically() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    std::fs::write(&path, "previous report").unwrap();
    let mut args = hub.args(5.0);
    args.extend(["--output-file".into(), path.display().to_string()]);
    let r = run(args).await;
    assert!(r.stdout().is_empty());
    let written: edgeprobe_report::json::JsonReport =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written.schema_version, 1);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left behind");
    // A destination that cannot be written is a usage error naming it, and nothing is lost.
    let mut args = hub.args(5.0);
    args.extend([
        "--output-file".into(),
        "/nonexistent-dir/report.json".into(),
    ]);
    let r = run(args).await;
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("/nonexistent-dir/report.json"),
        "{}",
        r.stderr()
    );
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Regression: `--output-file` onto a FIFO or device node replaced it with a regular file,
/// an existing 0600 report became 0644, and bundles were world-readable.
#[tokio::test(flavor = "multi_thread")]
async fn output_files_keep_their_mode_and_special_files_are_refused() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut args = hub.args(5.0);
    args.extend(["--output-file".into(), fifo.display().to_string()]);
    let r = run(args).await;
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert_eq!(r.stderr().trim_end().lines().count(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("--output-file"), "{}", r.stderr());
    assert!(r.stderr().contains("FIFO"), "{}", r.stderr());
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());

    let report = dir.path().join("report.json");
    std::fs::write(&report, "previous").unwrap();
    std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut args = hub.args(5.0);
    args.extend(["--output-file".into(), report.display().to_string()]);
    let r = run(args).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_ne!(std::fs::read_to_string(&report).unwrap(), "previous");
    assert_eq!(mode(&report), 0o600, "an existing 0600 report stays 0600");

    let bundle = dir.path().join("out.tar.gz");
    let mut args = vec![
        "bundle".to_owned(),
        "--vantage".into(),
        "host".into(),
        "--output-file".into(),
        bundle.display().to_string(),
    ];
    args.extend(hub.args(5.0).into_iter().skip(1));
    let r = run(args).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(mode(&bundle), 0o600, "a bundle is for its owner only");
}

/// Regression: `bundle -o out/x.tar.gz` wrote through `out/.x.tar.gz.PID.tmp`, following a
/// symlink planted there. Plant symlinks at the old name (for the next PIDs) and at
/// plausible names: their target is never touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_never_writes_through_a_planted_symlink() {
    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // The next process ids are the likely ones for the child.
    let pid = std::process::id();
    for p in pid..pid + 2000 {
        std::os::unix::fs::symlink(&victim, out.join(format!(".x.tar.gz.{p}.tmp"))).unwrap();
    }
    for name in [".edgeprobe-.tmp", "x.tar.gz.tmp", ".x.tar.gz.tmp"] {
        std::os::unix::fs::symlink(&victim, out.join(name)).unwrap();
    }
    let target = out.join("x.tar.gz");
    let mut args = vec![
        "bundle".to_owned(),
        "--vantage".into(),
        "host".into(),
        "--output-file".into(),
        target.display().to_string(),
    ];
    args.extend(hub.args(5.0).into_iter().skip(1));
    let r = run(args).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!unpack(&std::fs::read(&target).unwrap()).is_empty());
    // Only the symlinks we planted and the bundle are there.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !std::fs::symlink_metadata(out.join(n))
                .unwrap()
                .file_type()
                .is_symlink()
        })
        .collect();
    assert_eq!(names, vec!["x.tar.gz".to_owned()]);
}

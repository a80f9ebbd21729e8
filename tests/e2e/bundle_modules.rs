//! What support asks for first, against the real Docker engine: edgeAgent, edgeHub and a
//! module on the modules' network (a local busybox image that prints known lines, secrets
//! among them), their logs within the window and their inspect, the journals (a missing one
//! is a manifest entry with its reason), and not one secret in any file.

use std::process::Command;

use fixtures::HubFaults;

use crate::bundle::unpack;
use crate::docker::DockerNet;
use crate::support::{run, sh, Hub};

const SAS_SIG: &str = "LOGSIGsecret123";
const LOG_KEY: &str = "TE9HS0VZc2VjcmV0LWZyb20tbG9ncw==";
const ENV_KEY: &str = "RU5WS0VZc2VjcmV0LWZyb20tZW52";
const PROXY_PW: &str = "LOGPROXYpw77";
const BEARER: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJlMmUtdGVzdCJ9.c2lnbmF0dXJlLW9mLWEtand0";

/// A busybox image built here with `docker import` (nothing is pulled), removed on drop.
pub struct BusyboxImage {
    pub tag: String,
}

impl BusyboxImage {
    pub fn build() -> BusyboxImage {
        let tag = format!("edgeprobe-e2e-busybox:{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        // busybox-static (tests/install-deps.sh): no library to copy.
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox from busybox-static (make test-deps)");
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let tarball = dir.path().join("rootfs.tar");
        sh(&[
            "tar",
            "-C",
            &root.display().to_string(),
            "-cf",
            &tarball.display().to_string(),
            ".",
        ]);
        sh(&[
            "docker",
            "import",
            "--change",
            "ENTRYPOINT [\"/bin/busybox\"]",
            &tarball.display().to_string(),
            &tag,
        ]);
        BusyboxImage { tag }
    }
}

impl Drop for BusyboxImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

/// Containers removed on drop (by name).
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
    }
}

/// Runs a container to completion (attached: its lines are in its log when this returns).
fn run_to_end(name: &str, extra: &[&str], image: &str, script: &str) {
    let mut args = vec!["run", "--name", name];
    args.extend_from_slice(extra);
    args.extend([image, "sh", "-c", script]);
    let out = Command::new("docker").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn manifest_entry<'a>(manifest: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not in the manifest: {manifest:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_holds_the_modules_logs_and_inspect_the_journals_and_no_secret() {
    if !fixtures::needs_root() {
        return;
    }
    let image = BusyboxImage::build();
    let net = DockerNet::new("modules");
    let prefix = format!("e2e-bundle-{}-", std::process::id());
    let agent = format!("{prefix}edgeAgent");
    let hub_c = format!("{prefix}edgeHub");
    let sensor = format!("{prefix}sensor");
    let stranger = format!("{prefix}stranger");
    let _containers = Containers(vec![
        agent.clone(),
        hub_c.clone(),
        sensor.clone(),
        stranger.clone(),
    ]);
    for n in [&agent, &hub_c, &sensor, &stranger] {
        let _ = Command::new("docker").args(["rm", "-f", n]).output();
    }
    let owner = "net.azure-devices.edge.owner=Microsoft.Azure.Devices.Edge.Agent";
    let env_cs = format!("EdgeHubConnectionString=HostName=testhub.azure-devices.net;DeviceId=dev-1;ModuleId=$edgeHub;SharedAccessKey={ENV_KEY}");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    run_to_end(
        &agent,
        &[
            "--label",
            owner,
            "--network",
            &net.name,
            "-e",
            "UpstreamProtocol=Amqp",
        ],
        &image.tag,
        &format!(
            "echo 'edgeAgent: starting the runtime modules'; \
             echo 'edgeAgent: pulled with Authorization: Bearer {BEARER}'; \
             echo 'edgeAgent: proxy http://bob:{PROXY_PW}@proxy.corp:3128'"
        ),
    );
    run_to_end(
        &hub_c,
        &[
            "--label", owner, "--network", &net.name, "-e", "UpstreamProtocol=Amqp", "-e", &env_cs,
        ],
        &image.tag,
        &format!(
            "i=0; while [ $i -lt 300 ]; do echo \"edgeHub: filler line $i of a long day\"; i=$((i+1)); done; \
             echo 'edgeHub: token SharedAccessSignature sr=testhub.azure-devices.net%2Fdevices%2Fdev-1&sig={SAS_SIG}%3D&se=1900000000&skn=device'; \
             echo 'edgeHub: device connection string HostName=testhub.azure-devices.net;DeviceId=dev-1;SharedAccessKey={LOG_KEY}' >&2; \
             echo 'edgeHub: connected upstream over Amqp, the last line'"
        ),
    );
    run_to_end(
        &sensor,
        &["--network", &net.name],
        &image.tag,
        "echo 'sensor: reading 21.5'",
    );
    run_to_end(&stranger, &[], &image.tag, "echo 'not a module'");

    let hub = Hub::start(HubFaults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "bundle".to_owned(),
            "--vantage".into(),
            "host".into(),
            "--network".into(),
            net.name.clone(),
            "--module-prefix".into(),
            prefix.clone(),
            "--output-file".into(),
            dir.path().join(name).display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(hub.args(5.0).into_iter().skip(1));
        args
    };
    let r = run(bundle("full.tar.gz", &[])).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let bytes = std::fs::read(dir.path().join("full.tar.gz")).unwrap();
    let files = unpack(&bytes);
    let get = |p: &str| -> &str {
        &files
            .iter()
            .find(|(n, _)| *n == format!("edgeprobe-bundle/{p}"))
            .unwrap_or_else(|| {
                panic!(
                    "{p} missing from {:?}",
                    files.iter().map(|f| &f.0).collect::<Vec<_>>()
                )
            })
            .1
    };
    let manifest: serde_json::Value = serde_json::from_str(get("manifest.json")).unwrap();

    // The runtime first, then the module on the network; the stranger is no module.
    let listed = get("modules/modules.tsv");
    let names: Vec<&str> = listed
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, [agent.as_str(), &hub_c, &sensor], "{listed}");
    assert!(
        listed.contains(&format!("on network {}", net.name)),
        "{listed}"
    );

    for m in [&agent, &hub_c] {
        let inspect: serde_json::Value =
            serde_json::from_str(get(&format!("modules/{m}/inspect.json"))).unwrap();
        let env: Vec<&str> = inspect["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(env.contains(&"UpstreamProtocol=Amqp"), "{m}: {env:?}");
        assert_eq!(
            inspect["Config"]["Labels"]["net.azure-devices.edge.owner"],
            "Microsoft.Azure.Devices.Edge.Agent"
        );
    }
    let hub_inspect = get(&format!("modules/{hub_c}/inspect.json"));
    assert!(
        hub_inspect.contains("ModuleId=$edgeHub;SharedAccessKey=<redacted>"),
        "the connection string stays readable, its key does not"
    );
    let agent_log = get(&format!("modules/{agent}/logs.txt"));
    assert!(
        agent_log.contains("edgeAgent: starting the runtime modules"),
        "{agent_log}"
    );
    assert!(
        agent_log.contains("bob:<redacted>@proxy.corp:3128"),
        "{agent_log}"
    );
    let hub_log = get(&format!("modules/{hub_c}/logs.txt"));
    for line in [
        "edgeHub: filler line 0 of a long day",
        "edgeHub: token <redacted SAS token>",
        "DeviceId=dev-1;SharedAccessKey=<redacted>",
        "edgeHub: connected upstream over Amqp, the last line",
    ] {
        assert!(hub_log.contains(line), "{line:?} not in:\n{hub_log}");
    }
    // Timestamped by the engine.
    assert!(hub_log.lines().all(|l| l.starts_with("20")), "{hub_log}");
    assert!(get(&format!("modules/{sensor}/logs.txt")).contains("sensor: reading 21.5"));
    let net_json: serde_json::Value = serde_json::from_str(get("docker/network.json")).unwrap();
    assert_eq!(net_json["Name"], net.name.as_str());
    let version: serde_json::Value = serde_json::from_str(get("versions/docker.json")).unwrap();
    assert!(version["ApiVersion"].is_string(), "{version}");
    assert!(get("host/hosts").contains("localhost"));

    // A service that is not installed here is one manifest entry with its reason.
    let keyd = manifest_entry(&manifest, "journals/aziot-keyd.log");
    assert_eq!(keyd["status"], "unavailable", "{keyd}");
    assert!(
        keyd["reason"].as_str().unwrap().contains("aziot-keyd"),
        "{keyd}"
    );
    let certs = manifest_entry(&manifest, "iotedge/certificates.tsv");
    assert_eq!(certs["status"], "unavailable");
    for e in manifest["files"].as_array().unwrap() {
        assert!(
            e["status"] == "ok" || e["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "every missing source says why: {e}"
        );
    }

    for (path, text) in &files {
        for secret in [
            SAS_SIG,
            LOG_KEY,
            ENV_KEY,
            PROXY_PW,
            BEARER,
            "eyJzdWIiOiJlMmUtdGVzdCJ9",
            crate::support::KEY,
        ] {
            assert!(!text.contains(secret), "{path} contains {secret:?}");
        }
    }

    // The window: nothing the modules printed is before it ends.
    let before = (started - 3600).to_string();
    let r = run(bundle(
        "window.tar.gz",
        &["--since", "2d", "--until", &before],
    ))
    .await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let files = unpack(&std::fs::read(dir.path().join("window.tar.gz")).unwrap());
    assert!(
        !files.iter().any(|(p, _)| p.ends_with("/logs.txt")),
        "no log in the window"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &files
            .iter()
            .find(|(p, _)| p.ends_with("manifest.json"))
            .unwrap()
            .1,
    )
    .unwrap();
    let hub_entry = manifest_entry(&manifest, &format!("modules/{hub_c}/logs.txt"));
    assert_eq!(hub_entry["status"], "unavailable");
    assert!(hub_entry["reason"]
        .as_str()
        .unwrap()
        .contains("logged nothing in the window"));

    // The size bound: the last KiB, from a line start, and a line saying what was dropped.
    let r = run(bundle("small.tar.gz", &["--log-limit", "1"])).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let files = unpack(&std::fs::read(dir.path().join("small.tar.gz")).unwrap());
    let small = &files
        .iter()
        .find(|(p, _)| p.ends_with(&format!("modules/{hub_c}/logs.txt")))
        .unwrap()
        .1;
    assert!(small.starts_with("[edgeprobe: "), "{small}");
    assert!(small.contains("earlier bytes dropped"), "{small}");
    assert!(small.contains("the last line"), "{small}");
    assert!(!small.contains("filler line 0 "), "{small}");
    assert!(small.len() < 1024 + 200, "{} bytes", small.len());

    // --until before --since is refused before anything runs.
    let r = run(bundle("bad.tar.gz", &["--since", "1h", "--until", "2d"])).await;
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("--until"), "{}", r.stderr());
}

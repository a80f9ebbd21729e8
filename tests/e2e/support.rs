//! Shared test plumbing: run the real binary, parse its JSON back into the public types,
//! start simulated hubs, and make network namespaces that are removed even when a test fails.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use edgeprobe_iotedge::secret::Secret;
use edgeprobe_report::json::{Check, JsonReport};
use fixtures::{HubFaults, HubOptions, SimulatedHub};

pub const HUB: &str = "testhub.azure-devices.net";
pub const DEVICE: &str = "dev-1";
/// The device key the simulated hub knows (base64 of a made-up 32-byte value).
pub const KEY: &str = "c2VjcmV0LWtleS1mb3ItZWRnZXByb2JlLXRlc3RzLTE=";
/// A key the hub does not know.
pub const WRONG_KEY: &str = "d3Jvbmcta2V5LWZvci1lZGdlcHJvYmUtdGVzdHMtMDA=";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_edgeprobe")
}

/// A finished run of the binary.
pub struct Run {
    pub output: Output,
    pub elapsed: Duration,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn json(&self) -> JsonReport {
        serde_json::from_slice(&self.output.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not a JSON report ({e}):\n{}\nstderr: {}",
                self.stdout(),
                self.stderr()
            )
        })
    }
}

/// Runs the binary with `args` (no shell), off the async runtime's threads.
pub async fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    run_prefixed(&[], args).await
}

/// Runs `prefix... edgeprobe args...` (e.g. `ip netns exec NS`).
pub async fn run_prefixed(prefix: &[&str], args: Vec<String>) -> Run {
    run_full(prefix, args, &[]).await
}

/// Runs the binary with extra environment variables.
pub async fn run_env(args: Vec<String>, env: &[(&str, &str)]) -> Run {
    run_full(&[], args, env).await
}

/// Runs the binary in the working directory `dir` (for files it names itself).
pub async fn run_in(dir: &Path, args: Vec<String>) -> Run {
    run_cwd(&[], args, &[], Some(dir)).await
}

async fn run_full(prefix: &[&str], args: Vec<String>, env: &[(&str, &str)]) -> Run {
    run_cwd(prefix, args, env, None).await
}

async fn run_cwd(
    prefix: &[&str],
    args: Vec<String>,
    env: &[(&str, &str)],
    cwd: Option<&Path>,
) -> Run {
    let (program, rest): (String, Vec<String>) = match prefix.split_first() {
        Some((p, r)) => (
            p.to_string(),
            r.iter()
                .map(|s| s.to_string())
                .chain([bin().to_owned()])
                .chain(args)
                .collect(),
        ),
        None => (bin().to_owned(), args),
    };
    let started = Instant::now();
    let mut command = tokio::process::Command::new(program);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let output = command
        .args(rest)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("EDGEPROBE_SAS_KEY")
        .env_remove("EDGEPROBE_CONNECTION_STRING")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("the edgeprobe binary runs");
    Run {
        output,
        elapsed: started.elapsed(),
    }
}

/// A simulated hub plus its trust bundle on disk.
pub struct Hub {
    pub hub: SimulatedHub,
    _dir: tempfile::TempDir,
    pub bundle: PathBuf,
}

impl Hub {
    pub async fn start(faults: HubFaults) -> Hub {
        Self::start_with(faults, |_| {}).await
    }

    /// A hub on the real ports (8883, 5671, 443) of its own loopback address, so that
    /// third-party proxies can reach it by name. Needs root.
    pub async fn start_real_ports(faults: HubFaults, ip: &str) -> Hub {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        Self::start_with(faults, |o| {
            o.bind = ip;
            o.real_ports = true;
        })
        .await
    }

    /// A hub that also accepts X.509 devices (client certificates from its device CA).
    pub async fn start_x509() -> Hub {
        Self::start_with(HubFaults::default(), |o| o.x509_devices = true).await
    }

    /// An edge device (a gateway or a parent) named `hostname` that answers for the hub:
    /// usernames and tokens still name the IoT Hub.
    pub async fn start_edge(faults: HubFaults, hostname: &str) -> Hub {
        let hostname = hostname.to_owned();
        Self::start_with(faults, |o| {
            o.hostname = hostname;
            o.iothub_name = Some(HUB.into());
        })
        .await
    }

    pub async fn start_with(faults: HubFaults, tweak: impl FnOnce(&mut HubOptions)) -> Hub {
        let mut options = HubOptions::new(HUB);
        options.devices = vec![(DEVICE.into(), Secret::new(KEY))];
        options.faults = faults;
        tweak(&mut options);
        let hub = SimulatedHub::start(options).await.expect("hub starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, &hub.ca_pem).expect("write bundle");
        Hub {
            hub,
            _dir: dir,
            bundle,
        }
    }

    /// Arguments for a JSON check against this hub, with the device key.
    pub fn args(&self, timeout_secs: f64) -> Vec<String> {
        let mut a = self.base_args(timeout_secs);
        a.extend(self.hub.connect_to_args());
        a
    }

    /// Arguments for a hub on its real ports: the name resolves to its address.
    pub fn args_real_ports(&self, timeout_secs: f64) -> Vec<String> {
        let mut a = self.base_args(timeout_secs);
        a.extend(["--resolve".into(), format!("{HUB}:{}", self.hub.https.ip())]);
        a
    }

    fn base_args(&self, timeout_secs: f64) -> Vec<String> {
        let a: Vec<String> = vec![
            "check".into(),
            "--iothub-hostname".into(),
            HUB.into(),
            "--device-id".into(),
            DEVICE.into(),
            "--sas-key".into(),
            KEY.into(),
            "--trust-bundle".into(),
            self.bundle.display().to_string(),
            "--timeout".into(),
            timeout_secs.to_string(),
            "--output".into(),
            "json".into(),
        ];
        a
    }
}

pub fn check<'a>(report: &'a JsonReport, id: &str) -> &'a Check {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in the report"))
}

/// Asserts a check's status and reason, and that its message says `words`.
pub fn assert_check<'a>(
    report: &'a JsonReport,
    id: &str,
    status: &str,
    reason: &str,
    words: &str,
) -> &'a Check {
    let c = check(report, id);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        (status, reason),
        "{id}: {}",
        c.message
    );
    assert!(c.message.contains(words), "{id}: {}", c.message);
    c
}

/// Replaces `flag`'s value in an argument list.
pub fn set_arg(args: &mut [String], flag: &str, value: &str) {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} not in args"));
    args[i + 1] = value.to_owned();
}

/// `check` with the registry checks of `config` only, `bundle` trusted, JSON out.
/// mcr.microsoft.com is skipped: a test never contacts it.
pub fn registry_check_args(config: &Path, bundle: &Path, timeout: f64) -> Vec<String> {
    [
        "check",
        "--config",
        &config.display().to_string(),
        "--vantage",
        "host",
        "--only",
        "registry-*",
        "--skip",
        "registry-mcr-microsoft-com",
        "--trust-bundle",
        &bundle.display().to_string(),
        "--timeout",
        &timeout.to_string(),
        "--output",
        "json",
    ]
    .map(String::from)
    .to_vec()
}

/// Removes `flag` and its value.
pub fn drop_arg(args: &mut Vec<String>, flag: &str) {
    if let Some(i) = args.iter().position(|a| a == flag) {
        args.drain(i..i + 2);
    }
}

/// A network namespace, deleted on drop (also when the test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("ep-{tag}-{}", std::process::id());
        // A leftover of an earlier run with the same PID (the name is per process).
        if std::path::Path::new("/run/netns").join(&name).exists() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .status();
        }
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace and insists that it succeeds.
    pub fn exec(&self, cmd: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        sh(&full);
    }

    pub fn prefix(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.name]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a command and panics with its output when it fails.
pub fn sh(cmd: &[&str]) {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (the lab tests need root and iproute2/iptables: run `make test-deps` as root)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An iptables rule, inserted at the top of its chain and deleted on drop (also when the
/// test panics).
pub struct IptablesRule(Vec<String>);

impl IptablesRule {
    /// `iptables -I CHAIN SPEC...`.
    pub fn insert(chain: &str, spec: &[&str]) -> IptablesRule {
        let mut cmd = vec!["iptables", "-I", chain];
        cmd.extend_from_slice(spec);
        sh(&cmd);
        IptablesRule(
            std::iter::once(chain.to_owned())
                .chain(spec.iter().map(|s| s.to_string()))
                .collect(),
        )
    }
}

impl Drop for IptablesRule {
    fn drop(&mut self) {
        let _ = std::process::Command::new("iptables")
            .arg("-D")
            .args(&self.0)
            .output();
    }
}

/// `edgeprobe serve-fixture` as a process inside a namespace: the simulated hub placed where
/// a real one would be. It prints one JSON line (addresses, CA) and is killed on drop.
pub struct FixtureProcess {
    child: std::process::Child,
    info: serde_json::Value,
}

impl FixtureProcess {
    /// Starts `serve-fixture ARGS...` in `ns` and waits for its line.
    pub fn start(ns: &Netns, args: &[&str]) -> FixtureProcess {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, bin(), "serve-fixture"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("serve-fixture starts");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        match serde_json::from_str(&line) {
            Ok(info) => FixtureProcess { child, info },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve-fixture said {line:?}: {e}");
            }
        }
    }

    /// A field of its line: `mqtt`, `amqp`, `https` (addresses) or `ca_pem`.
    pub fn get(&self, key: &str) -> String {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("serve-fixture printed no {key}"))
            .to_owned()
    }
}

impl Drop for FixtureProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

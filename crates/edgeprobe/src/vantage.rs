//! The container vantage: edgeAgent and edgeHub do not run on the host network but on the
//! Docker network named in `moby_runtime.network`, so the same checks also run from a
//! container attached to it, and the two views merge into one report.
//!
//! No image is ever pulled (the networks that need diagnosing are exactly those that cannot
//! reach a registry): the probe image is built locally from this very binary and reused.
//! The engine is reached through its API (bollard, in `edgeprobe-docker`). Every container
//! is removed, also on timeout and Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{Endpoint, Outcome, Protocol, Reason, Status, Vantage};
use edgeprobe_docker::{ContainerRun, DaemonFacts, Engine, NetworkFacts, RunSpec};
use edgeprobe_iotedge::config::EdgeConfig;
use edgeprobe_iotedge::identity::Credentials;
use edgeprobe_report::json::JsonReport;
use tokio::time::Instant;

use crate::cli::{CheckArgs, VantageChoice};
use crate::AppError;

/// Where the container sees its inputs.
const MOUNT_DIR: &str = "/run/edgeprobe";
/// Time the container needs after its own deadline to exit and report (its start-up
/// comes out of its deadline, which is absolute).
const CONTAINER_OVERHEAD: Duration = Duration::from_millis(400);
/// The shortest container run worth starting.
const MIN_CONTAINER_RUN: Duration = Duration::from_millis(1000);
/// Longest we wait for the engine's first answer.
const ENGINE_BUDGET: Duration = Duration::from_secs(3);

/// A ready container vantage: the engine, the network and the probe image.
pub struct ContainerSide {
    pub engine: Engine,
    pub network: String,
    pub facts: NetworkFacts,
    pub daemon: Option<DaemonFacts>,
    pub image: String,
}

impl ContainerSide {
    pub fn vantage(&self) -> Vantage {
        Vantage::Container(self.network.clone())
    }
}

/// The network the modules use: `--network`, else the configuration's, else the default.
pub fn network_name(args: &CheckArgs, cfg: Option<&EdgeConfig>) -> String {
    args.network
        .clone()
        .or_else(|| cfg.map(|c| c.moby_runtime.network.name.clone()))
        .unwrap_or_else(|| "azure-iot-edge".to_owned())
}

/// Decides whether the container vantage runs, and prepares it. With `--vantage both`
/// (the default) a missing engine or network is a note; with `--vantage container` it is
/// an error.
pub async fn prepare(
    args: &CheckArgs,
    cfg: Option<&EdgeConfig>,
    notes: &mut Vec<String>,
    deadline: Instant,
) -> Result<Option<ContainerSide>, AppError> {
    if args.vantage == VantageChoice::Host {
        return Ok(None);
    }
    let required = args.vantage == VantageChoice::Container;
    let skip = |notes: &mut Vec<String>, why: String| -> Result<Option<ContainerSide>, AppError> {
        if required {
            Err(AppError::Usage(format!("--vantage container: {why}")))
        } else {
            notes.push(format!("checks ran from the host only: {why}"));
            Ok(None)
        }
    };
    let budget = deadline.min(Instant::now() + ENGINE_BUDGET);
    let uri = cfg.and_then(|c| c.moby_runtime.uri.clone());
    let engine = match Engine::connect(uri.as_deref(), budget).await {
        Ok(e) => e,
        Err(e) => return skip(notes, e.to_string()),
    };
    let network = network_name(args, cfg);
    let facts = match engine.network_facts(&network, budget).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return skip(
                notes,
                format!("the Docker network {network:?} does not exist (IoT Edge creates it when the runtime starts)"),
            )
        }
        Err(e) => return skip(notes, e.to_string()),
    };
    let binary = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => return skip(notes, format!("cannot locate the edgeprobe binary: {e}")),
    };
    // Building the image (a first run, or a new binary) may take longer than the engine's
    // answers: it may use the run's time down to what the container needs to run at all.
    let image_deadline = deadline
        .checked_sub(CONTAINER_OVERHEAD + MIN_CONTAINER_RUN)
        .filter(|d| *d > budget)
        .unwrap_or(budget);
    let image = match engine
        .ensure_probe_image(&binary, env!("CARGO_PKG_VERSION"), image_deadline)
        .await
    {
        Ok(i) => i.reference,
        Err(e) => return skip(notes, e.to_string()),
    };
    let daemon = engine.daemon_facts(&args.system_root, budget).await.ok();
    Ok(Some(ContainerSide {
        engine,
        network,
        facts,
        daemon,
        image,
    }))
}

/// What the container run needs from the host's resolved inputs.
pub struct ContainerInputs {
    pub vars: Vec<(String, String)>,
    pub credentials: Option<Credentials>,
    pub sas_key: Option<String>,
    pub trust_pem: String,
    pub proxy_url: Option<String>,
    pub no_proxy: String,
    pub configured: Option<String>,
}

/// The result of the container side.
pub struct ContainerOutcome {
    pub results: Vec<CheckResult>,
    pub run: Option<ContainerRun>,
    pub error: Option<String>,
}

/// Runs the checks inside a container on the network and returns its results, with the
/// container vantage. Failures of the container itself come back as `error`, not as probes.
pub async fn run(
    side: &ContainerSide,
    args: &CheckArgs,
    inputs: ContainerInputs,
    deadline: Instant,
) -> ContainerOutcome {
    let failed = |error: String| ContainerOutcome {
        results: Vec::new(),
        run: None,
        error: Some(error),
    };
    // Registries are the host's business; with no upstream named there is nothing to run.
    let upstream = [
        "iothub_hostname",
        "dps_endpoint",
        "parent_hostname",
        "gateway_hostname",
    ];
    if !upstream
        .iter()
        .any(|v| inputs.vars.iter().any(|(k, _)| k == v))
        && args.checks_dir.is_none()
    {
        return ContainerOutcome {
            results: Vec::new(),
            run: None,
            error: None,
        };
    }
    let inner = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(CONTAINER_OVERHEAD);
    if inner < MIN_CONTAINER_RUN / 2 {
        return failed("not enough time left for the container vantage; raise --timeout".into());
    }
    let dir = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => return failed(format!("cannot prepare the container's inputs: {e}")),
    };
    let mut cmd: Vec<String> = vec![
        "check".into(),
        "--vantage".into(),
        "host".into(),
        "--output".into(),
        "json".into(),
        "--timeout".into(),
        format!("{:.3}", inner.as_secs_f64()),
        // The same clock inside: whatever the engine takes to start the container is
        // taken from the probes' time, not added to the run.
        "--until-unix-ms".into(),
        (SystemTime::now() + inner)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string(),
        "--concurrency".into(),
        args.concurrency.to_string(),
        // The modules' side verifies with the Mozilla set their images carry.
        "--roots".into(),
        args.roots.clone().unwrap_or_else(|| "mozilla".into()),
    ];
    for (var, value) in &inputs.vars {
        let flag = match var.as_str() {
            "iothub_hostname" => "--iothub-hostname",
            "device_id" => "--device-id",
            "parent_hostname" => "--parent-hostname",
            "gateway_hostname" => "--gateway-hostname",
            "id_scope" => "--id-scope",
            "registration_id" => "--registration-id",
            "dps_endpoint" => "--dps-endpoint",
            // The run's own variables the container learns otherwise.
            v if edgeprobe_core::catalog::RUN_VARS.contains(&v) => continue,
            // The user's `--var`s, for their checks' templates.
            _ => {
                cmd.extend(["--var".into(), format!("{var}={value}")]);
                continue;
            }
        };
        cmd.extend([flag.to_owned(), value.clone()]);
    }
    for r in &args.resolve {
        cmd.extend(["--resolve".into(), r.clone()]);
    }
    for c in &args.connect_to {
        cmd.extend(["--connect-to".into(), c.clone()]);
    }
    for o in &args.only {
        cmd.extend(["--only".into(), o.clone()]);
    }
    for s in &args.skip {
        cmd.extend(["--skip".into(), s.clone()]);
    }
    // The engine pulls images from the host, so registries are the host's business only.
    cmd.extend(["--skip".into(), "registry-*".into()]);
    if args.no_auth {
        cmd.push("--no-auth".into());
    }
    if let Some(p) = &inputs.configured {
        cmd.extend(["--upstream-protocol".into(), p.clone()]);
    }
    let mut mounts: Vec<(PathBuf, String)> = Vec::new();
    let mut env: Vec<(String, String)> = Vec::new();
    if !inputs.trust_pem.is_empty() {
        let path = dir.path().join("trust-bundle.pem");
        if let Err(e) = std::fs::write(&path, &inputs.trust_pem) {
            return failed(format!("cannot write {}: {e}", path.display()));
        }
        mounts.push((path, format!("{MOUNT_DIR}/trust-bundle.pem")));
        cmd.extend([
            "--trust-bundle".into(),
            format!("{MOUNT_DIR}/trust-bundle.pem"),
        ]);
    }
    if let Some(dir) = &args.checks_dir {
        mounts.push((absolute(dir), format!("{MOUNT_DIR}/checks")));
        cmd.extend(["--checks-dir".into(), format!("{MOUNT_DIR}/checks")]);
    }
    match &inputs.credentials {
        Some(Credentials::X509 { cert, key }) => {
            mounts.push((absolute(cert), format!("{MOUNT_DIR}/x509-cert.pem")));
            mounts.push((absolute(key), format!("{MOUNT_DIR}/x509-key.pem")));
            cmd.extend([
                "--x509-cert".into(),
                format!("{MOUNT_DIR}/x509-cert.pem"),
                "--x509-key".into(),
                format!("{MOUNT_DIR}/x509-key.pem"),
            ]);
        }
        // Secrets travel in the environment, never on the command line.
        Some(Credentials::SasKey(_)) => {
            if let Some(k) = &inputs.sas_key {
                env.push(("EDGEPROBE_SAS_KEY".into(), k.clone()));
            }
        }
        _ => {}
    }
    if let Some(p) = &inputs.proxy_url {
        env.push(("HTTPS_PROXY".into(), p.clone()));
    }
    if !inputs.no_proxy.is_empty() {
        env.push(("NO_PROXY".into(), inputs.no_proxy.clone()));
    }
    env.push(("NO_COLOR".into(), "1".into()));
    let spec = RunSpec {
        image: side.image.clone(),
        network: side.network.clone(),
        cmd,
        env,
        mounts,
    };
    let run = match side.engine.run_in_network(spec, deadline).await {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    drop(dir);
    let report: JsonReport = match serde_json::from_str(&run.stdout) {
        Ok(r) => r,
        Err(_) => {
            let why = run.stderr.lines().last().unwrap_or("no output").to_owned();
            return ContainerOutcome {
                results: Vec::new(),
                error: Some(format!(
                    "the probe container exited {} without a report: {why}",
                    run.exit_code
                )),
                run: Some(run),
            };
        }
    };
    let vantage = side.vantage();
    let results = report
        .checks
        .iter()
        // Network probes only, the user's own checks included: derived checks and local facts
        // (the clock, configuration, the host's inbound ports) are the host's to compute.
        .filter(|c| c.protocol != "config" && c.protocol != "time" && !c.id.starts_with("inbound-"))
        .filter_map(|c| c.to_result())
        .map(|mut r| {
            r.vantage = vantage.clone();
            // What modules need is judged by the verdict over both vantages; a container
            // result alone does not decide the exit code.
            r.def.required = false;
            r
        })
        .collect();
    ContainerOutcome {
        results,
        run: Some(run),
        error: None,
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

/// A private (0700) temporary directory for the container's input files, removed on drop.
fn tempfile_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("edgeprobe-").tempdir()
}

/// The `docker-network` check: the network's facts, and whether they match the configuration.
pub fn network_outcome(
    side: &ContainerSide,
    cfg: Option<&EdgeConfig>,
    run: Option<&ContainerRun>,
) -> Outcome {
    let f = &side.facts;
    let mtu = f
        .mtu
        .map(|m| m.to_string())
        .unwrap_or_else(|| "default (1500)".into());
    let dns = run
        .map(|r| r.dns_servers.join(", "))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let mut message = format!(
        "network {}: driver {}, subnet {}, gateway {}, IPv6 {}, MTU {mtu}; the container resolves names through {dns}",
        f.name,
        f.driver.as_deref().unwrap_or("?"),
        if f.subnets.is_empty() { "-".to_owned() } else { f.subnets.join(", ") },
        if f.gateways.is_empty() { "-".to_owned() } else { f.gateways.join(", ") },
        if f.enable_ipv6 { "on" } else { "off" },
    );
    if let Some(daemon) = side.daemon.as_ref().and_then(|d| d.daemon_json.as_ref()) {
        if !daemon.dns.is_empty() {
            message.push_str(&format!(" (daemon.json dns: {})", daemon.dns.join(", ")));
        }
    }
    let mut problems = Vec::new();
    if let Some(net) = cfg.map(|c| &c.moby_runtime.network) {
        if let Some(want) = net.ipv6 {
            if want != f.enable_ipv6 {
                problems.push(format!(
                    "the configuration sets ipv6 = {want}, but the network was created with IPv6 {}: delete the network and restart IoT Edge to recreate it",
                    if f.enable_ipv6 { "on" } else { "off" }
                ));
            }
        }
        for ipam in &net.ipam {
            if let Some(subnet) = &ipam.subnet {
                if !f.subnets.iter().any(|s| s == subnet) {
                    problems.push(format!(
                        "the configured subnet {subnet} is not on the network (it has {})",
                        f.subnets.join(", ")
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Outcome::new(Status::Pass, Reason::Ok, message)
    } else {
        message.push_str("; ");
        message.push_str(&problems.join("; "));
        Outcome::new(Status::Warn, Reason::NotConfigured, message)
    }
}

/// The `vantage-compare` check: what differs between host and container, and the likely cause.
pub fn compare_outcome(
    results: &[CheckResult],
    side: &ContainerSide,
    run: Option<&ContainerRun>,
    firewall: &[String],
) -> Outcome {
    let container = side.vantage();
    let mut diffs = Vec::new();
    let mut causes: Vec<String> = Vec::new();
    let mut fixes: Vec<&str> = Vec::new();
    for host in results
        .iter()
        .filter(|r| r.vantage == Vantage::Host && r.outcome.status != Status::Skip)
    {
        let Some(inside) = results
            .iter()
            .find(|r| r.vantage == container && r.def.id == host.def.id)
        else {
            continue;
        };
        let host_ok = matches!(host.outcome.status, Status::Pass | Status::Warn);
        if !host_ok || inside.outcome.status != Status::Fail {
            continue;
        }
        diffs.push(format!("{} ({})", host.def.id, inside.outcome.reason));
        // The port actually dialled (differs from the catalog's under --connect-to).
        let port = inside
            .outcome
            .phase(edgeprobe_core::PhaseName::Dns)
            .and_then(|p| p.detail("addresses"))
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
            .or(host.def.port)
            .unwrap_or(0);
        let reason = inside.outcome.reason;
        let cause = match reason {
            Reason::DnsNxdomain | Reason::DnsNoRecords | Reason::DnsTimeout | Reason::DnsError => {
                fixes.push("set \"dns\" in /etc/docker/daemon.json to DNS servers that containers can reach, then restart Docker and IoT Edge");
                let servers = run.map(|r| r.dns_servers.join(", ")).unwrap_or_default();
                let daemon = side
                    .daemon
                    .as_ref()
                    .and_then(|d| d.daemon_json.as_ref())
                    .map(|d| d.dns.join(", "))
                    .filter(|d| !d.is_empty())
                    .map(|d| format!(", daemon.json dns {d}"))
                    .unwrap_or_else(|| ", no dns in daemon.json".into());
                format!("container DNS: the container resolves through {servers}{daemon}, and that fails where the host's resolver works")
            }
            Reason::TcpTimeout | Reason::TcpRefused | Reason::TcpUnreachable => {
                fixes.push("allow the network's subnet in the DOCKER-USER / FORWARD chains of the host firewall");
                let rule = firewall
                    .iter()
                    .find(|r| crate::firewall::matches_port(r, port))
                    .map(|r| format!(" (rule: {r})"))
                    .unwrap_or_default();
                format!(
                    "a firewall rule on the Docker bridge (FORWARD / DOCKER-USER) blocks port {port} for {}{rule}",
                    side.facts.subnets.join(", ")
                )
            }
            Reason::TlsTimeout | Reason::ProtocolTimeout => {
                fixes.push("set the network MTU (com.docker.network.driver.mtu, or \"mtu\" in daemon.json) to the uplink's MTU");
                format!(
                    "MTU: the network's MTU is {} while large TLS records stall inside the container",
                    side.facts.mtu.map(|m| m.to_string()).unwrap_or_else(|| "the default 1500".into())
                )
            }
            _ => format!("{}: {}", reason, inside.outcome.message),
        };
        if side.facts.enable_ipv6
            && inside
                .outcome
                .phases
                .iter()
                .any(|p| p.detail.iter().any(|(_, v)| v.to_string().contains('[')))
        {
            causes.push("IPv6 is enabled on the network: check that it has a route out".into());
        }
        if !causes.contains(&cause) {
            causes.push(cause);
        }
    }
    if diffs.is_empty() {
        return Outcome::new(
            Status::Pass,
            Reason::Ok,
            format!(
                "the checks from the {} network agree with the host's",
                side.network
            ),
        );
    }
    let reason = results
        .iter()
        .find(|r| r.vantage == container && r.outcome.status == Status::Fail)
        .map(|r| r.outcome.reason)
        .unwrap_or(Reason::ProtocolError);
    let mut o = Outcome::new(
        Status::Warn,
        reason,
        format!(
            "the host passes but the {} network fails: {}. Likely cause: {}",
            side.network,
            diffs.join(", "),
            causes.join("; ")
        ),
    );
    fixes.dedup();
    if !fixes.is_empty() {
        o.fix = Some(fixes.join("; "));
    }
    o
}

/// The host firewall's DOCKER-USER and FORWARD rules that drop or reject, where we can read
/// them (root), for evidence.
pub async fn firewall_rules(deadline: Instant) -> Vec<String> {
    let mut out = Vec::new();
    for chain in ["DOCKER-USER", "FORWARD"] {
        out.extend(
            crate::firewall::chain_rules(chain, deadline)
                .await
                .into_iter()
                .filter(|r| crate::firewall::drops_or_rejects(r)),
        );
    }
    out
}

/// The derived checks of the container vantage, in report order.
pub use crate::check_ids::{DOCKER_NETWORK_ID, VANTAGE_COMPARE_ID};

/// A derived check's declaration.
pub fn def(id: &str) -> edgeprobe_core::catalog::CheckDef {
    edgeprobe_core::catalog::CheckDef::derived(
        id,
        crate::check_ids::title(id),
        Endpoint::Device,
        Protocol::Config,
    )
}

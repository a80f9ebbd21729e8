//! `edgeprobe bundle [--output-file FILE]`: everything a support engineer asks for, in one .tar.gz —
//! the reports, the TLS chains each endpoint presented, the redacted IoT Edge configuration,
//! resolver, address and route facts, the Docker network and daemon settings, the services'
//! proxies, time sync, OS and tool versions; the inspect and the logs of each IoT Edge module
//! (through the engine's API) and the journals of the aziot services, iotedged and the engine,
//! within `--since`/`--until`; firewall rules, disk space, /etc/hosts and the expiry of the
//! configured certificates — with a manifest saying how each file was collected. A fact that
//! cannot be collected is recorded with the reason, never fatal.
//!
//! Bounded: after the check, collection has [`COLLECT_BUDGET`]; every command and API call
//! has its own budget within it and is killed or abandoned at it; every log, journal and
//! command output keeps only its last bytes (`--log-limit`).
//!
//! Secrets are replaced with a marker three times over: known secret fields are redacted where
//! they are read, what came from outside edgeprobe (logs, inspect, command output, files) is
//! scrubbed for secrets by their form (SAS tokens, connection-string keys, bearer tokens,
//! URL credentials, private keys), and every file is scrubbed for every secret the run knew
//! before it is written.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use edgeprobe_iotedge::config::Provisioning;
use edgeprobe_iotedge::identity_state::{self, ProvisioningState};
use edgeprobe_iotedge::proxy_sources;
use edgeprobe_iotedge::secret::{Scrubber, REDACTED};
use edgeprobe_report::json::JsonRenderer;
use edgeprobe_report::text::TextRenderer;
use edgeprobe_report::{Renderer, RunContext};
use serde_json::json;
use tokio::time::Instant;

use crate::cli::BundleArgs;
use crate::run::{exit_code, write_atomically};
use crate::stages::check_with_facts;
use crate::AppError;
use edgeprobe_docker::Tail;

/// One file of the bundle, or the reason it is missing.
struct Entry {
    path: String,
    how: String,
    content: Result<String, String>,
}

/// Replaces the values of secret-bearing settings in a configuration file's text: keys,
/// passwords, connection-string keys, and credentials inside URLs.
pub fn redact_config(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut l = line.to_owned();
            // SharedAccessKey=...; in connection strings.
            while let Some(i) = l.find("SharedAccessKey=") {
                let start = i + "SharedAccessKey=".len();
                if l[start..].starts_with(REDACTED) {
                    break;
                }
                let end = l[start..]
                    .find([';', '"', '\'', ' '])
                    .map(|e| start + e)
                    .unwrap_or(l.len());
                l.replace_range(start..end, REDACTED);
            }
            // user:password@ in URLs.
            if let Some(scheme) = l.find("://") {
                let rest = scheme + 3;
                if let Some(at) = l[rest..].find('@').map(|a| rest + a) {
                    if let Some(colon) = l[rest..at].find(':').map(|c| rest + c) {
                        l.replace_range(colon + 1..at, REDACTED);
                    }
                }
            }
            // key = "value" / key: value for secret-named keys.
            let lowered = l.to_ascii_lowercase();
            for key in ["password", "value", "symmetric_key", "pin-value"] {
                for sep in [" = ", "=", ": "] {
                    let needle = format!("{key}{sep}");
                    if let Some(i) = lowered.find(&needle) {
                        let boundary = i == 0 || !lowered.as_bytes()[i - 1].is_ascii_alphanumeric();
                        if !boundary {
                            continue;
                        }
                        let start = i + needle.len();
                        let quoted = l[start..].starts_with('"');
                        let vstart = if quoted { start + 1 } else { start };
                        let vend = if quoted {
                            l[vstart..].find('"').map(|e| vstart + e).unwrap_or(l.len())
                        } else {
                            l[vstart..]
                                .find([' ', ',', '}'])
                                .map(|e| vstart + e)
                                .unwrap_or(l.len())
                        };
                        if vend > vstart && &l[vstart..vend] != REDACTED {
                            l.replace_range(vstart..vend, REDACTED);
                        }
                        return l;
                    }
                }
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// What a bundle spends collecting after the check ran, at most: each source also has its
/// own budget within it ([`COMMAND_BUDGET`], [`ENGINE_BUDGET`], [`LOG_BUDGET`]).
const COLLECT_BUDGET: Duration = Duration::from_secs(40);
/// One external command (journalctl, iptables-save, df...).
const COMMAND_BUDGET: Duration = Duration::from_secs(8);
/// Connecting to the engine, listing and inspecting.
const ENGINE_BUDGET: Duration = Duration::from_secs(5);
/// One module's logs.
const LOG_BUDGET: Duration = Duration::from_secs(10);
/// Most output kept from a command that is not a log (iptables rules, df...).
const COMMAND_OUTPUT_LIMIT: usize = 1024 * 1024;
/// The services whose journals support asks for (1.2+, then 1.1's daemon, then the engine).
const JOURNAL_UNITS: [&str; 6] = [
    "aziot-keyd",
    "aziot-certd",
    "aziot-identityd",
    "aziot-edged",
    "iotedge",
    "docker",
];

/// A tail's text, with a first line saying what was dropped, if anything.
fn tail_text(tail: Tail) -> String {
    let max = tail.max();
    let (text, dropped) = tail.finish();
    if dropped == 0 {
        text
    } else {
        format!(
            "[edgeprobe: {dropped} earlier bytes dropped; the last {} KiB are kept]\n{text}",
            max / 1024
        )
    }
}

/// Runs `program args` until it exits or `deadline`, whichever is first (it is killed then),
/// keeping the last `max` bytes of its output. A non-zero exit is an error with its first
/// stderr line, unless `partial_ok` and it printed something (dpkg-query naming packages
/// that are not installed).
async fn command_bounded(
    program: &str,
    args: &[String],
    deadline: Instant,
    max: usize,
    partial_ok: bool,
) -> Result<String, String> {
    use tokio::io::AsyncReadExt as _;
    let shown = || {
        format!("{program} {}", args.join(" "))
            .trim_end()
            .to_owned()
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("`{program}` is not installed"),
            _ => format!("cannot run `{program}`: {e}"),
        })?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let work = async {
        let out = async {
            let mut tail = Tail::new(max);
            let mut buf = vec![0u8; 16 * 1024];
            if let Some(r) = stdout.as_mut() {
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tail.push(&buf[..n]);
                }
            }
            tail
        };
        let err = async {
            // All of it is read (a full pipe would stall the command), the first 4 KiB kept.
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 4096];
            if let Some(r) = stderr.as_mut() {
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let room = 4096usize.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                }
            }
            kept
        };
        let (out, err) = tokio::join!(out, err);
        (out, err, child.wait().await)
    };
    match tokio::time::timeout_at(deadline, work).await {
        Err(_) => Err(format!("`{}` did not finish in time", shown())),
        Ok((_, _, Err(e))) => Err(format!("`{}`: {e}", shown())),
        Ok((out, _, Ok(status))) if status.success() || (partial_ok && !out.is_empty()) => {
            Ok(tail_text(out))
        }
        Ok((_, err, Ok(status))) => {
            let err = String::from_utf8_lossy(&err);
            let first = err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            Err(format!(
                "`{}` failed ({status}){}{first}",
                shown(),
                if first.is_empty() { "" } else { ": " }
            ))
        }
    }
}

async fn command(program: &str, args: &[&str], deadline: Instant) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    command_bounded(program, &args, deadline, COMMAND_OUTPUT_LIMIT, false).await
}

fn read(path: &Path) -> Result<String, String> {
    edgeprobe_core::bounded::read_to_string(path, edgeprobe_core::bounded::CONFIG_LIMIT)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub async fn run(args: &BundleArgs) -> Result<u8, AppError> {
    let check = &args.check;
    let target = check
        .output_file
        .clone()
        .unwrap_or_else(|| default_name(&host_name(), std::time::SystemTime::now()));
    // A bundle is evidence: it never replaces a file, and the user learns before the run.
    if target != "-" && Path::new(&target).symlink_metadata().is_ok() {
        return Err(AppError::Usage(format!(
            "--output-file {target}: the file exists; a bundle never replaces one (move it, or name another file)"
        )));
    }
    if args.until.is_some_and(|u| u <= args.since) {
        return Err(AppError::Usage(
            "--until: must be later than --since".into(),
        ));
    }
    let (report, facts) = check_with_facts(check, RunContext::default()).await?;
    let root = &check.system_root;
    let soon = || Instant::now() + Duration::from_secs(3);
    let mut entries: Vec<Entry> = Vec::new();
    let mut add = |path: &str, how: &str, content: Result<String, String>| {
        entries.push(Entry {
            path: path.to_owned(),
            how: how.to_owned(),
            content,
        })
    };

    add(
        "report.json",
        "edgeprobe check --output json",
        Ok(JsonRenderer.render(&report)),
    );
    add(
        "report.txt",
        "edgeprobe check --verbose",
        Ok(TextRenderer {
            color: false,
            verbose: true,
        }
        .render(&report)),
    );
    add(
        "report.html",
        "edgeprobe check --output html (self-contained: verdict table and a timing waterfall per check)",
        Ok(edgeprobe_report::html::HtmlRenderer.render(&report)),
    );
    add(
        "edgeprobe-version.txt",
        "built in",
        Ok(format!("edgeprobe {}\n", env!("CARGO_PKG_VERSION"))),
    );

    for r in &report.results {
        if r.outcome.certificates.is_empty() {
            continue;
        }
        let suffix = match &r.vantage {
            edgeprobe_core::Vantage::Host => String::new(),
            edgeprobe_core::Vantage::Container(n) => format!("-container-{n}"),
        };
        add(
            &format!("tls/{}{suffix}.pem", r.def.id),
            &format!("the chain {} presented during {}", r.def.host, r.def.id),
            Ok(r.outcome.certificates.concat()),
        );
    }

    match &facts.config {
        Some(cfg) => {
            let name = Path::new(&cfg.source)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "config".into());
            add(
                &format!("config/{name}"),
                &format!("{} with secrets redacted", cfg.source),
                read(Path::new(&cfg.source)).map(|t| redact_config(&t)),
            );
        }
        None => add(
            "config/config.toml",
            "/etc/aziot/config.toml or /etc/iotedge/config.yaml",
            Err("no IoT Edge configuration was read".into()),
        ),
    }

    let dps_config = facts
        .config
        .as_ref()
        .is_some_and(|c| matches!(c.provisioning, Provisioning::Dps { .. }));
    let state = match crate::request::state_path(check, facts.config.as_ref()) {
        Some(path) if dps_config || check.identity_state.is_some() => {
            // Only the hub and device id: 1.1's backup also holds credentials.
            let shown = path.display().to_string();
            let content = match identity_state::read(&path) {
                Ok(ProvisioningState::Assigned(a)) => Ok(format!(
                    "hub_name = {:?}\ndevice_id = {:?}\n",
                    a.hub, a.device_id
                )),
                Ok(ProvisioningState::Unprovisioned { .. }) => Ok("unprovisioned\n".into()),
                Err(e) => Err(e.to_string()),
            };
            (
                format!("{shown}: the assigned hub and device id only"),
                content,
            )
        }
        _ => (
            "the identity service's provisioning state".into(),
            Err("the device is not provisioned by DPS".into()),
        ),
    };
    add("iotedge/provisioning-state.toml", &state.0, state.1);

    add(
        "host/resolv.conf",
        "/etc/resolv.conf",
        read(&root.join("etc/resolv.conf")),
    );
    add(
        "host/os-release",
        "/etc/os-release",
        read(&root.join("etc/os-release")),
    );
    add(
        "host/ip-addr.json",
        "ip -json address show",
        command("ip", &["-json", "address", "show"], soon()).await,
    );
    add(
        "host/ip-route.json",
        "ip -json route show table all",
        command("ip", &["-json", "route", "show", "table", "all"], soon()).await,
    );
    add(
        "host/timedatectl.txt",
        "timedatectl show",
        command("timedatectl", &["show"], soon()).await,
    );
    add(
        "container/resolv.conf",
        "the probe container's /etc/resolv.conf",
        facts
            .container_resolv_conf
            .clone()
            .ok_or_else(|| "the container vantage did not run".to_owned()),
    );
    add(
        "docker/daemon.json",
        "/etc/docker/daemon.json with proxy credentials redacted",
        read(&root.join("etc/docker/daemon.json")).map(|t| redact_config(&t)),
    );
    let sources = proxy_sources::discover(root, facts.config.as_ref());
    let proxies: String = sources
        .iter()
        .map(|s| {
            let proxy = s
                .https_proxy
                .as_ref()
                .map(|p| redact_config(p.expose()).trim_end().to_owned())
                .unwrap_or_else(|| "(none)".into());
            format!("{}\t{}\t{proxy}\n", s.component, s.origin)
        })
        .collect();
    add(
        "host/proxy-settings.tsv",
        "config.toml agent.env, the aziot systemd units, Docker's settings",
        if sources.is_empty() {
            Err("no component has readable proxy settings".into())
        } else {
            Ok(proxies)
        },
    );

    let collect_deadline = Instant::now() + COLLECT_BUDGET;
    let window = Window {
        since: args.since,
        until: args.until,
        limit: args.log_limit as usize * 1024,
    };
    let (commands, docker) = tokio::join!(
        collect_commands(window, collect_deadline),
        collect_docker(args, &facts, window, collect_deadline),
    );
    entries.extend(commands);
    entries.extend(docker);
    entries.push(hosts_entry(root));
    entries.push(certificates_entry(&facts));

    // Scrub every file for every secret the run knew, whatever its source, and what came
    // from outside edgeprobe (logs, inspect, command output) for secrets by their form.
    let scrubber = Scrubber::of(&facts.secrets);
    for e in &mut entries {
        if let Ok(text) = &e.content {
            let ours = e.path.starts_with("report.") || e.path.starts_with("tls/");
            let text = if ours {
                text.clone()
            } else {
                edgeprobe_iotedge::secret::scrub_patterns(text)
            };
            e.content = Ok(scrubber.scrub(&text));
        }
    }
    let manifest: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| match &e.content {
            Ok(_) => json!({"path": e.path, "collected_by": e.how, "status": "ok"}),
            Err(why) => json!({"path": e.path, "collected_by": e.how, "status": "unavailable", "reason": why}),
        })
        .collect();
    let manifest = serde_json::to_string_pretty(&json!({
        "tool": {"name": "edgeprobe", "version": env!("CARGO_PKG_VERSION")},
        "created_at": edgeprobe_report::json::rfc3339(std::time::SystemTime::now()),
        "files": manifest,
    }))
    .unwrap_or_default();

    let bytes = archive(&entries, &manifest)
        .map_err(|e| AppError::Internal(format!("cannot build the bundle: {e}")))?;
    let size = bytes.len();
    if target == "-" {
        write_atomically("-", &bytes)?;
    } else {
        let options = crate::safe_write::WriteOptions::BUNDLE.create_new();
        crate::safe_write::write(Path::new(&target), &bytes, options).map_err(|e| match e {
            crate::safe_write::WriteError::Exists => AppError::Usage(format!(
                "--output-file {target}: the file exists; a bundle never replaces one (move it, or name another file)"
            )),
            e => AppError::Usage(format!("--output-file {target}: {e}")),
        })?;
    }
    // Where it went and what it says: on stderr when the bundle itself is on stdout.
    if !check.quiet {
        let line = format!(
            "wrote {target} ({} files, {} KiB): {}\n",
            entries.len() + 1,
            size.div_ceil(1024),
            report.readiness.message
        );
        let _ = if target == "-" {
            std::io::stderr().write_all(line.as_bytes())
        } else {
            std::io::stdout().write_all(line.as_bytes())
        };
    }
    Ok(exit_code(&report))
}

/// The window and size bound of logs and journals.
#[derive(Clone, Copy)]
struct Window {
    since: i64,
    until: Option<i64>,
    limit: usize,
}

impl Window {
    fn describe(&self) -> String {
        let until = self
            .until
            .map(edgeprobe_iotedge::certs::rfc3339)
            .unwrap_or_else(|| "now".into());
        format!(
            "{} to {until}, the last {} KiB",
            edgeprobe_iotedge::certs::rfc3339(self.since),
            self.limit / 1024
        )
    }
}

fn entry(
    path: impl Into<String>,
    how: impl Into<String>,
    content: Result<String, String>,
) -> Entry {
    Entry {
        path: path.into(),
        how: how.into(),
        content,
    }
}

/// The host's commands, all at once, each within its own budget: versions, firewall
/// rules (read only), time sync, disk space, and the journals of the IoT Edge services
/// and the engine.
async fn collect_commands(window: Window, deadline: Instant) -> Vec<Entry> {
    struct Source {
        path: String,
        program: &'static str,
        args: Vec<String>,
        max: usize,
        partial_ok: bool,
        journal: Option<&'static str>,
    }
    let plain = |path: &str, program: &'static str, args: &[&str]| Source {
        path: path.to_owned(),
        program,
        args: args.iter().map(|a| a.to_string()).collect(),
        max: COMMAND_OUTPUT_LIMIT,
        partial_ok: false,
        journal: None,
    };
    let mut sources = vec![
        // The CLI of 1.1 and 1.2+ alike; the daemons' versions are their packages'.
        plain("versions/iotedge.txt", "iotedge", &["--version"]),
        Source {
            partial_ok: true,
            ..plain(
                "versions/packages.tsv",
                "dpkg-query",
                &[
                    "--show",
                    "--showformat=${Package}\t${Version}\t${db:Status-Status}\n",
                    "aziot-edge",
                    "aziot-identity-service",
                    "iotedge",
                    "libiothsm-std",
                    "moby-engine",
                    "moby-cli",
                    "docker-ce",
                    "docker.io",
                    "containerd*",
                ],
            )
        },
        plain("host/uname.txt", "uname", &["-a"]),
        plain("host/df.txt", "df", &["-P", "-h"]),
        plain("host/iptables-save.txt", "iptables-save", &[]),
        plain("host/ip6tables-save.txt", "ip6tables-save", &[]),
        plain("host/nft-ruleset.txt", "nft", &["list", "ruleset"]),
        plain("host/timesync.txt", "timedatectl", &["show-timesync"]),
        plain("host/chrony-tracking.txt", "chronyc", &["tracking"]),
        plain("host/ntpq.txt", "ntpq", &["-pn"]),
    ];
    for unit in JOURNAL_UNITS {
        let mut args = vec![
            "--unit".to_owned(),
            format!("{unit}.service"),
            "--since".into(),
            format!("@{}", window.since),
            "--no-pager".into(),
            "--quiet".into(),
            "--output".into(),
            "short-iso-precise".into(),
            // The newest lines first bound the work; the byte limit bounds the file.
            "--lines".into(),
            "20000".into(),
        ];
        if let Some(u) = window.until {
            args.extend(["--until".into(), format!("@{u}")]);
        }
        sources.push(Source {
            path: format!("journals/{unit}.log"),
            program: "journalctl",
            args,
            max: window.limit,
            partial_ok: false,
            journal: Some(unit),
        });
    }
    let runs = sources.into_iter().map(|src| async move {
        let budget = deadline.min(Instant::now() + COMMAND_BUDGET);
        let mut content =
            command_bounded(src.program, &src.args, budget, src.max, src.partial_ok).await;
        let how = match src.journal {
            Some(unit) => format!(
                "journalctl --unit {unit}.service, {}",
                window.describe()
            ),
            None => format!("{} {}", src.program, src.args.join(" ")).trim_end().to_owned(),
        };
        if let (Some(unit), Ok(text)) = (src.journal, &content) {
            if text.trim().is_empty() {
                content = Err(format!(
                    "no journal entries for {unit}.service in the window (the service is not installed here, or logged nothing)"
                ));
            }
        }
        entry(src.path, how, content)
    });
    futures_util::future::join_all(runs).await
}

/// Through the engine's API: its versions, the modules' network, and each IoT Edge
/// module's inspect and logs. One entry says why when the engine cannot be reached.
async fn collect_docker(
    args: &BundleArgs,
    facts: &crate::stages::RunFacts,
    window: Window,
    deadline: Instant,
) -> Vec<Entry> {
    use futures_util::StreamExt as _;
    let network = crate::vantage::network_name(&args.check, facts.config.as_ref());
    let uri = facts
        .config
        .as_ref()
        .and_then(|c| c.moby_runtime.uri.clone());
    let budget = || deadline.min(Instant::now() + ENGINE_BUDGET);
    let mut out = Vec::new();
    let engine = match edgeprobe_docker::Engine::connect(uri.as_deref(), budget()).await {
        Ok(e) => e,
        Err(e) => {
            let why = e.to_string();
            out.push(entry(
                "versions/docker.json",
                "Docker engine API: version",
                Err(why.clone()),
            ));
            out.push(entry(
                "docker/network.json",
                format!("Docker engine API: network inspect {network}"),
                facts.network_inspect.clone().ok_or(why.clone()),
            ));
            out.push(entry(
                "modules/modules.tsv",
                "Docker engine API: containers",
                Err(why),
            ));
            return out;
        }
    };
    out.push(entry(
        "versions/docker.json",
        "Docker engine API: version",
        engine
            .version_json(budget())
            .await
            .map_err(|e| e.to_string()),
    ));
    let net = match &facts.network_inspect {
        Some(json) => Ok(json.clone()),
        None => match engine.network_inspect_json(&network, budget()).await {
            Ok(Some(json)) => Ok(json),
            Ok(None) => Err(format!("the engine has no network named {network}")),
            Err(e) => Err(e.to_string()),
        },
    };
    out.push(entry(
        "docker/network.json",
        format!("Docker engine API: network inspect {network}"),
        net,
    ));
    let selector = edgeprobe_docker::ModuleSelector {
        network: network.clone(),
        name_prefix: args.module_prefix.clone(),
    };
    let how_selected = format!(
        "Docker engine API: containers named edgeAgent or edgeHub, labelled {}={}, or on network {network}",
        edgeprobe_docker::EDGE_OWNER_LABEL.0,
        edgeprobe_docker::EDGE_OWNER_LABEL.1
    );
    let modules = match engine.edge_modules(&selector, budget()).await {
        Ok(m) if m.is_empty() => {
            out.push(entry(
                "modules/modules.tsv",
                how_selected,
                Err("no IoT Edge module container on this engine".into()),
            ));
            return out;
        }
        Ok(m) => m,
        Err(e) => {
            out.push(entry(
                "modules/modules.tsv",
                how_selected,
                Err(e.to_string()),
            ));
            return out;
        }
    };
    out.push(entry(
        "modules/modules.tsv",
        how_selected,
        Ok(modules
            .iter()
            .map(|m| {
                format!(
                    "{}\t{}\t{}\n",
                    m.name,
                    m.id.get(..12).unwrap_or(&m.id),
                    m.selected_by
                )
            })
            .collect()),
    ));
    let log_window = edgeprobe_docker::LogWindow {
        since: window.since,
        until: window.until,
        max_bytes: window.limit,
    };
    let per_module = futures_util::stream::iter(modules)
        .map(|m| {
            let engine = engine.clone();
            async move {
                let inspect = match engine.container_inspect_json(&m.name, budget()).await {
                    Ok(Some(json)) => Ok(json),
                    Ok(None) => Err(format!("the container {} is gone", m.name)),
                    Err(e) => Err(e.to_string()),
                };
                let logs_deadline = deadline.min(Instant::now() + LOG_BUDGET);
                let logs = match engine.container_logs(&m.name, log_window, logs_deadline).await {
                    Ok(l) if l.text.trim().is_empty() && !l.timed_out => {
                        Err(format!("{} logged nothing in the window", m.name))
                    }
                    Ok(l) => {
                        let mut text = String::new();
                        if l.dropped_bytes > 0 {
                            text.push_str(&format!(
                                "[edgeprobe: {} earlier bytes dropped; the last {} KiB are kept]\n",
                                l.dropped_bytes,
                                window.limit / 1024
                            ));
                        }
                        text.push_str(&l.text);
                        if l.timed_out {
                            text.push_str("\n[edgeprobe: the engine was still sending at the deadline; the log ends here]\n");
                        }
                        Ok(text)
                    }
                    Err(e) => Err(e.to_string()),
                };
                [
                    entry(
                        format!("modules/{}/inspect.json", m.name),
                        format!("Docker engine API: container inspect {} ({})", m.name, m.selected_by),
                        inspect,
                    ),
                    entry(
                        format!("modules/{}/logs.txt", m.name),
                        format!("Docker engine API: container logs {}, {}", m.name, window.describe()),
                        logs,
                    ),
                ]
            }
        })
        .buffered(4)
        .collect::<Vec<_>>()
        .await;
    out.extend(per_module.into_iter().flatten());
    out
}

fn hosts_entry(root: &Path) -> Entry {
    entry("host/hosts", "/etc/hosts", read(&root.join("etc/hosts")))
}

/// Subject, issuer and expiry of every certificate file the configuration names: the
/// certificates only, never a key.
fn certificates_entry(facts: &crate::stages::RunFacts) -> Entry {
    use edgeprobe_iotedge::certs;
    let path = "iotedge/certificates.tsv";
    let Some(cfg) = &facts.config else {
        return entry(
            path,
            "the certificate files the IoT Edge configuration names",
            Err("no IoT Edge configuration was read".into()),
        );
    };
    let how = format!(
        "the certificate files {} names: subject, issuer, validity (never a key)",
        cfg.source
    );
    let text = match read(Path::new(&cfg.source)) {
        Ok(t) => t,
        Err(e) => return entry(path, how, Err(e)),
    };
    let settings = edgeprobe_iotedge::config::certificate_settings(&text, cfg.format);
    if settings.is_empty() {
        return entry(
            path,
            how,
            Err("the configuration names no certificate file".into()),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut out =
        String::from("setting\tfile\tsubject\tissuer\tnot_before\tnot_after\tdays_left\n");
    for (setting, file) in settings {
        let bytes = std::fs::File::open(&file).and_then(|f| {
            let mut bytes = Vec::new();
            std::io::Read::take(f, 1024 * 1024).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        let shown = file.display();
        match bytes
            .map_err(|e| e.to_string())
            .and_then(|b| certs::read_pem(&b))
        {
            Ok(list) => {
                for c in list {
                    let left = c.days_left(now);
                    out.push_str(&format!(
                        "{setting}\t{shown}\t{}\t{}\t{}\t{}\t{left}{}\n",
                        c.subject,
                        c.issuer,
                        certs::rfc3339(c.not_before),
                        certs::rfc3339(c.not_after),
                        if left < 0 { " (expired)" } else { "" }
                    ));
                }
            }
            Err(e) => out.push_str(&format!("{setting}\t{shown}\tunreadable: {e}\n")),
        }
    }
    entry(path, how, Ok(out))
}

/// `edgeprobe-bundle-<host>-<UTC time>.tar.gz`, in the working directory.
fn default_name(host: &str, now: std::time::SystemTime) -> String {
    let stamp = time::OffsetDateTime::from(now)
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "unknown-time".into());
    format!("edgeprobe-bundle-{host}-{stamp}.tar.gz")
}

/// This machine's host name, kept to characters safe in a file name.
fn host_name() -> String {
    let raw = std::fs::File::open("/proc/sys/kernel/hostname")
        .and_then(|f| {
            let mut s = String::new();
            std::io::Read::take(f, 256).read_to_string(&mut s)?;
            Ok(s)
        })
        .unwrap_or_default();
    let safe: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        "device".into()
    } else {
        safe
    }
}

fn archive(entries: &[Entry], manifest: &str) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut put = |path: &str, data: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, format!("edgeprobe-bundle/{path}"), data)
    };
    put("manifest.json", manifest.as_bytes())?;
    for e in entries {
        if let Ok(text) = &e.content {
            put(&e.path, text.as_bytes())?;
        }
    }
    tar.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn commands_keep_their_last_bytes_and_stop_at_their_deadline() {
        let soon = || Instant::now() + Duration::from_secs(10);
        // 100 000 bytes of output: the last KiB from a line start, and a line saying so.
        let out = command_bounded(
            "sh",
            &args(&[
                "-c",
                "i=0; while [ $i -lt 10000 ]; do echo line-$i; i=$((i+1)); done",
            ]),
            soon(),
            1024,
            false,
        )
        .await
        .unwrap();
        let (first, rest) = out.split_once('\n').unwrap();
        assert!(first.contains("earlier bytes dropped"), "{first}");
        assert!(rest.len() <= 1024 && rest.starts_with("line-") && rest.ends_with("line-9999\n"));
        // A command that outlives its budget is killed at it, and says so.
        let started = std::time::Instant::now();
        let e = command_bounded(
            "sleep",
            &args(&["30"]),
            Instant::now() + Duration::from_millis(300),
            1024,
            false,
        )
        .await
        .unwrap_err();
        assert!(e.contains("did not finish in time"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // Not installed, and failing with its reason.
        let e = command_bounded("edgeprobe-no-such-tool", &[], soon(), 1024, false)
            .await
            .unwrap_err();
        assert_eq!(e, "`edgeprobe-no-such-tool` is not installed");
        let e = command_bounded(
            "sh",
            &args(&["-c", "echo partial; echo why >&2; exit 3"]),
            soon(),
            1024,
            false,
        )
        .await
        .unwrap_err();
        assert!(e.ends_with(": why") && e.contains("exit status: 3"), "{e}");
        let ok = command_bounded(
            "sh",
            &args(&["-c", "echo partial; exit 1"]),
            soon(),
            1024,
            true,
        )
        .await;
        assert_eq!(ok.as_deref(), Ok("partial\n"));
    }

    #[test]
    fn secret_settings_are_redacted_in_toml_and_yaml() {
        let text = "connection_string = \"HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0\"\n\
                    device_id_pk = { value = \"c2VjcmV0Mg==\" }\n\
                    password = \"hunter2\"\n\
                    https_proxy = \"http://bob:pr0xy@proxy:3128\"\n\
                    symmetric_key: \"c2VjcmV0Mw==\"\n\
                    hostname = \"keep-me\"\n";
        let out = redact_config(text);
        for secret in [
            "c2VjcmV0",
            "c2VjcmV0Mg==",
            "hunter2",
            "pr0xy",
            "c2VjcmV0Mw==",
        ] {
            assert!(!out.contains(secret), "{secret} survived:\n{out}");
        }
        assert!(out.contains("keep-me"));
        assert!(out.contains("http://bob:<redacted>@proxy:3128"), "{out}");
    }
}

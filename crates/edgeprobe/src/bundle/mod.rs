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

/// The archive: its default name and the .tar.gz itself.
mod archive;
/// The host's commands and the services' journals, each bounded in time and size.
mod commands;
/// Through the engine's API: its versions, the modules' network, inspects and logs.
mod docker;
/// Files read from the host: /etc/hosts and the configured certificates' expiry.
mod files;
/// Secret-bearing settings of configuration text replaced with a marker.
mod redact;

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use edgeprobe_iotedge::config::Provisioning;
use edgeprobe_iotedge::identity_state::{self, ProvisioningState};
use edgeprobe_iotedge::proxy_sources;
use edgeprobe_iotedge::secret::Scrubber;
use edgeprobe_report::json::JsonRenderer;
use edgeprobe_report::text::TextRenderer;
use edgeprobe_report::{Renderer, RunContext};
use serde_json::json;
use tokio::time::Instant;

use crate::cli::BundleArgs;
use crate::run::{exit_code, write_atomically};
use crate::stages::check_with_facts;
use crate::AppError;
use archive::{archive, default_name, host_name};
use commands::{collect_commands, command};
use docker::collect_docker;
use files::{certificates_entry, hosts_entry, read};

/// One file of the bundle, or the reason it is missing.
struct Entry {
    path: String,
    how: String,
    content: Result<String, String>,
}

pub use redact::redact_config;

/// What a bundle spends collecting after the check ran, at most: each source also has its
/// own budget within it ([`COMMAND_BUDGET`], [`ENGINE_BUDGET`], [`LOG_BUDGET`]).
const COLLECT_BUDGET: Duration = Duration::from_secs(40);
/// One external command (journalctl, iptables-save, df...).
const COMMAND_BUDGET: Duration = Duration::from_secs(8);
/// Connecting to the engine, listing and inspecting.
const ENGINE_BUDGET: Duration = Duration::from_secs(5);
/// One module's logs.
const LOG_BUDGET: Duration = Duration::from_secs(10);

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

#[cfg(test)]
mod tests;

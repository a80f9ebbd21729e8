//! `edgeprobe bundle [--output-file FILE]`: everything a support engineer asks for, in one .tar.gz —
//! the reports, the TLS chains each endpoint presented, the redacted IoT Edge configuration,
//! resolver, address and route facts, the Docker network and daemon settings, the services'
//! proxies, time sync, OS and tool versions — with a manifest saying how each file was
//! collected. A fact that cannot be collected is recorded with the reason, never fatal.
//!
//! Secrets are replaced with a marker twice over: known secret fields are redacted where
//! they are read, and every file is scrubbed for every secret the run knew before it is
//! written.

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
use crate::run::{check_with_facts, exit_code, write_atomically};
use crate::AppError;

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

async fn command(program: &str, args: &[&str], deadline: Instant) -> Result<String, String> {
    let run = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout_at(deadline, run).await {
        Err(_) => Err(format!("`{program}` did not finish in time")),
        Ok(Err(e)) => Err(format!("cannot run `{program}`: {e}")),
        Ok(Ok(o)) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(Ok(o)) => Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
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
    let state = match crate::run::state_path(check, facts.config.as_ref()) {
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
        "docker/network.json",
        "Docker engine API: network inspect",
        facts
            .network_inspect
            .clone()
            .ok_or_else(|| "the Docker engine or the network was not available".to_owned()),
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

    // Scrub every file for every secret the run knew, whatever its source.
    let scrubber = Scrubber::of(&facts.secrets);
    for e in &mut entries {
        if let Ok(text) = &e.content {
            e.content = Ok(scrubber.scrub(text));
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

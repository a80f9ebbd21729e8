//! Where each IoT Edge component takes its HTTPS proxy from, so that "the host gets through
//! but the runtime does not" can be explained. edgeAgent reads `agent.env` of the config
//! file; aziot-edged and aziot-identityd (and 1.1's iotedge) read systemd `Environment=`
//! settings; the Docker daemon pulls images through `daemon.json` `proxies` or its own
//! systemd environment. When they disagree, [`mismatches`] says so, one line each, with
//! passwords redacted.
//!
//! Files are read under a root directory (`/` in production). A component is recorded when
//! its files exist and could all be read; an unreadable file records nothing, never an error.

/// The files the components take their proxy from: systemd units and daemon.json.
mod files;
/// A proxy URL taken apart for comparing, and shown with its password redacted.
mod proxy_url;

use std::path::Path;

use crate::config::{ConfigFormat, EdgeConfig};
use crate::secret::Secret;
use files::{docker, systemd_env};
use proxy_url::ProxyUrl;

/// edgeAgent, as configured in `/etc/aziot/config.toml`.
pub const EDGE_AGENT_TOML: &str = "edgeAgent (config.toml agent.env)";
/// edgeAgent, as configured in 1.1's `/etc/iotedge/config.yaml`.
pub const EDGE_AGENT_YAML: &str = "edgeAgent (config.yaml agent.env)";
/// The Docker (Moby) daemon, which pulls the images.
pub const DOCKER: &str = "docker daemon";

/// The systemd units whose environment matters, with their component names.
const UNITS: [(&str, &str); 3] = [
    ("aziot-edged", "aziot-edged (systemd)"),
    ("aziot-identityd", "aziot-identityd (systemd)"),
    ("iotedge", "iotedge (systemd)"),
];

/// The default port of a proxy URL that names none.
pub const DEFAULT_PROXY_PORT: &str = "3128";

/// One component's proxy setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySource {
    /// e.g. "edgeAgent (config.toml agent.env)", "aziot-edged (systemd)", "docker daemon".
    pub component: &'static str,
    /// The file the setting came from (or, with no setting, the component's main file).
    pub origin: String,
    pub https_proxy: Option<Secret>,
}

/// Finds each component's HTTPS proxy under `root`. `config` is the parsed IoT Edge
/// configuration, when there is one (its `agent.env` is edgeAgent's setting). Order:
/// edgeAgent, aziot-edged, aziot-identityd, iotedge (1.1), docker daemon.
pub fn discover(root: &Path, config: Option<&EdgeConfig>) -> Vec<ProxySource> {
    let mut out = Vec::new();
    if let Some(cfg) = config {
        out.push(ProxySource {
            component: match cfg.format {
                ConfigFormat::Toml => EDGE_AGENT_TOML,
                ConfigFormat::Yaml => EDGE_AGENT_YAML,
            },
            origin: cfg.source.clone(),
            https_proxy: cfg.https_proxy.clone(),
        });
    }
    for (unit, component) in UNITS {
        if let Some(env) = systemd_env(root, unit) {
            out.push(ProxySource {
                component,
                origin: env.origin.display().to_string(),
                https_proxy: env.https_proxy,
            });
        }
    }
    out.extend(docker(root));
    out
}

/// One line per component whose proxy differs from the first source's (edgeAgent's when a
/// config was given). URLs are compared normalized: scheme and host without case, port
/// 3128 when absent, path and trailing slash ignored, user and password included.
/// Passwords are printed as `<redacted>`.
pub fn mismatches(sources: &[ProxySource]) -> Vec<String> {
    let Some((first, rest)) = sources.split_first() else {
        return Vec::new();
    };
    let parse = |s: &ProxySource| s.https_proxy.as_ref().map(|p| ProxyUrl::parse(p.expose()));
    let reference = parse(first);
    rest.iter()
        .filter_map(|s| {
            let this = parse(s);
            if this == reference {
                return None;
            }
            let mut line = format!(
                "{} uses {} ({}), but {} uses {} ({})",
                s.component,
                describe(this.as_ref()),
                s.origin,
                first.component,
                describe(reference.as_ref()),
                first.origin
            );
            if let (Some(a), Some(b)) = (&this, &reference) {
                if a.same_but_password(b) {
                    line.push_str(": the passwords differ");
                }
            }
            Some(line)
        })
        .collect()
}

fn describe(url: Option<&ProxyUrl>) -> String {
    match url {
        None => "no proxy".into(),
        Some(u) => format!("proxy {}", u.shown()),
    }
}

#[cfg(test)]
mod tests;

//! IoT Edge configuration files, read into one [`EdgeConfig`]: `/etc/aziot/config.toml`
//! (IoT Edge 1.2 and later) and `/etc/iotedge/config.yaml` (1.1).
//!
//! Only what edgeprobe needs is read: the device's identity and how it authenticates, the
//! parent and trust bundle of a nested device, edgeAgent's image, registry credentials,
//! `UpstreamProtocol` and proxy, and the Moby network. Unknown keys are ignored. Errors are
//! one line naming the file, the line (when known) and the key, and never show key material.
//!
//! A device key given by `file://` URI is read while loading; a key that cannot be read
//! (permission, missing file, key service) becomes [`KeyMaterial::Unreadable`] instead of
//! failing the load, so everything else in the file can still be checked.
//!
//! The work is split by what it does: each syntax becomes one format-neutral `tree` with
//! line numbers (`from_toml`, `from_yaml`), one `reader` turns the tree into the `types`
//! (its `provisioning` half reads identities and key files), and `cert_settings` lists the
//! certificate files a file names.

/// The certificate files a configuration names, for their expiry.
mod cert_settings;
/// TOML text to the tree, with every value's line (toml_edit's spans).
mod from_toml;
/// YAML text to the tree, with lines found by indentation (serde_yaml_ng has no spans).
mod from_yaml;
/// `provisioning`: manual or DPS, connection strings, key files and certificate URIs.
mod provisioning;
/// From the tree to an [`EdgeConfig`]: typed settings, errors naming key and line.
mod reader;
/// Sample files end to end, and the helpers the other modules' tests share.
#[cfg(test)]
mod tests;
/// A format-neutral tree of settings with line numbers.
mod tree;
/// What edgeprobe takes from a configuration, and the errors a file gives.
mod types;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use edgeprobe_core::bounded;

pub use cert_settings::certificate_settings;
pub use types::{
    ConfigError, DpsAttestation, EdgeConfig, IpamConfig, KeyMaterial, ManualAuth, MobyRuntime,
    NetworkConfig, Provisioning, RegistryCredential,
};

use from_toml::parse_toml;
use from_yaml::parse_yaml;
use reader::Reader;
use tree::LineIndex;

/// Where IoT Edge keeps its configuration: 1.2+ first, then 1.1.
pub const DEFAULT_PATHS: [&str; 2] = ["/etc/aziot/config.toml", "/etc/iotedge/config.yaml"];

/// The Moby network IoT Edge creates when the file names none.
pub const DEFAULT_NETWORK: &str = "azure-iot-edge";

/// The DPS endpoint when the file names none.
pub const DEFAULT_DPS_ENDPOINT: &str = "https://global.azure-devices-provisioning.net";

/// The first of [`DEFAULT_PATHS`] that exists (one we may not read counts: loading it then
/// says "permission denied", which is more useful than "no configuration").
pub fn find_default() -> Option<PathBuf> {
    find_default_in(Path::new("/"))
}

/// [`find_default`] under another root directory (for tests and images mounted elsewhere).
pub fn find_default_in(root: &Path) -> Option<PathBuf> {
    DEFAULT_PATHS.iter().find_map(|p| {
        let path = root.join(p.trim_start_matches('/'));
        match fs::metadata(&path) {
            Ok(_) => Some(path),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Some(path),
            Err(_) => None,
        }
    })
}

/// Reads and parses a configuration file. The format follows the extension (`.toml`,
/// `.yaml` / `.yml`); any other name is read as TOML.
pub fn load(path: &Path) -> Result<EdgeConfig, ConfigError> {
    let shown = path.display().to_string();
    let text =
        bounded::read_to_string(path, bounded::CONFIG_LIMIT).map_err(|e| match e.io_kind() {
            Some(io::ErrorKind::NotFound) => ConfigError::NotFound {
                path: shown.clone(),
            },
            Some(io::ErrorKind::PermissionDenied) => ConfigError::PermissionDenied {
                path: shown.clone(),
            },
            _ => ConfigError::Unreadable {
                path: shown.clone(),
                reason: e.to_string(),
            },
        })?;
    // An empty file is a mistake (a truncated copy), not a device with nothing configured.
    let content = text
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#') && l != "---");
    if !content {
        return Err(ConfigError::Unreadable {
            path: shown,
            reason: "the file is empty".into(),
        });
    }
    parse_str(&text, &shown, ConfigFormat::from_path(path))
}

/// Parses configuration text. `origin` names the file in errors and in [`EdgeConfig::source`].
/// Key files named by `file://` URIs are read (absolute paths only).
pub fn parse_str(
    text: &str,
    origin: &str,
    format: ConfigFormat,
) -> Result<EdgeConfig, ConfigError> {
    bounded::check_depth(text).map_err(|e| ConfigError::Unreadable {
        path: origin.to_owned(),
        reason: e.to_string(),
    })?;
    let lines = LineIndex::new(text);
    let root = match format {
        ConfigFormat::Toml => parse_toml(text, origin, &lines)?,
        ConfigFormat::Yaml => parse_yaml(text, origin)?,
    };
    Reader { origin }.config(&root, format)
}

/// The syntax of a configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `/etc/aziot/config.toml` (IoT Edge 1.2+).
    Toml,
    /// `/etc/iotedge/config.yaml` (IoT Edge 1.1).
    Yaml,
}

impl ConfigFormat {
    /// By extension: `.yaml` / `.yml` is YAML, anything else TOML.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                ConfigFormat::Yaml
            }
            _ => ConfigFormat::Toml,
        }
    }
}

impl fmt::Display for ConfigFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigFormat::Toml => "TOML",
            ConfigFormat::Yaml => "YAML",
        })
    }
}

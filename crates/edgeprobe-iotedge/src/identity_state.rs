//! The hub a DPS-provisioned device was assigned, from the identity service's own state.
//!
//! DPS tells a device its hub at provisioning time; IoT Edge keeps the answer on disk so it
//! need not ask again on every start. Reading it lets a pre-flight run check the hub the
//! runtime will really use, even when DPS itself cannot be reached:
//!
//! - 1.2 and later: aziot-identityd writes `device_info` (TOML: `hub_name`,
//!   `local_gateway_hostname`, `device_id`, or the word `unprovisioned`) in its home
//!   directory, `/var/lib/aziot/identityd`.
//! - 1.1: iotedged writes `cache/provisioning_backup.json` (`hub_name`, `device_id`, and
//!   credentials we never read) in its `homedir`, `/var/lib/iotedge` by default.
//!
//! Only the hub and the device id are taken; the file itself never reaches any output.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use edgeprobe_core::bounded;

use crate::config::ConfigFormat;

/// aziot-identityd's state file (IoT Edge 1.2+).
pub const IDENTITYD_DEVICE_INFO: &str = "/var/lib/aziot/identityd/device_info";

/// iotedged's home directory when `config.yaml` names none (IoT Edge 1.1).
pub const IOTEDGE_1_1_HOMEDIR: &str = "/var/lib/iotedge";

/// Where the provisioning state of a device with this kind of configuration lives.
pub fn default_path(format: ConfigFormat, homedir: Option<&Path>) -> PathBuf {
    match format {
        ConfigFormat::Toml => PathBuf::from(IDENTITYD_DEVICE_INFO),
        ConfigFormat::Yaml => homedir
            .unwrap_or(Path::new(IOTEDGE_1_1_HOMEDIR))
            .join("cache")
            .join("provisioning_backup.json"),
    }
}

/// The hub and device id the device was provisioned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub hub: String,
    pub device_id: String,
    /// The file it came from.
    pub source: PathBuf,
}

/// What the state file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProvisioningState {
    Assigned(Assigned),
    /// The identity service has run but the device is not provisioned (yet).
    Unprovisioned {
        source: PathBuf,
    },
}

/// Why the state could not be read. `Display` is one line naming the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// No state file: the identity service has not provisioned this device here.
    Missing {
        path: PathBuf,
    },
    PermissionDenied {
        path: PathBuf,
    },
    Unreadable {
        path: PathBuf,
        reason: String,
    },
    Malformed {
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Missing { path } => write!(f, "{} does not exist", path.display()),
            StateError::PermissionDenied { path } => write!(
                f,
                "{}: permission denied (run edgeprobe with sudo to read it)",
                path.display()
            ),
            StateError::Unreadable { path, reason } => {
                write!(f, "{}: cannot read it: {reason}", path.display())
            }
            StateError::Malformed { path, reason } => {
                write!(f, "{}: not a provisioning state: {reason}", path.display())
            }
        }
    }
}

/// Reads the provisioning state at `path`; the format follows the file (TOML `device_info`
/// or the JSON backup of 1.1).
pub fn read(path: &Path) -> Result<ProvisioningState, StateError> {
    let text = bounded::read_to_string(path, bounded::STATE_LIMIT).map_err(|e| match e {
        e if e.io_kind() == Some(io::ErrorKind::NotFound) => StateError::Missing {
            path: path.to_owned(),
        },
        e if e.io_kind() == Some(io::ErrorKind::PermissionDenied) => StateError::PermissionDenied {
            path: path.to_owned(),
        },
        bounded::ReadError::NotUtf8 => StateError::Malformed {
            path: path.to_owned(),
            reason: "not UTF-8 text".into(),
        },
        e => StateError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })?;
    bounded::check_depth(&text).map_err(|e| StateError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    parse(&text, path)
}

/// Parses state text; `path` names it in errors and in the result.
pub fn parse(text: &str, path: &Path) -> Result<ProvisioningState, StateError> {
    let malformed = |reason: String| StateError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed == "unprovisioned" {
        return Ok(ProvisioningState::Unprovisioned {
            source: path.to_owned(),
        });
    }
    let (hub, device_id) = if trimmed.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| malformed(format!("JSON: {e}")))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        (field("hub_name"), field("device_id"))
    } else {
        let doc: toml_edit::DocumentMut = trimmed.parse().map_err(|e: toml_edit::TomlError| {
            let first = e
                .message()
                .lines()
                .next()
                .unwrap_or("syntax error")
                .to_owned();
            malformed(format!("TOML: {first}"))
        })?;
        let field = |k: &str| doc.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        (field("hub_name"), field("device_id"))
    };
    match (hub, device_id) {
        (Some(hub), Some(device_id)) if !hub.is_empty() && !device_id.is_empty() => {
            Ok(ProvisioningState::Assigned(Assigned {
                hub,
                device_id,
                source: path.to_owned(),
            }))
        }
        _ => Err(malformed("no hub_name and device_id".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/var/lib/aziot/identityd/device_info")
    }

    #[test]
    fn identityd_device_info_gives_the_hub_and_device() {
        let text = "hub_name = \"contoso.azure-devices.net\"\n\
                    local_gateway_hostname = \"contoso.azure-devices.net\"\n\
                    device_id = \"edge-7\"\n";
        assert_eq!(
            parse(text, p()),
            Ok(ProvisioningState::Assigned(Assigned {
                hub: "contoso.azure-devices.net".into(),
                device_id: "edge-7".into(),
                source: p().to_owned(),
            }))
        );
    }

    #[test]
    fn unprovisioned_is_its_own_state() {
        assert!(matches!(
            parse("unprovisioned", p()),
            Ok(ProvisioningState::Unprovisioned { .. })
        ));
    }

    #[test]
    fn the_1_1_backup_is_json_and_its_credentials_are_ignored() {
        let text = r#"{"device_id":"edge-1","hub_name":"hub11.azure-devices.net","reconfigure":"None","credentials":{"auth_type":"SymmetricKey","source":"Payload","key":"c2VjcmV0"}}"#;
        let path = Path::new("/var/lib/iotedge/cache/provisioning_backup.json");
        let ProvisioningState::Assigned(a) = parse(text, path).unwrap() else {
            panic!("expected an assignment")
        };
        assert_eq!(
            (a.hub.as_str(), a.device_id.as_str()),
            ("hub11.azure-devices.net", "edge-1")
        );
    }

    #[test]
    fn broken_files_name_the_file_and_what_is_wrong() {
        for (text, want) in [
            ("hub_name = ", "TOML"),
            ("hub_name = [unclosed\n", "TOML: invalid array"),
            ("{\"hub_name\": 1", "JSON"),
            ("device_id = \"d\"\n", "no hub_name and device_id"),
            (
                "hub_name = \"\"\ndevice_id = \"d\"\n",
                "no hub_name and device_id",
            ),
        ] {
            let e = parse(text, p()).unwrap_err().to_string();
            assert!(
                e.starts_with("/var/lib/aziot/identityd/device_info: "),
                "{e}"
            );
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn read_says_missing_and_default_paths_follow_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        assert!(matches!(
            read(&dir.join("device_info")),
            Err(StateError::Missing { .. })
        ));
        assert_eq!(
            default_path(ConfigFormat::Toml, None),
            Path::new(IDENTITYD_DEVICE_INFO)
        );
        assert_eq!(
            default_path(ConfigFormat::Yaml, Some(Path::new("/data/iotedge"))),
            Path::new("/data/iotedge/cache/provisioning_backup.json")
        );
    }
}

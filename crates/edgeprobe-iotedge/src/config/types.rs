//! The settings edgeprobe takes from a configuration file, and the one-line errors a file
//! that cannot be used gives.

use std::path::PathBuf;

use crate::identity::Credentials;
use crate::secret::Secret;
use crate::verdict::UpstreamProtocol;

use super::{ConfigFormat, DEFAULT_NETWORK};

/// What edgeprobe takes from an IoT Edge configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The file it came from (the `origin` given to [`parse_str`]).
    pub source: String,
    pub format: ConfigFormat,
    pub hostname: Option<String>,
    /// The parent device of a nested (child) edge device.
    pub parent_hostname: Option<String>,
    /// 1.2+: `trust_bundle_cert`; 1.1: `certificates.trusted_ca_certs`.
    pub trust_bundle_cert: Option<PathBuf>,
    pub provisioning: Provisioning,
    /// `agent.config.image`.
    pub agent_image: Option<String>,
    /// `agent.config.auth`.
    pub registry_credentials: Vec<RegistryCredential>,
    /// `agent.env` `UpstreamProtocol`, as written (see [`EdgeConfig::upstream_protocol_parsed`]).
    pub upstream_protocol: Option<String>,
    /// `agent.env` `https_proxy` / `HTTPS_PROXY`; may hold a password.
    pub https_proxy: Option<Secret>,
    pub moby_runtime: MobyRuntime,
    /// 1.1: iotedged's `homedir` (its provisioning backup lives under it).
    pub homedir: Option<PathBuf>,
}

impl EdgeConfig {
    /// The configured `UpstreamProtocol`, if it is one the runtime knows.
    pub fn upstream_protocol_parsed(&self) -> Option<UpstreamProtocol> {
        self.upstream_protocol
            .as_deref()
            .and_then(UpstreamProtocol::parse)
    }

    /// Hub, device id and credentials of a manually provisioned device. DPS devices learn
    /// their hub at run time, so they give `None`, as does a file without provisioning.
    pub fn device_credentials(&self) -> Option<(String, String, Credentials)> {
        let Provisioning::Manual {
            iothub_hostname,
            device_id,
            auth,
        } = &self.provisioning
        else {
            return None;
        };
        let credentials = match auth {
            ManualAuth::Sas(KeyMaterial::Available(key)) => Credentials::SasKey(key.clone()),
            ManualAuth::Sas(KeyMaterial::Unreadable { what, why }) => {
                Credentials::Unavailable(format!("device key {what}: {why}"))
            }
            ManualAuth::X509 { cert, key } => Credentials::X509 {
                cert: cert.clone(),
                key: key.clone(),
            },
            ManualAuth::Unavailable { what, why } => {
                Credentials::Unavailable(format!("{what}: {why}"))
            }
        };
        Some((iothub_hostname.clone(), device_id.clone(), credentials))
    }

    /// Every secret the file held, for scrubbing text that came from elsewhere.
    pub fn secrets(&self) -> Vec<&Secret> {
        let mut out = Vec::new();
        match &self.provisioning {
            Provisioning::Manual {
                auth: ManualAuth::Sas(KeyMaterial::Available(k)),
                ..
            }
            | Provisioning::Dps {
                attestation:
                    DpsAttestation::SymmetricKey {
                        key: KeyMaterial::Available(k),
                    },
                ..
            } => out.push(k),
            _ => {}
        }
        out.extend(
            self.registry_credentials
                .iter()
                .filter_map(|c| c.password.as_ref()),
        );
        out.extend(self.https_proxy.as_ref());
        out
    }
}

/// How the device gets its identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Provisioning {
    /// The file has no `provisioning` section.
    #[default]
    None,
    /// A fixed hub and device: a connection string, or hub + device id + key or certificate.
    Manual {
        iothub_hostname: String,
        device_id: String,
        auth: ManualAuth,
    },
    /// The Device Provisioning Service assigns the hub at run time.
    Dps {
        global_endpoint: String,
        /// 1.2+: `id_scope`; 1.1: `scope_id`.
        id_scope: String,
        registration_id: Option<String>,
        attestation: DpsAttestation,
    },
}

/// How a manually provisioned device authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManualAuth {
    /// A symmetric device key (from a connection string or `device_id_pk`).
    Sas(KeyMaterial),
    /// A client certificate and its private key, from `file://` URIs.
    X509 { cert: PathBuf, key: PathBuf },
    /// X.509, but the certificate or key is not a file edgeprobe can use (a `pkcs11:` key,
    /// a certificate issued at run time by EST or a local CA). `what` names the setting.
    Unavailable { what: String, why: String },
}

/// A symmetric key, or why it could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// The key, base64.
    Available(Secret),
    /// `what` is the key file (or the setting, for a key service URI); `why` the reason,
    /// e.g. "permission denied: run with sudo". Never holds key material.
    Unreadable { what: String, why: String },
}

/// How a DPS-provisioned device proves itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpsAttestation {
    SymmetricKey {
        key: KeyMaterial,
    },
    /// Paths when given as `file://` URIs; `None` when missing, issued at run time or held
    /// by a key service.
    X509 {
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    },
    Tpm,
}

/// Credentials edgeAgent's image is pulled with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryCredential {
    pub server: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// `[moby_runtime]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MobyRuntime {
    /// 1.2+: `uri`; 1.1: `docker_uri`.
    pub uri: Option<String>,
    pub network: NetworkConfig,
}

/// `moby_runtime.network`: a name, or a table with name, IPv6 and IPAM settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    pub name: String,
    pub ipv6: Option<bool>,
    pub ipam: Vec<IpamConfig>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            name: DEFAULT_NETWORK.into(),
            ipv6: None,
            ipam: Vec::new(),
        }
    }
}

/// One entry of `moby_runtime.network.ipam.config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpamConfig {
    pub gateway: Option<String>,
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
}

/// A configuration file that could not be used. One line; never holds key material.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: not found")]
    NotFound { path: String },
    #[error("cannot read {path}: permission denied (run with sudo)")]
    PermissionDenied { path: String },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// The file is not valid TOML / YAML.
    #[error("{origin}: {}invalid {format}: {message}", at_line(.line))]
    Syntax {
        origin: String,
        line: Option<usize>,
        format: ConfigFormat,
        message: String,
    },
    /// Valid syntax, but a setting IoT Edge would refuse (or edgeprobe cannot use).
    #[error("{origin}: {}{key}: {message}", at_line(.line))]
    Invalid {
        origin: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line the error is on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::config::tests::{fixture, FIXTURES, HUB, SECRETS};
    use crate::config::{parse_str, ConfigFormat};
    #[test]
    fn device_credentials_map_manual_provisioning_only() {
        let (hub, device, creds) = fixture("v1.2-manual-sas-inline.toml")
            .device_credentials()
            .unwrap();
        assert_eq!((hub.as_str(), device.as_str()), (HUB, "edge-sas-inline"));
        assert_eq!(creds, Credentials::SasKey(Secret::new(SECRETS[0])));
        let (_, _, creds) = fixture("v1.2-manual-x509.toml")
            .device_credentials()
            .unwrap();
        assert_eq!(
            creds,
            Credentials::X509 {
                cert: "/var/aziot/certs/device-id.pem".into(),
                key: "/var/aziot/secrets/device-id.key.pem".into()
            }
        );
        assert!(fixture("v1.2-dps-tpm.toml").device_credentials().is_none());
        let empty = parse_str("", "c", ConfigFormat::Toml).unwrap();
        assert_eq!(empty.provisioning, Provisioning::None);
        assert!(empty.device_credentials().is_none());
        assert_eq!(empty.moby_runtime.network.name, "azure-iot-edge");
    }

    #[test]
    fn debug_output_never_shows_keys_or_passwords() {
        let names = fs::read_dir(FIXTURES)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('v'))
            .collect::<Vec<_>>();
        assert!(names.len() >= 11);
        for name in names {
            let cfg = fixture(&name);
            let shown = format!("{cfg:?} {cfg:#?} {:?}", cfg.device_credentials());
            for s in SECRETS {
                assert!(!shown.contains(s), "{name} shows a secret");
            }
            assert!(!shown.contains("1234"), "{name} shows a PIN");
        }
    }
}

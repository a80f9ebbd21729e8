//! `provisioning`: a manual device (connection string, or hub + device id + key or
//! certificate) or a DPS device, and the key files and certificate URIs they name. A key
//! that cannot be read becomes [`KeyMaterial::Unreadable`], never a failed load.

use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use edgeprobe_core::bounded;
use percent_encoding::percent_decode_str;

use crate::identity::ConnectionString;
use crate::sas;
use crate::secret::Secret;

use super::reader::Reader;
use super::tree::{join, Node, Val};
use super::{
    ConfigError, DpsAttestation, KeyMaterial, ManualAuth, Provisioning, DEFAULT_DPS_ENDPOINT,
};

/// A `file://` URI (or a bare absolute path), or something else.
pub(super) enum Uri {
    File(PathBuf),
    Other { scheme: String },
}

pub(super) fn classify_uri(value: &str) -> Uri {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix("file://") {
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if rest.starts_with('/') {
            return Uri::File(PathBuf::from(
                percent_decode_str(rest).decode_utf8_lossy().into_owned(),
            ));
        }
        return Uri::Other {
            scheme: "relative file".into(),
        };
    }
    if value.starts_with('/') {
        return Uri::File(PathBuf::from(value));
    }
    let scheme = value
        .split_once(':')
        .map(|(s, _)| s)
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .unwrap_or("non-URI");
    Uri::Other {
        scheme: scheme.to_owned(),
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "not found".into(),
        io::ErrorKind::PermissionDenied => "permission denied: run with sudo".into(),
        _ => e.to_string(),
    }
}

/// Reads a key file: base64 text is used as is (trimmed); raw bytes, as aziot-keyd stores
/// them, are base64-encoded.
fn read_key_file(path: &Path) -> KeyMaterial {
    let unreadable = |why: String| KeyMaterial::Unreadable {
        what: path.display().to_string(),
        why,
    };
    let bytes = match bounded::read(path, bounded::STATE_LIMIT) {
        Ok(b) => b,
        Err(bounded::ReadError::Io(e)) => return unreadable(io_reason(&e)),
        Err(e) => return unreadable(e.to_string()),
    };
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let text = text.trim();
        if text.is_empty() {
            return unreadable("the file is empty".into());
        }
        let key = Secret::new(text);
        if sas::validate_key(&key).is_ok() {
            return KeyMaterial::Available(key);
        }
    }
    KeyMaterial::Available(Secret::new(B64.encode(&bytes)))
}
impl Reader<'_> {
    pub(super) fn provisioning(&self, root: &Node) -> Result<Provisioning, ConfigError> {
        let Some(prov) = self.table(root, "", "provisioning")? else {
            return Ok(Provisioning::None);
        };
        let p = "provisioning";
        let source_node = prov.get("source");
        let source = self.required_string(prov, p, "source")?;
        match source.as_str() {
            "manual" => self.manual(prov),
            "dps" => self.dps(prov),
            other => Err(self.invalid(
                source_node.and_then(|n| n.line),
                "provisioning.source",
                format!("unknown provisioning source {other:?} (expected manual or dps)"),
            )),
        }
    }

    fn manual(&self, prov: &Node) -> Result<Provisioning, ConfigError> {
        let p = "provisioning";
        let auth = self.table(prov, p, "authentication")?;
        let ap = "provisioning.authentication";

        // 1.2: connection_string; 1.1: device_connection_string, at either level.
        let cs = [
            (Some(prov), p, "connection_string"),
            (Some(prov), p, "device_connection_string"),
            (auth, ap, "device_connection_string"),
        ]
        .into_iter()
        .find_map(|(parent, path, key)| parent?.get(key).map(|n| (n, join(path, key))));
        if let Some((node, key)) = cs {
            return self.connection_string(node, &key);
        }

        let Some(auth) = auth else {
            return Err(self.invalid(
                prov.line,
                p,
                "manual provisioning needs connection_string, or iothub_hostname, device_id and [provisioning.authentication]",
            ));
        };
        // 1.2 keeps hub and device beside `authentication`; 1.1 inside it.
        let (hub_parent, hub_path) = if prov.get("iothub_hostname").is_some() {
            (prov, p)
        } else if auth.get("iothub_hostname").is_some() {
            (auth, ap)
        } else {
            (prov, p)
        };
        let iothub_hostname = self.required_string(hub_parent, hub_path, "iothub_hostname")?;
        let (dev_parent, dev_path) =
            if auth.get("device_id").is_some() && prov.get("device_id").is_none() {
                (auth, ap)
            } else {
                (prov, p)
            };
        let device_id = self.required_string(dev_parent, dev_path, "device_id")?;

        let method_node = auth.get("method");
        let method = self.required_string(auth, ap, "method")?;
        let auth = match method.as_str() {
            "sas" => {
                let node = auth
                    .get("device_id_pk")
                    .ok_or_else(|| self.invalid(auth.line, &join(ap, "device_id_pk"), "missing"))?;
                ManualAuth::Sas(self.key_material(node, &join(ap, "device_id_pk"))?)
            }
            "x509" => self.manual_x509(auth)?,
            other => {
                return Err(self.invalid(
                    method_node.and_then(|n| n.line),
                    &join(ap, "method"),
                    format!("unknown authentication method {other:?} (expected sas or x509)"),
                ))
            }
        };
        Ok(Provisioning::Manual {
            iothub_hostname,
            device_id,
            auth,
        })
    }

    fn connection_string(&self, node: &Node, key: &str) -> Result<Provisioning, ConfigError> {
        let text = self.string_of(node, key)?;
        if text.trim().starts_with('<') && text.trim().ends_with('>') {
            return Err(self.invalid(node.line, key, "still holds the template's placeholder"));
        }
        let cs: ConnectionString =
            text.parse()
                .map_err(|e: crate::identity::ConnectionStringError| {
                    self.invalid(node.line, key, e.to_string())
                })?;
        let Some(k) = cs.key else {
            return Err(self.invalid(
                node.line,
                key,
                "x509=true connection strings are not used by IoT Edge: set method = \"x509\" with identity_cert and identity_pk",
            ));
        };
        Ok(Provisioning::Manual {
            iothub_hostname: cs.host_name,
            device_id: cs.device_id,
            auth: ManualAuth::Sas(KeyMaterial::Available(k)),
        })
    }

    fn manual_x509(&self, auth: &Node) -> Result<ManualAuth, ConfigError> {
        let ap = "provisioning.authentication";
        let mut paths = Vec::new();
        for key in ["identity_cert", "identity_pk"] {
            let full = join(ap, key);
            let node = auth
                .get(key)
                .ok_or_else(|| self.invalid(auth.line, &full, "missing"))?;
            match self.file_or_why(node, &full)? {
                Ok(path) => paths.push(path),
                Err(why) => return Ok(ManualAuth::Unavailable { what: full, why }),
            }
        }
        let key = paths.pop().unwrap_or_default();
        let cert = paths.pop().unwrap_or_default();
        Ok(ManualAuth::X509 { cert, key })
    }

    /// A certificate or key setting: the file's path, or why there is no file to use.
    fn file_or_why(&self, node: &Node, full: &str) -> Result<Result<PathBuf, String>, ConfigError> {
        match &node.val {
            Val::Map(_) => {
                let method = self
                    .string(node, full, "method")?
                    .unwrap_or_else(|| "?".into());
                Ok(Err(format!(
                    "issued at run time (method = {method:?}), not a file edgeprobe can use"
                )))
            }
            _ => {
                let value = self.string_of(node, full)?;
                Ok(match classify_uri(&value) {
                    Uri::File(p) => Ok(p),
                    Uri::Other { scheme } => Err(format!(
                        "held by a key service ({scheme} URI), not a file edgeprobe can use"
                    )),
                })
            }
        }
    }

    /// `{ value = "<base64>" }`, `{ uri = "file:///..." }` or (1.1) a bare base64 string.
    fn key_material(&self, node: &Node, full: &str) -> Result<KeyMaterial, ConfigError> {
        let (value_node, value_key) = match &node.val {
            Val::Str(_) => (node, full.to_owned()),
            Val::Map(_) => {
                if let Some(v) = node.get("value") {
                    (v, join(full, "value"))
                } else if let Some(u) = node.get("uri") {
                    let uri = self.string_of(u, &join(full, "uri"))?;
                    return Ok(match classify_uri(&uri) {
                        Uri::File(path) => read_key_file(&path),
                        Uri::Other { scheme } => KeyMaterial::Unreadable {
                            what: full.to_owned(),
                            why: format!(
                                "held by a key service ({scheme} URI), which edgeprobe cannot read"
                            ),
                        },
                    });
                } else {
                    return Err(self.invalid(node.line, full, "expected value or uri"));
                }
            }
            _ => {
                return Err(self.invalid(
                    node.line,
                    full,
                    format!("expected a key, found {}", node.kind()),
                ))
            }
        };
        let Val::Str(text) = &value_node.val else {
            return Err(self.invalid(
                value_node.line,
                &value_key,
                format!("expected a base64 string, found {}", value_node.kind()),
            ));
        };
        let key = Secret::new(text.trim());
        if key.is_empty() {
            return Err(self.invalid(value_node.line, &value_key, "the key is empty"));
        }
        sas::validate_key(&key)
            .map_err(|e| self.invalid(value_node.line, &value_key, e.to_string()))?;
        Ok(KeyMaterial::Available(key))
    }

    fn dps(&self, prov: &Node) -> Result<Provisioning, ConfigError> {
        let p = "provisioning";
        let global_endpoint = self
            .string(prov, p, "global_endpoint")?
            .unwrap_or_else(|| DEFAULT_DPS_ENDPOINT.into());
        let id_scope = if prov.get("id_scope").is_none() && prov.get("scope_id").is_some() {
            self.required_string(prov, p, "scope_id")?
        } else {
            self.required_string(prov, p, "id_scope")?
        };
        let ap = "provisioning.attestation";
        let att = self
            .table(prov, p, "attestation")?
            .ok_or_else(|| self.invalid(prov.line, ap, "missing"))?;
        let registration_id = match self.string(att, ap, "registration_id")? {
            Some(r) => Some(r),
            None => self.string(prov, p, "registration_id")?,
        };
        let method_node = att.get("method");
        let method = self.required_string(att, ap, "method")?;
        let attestation = match method.as_str() {
            "symmetric_key" => {
                let full = join(ap, "symmetric_key");
                let node = att
                    .get("symmetric_key")
                    .ok_or_else(|| self.invalid(att.line, &full, "missing"))?;
                DpsAttestation::SymmetricKey {
                    key: self.key_material(node, &full)?,
                }
            }
            "x509" => {
                let file = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
                    match att.get(key) {
                        None => Ok(None),
                        Some(n) => Ok(self.file_or_why(n, &join(ap, key))?.ok()),
                    }
                };
                DpsAttestation::X509 {
                    cert: file("identity_cert")?,
                    key: file("identity_pk")?,
                }
            }
            "tpm" => DpsAttestation::Tpm,
            other => {
                return Err(self.invalid(
                    method_node.and_then(|n| n.line),
                    &join(ap, "method"),
                    format!(
                    "unknown attestation method {other:?} (expected symmetric_key, x509 or tpm)"
                ),
                ))
            }
        };
        Ok(Provisioning::Dps {
            global_endpoint,
            id_scope,
            registration_id,
            attestation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::config::{parse_str, ConfigFormat};
    use crate::identity::Credentials;
    #[test]
    fn key_files_hold_base64_or_raw_bytes_and_key_services_are_unreadable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let raw = dir.join("raw.key");
        fs::write(&raw, [0u8, 159, 146, 150, 10, 32, 255]).unwrap();
        let text = dir.join("text.key");
        fs::write(&text, "  YWJjZA==\n\n").unwrap();
        let empty = dir.join("empty.key");
        fs::write(&empty, "\n").unwrap();

        let with_uri = |uri: &str| {
            let cfg = format!(
                "[provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n\
                 [provisioning.authentication]\nmethod = \"sas\"\ndevice_id_pk = {{ uri = \"{uri}\" }}\n"
            );
            match parse_str(&cfg, "c", ConfigFormat::Toml)
                .unwrap()
                .provisioning
            {
                Provisioning::Manual {
                    auth: ManualAuth::Sas(k),
                    ..
                } => k,
                other => panic!("{other:?}"),
            }
        };
        let available = |k: KeyMaterial| match k {
            KeyMaterial::Available(s) => s.expose().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            available(with_uri(&format!("file://{}", raw.display()))),
            B64.encode([0u8, 159, 146, 150, 10, 32, 255])
        );
        assert_eq!(
            available(with_uri(&format!("file://{}", text.display()))),
            "YWJjZA=="
        );
        assert_eq!(
            with_uri(&format!("file://{}", empty.display())),
            KeyMaterial::Unreadable {
                what: empty.display().to_string(),
                why: "the file is empty".into()
            }
        );
        assert_eq!(
            with_uri("pkcs11:token=edge;object=device-id?pin-value=1234"),
            KeyMaterial::Unreadable {
                what: "provisioning.authentication.device_id_pk".into(),
                why: "held by a key service (pkcs11 URI), which edgeprobe cannot read".into()
            }
        );

        // A manual X.509 key held by a key service: unavailable, with the reason.
        let cfg = parse_str(
            "[provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n\
             [provisioning.authentication]\nmethod = \"x509\"\nidentity_cert = \"file:///c.pem\"\n\
             identity_pk = \"pkcs11:object=k?pin-value=1234\"\n",
            "c",
            ConfigFormat::Toml,
        )
        .unwrap();
        let (hub, device, creds) = cfg.device_credentials().unwrap();
        assert_eq!((hub.as_str(), device.as_str()), ("h", "d"));
        assert_eq!(
            creds,
            Credentials::Unavailable(
                "provisioning.authentication.identity_pk: held by a key service (pkcs11 URI), not a file edgeprobe can use".into()
            )
        );
        assert!(!format!("{cfg:?}").contains("1234"));
    }
}

//! The certificate files a configuration names (never its private keys), so that their
//! expiry can be checked.

use std::path::PathBuf;

use super::tree::{LineIndex, Node, Val};
use super::{parse_toml, parse_yaml, ConfigFormat};

/// The certificate files a configuration names, as (setting, path): `trust_bundle_cert`,
/// `edge_ca.cert`, identity certificates, 1.1's `certificates.*_cert(s)`. Only settings
/// whose name says certificate and whose value is a `file://` URI or an absolute path;
/// private keys (`*_pk`, `*key*`) never. The file's own syntax errors give an empty list:
/// [`load`] reports them.
pub fn certificate_settings(text: &str, format: ConfigFormat) -> Vec<(String, PathBuf)> {
    let lines = LineIndex::new(text);
    let root = match format {
        ConfigFormat::Toml => parse_toml(text, "", &lines),
        ConfigFormat::Yaml => parse_yaml(text, ""),
    };
    let mut out = Vec::new();
    if let Ok(root) = root {
        walk_certs(&root, "", false, &mut out);
    }
    out
}

fn walk_certs(node: &Node, path: &str, cert_key: bool, out: &mut Vec<(String, PathBuf)>) {
    match &node.val {
        Val::Map(entries) => {
            for (k, v) in entries {
                let lower = k.to_ascii_lowercase();
                let is_cert =
                    lower.contains("cert") && !lower.contains("key") && !lower.ends_with("pk");
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk_certs(v, &child, is_cert, out);
            }
        }
        Val::Seq(items) => {
            for v in items {
                walk_certs(v, path, cert_key, out);
            }
        }
        Val::Str(s) if cert_key => {
            let file = s.strip_prefix("file://").unwrap_or(s);
            if file.starts_with('/') {
                out.push((path.to_owned(), PathBuf::from(file)));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_settings_name_certificates_and_never_keys() {
        let toml = "trust_bundle_cert = \"file:///etc/aziot/trust.pem\"\n\
                    [provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n\
                    [provisioning.authentication]\nmethod = \"x509\"\n\
                    identity_cert = \"file:///var/aziot/certs/id.pem\"\n\
                    identity_pk = \"file:///var/aziot/secrets/id.key.pem\"\n\
                    [edge_ca]\ncert = \"file:///var/aziot/certs/ca.pem\"\npk = \"file:///var/aziot/secrets/ca.key.pem\"\n";
        let got = certificate_settings(toml, ConfigFormat::Toml);
        assert_eq!(
            got,
            vec![
                (
                    "trust_bundle_cert".into(),
                    PathBuf::from("/etc/aziot/trust.pem")
                ),
                (
                    "provisioning.authentication.identity_cert".into(),
                    PathBuf::from("/var/aziot/certs/id.pem")
                ),
                (
                    "edge_ca.cert".into(),
                    PathBuf::from("/var/aziot/certs/ca.pem")
                ),
            ]
        );
        let yaml = "certificates:\n  device_ca_cert: \"/etc/iotedge/ca.pem\"\n  device_ca_pk: \"/etc/iotedge/ca.key\"\n  trusted_ca_certs: \"file:///etc/iotedge/root.pem\"\n";
        let got = certificate_settings(yaml, ConfigFormat::Yaml);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|(k, _)| !k.ends_with("pk")));
        assert!(certificate_settings("[", ConfigFormat::Toml).is_empty());
    }
}

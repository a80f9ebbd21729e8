//! From the tree to an [`EdgeConfig`]: typed accessors whose errors name the key and its line,
//! and the top-level settings (hostname, parent, trust bundle, edgeAgent, Moby runtime).
//! Provisioning has its own module.

use std::path::PathBuf;

use crate::secret::Secret;

use super::provisioning::{classify_uri, Uri};
use super::tree::{join, Node, Val};
use super::{
    ConfigError, ConfigFormat, EdgeConfig, IpamConfig, MobyRuntime, NetworkConfig,
    RegistryCredential, DEFAULT_NETWORK,
};

pub(super) struct Reader<'a> {
    pub(super) origin: &'a str,
}

impl Reader<'_> {
    pub(super) fn invalid(
        &self,
        line: Option<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A string setting; scalars of other types are taken as their text.
    pub(super) fn string(
        &self,
        parent: &Node,
        path: &str,
        key: &str,
    ) -> Result<Option<String>, ConfigError> {
        let Some(node) = parent.get(key) else {
            return Ok(None);
        };
        self.string_of(node, &join(path, key)).map(Some)
    }

    pub(super) fn string_of(&self, node: &Node, full: &str) -> Result<String, ConfigError> {
        match &node.val {
            Val::Str(s) => Ok(s.clone()),
            Val::Int(i) => Ok(i.to_string()),
            Val::Float(f) => Ok(f.to_string()),
            Val::Bool(b) => Ok(b.to_string()),
            _ => Err(self.invalid(
                node.line,
                full,
                format!("expected a string, found {}", node.kind()),
            )),
        }
    }

    pub(super) fn required_string(
        &self,
        parent: &Node,
        path: &str,
        key: &str,
    ) -> Result<String, ConfigError> {
        let value = self
            .string(parent, path, key)?
            .ok_or_else(|| self.invalid(parent.line, &join(path, key), "missing"))?;
        if value.trim().is_empty() {
            let line = parent.get(key).and_then(|n| n.line);
            return Err(self.invalid(line, &join(path, key), "is empty"));
        }
        Ok(value)
    }

    pub(super) fn bool(
        &self,
        parent: &Node,
        path: &str,
        key: &str,
    ) -> Result<Option<bool>, ConfigError> {
        match parent.get(key) {
            None => Ok(None),
            Some(Node {
                val: Val::Bool(b), ..
            }) => Ok(Some(*b)),
            Some(n) => Err(self.invalid(
                n.line,
                &join(path, key),
                format!("expected true or false, found {}", n.kind()),
            )),
        }
    }

    pub(super) fn table<'n>(
        &self,
        parent: &'n Node,
        path: &str,
        key: &str,
    ) -> Result<Option<&'n Node>, ConfigError> {
        match parent.get(key) {
            None => Ok(None),
            Some(n) if n.is_map() => Ok(Some(n)),
            Some(n) => Err(self.invalid(
                n.line,
                &join(path, key),
                format!("expected a table, found {}", n.kind()),
            )),
        }
    }

    pub(super) fn config(
        &self,
        root: &Node,
        format: ConfigFormat,
    ) -> Result<EdgeConfig, ConfigError> {
        if !root.is_map() && !matches!(root.val, Val::Null) {
            return Err(self.invalid(
                root.line,
                "(top level)",
                format!("expected a table of settings, found {}", root.kind()),
            ));
        }
        let trust_bundle_cert = match root.get("trust_bundle_cert") {
            Some(n) => Some(self.cert_path(n, "trust_bundle_cert")?),
            None => match self.table(root, "", "certificates")? {
                Some(certs) => match certs.get("trusted_ca_certs") {
                    Some(n) => Some(self.cert_path(n, "certificates.trusted_ca_certs")?),
                    None => None,
                },
                None => None,
            },
        };

        let mut agent_image = None;
        let mut registry_credentials = Vec::new();
        let mut upstream_protocol = None;
        let mut https_proxy = None;
        if let Some(agent) = self.table(root, "", "agent")? {
            if let Some(config) = self.table(agent, "agent", "config")? {
                agent_image = self.string(config, "agent.config", "image")?;
                if let Some(auth) = self.table(config, "agent.config", "auth")? {
                    registry_credentials.extend(self.registry_auth(auth)?);
                }
            }
            if let Some(env) = self.table(agent, "agent", "env")? {
                if let Some(n) = env.get_nocase("UpstreamProtocol") {
                    upstream_protocol = Some(self.string_of(n, "agent.env.UpstreamProtocol")?);
                }
                if let Some(n) = env.get_nocase("https_proxy") {
                    let v = self.string_of(n, "agent.env.https_proxy")?;
                    if !v.trim().is_empty() {
                        https_proxy = Some(Secret::new(v.trim()));
                    }
                }
            }
        }

        Ok(EdgeConfig {
            source: self.origin.to_owned(),
            format,
            hostname: self.string(root, "", "hostname")?,
            parent_hostname: self.string(root, "", "parent_hostname")?,
            trust_bundle_cert,
            provisioning: self.provisioning(root)?,
            agent_image,
            registry_credentials,
            upstream_protocol,
            https_proxy,
            moby_runtime: self.moby_runtime(root)?,
            homedir: match format {
                ConfigFormat::Yaml => self.string(root, "", "homedir")?.map(PathBuf::from),
                ConfigFormat::Toml => None,
            },
        })
    }

    pub(super) fn cert_path(&self, node: &Node, key: &str) -> Result<PathBuf, ConfigError> {
        let value = self.string_of(node, key)?;
        match classify_uri(&value) {
            Uri::File(p) => Ok(p),
            Uri::Other { scheme } => Err(self.invalid(
                node.line,
                key,
                format!("expected a file:// URI with an absolute path, found a {scheme} URI"),
            )),
        }
    }

    pub(super) fn registry_auth(
        &self,
        auth: &Node,
    ) -> Result<Option<RegistryCredential>, ConfigError> {
        let path = "agent.config.auth";
        let server = self.string(auth, path, "serveraddress")?;
        let username = self.string(auth, path, "username")?;
        let password = self.string(auth, path, "password")?.map(Secret::new);
        match server {
            Some(server) => Ok(Some(RegistryCredential {
                server,
                username,
                password,
            })),
            None if username.is_none() && password.is_none() => Ok(None), // `auth: {}`
            None => Err(self.invalid(auth.line, &join(path, "serveraddress"), "missing")),
        }
    }

    pub(super) fn moby_runtime(&self, root: &Node) -> Result<MobyRuntime, ConfigError> {
        let Some(moby) = self.table(root, "", "moby_runtime")? else {
            return Ok(MobyRuntime::default());
        };
        let p = "moby_runtime";
        let uri = match self.string(moby, p, "uri")? {
            Some(u) => Some(u),
            None => self.string(moby, p, "docker_uri")?,
        };
        let network = match moby.get("network") {
            None => NetworkConfig::default(),
            Some(
                n @ Node {
                    val: Val::Str(_), ..
                },
            ) => NetworkConfig {
                name: self.string_of(n, "moby_runtime.network")?,
                ..NetworkConfig::default()
            },
            Some(n) if n.is_map() => self.network_table(n)?,
            Some(n) => {
                return Err(self.invalid(
                    n.line,
                    "moby_runtime.network",
                    format!("expected a name or a table, found {}", n.kind()),
                ))
            }
        };
        Ok(MobyRuntime { uri, network })
    }

    pub(super) fn network_table(&self, net: &Node) -> Result<NetworkConfig, ConfigError> {
        let p = "moby_runtime.network";
        let mut ipam = Vec::new();
        if let Some(ipam_node) = self.table(net, p, "ipam")? {
            let cp = "moby_runtime.network.ipam.config";
            match ipam_node.get("config") {
                None => {}
                Some(Node {
                    val: Val::Seq(items),
                    ..
                }) => {
                    for item in items {
                        if !item.is_map() {
                            return Err(self.invalid(
                                item.line,
                                cp,
                                format!("expected a list of tables, found {} in it", item.kind()),
                            ));
                        }
                        ipam.push(IpamConfig {
                            gateway: self.string(item, cp, "gateway")?,
                            subnet: self.string(item, cp, "subnet")?,
                            ip_range: self.string(item, cp, "ip_range")?,
                        });
                    }
                }
                Some(n) => {
                    return Err(self.invalid(
                        n.line,
                        cp,
                        format!("expected a list, found {}", n.kind()),
                    ))
                }
            }
        }
        Ok(NetworkConfig {
            name: self
                .string(net, p, "name")?
                .unwrap_or_else(|| DEFAULT_NETWORK.into()),
            ipv6: self.bool(net, p, "ipv6")?,
            ipam,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    #[test]
    pub(super) fn semantic_errors_name_the_key_and_line() {
        let toml = ConfigFormat::Toml;
        let yaml = ConfigFormat::Yaml;
        let cases = [
            (
                toml,
                "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n[provisioning.attestation]\nmethod = \"x5O9\"\n",
                "c: line 5: provisioning.attestation.method: unknown attestation method \"x5O9\" (expected symmetric_key, x509 or tpm)",
            ),
            (
                toml,
                "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n",
                "c: line 1: provisioning.attestation: missing",
            ),
            (
                toml,
                "[provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n[provisioning.authentication]\nmethod = \"sas\"\n",
                "c: line 5: provisioning.authentication.device_id_pk: missing",
            ),
            (
                toml,
                "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;SharedAccessKey=YWJjZA==\"\n",
                "c: line 3: provisioning.connection_string: connection string lacks DeviceId",
            ),
            (
                toml,
                "trust_bundle_cert = \"https://example.com/ca.pem\"\n",
                "c: line 1: trust_bundle_cert: expected a file:// URI with an absolute path, found a https URI",
            ),
            (
                toml,
                "[moby_runtime]\nnetwork = 5\n",
                "c: line 2: moby_runtime.network: expected a name or a table, found a number",
            ),
            (
                toml,
                "[moby_runtime.network]\nipv6 = \"yes\"\n",
                "c: line 2: moby_runtime.network.ipv6: expected true or false, found a string",
            ),
            (
                yaml,
                "hostname: h\nprovisioning:\n  # comment\n  source: \"Manual\"\n",
                "c: line 4: provisioning.source: unknown provisioning source \"Manual\" (expected manual or dps)",
            ),
            (
                yaml,
                "provisioning:\n  source: manual\n  device_connection_string: \"<ADD DEVICE CONNECTION STRING HERE>\"\n",
                "c: line 3: provisioning.device_connection_string: still holds the template's placeholder",
            ),
            (
                yaml,
                "provisioning:\n  source: dps\n  scope_id: s\n  attestation:\n    method: symmetric_key\n    symmetric_key: \"%%%\"\n",
                "c: line 6: provisioning.attestation.symmetric_key: the shared access key is not valid base64",
            ),
            (yaml, "- a\n- b\n", "c: (top level): expected a table of settings, found a list"),
        ];
        for (format, text, want) in cases {
            assert_eq!(
                parse_str(text, "c", format).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
    }
}

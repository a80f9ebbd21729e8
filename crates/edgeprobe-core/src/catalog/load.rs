//! Reading catalog files: the embedded ones and a directory's, each parsed from TOML (an
//! error names the line), checked, and its families expanded into one check per protocol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::validate::{
    check_credentials, check_timeout, line_at, line_of, probe_kind, validate_id, CREDENTIAL_HOSTS,
};
use super::{Catalog, CatalogError, CheckDef, Expect, IpFamily, Limits, BUILTIN, VERSIONS};
use crate::model::{Endpoint, Protocol};

/// A catalog check's `credentials`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CredentialsDoc {
    /// Present nothing (the default).
    #[default]
    None,
    /// The device's own credentials, for its own hub, DPS, parent, gateway or edgeHub.
    Device,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    /// The format version; absent means 1.
    version: Option<i64>,
    #[serde(default)]
    family: Vec<FamilyDoc>,
    #[serde(default)]
    check: Vec<CheckDoc>,
}

/// What a family and a check share: where, how long, which credentials.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyDoc {
    id: String,
    title: String,
    endpoint: Endpoint,
    host: String,
    protocols: Vec<Protocol>,
    #[serde(default)]
    ports: BTreeMap<Protocol, u16>,
    #[serde(default)]
    required: Vec<Protocol>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    /// Absent: the device's credentials when the host is one of its own services (as in
    /// version 1 files).
    credentials: Option<CredentialsDoc>,
    timeout: Option<f64>,
    ip_family: Option<IpFamily>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckDoc {
    id: String,
    title: String,
    endpoint: Endpoint,
    protocol: Protocol,
    #[serde(default)]
    host: String,
    port: Option<u16>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    #[serde(default)]
    expect: Expect,
    #[serde(default)]
    credentials: CredentialsDoc,
    timeout: Option<f64>,
    ip_family: Option<IpFamily>,
    /// tcp and tls: what to send once connected, before reading the answer.
    send: Option<String>,
}

impl Catalog {
    /// The embedded catalog. It is tested, so failing to parse it is a bug.
    pub fn builtin() -> Result<Self, CatalogError> {
        let mut catalog = Catalog::default();
        for (name, text) in BUILTIN {
            catalog.add_text(&format!("builtin:{name}"), text)?;
        }
        Ok(catalog)
    }

    /// Adds every `*.toml` file of a directory, in file-name order.
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), CatalogError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|source| CatalogError::Read {
            file: shown.clone(),
            source: source.into(),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CatalogError::invalid(&shown, "holds no *.toml check files"));
        }
        for file in files {
            let name = file.display().to_string();
            let text = crate::bounded::read_to_string(&file, crate::bounded::CONFIG_LIMIT)
                .and_then(|text| crate::bounded::check_depth(&text).map(|_| text))
                .map_err(|source| CatalogError::Read {
                    file: name.clone(),
                    source,
                })?;
            self.add_text(&name, &text)?;
        }
        Ok(())
    }

    /// Parses one catalog file and appends its checks.
    pub fn add_text(&mut self, file: &str, text: &str) -> Result<(), CatalogError> {
        let doc: FileDoc = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_at(text, s.start)).unwrap_or_default();
            // toml's messages may span lines; errors are one line.
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            CatalogError::invalid(file, format!("{line}{message}"))
        })?;
        if let Some(v) = doc.version.filter(|v| !VERSIONS.contains(v)) {
            return Err(CatalogError::invalid(
                file,
                format!(
                    "{}version: catalog version {v} is not one this edgeprobe reads ({}); a newer edgeprobe may",
                    line_of(text, "version"),
                    VERSIONS.map(|v| v.to_string()).join(", ")
                ),
            ));
        }
        for fam in doc.family {
            validate_id(file, &fam.id)?;
            if fam.protocols.is_empty() {
                return Err(CatalogError::invalid(
                    file,
                    format!("family {:?} lists no protocols", fam.id),
                ));
            }
            let credentials = match fam.credentials {
                // Checked for each member below: the host, and a kind that carries them.
                Some(CredentialsDoc::Device) => true,
                Some(CredentialsDoc::None) => false,
                // Version 1: a family of the device's own services, at one of their hosts.
                None => CREDENTIAL_HOSTS.contains(&fam.host.as_str()),
            };
            let limits = Limits {
                timeout: check_timeout(file, text, &fam.id, fam.timeout)?,
                ip_family: fam.ip_family,
            };
            for proto in &fam.protocols {
                probe_kind(file, text, &fam.id, *proto)?;
                if fam.credentials == Some(CredentialsDoc::Device) {
                    check_credentials(file, text, &fam.id, fam.endpoint, &fam.host, *proto)?;
                }
                let port = fam.ports.get(proto).copied().or(proto.default_port());
                let Some(port) = port else {
                    return Err(CatalogError::invalid(
                        file,
                        format!(
                            "family {:?}: a {proto} probe needs a port (ports = {{ {proto} = N }})",
                            fam.id
                        ),
                    ));
                };
                self.push(
                    file,
                    text,
                    CheckDef {
                        id: format!("{}-{}", fam.id, proto.as_str()),
                        title: format!("{} over {} ({port})", fam.title, proto.title()),
                        endpoint: fam.endpoint,
                        protocol: *proto,
                        host: fam.host.clone(),
                        port: Some(port),
                        required: fam.required.contains(proto),
                        requires: fam.requires.clone(),
                        unless: fam.unless.clone(),
                        source: file.to_owned(),
                        expect: Expect::default(),
                        // A tcp or tls member proves a port, never presents credentials.
                        credentials: credentials && !matches!(proto, Protocol::Tcp | Protocol::Tls),
                        limits,
                        send: None,
                    },
                )?;
            }
        }
        for c in doc.check {
            validate_id(file, &c.id)?;
            probe_kind(file, text, &c.id, c.protocol)?;
            if c.credentials == CredentialsDoc::Device {
                check_credentials(file, text, &c.id, c.endpoint, &c.host, c.protocol)?;
            }
            if let Err((key, why)) = c.expect.validate(c.protocol) {
                let last = key.rsplit('.').next().unwrap_or(&key);
                return Err(CatalogError::invalid(
                    file,
                    format!("{}{key} in {:?}: {why}", line_of(text, last), c.id),
                ));
            }
            if c.host.is_empty() {
                return Err(CatalogError::invalid(
                    file,
                    format!("check {:?}: a {} probe needs a host", c.id, c.protocol),
                ));
            }
            let Some(port) = c.port.or(c.protocol.default_port()) else {
                return Err(CatalogError::invalid(
                    file,
                    format!("check {:?}: a {} probe needs a port", c.id, c.protocol),
                ));
            };
            let limits = Limits {
                timeout: check_timeout(file, text, &c.id, c.timeout)?,
                ip_family: c.ip_family,
            };
            if c.send.is_some() && !matches!(c.protocol, Protocol::Tcp | Protocol::Tls) {
                return Err(CatalogError::invalid(
                    file,
                    format!(
                        "{}send: check {:?} is {}; only tcp and tls checks send their own bytes",
                        line_of(text, "send"),
                        c.id,
                        c.protocol
                    ),
                ));
            }
            self.push(
                file,
                text,
                CheckDef {
                    id: c.id,
                    title: c.title,
                    endpoint: c.endpoint,
                    protocol: c.protocol,
                    host: c.host,
                    port: Some(port),
                    required: c.required,
                    requires: c.requires,
                    unless: c.unless,
                    source: file.to_owned(),
                    expect: c.expect,
                    credentials: c.credentials == CredentialsDoc::Device,
                    limits,
                    send: c.send,
                },
            )?;
        }
        Ok(())
    }
}

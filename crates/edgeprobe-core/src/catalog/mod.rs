//! Checks are data. A catalog file (TOML) declares single checks and families; a family is
//! one endpoint probed over several protocols, expanded from parameters so that the five
//! IoT Hub checks are one declaration, not five copies. The built-in files under `checks/`
//! are embedded in the binary; `--checks-dir` adds a user's own.
//!
//! ```toml
//! [[family]]
//! id = "iothub"                 # checks become iothub-mqtt, iothub-amqp, ...
//! title = "IoT Hub"
//! endpoint = "iothub"
//! host = "{iothub_hostname}"    # a template over the run's variables
//! protocols = ["mqtt", "amqp", "mqtt-ws", "amqp-ws", "https"]
//! required = ["https"]          # members whose failure means the device cannot run
//!
//! [[check]]
//! id = "plant-historian"
//! title = "Plant historian over HTTPS"
//! endpoint = "device"
//! protocol = "https"
//! host = "historian.plant.example"
//! port = 8443
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;

use crate::model::{Endpoint, Protocol};

/// Expectations of the answer (`[check.expect]`), judged by pure functions.
pub mod expect;
pub use expect::{Expect, TlsSeen, TlsVersion};

/// The catalog format versions this build reads. Version 1 files (no `version` key) are
/// read as before; version 2 adds the `tcp` and `tls` probe kinds, the header, CONNACK and
/// TLS expectations, `timeout`, `ip_family` and a family's explicit `credentials`.
pub const VERSIONS: [i64; 2] = [1, 2];

/// The built-in catalog, embedded at compile time: (file name, contents).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "iothub.toml",
        include_str!("../../../../checks/iothub.toml"),
    ),
    (
        "nested.toml",
        include_str!("../../../../checks/nested.toml"),
    ),
    (
        "gateway.toml",
        include_str!("../../../../checks/gateway.toml"),
    ),
    ("dps.toml", include_str!("../../../../checks/dps.toml")),
    (
        "edgehub.toml",
        include_str!("../../../../checks/edgehub.toml"),
    ),
];

/// One runnable check declaration after family expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckDef {
    pub id: String,
    pub title: String,
    pub endpoint: Endpoint,
    pub protocol: Protocol,
    /// Host template, e.g. `{iothub_hostname}`; empty for local facts.
    pub host: String,
    pub port: Option<u16>,
    /// Whether a failure means the device cannot run (exit code 1).
    pub required: bool,
    /// Variables that must be known for the check to apply (besides those in `host`).
    pub requires: Vec<String>,
    /// Variables whose presence makes the check not apply (e.g. IoT Hub checks on a nested device).
    pub unless: Vec<String>,
    /// Where the declaration came from, for error messages and `edgeprobe list`.
    pub source: String,
    /// What the answer must look like beyond "the service answered" (catalog `expect`).
    pub expect: Expect,
    /// Whether the check presents the device's credentials: the built-in families of the
    /// device's own services do; a user's check only with `credentials = "device"`, which is
    /// allowed only for those services' hosts.
    pub credentials: bool,
    /// The check's own time limit and address family.
    pub limits: Limits,
    /// tcp and tls checks: what to send once connected (blackbox_exporter's `query`), before
    /// the answer is read for `expect.body_matches`.
    pub send: Option<String>,
}

/// A check's own limits, within the run's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// The check gives up after this long, or at the run's deadline if that comes first.
    pub timeout: Option<Duration>,
    /// The address family to try first; the other is tried only when this one has no
    /// address or none connects.
    pub ip_family: Option<IpFamily>,
}

impl Limits {
    /// The deadline of a check that starts now within a run that ends at `run_deadline`.
    pub fn deadline(
        &self,
        now: tokio::time::Instant,
        run_deadline: tokio::time::Instant,
    ) -> tokio::time::Instant {
        self.timeout
            .map_or(run_deadline, |t| (now + t).min(run_deadline))
    }
}

/// An IP address family (`ip_family`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub const fn as_str(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
        }
    }
}

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

/// The hosts the device's credentials belong to, as templates.
const CREDENTIAL_HOSTS: [&str; 5] = [
    "{iothub_hostname}",
    "{dps_endpoint}",
    "{parent_hostname}",
    "{gateway_hostname}",
    "{edgehub_hostname}",
];

/// A check whose templates have been filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: Option<u16>,
}

/// The values templates refer to (`iothub_hostname`, `dps_endpoint`, ...).
pub type Vars = BTreeMap<String, String>;

/// The variables a run knows of itself; a user adds more with `--var NAME=VALUE`.
pub const RUN_VARS: &[&str] = &[
    "iothub_hostname",
    "device_id",
    "dps_endpoint",
    "id_scope",
    "registration_id",
    "parent_hostname",
    "gateway_hostname",
    "edgehub_hostname",
];

/// The protocols a catalog entry may probe; `dns`, `time`, `config` and `registry` are local
/// facts or derived checks, never a catalog target.
const PROBE_KINDS: [Protocol; 7] = [
    Protocol::Mqtt,
    Protocol::Amqp,
    Protocol::MqttWs,
    Protocol::AmqpWs,
    Protocol::Https,
    Protocol::Tcp,
    Protocol::Tls,
];

/// The longest `timeout` a check may ask for, in seconds.
const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// "line N: " for the byte offset `at` of `text`.
fn line_at(text: &str, at: usize) -> String {
    format!("line {}: ", text[..at].matches('\n').count() + 1)
}

/// "line N: " for the first place `needle` appears in `text`, or nothing.
fn line_of(text: &str, needle: &str) -> String {
    text.find(needle)
        .map(|at| line_at(text, at))
        .unwrap_or_default()
}

impl CheckDef {
    /// A check made outside the catalog (registries, derived checks, the container vantage,
    /// the gateway view): no templates, no expectations, no credentials, not required.
    pub fn derived(
        id: impl Into<String>,
        title: impl Into<String>,
        endpoint: Endpoint,
        protocol: Protocol,
    ) -> Self {
        CheckDef {
            id: id.into(),
            title: title.into(),
            endpoint,
            protocol,
            host: String::new(),
            port: None,
            required: false,
            requires: Vec::new(),
            unless: Vec::new(),
            source: "derived".into(),
            expect: Expect::default(),
            credentials: false,
            limits: Limits::default(),
            send: None,
        }
    }

    /// At this host and port.
    pub fn at(mut self, host: impl Into<String>, port: Option<u16>) -> Self {
        self.host = host.into();
        self.port = port;
        self
    }

    /// Required (a failure means the device cannot run) or not.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Every variable this check needs, in order of first appearance.
    pub fn needs(&self) -> Vec<String> {
        let mut out: Vec<String> = template_vars(&self.host);
        for r in &self.requires {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }

    /// The first `unless` variable that is known, if any: the check does not apply.
    pub fn excluded_by(&self, vars: &Vars) -> Option<&str> {
        self.unless
            .iter()
            .find(|v| vars.contains_key(v.as_str()))
            .map(String::as_str)
    }

    /// Fills the templates in, or names the first variable that is missing.
    pub fn resolve(&self, vars: &Vars) -> Result<Target, String> {
        if let Some(missing) = self.needs().into_iter().find(|v| !vars.contains_key(v)) {
            return Err(missing);
        }
        let mut host = self.host.clone();
        for (key, value) in vars {
            host = host.replace(&format!("{{{key}}}"), value);
        }
        Ok(Target {
            host,
            port: self.port,
        })
    }
}

/// Only the network protocols are probe kinds a catalog entry may name.
fn probe_kind(file: &str, text: &str, id: &str, p: Protocol) -> Result<(), CatalogError> {
    if PROBE_KINDS.contains(&p) {
        return Ok(());
    }
    let line = line_of(text, &format!("\"{}\"", p.as_str()));
    let kinds: Vec<&str> = PROBE_KINDS.iter().map(|k| k.as_str()).collect();
    Err(CatalogError::invalid(
        file,
        format!(
            "{line}protocol: {:?} in {id:?} is not a probe kind ({})",
            p.as_str(),
            kinds.join(", ")
        ),
    ))
}

fn template_vars(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        if !name.is_empty() && !out.iter().any(|v: &String| v == name) {
            out.push(name.to_owned());
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// A catalog file that could not be used. The message names the file, line and key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: crate::bounded::ReadError,
    },
}

impl CatalogError {
    fn invalid(file: &str, message: impl Into<String>) -> Self {
        CatalogError::Invalid {
            file: file.to_owned(),
            message: message.into(),
        }
    }
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

/// A `credentials = "device"` entry must be for the device's own services, at their hosts,
/// over a protocol that carries credentials.
fn check_credentials(
    file: &str,
    text: &str,
    id: &str,
    endpoint: Endpoint,
    host: &str,
    protocol: Protocol,
) -> Result<(), CatalogError> {
    let own_service = CREDENTIAL_HOSTS.contains(&host)
        && matches!(
            endpoint,
            Endpoint::Iothub | Endpoint::Dps | Endpoint::Parent | Endpoint::Gateway
        );
    let why = if !own_service {
        format!(
            "check {id:?} asks for the device's credentials for {host:?}; they go only to the device's own services (endpoint iothub, dps, parent or gateway, host {})",
            CREDENTIAL_HOSTS.join(", ")
        )
    } else if matches!(protocol, Protocol::Tcp | Protocol::Tls) {
        format!("check {id:?}: a {protocol} probe presents no credentials")
    } else {
        return Ok(());
    };
    Err(CatalogError::invalid(
        file,
        format!("{}credentials: {why}", line_of(text, "credentials")),
    ))
}

/// A `timeout` in seconds, within (0, 1 hour].
fn check_timeout(
    file: &str,
    text: &str,
    id: &str,
    secs: Option<f64>,
) -> Result<Option<Duration>, CatalogError> {
    match secs {
        None => Ok(None),
        Some(s) if s > 0.0 && s <= MAX_TIMEOUT_SECS => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(CatalogError::invalid(
            file,
            format!(
                "{}timeout: {s} in {id:?} is not a number of seconds between 0 and {MAX_TIMEOUT_SECS}",
                line_of(text, "timeout")
            ),
        )),
    }
}

/// The ordered list of checks this run knows about.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    checks: Vec<CheckDef>,
    /// Variables beyond [`RUN_VARS`] that templates may name (`--var`).
    user_vars: Vec<String>,
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

    /// Lets templates of files added from now on name these variables too (`--var`).
    pub fn allow_vars(&mut self, names: impl IntoIterator<Item = String>) {
        self.user_vars.extend(names);
    }

    /// A misspelt variable is an error naming file, line and key, never a silent skip.
    fn check_vars(&self, file: &str, text: &str, def: &CheckDef) -> Result<(), CatalogError> {
        let known = |v: &str| RUN_VARS.contains(&v) || self.user_vars.iter().any(|u| u == v);
        let mut named: Vec<(&str, String)> = template_vars(&def.host)
            .into_iter()
            .map(|v| ("host", v))
            .collect();
        named.extend(def.requires.iter().map(|v| ("requires", v.clone())));
        named.extend(def.unless.iter().map(|v| ("unless", v.clone())));
        match named.into_iter().find(|(_, v)| !known(v)) {
            None => Ok(()),
            Some((key, var)) => {
                let line = line_of(text, &var);
                Err(CatalogError::invalid(
                    file,
                    format!(
                        "{line}{key}: unknown variable {var:?} in check {:?} (known: {}{})",
                        def.id,
                        RUN_VARS.join(", "),
                        if self.user_vars.is_empty() {
                            ", or your own with --var NAME=VALUE".to_owned()
                        } else {
                            format!(", {}", self.user_vars.join(", "))
                        }
                    ),
                ))
            }
        }
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

    fn push(&mut self, file: &str, text: &str, def: CheckDef) -> Result<(), CatalogError> {
        self.check_vars(file, text, &def)?;
        if let Some(prior) = self.checks.iter().find(|c| c.id == def.id) {
            return Err(CatalogError::invalid(
                file,
                format!(
                    "check id {:?} is already defined in {}",
                    def.id, prior.source
                ),
            ));
        }
        self.checks.push(def);
        Ok(())
    }

    /// All checks, in declaration order.
    pub fn checks(&self) -> &[CheckDef] {
        &self.checks
    }

    /// Looks a check up by id.
    pub fn get(&self, id: &str) -> Option<&CheckDef> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Ids of all checks.
    pub fn ids(&self) -> HashSet<&str> {
        self.checks.iter().map(|c| c.id.as_str()).collect()
    }
}

/// Ids are kebab-case: lowercase ASCII words joined by single hyphens.
pub fn is_kebab_case(id: &str) -> bool {
    !id.is_empty()
        && id.split('-').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && id.starts_with(|c: char| c.is_ascii_lowercase())
}

fn validate_id(file: &str, id: &str) -> Result<(), CatalogError> {
    if is_kebab_case(id) {
        Ok(())
    } else {
        Err(CatalogError::invalid(
            file,
            format!("id {id:?} is not kebab-case (lowercase words joined by '-')"),
        ))
    }
}

/// `--only` / `--skip` patterns: an exact id, or a prefix ending in `*`.
pub fn matches_pattern(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_with_unique_kebab_case_ids() {
        let catalog = Catalog::builtin().expect("the embedded catalog parses");
        let mut seen = HashSet::new();
        for c in catalog.checks() {
            assert!(is_kebab_case(&c.id), "{} is not kebab-case", c.id);
            assert!(seen.insert(c.id.clone()), "duplicate id {}", c.id);
        }
        for id in [
            "iothub-mqtt",
            "iothub-amqp",
            "iothub-mqtt-ws",
            "iothub-amqp-ws",
            "iothub-https",
        ] {
            assert!(catalog.get(id).is_some(), "missing {id}");
        }
    }

    #[test]
    fn families_expand_with_protocol_ports_and_required_members() {
        let mut c = Catalog::default();
        c.add_text(
            "t.toml",
            r#"
[[family]]
id = "hub"
title = "Hub"
endpoint = "iothub"
host = "{iothub_hostname}"
protocols = ["mqtt", "https"]
ports = { https = 8443 }
required = ["https"]
"#,
        )
        .unwrap();
        let mqtt = c.get("hub-mqtt").unwrap();
        assert_eq!(mqtt.port, Some(8883));
        assert!(!mqtt.required);
        let https = c.get("hub-https").unwrap();
        assert_eq!(https.port, Some(8443));
        assert!(https.required);
        assert_eq!(https.title, "Hub over HTTPS (8443)");
    }

    #[test]
    fn templates_resolve_or_name_the_missing_variable() {
        let c = CheckDef {
            id: "x".into(),
            title: "x".into(),
            endpoint: Endpoint::Iothub,
            protocol: Protocol::Mqtt,
            host: "{iothub_hostname}".into(),
            port: Some(8883),
            required: false,
            requires: vec!["device_id".into()],
            unless: vec!["parent_hostname".into()],
            source: "t".into(),
            expect: Default::default(),
            credentials: false,
            limits: Limits::default(),
            send: None,
        };
        let mut vars = Vars::new();
        assert_eq!(c.resolve(&vars), Err("iothub_hostname".into()));
        vars.insert("iothub_hostname".into(), "hub.example".into());
        assert_eq!(c.resolve(&vars), Err("device_id".into()));
        vars.insert("device_id".into(), "d1".into());
        assert_eq!(c.resolve(&vars).unwrap().host, "hub.example");
        assert_eq!(c.excluded_by(&vars), None);
        vars.insert("parent_hostname".into(), "parent".into());
        assert_eq!(c.excluded_by(&vars), Some("parent_hostname"));
    }

    #[test]
    fn bad_catalog_files_name_file_line_and_problem() {
        let cases: &[(&str, &str)] = &[
            (
                "[[check]]\nid = \"Bad_Id\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\nhost = \"h\"\n",
                "f.toml: id \"Bad_Id\" is not kebab-case",
            ),
            (
                "[[check]]\nid = \"a\"\ntitle = \"t\"\nendpoint = \"moon\"\nprotocol = \"mqtt\"\nhost = \"h\"\n",
                "f.toml: line 4: unknown variant `moon`",
            ),
            (
                "[[check]]\nid = \"a\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\n",
                "f.toml: check \"a\": a mqtt probe needs a host",
            ),
            (
                "[[check]]\nid = \"a\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\nhost = \"h\"\nprot = 1\n",
                "f.toml: line 7: unknown field `prot`",
            ),
        ];
        for (text, want) in cases {
            let err = Catalog::default().add_text("f.toml", text).unwrap_err();
            assert!(
                err.to_string().starts_with(want),
                "{err} should start with {want}"
            );
        }
    }

    #[test]
    fn duplicate_ids_are_refused_naming_both_files() {
        let mut c = Catalog::builtin().unwrap();
        let err = c
            .add_text(
                "mine.toml",
                "[[check]]\nid = \"iothub-mqtt\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\nhost = \"h\"\n",
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mine.toml: check id \"iothub-mqtt\" is already defined in builtin:iothub.toml"
        );
    }

    #[test]
    fn version_2_entries_load_with_their_limits_and_refuse_what_does_not_apply() {
        let mut c = Catalog::default();
        c.add_text(
            "v2.toml",
            r#"version = 2

[[check]]
id = "historian"
title = "Historian"
endpoint = "device"
protocol = "tcp"
host = "historian.plant"
port = 5450
timeout = 2.5
ip_family = "ipv6"
send = "PING\r\n"
[check.expect]
body_matches = "^PONG"

[[family]]
id = "hub"
title = "Hub"
endpoint = "iothub"
host = "{iothub_hostname}"
credentials = "none"
protocols = ["mqtt", "tls"]
ports = { tls = 8883 }
"#,
        )
        .unwrap();
        let h = c.get("historian").unwrap();
        assert_eq!(h.protocol, Protocol::Tcp);
        assert_eq!(h.limits.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(h.limits.ip_family, Some(IpFamily::Ipv6));
        assert_eq!(h.send.as_deref(), Some("PING\r\n"));
        assert!(
            !c.get("hub-mqtt").unwrap().credentials,
            "credentials = none"
        );
        assert_eq!(c.get("hub-tls").unwrap().port, Some(8883));
        // Without the key (version 1), a family at the hub presents credentials over the
        // protocols that carry them and none over tls.
        let mut v1 = Catalog::default();
        v1.add_text(
            "v1.toml",
            "[[family]]\nid = \"hub\"\ntitle = \"Hub\"\nendpoint = \"iothub\"\nhost = \"{iothub_hostname}\"\nprotocols = [\"mqtt\", \"tls\"]\nports = { tls = 8883 }\n",
        )
        .unwrap();
        assert!(v1.get("hub-mqtt").unwrap().credentials);
        assert!(!v1.get("hub-tls").unwrap().credentials);

        let check = |body: &str| {
            format!("version = 2\n[[check]]\nid = \"a\"\ntitle = \"t\"\nendpoint = \"iothub\"\nhost = \"{{iothub_hostname}}\"\n{body}")
        };
        let cases: &[(String, &str)] = &[
            ("version = 3\n".into(), "f.toml: line 1: version: catalog version 3 is not one this edgeprobe reads (1, 2)"),
            (check("protocol = \"tcp\"\n"), "f.toml: check \"a\": a tcp probe needs a port"),
            (check("protocol = \"tls\"\nport = 1\ncredentials = \"device\"\n"), "f.toml: line 9: credentials: check \"a\": a tls probe presents no credentials"),
            (check("protocol = \"mqtt\"\ntimeout = 0\n"), "f.toml: line 8: timeout: 0 in \"a\" is not a number of seconds"),
            (check("protocol = \"mqtt\"\nsend = \"x\"\n"), "f.toml: line 8: send: check \"a\" is mqtt"),
            (check("protocol = \"https\"\n[check.expect]\nconnack = [0]\n"), "f.toml: line 9: expect.connack in \"a\": applies to mqtt and mqtt-ws checks, not to https"),
            (check("protocol = \"https\"\nip_family = \"ipx\"\n"), "f.toml: line 8: unknown variant `ipx`"),
            (check("protocol = \"dns\"\n"), "f.toml: line 7: protocol: \"dns\" in \"a\" is not a probe kind (mqtt, amqp, mqtt-ws, amqp-ws, https, tcp, tls)"),
        ];
        for (text, want) in cases {
            let err = Catalog::default().add_text("f.toml", text).unwrap_err();
            assert!(
                err.to_string().starts_with(want),
                "{err}\n  should start with\n{want}"
            );
        }
    }

    #[test]
    fn built_in_families_of_the_device_s_services_present_its_credentials() {
        let c = Catalog::builtin().unwrap();
        for id in [
            "iothub-mqtt",
            "dps-https",
            "parent-amqp",
            "gateway-mqtt-ws",
            "edgehub-amqp",
        ] {
            assert!(c.get(id).unwrap().credentials, "{id}");
        }
    }

    #[test]
    fn patterns_match_ids_and_prefixes() {
        assert!(matches_pattern("iothub-*", "iothub-mqtt"));
        assert!(matches_pattern("iothub-mqtt", "iothub-mqtt"));
        assert!(!matches_pattern("iothub-mqtt", "iothub-mqtt-ws"));
    }
}

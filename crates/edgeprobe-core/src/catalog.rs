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

use serde::Deserialize;

use crate::model::{Endpoint, Protocol};

/// The built-in catalog, embedded at compile time: (file name, contents).
pub const BUILTIN: &[(&str, &str)] = &[
    ("iothub.toml", include_str!("../../../checks/iothub.toml")),
    ("nested.toml", include_str!("../../../checks/nested.toml")),
    ("gateway.toml", include_str!("../../../checks/gateway.toml")),
    ("dps.toml", include_str!("../../../checks/dps.toml")),
    ("edgehub.toml", include_str!("../../../checks/edgehub.toml")),
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

/// A catalog check's expectations of the answer (blackbox_exporter's module options):
/// without them any answer of the protocol passes; with them, a captive portal's 200 or a
/// proxy's block page fails.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// HTTPS: the status must be one of these.
    #[serde(default)]
    pub status: Vec<u16>,
    /// HTTPS: the start of the body must match this regular expression.
    pub body_matches: Option<String>,
    /// HTTPS: the start of the body must not match this one (a block page's words).
    pub body_not_matches: Option<String>,
    /// Any TLS check: the server's certificate must stay valid at least this many days.
    pub min_cert_days: Option<u32>,
}

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
const PROBE_KINDS: [Protocol; 5] = [
    Protocol::Mqtt,
    Protocol::Amqp,
    Protocol::MqttWs,
    Protocol::AmqpWs,
    Protocol::Https,
];

impl CheckDef {
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

/// Only the five protocols are probe kinds a catalog entry may name.
fn probe_kind(file: &str, text: &str, id: &str, p: Protocol) -> Result<(), CatalogError> {
    if PROBE_KINDS.contains(&p) {
        return Ok(());
    }
    let line = text
        .find(&format!("\"{}\"", p.as_str()))
        .map(|at| format!("line {}: ", text[..at].matches('\n').count() + 1))
        .unwrap_or_default();
    Err(CatalogError::invalid(
        file,
        format!(
            "{line}protocol: {:?} in {id:?} is not a probe kind (mqtt, amqp, mqtt-ws, amqp-ws, https)",
            p.as_str()
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
    #[serde(default)]
    family: Vec<FamilyDoc>,
    #[serde(default)]
    check: Vec<CheckDoc>,
}

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
                let line = text
                    .find(&var)
                    .map(|at| format!("line {}: ", text[..at].matches('\n').count() + 1))
                    .unwrap_or_default();
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
            let line = e
                .span()
                .map(|s| format!("line {}: ", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            // toml's messages may span lines; errors are one line.
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            CatalogError::invalid(file, format!("{line}{message}"))
        })?;
        for fam in doc.family {
            validate_id(file, &fam.id)?;
            if fam.protocols.is_empty() {
                return Err(CatalogError::invalid(
                    file,
                    format!("family {:?} lists no protocols", fam.id),
                ));
            }
            for proto in &fam.protocols {
                probe_kind(file, text, &fam.id, *proto)?;
                let port = fam.ports.get(proto).copied().or(proto.default_port());
                let port_text = port.map(|p| format!(" ({p})")).unwrap_or_default();
                self.push(
                    file,
                    text,
                    CheckDef {
                        id: format!("{}-{}", fam.id, proto.as_str()),
                        title: format!("{} over {}{port_text}", fam.title, proto.title()),
                        endpoint: fam.endpoint,
                        protocol: *proto,
                        host: fam.host.clone(),
                        port,
                        required: fam.required.contains(proto),
                        requires: fam.requires.clone(),
                        unless: fam.unless.clone(),
                        source: file.to_owned(),
                        expect: Expect::default(),
                        // A family of the device's own services, at one of their hosts.
                        credentials: CREDENTIAL_HOSTS.contains(&fam.host.as_str()),
                    },
                )?;
            }
        }
        for c in doc.check {
            validate_id(file, &c.id)?;
            probe_kind(file, text, &c.id, c.protocol)?;
            if c.credentials == CredentialsDoc::Device
                && !(CREDENTIAL_HOSTS.contains(&c.host.as_str())
                    && matches!(
                        c.endpoint,
                        Endpoint::Iothub | Endpoint::Dps | Endpoint::Parent | Endpoint::Gateway
                    ))
            {
                let line = text
                    .find("credentials")
                    .map(|at| format!("line {}: ", text[..at].matches('\n').count() + 1))
                    .unwrap_or_default();
                return Err(CatalogError::invalid(
                    file,
                    format!(
                        "{line}credentials: check {:?} asks for the device's credentials for {:?}; they go only to the device's own services (endpoint iothub, dps, parent or gateway, host {})",
                        c.id,
                        c.host,
                        CREDENTIAL_HOSTS.join(", ")
                    ),
                ));
            }
            for (key, pattern) in [
                ("body_matches", &c.expect.body_matches),
                ("body_not_matches", &c.expect.body_not_matches),
            ] {
                if let Some(Err(e)) = pattern.as_deref().map(regex::Regex::new) {
                    let line = pattern
                        .as_deref()
                        .and_then(|p| text.find(p))
                        .map(|at| format!("line {}: ", text[..at].matches('\n').count() + 1))
                        .unwrap_or_default();
                    let why = e.to_string().lines().last().unwrap_or_default().to_owned();
                    return Err(CatalogError::invalid(
                        file,
                        format!(
                            "{line}expect.{key} in {:?}: not a regular expression ({why})",
                            c.id
                        ),
                    ));
                }
            }
            if (!c.expect.status.is_empty()
                || c.expect.body_matches.is_some()
                || c.expect.body_not_matches.is_some())
                && c.protocol != Protocol::Https
            {
                return Err(CatalogError::invalid(
                    file,
                    format!(
                        "check {:?}: expect.status and expect.body_* apply to https checks only",
                        c.id
                    ),
                ));
            }
            let port = c.port.or(c.protocol.default_port());
            if matches!(
                c.protocol,
                Protocol::Mqtt
                    | Protocol::Amqp
                    | Protocol::MqttWs
                    | Protocol::AmqpWs
                    | Protocol::Https
                    | Protocol::Registry
            ) && c.host.is_empty()
            {
                return Err(CatalogError::invalid(
                    file,
                    format!("check {:?}: a {} probe needs a host", c.id, c.protocol),
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
                    port,
                    required: c.required,
                    requires: c.requires,
                    unless: c.unless,
                    source: file.to_owned(),
                    expect: c.expect,
                    credentials: c.credentials == CredentialsDoc::Device,
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
    fn patterns_match_ids_and_prefixes() {
        assert!(matches_pattern("iothub-*", "iothub-mqtt"));
        assert!(matches_pattern("iothub-mqtt", "iothub-mqtt"));
        assert!(!matches_pattern("iothub-mqtt", "iothub-mqtt-ws"));
    }
}

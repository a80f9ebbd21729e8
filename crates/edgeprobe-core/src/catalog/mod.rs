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

use std::time::Duration;

use serde::Deserialize;

use crate::model::{Endpoint, Protocol};

/// Expectations of the answer (`[check.expect]`), judged by pure functions.
pub mod expect;
pub use expect::{Expect, TlsSeen, TlsVersion};

/// Reading catalog files: the TOML documents, expanded into checks.
mod load;
/// The rules a declaration must follow: probe kinds, credentials, timeouts, variables, ids.
mod validate;

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

/// The ordered list of checks this run knows about.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    checks: Vec<CheckDef>,
    /// Variables beyond [`RUN_VARS`] that templates may name (`--var`).
    user_vars: Vec<String>,
}

impl Catalog {
    /// Lets templates of files added from now on name these variables too (`--var`).
    pub fn allow_vars(&mut self, names: impl IntoIterator<Item = String>) {
        self.user_vars.extend(names);
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

/// `--only` / `--skip` patterns: an exact id, or a prefix ending in `*`.
pub fn matches_pattern(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

#[cfg(test)]
mod tests;

//! The rules a catalog declaration must follow beyond its TOML shape: only probe kinds,
//! credentials only for the device's own services, timeouts within an hour, known
//! variables, kebab-case ids defined once. Errors name the file, the line and the key.

use std::time::Duration;

use super::{is_kebab_case, template_vars, Catalog, CatalogError, CheckDef, RUN_VARS};
use crate::model::{Endpoint, Protocol};

/// The hosts the device's credentials belong to, as templates.
pub(super) const CREDENTIAL_HOSTS: [&str; 5] = [
    "{iothub_hostname}",
    "{dps_endpoint}",
    "{parent_hostname}",
    "{gateway_hostname}",
    "{edgehub_hostname}",
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
pub(super) fn line_at(text: &str, at: usize) -> String {
    format!("line {}: ", text[..at].matches('\n').count() + 1)
}

/// "line N: " for the first place `needle` appears in `text`, or nothing.
pub(super) fn line_of(text: &str, needle: &str) -> String {
    text.find(needle)
        .map(|at| line_at(text, at))
        .unwrap_or_default()
}

/// Only the network protocols are probe kinds a catalog entry may name.
pub(super) fn probe_kind(
    file: &str,
    text: &str,
    id: &str,
    p: Protocol,
) -> Result<(), CatalogError> {
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

/// A `credentials = "device"` entry must be for the device's own services, at their hosts,
/// over a protocol that carries credentials.
pub(super) fn check_credentials(
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
pub(super) fn check_timeout(
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

impl Catalog {
    /// A misspelt variable is an error naming file, line and key, never a silent skip.
    pub(super) fn check_vars(
        &self,
        file: &str,
        text: &str,
        def: &CheckDef,
    ) -> Result<(), CatalogError> {
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

    pub(super) fn push(
        &mut self,
        file: &str,
        text: &str,
        def: CheckDef,
    ) -> Result<(), CatalogError> {
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
}

pub(super) fn validate_id(file: &str, id: &str) -> Result<(), CatalogError> {
    if is_kebab_case(id) {
        Ok(())
    } else {
        Err(CatalogError::invalid(
            file,
            format!("id {id:?} is not kebab-case (lowercase words joined by '-')"),
        ))
    }
}

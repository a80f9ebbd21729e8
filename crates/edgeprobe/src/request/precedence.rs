//! Which source wins for each value of the request (PRODUCT.md: flags override the device's
//! configuration, which overrides the environment), as data: every value is the first
//! present candidate of an ordered list, each candidate tagged with where it came from.
//!
//! Pure: `gather()` has already read the files and the environment into [`Sources`]; nothing
//! here does I/O or validates. What a winner must look like is checked afterwards, by
//! `gather()`, against the [`Origin`] that supplied it.

use std::path::PathBuf;

use edgeprobe_iotedge::config::{DpsAttestation, EdgeConfig, KeyMaterial, Provisioning};
use edgeprobe_iotedge::identity::{ConnectionString, Credentials, DPS_GLOBAL_ENDPOINT};
use edgeprobe_iotedge::secret::Secret;
use edgeprobe_iotedge::verdict::UpstreamProtocol;
use edgeprobe_probes::tls::RootSet;

use crate::cli::CheckArgs;
use crate::workload::ModuleIdentity;

/// Where a resolved value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The module identity the workload API gave (`edgeprobe serve` as an IoT Edge module).
    Module,
    /// A command-line flag (or the environment variable clap reads for it, such as
    /// `EDGEPROBE_SAS_KEY` for `--sas-key`).
    Flag(&'static str),
    /// A part of `--connection-string`.
    ConnectionString(&'static str),
    /// A key of the device's IoT Edge configuration.
    Config(&'static str),
    /// An environment variable read as such.
    Env(&'static str),
    /// Nothing named the value: the built-in default.
    Default,
}

impl Origin {
    /// For people: `--proxy`, `/etc/aziot/config.toml: agent.env.https_proxy`, `HTTPS_PROXY`.
    pub(crate) fn describe(self, config_name: &str) -> String {
        match self {
            Origin::Module => "the module identity (workload API)".to_owned(),
            Origin::Flag(flag) => flag.to_owned(),
            Origin::ConnectionString(part) => format!("--connection-string: {part}"),
            Origin::Config(key) => format!("{config_name}: {key}"),
            Origin::Env(var) => var.to_owned(),
            Origin::Default => "the default".to_owned(),
        }
    }
}

/// A value and the source that supplied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sourced<T> {
    pub(crate) value: T,
    pub(crate) from: Origin,
}

/// The first candidate that has a value, in the order given.
pub(crate) fn first_of<T>(
    candidates: impl IntoIterator<Item = (Origin, Option<T>)>,
) -> Option<Sourced<T>> {
    candidates
        .into_iter()
        .find_map(|(from, value)| value.map(|value| Sourced { value, from }))
}

/// The first candidate that has a value, else `default` ([`Origin::Default`]).
pub(crate) fn first_or<T>(
    candidates: impl IntoIterator<Item = (Origin, Option<T>)>,
    default: T,
) -> Sourced<T> {
    first_of(candidates).unwrap_or(Sourced {
        value: default,
        from: Origin::Default,
    })
}

/// The environment variables the request reads, read once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Environment {
    /// `HTTPS_PROXY`
    pub(crate) https_proxy_upper: Option<String>,
    /// `https_proxy`
    pub(crate) https_proxy_lower: Option<String>,
    /// `NO_PROXY`
    pub(crate) no_proxy_upper: Option<String>,
    /// `no_proxy`
    pub(crate) no_proxy_lower: Option<String>,
    /// `IOTEDGE_MODULEID` is set: this process runs as (or beside) an IoT Edge module.
    pub(crate) module_id_set: bool,
}

impl Environment {
    /// This process's environment. A value that is not UTF-8 counts as unset, except
    /// `IOTEDGE_MODULEID`, whose presence is all that matters.
    pub(crate) fn read() -> Self {
        let var = |name| std::env::var(name).ok();
        Environment {
            https_proxy_upper: var("HTTPS_PROXY"),
            https_proxy_lower: var("https_proxy"),
            no_proxy_upper: var("NO_PROXY"),
            no_proxy_lower: var("no_proxy"),
            module_id_set: std::env::var_os("IOTEDGE_MODULEID").is_some(),
        }
    }
}

/// Every source of the request, already read (and, for `--connection-string` and
/// `--sas-key`, already parsed).
pub(crate) struct Sources<'a> {
    pub(crate) args: &'a CheckArgs,
    /// `--connection-string`, parsed.
    pub(crate) connection_string: Option<&'a ConnectionString>,
    /// `--sas-key`, trimmed and validated.
    pub(crate) sas_key: Option<&'a Secret>,
    pub(crate) config: Option<&'a EdgeConfig>,
    pub(crate) module: Option<&'a ModuleIdentity>,
    pub(crate) env: &'a Environment,
}

/// One part of the trust bundle, in the order the parts are concatenated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TrustPart {
    /// A PEM file (`--trust-bundle`, the configuration's `trust_bundle_cert`).
    File(PathBuf),
    /// The Edge CA a module got from the workload API at `uri`.
    Pem { pem: String, uri: String },
}

impl TrustPart {
    /// What the TLS settings call the bundle when this part is its last.
    pub(crate) fn name(&self) -> String {
        match self {
            TrustPart::File(path) => path.display().to_string(),
            TrustPart::Pem { uri, .. } => format!("{uri} (trust bundle)"),
        }
    }
}

/// The key a DPS device presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DpsKey {
    /// An enrollment group's key, as given: the device key is derived from it and the
    /// registration id.
    Group(Secret),
    /// The device's own key.
    Device(Secret),
}

/// A DPS device's provisioning values (present when some source names an ID scope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dps {
    pub(crate) id_scope: Sourced<String>,
    /// `None`: no source names one, a usage error.
    pub(crate) registration_id: Option<Sourced<String>>,
    /// As written (an `https://` prefix and a trailing `/` are for the caller to drop).
    pub(crate) endpoint: Sourced<String>,
    pub(crate) key: Option<Sourced<DpsKey>>,
}

/// The winner of every value, before validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) hub: Option<Sourced<String>>,
    pub(crate) device_id: Option<Sourced<String>>,
    /// X.509 credentials are paths still to load (`gather()` does, and a configured pair
    /// that cannot be loaded becomes [`Credentials::Unavailable`]).
    pub(crate) credentials: Option<Sourced<Credentials>>,
    /// A module's own edgeHub (`IOTEDGE_GATEWAYHOSTNAME`).
    pub(crate) edgehub: Option<Sourced<String>>,
    pub(crate) parent: Option<Sourced<String>>,
    pub(crate) gateway: Option<Sourced<String>>,
    /// Every part is used, in this order; the bundle is named after the last.
    pub(crate) trust_bundle: Vec<Sourced<TrustPart>>,
    pub(crate) roots: Sourced<RootSet>,
    pub(crate) dps: Option<Dps>,
    /// `None` also when the winner is blank: later sources are not consulted.
    pub(crate) proxy: Option<Sourced<String>>,
    pub(crate) no_proxy: Sourced<String>,
    pub(crate) upstream_protocol: Option<Sourced<UpstreamProtocol>>,
}

/// Every rule, applied once.
pub(crate) fn resolve(s: &Sources) -> Resolved {
    let hub = hub(s);
    let device_id = device_id(s);
    let credentials = credentials(s, hub.as_ref(), device_id.as_ref());
    let dps = dps(s, device_id.as_ref(), credentials.as_ref());
    Resolved {
        hub,
        device_id,
        credentials,
        edgehub: first_of([(Origin::Module, s.module.and_then(|m| m.gateway.clone()))]),
        parent: parent(s),
        gateway: gateway(s),
        trust_bundle: trust_bundle(s),
        roots: roots(s),
        dps,
        proxy: proxy(s),
        no_proxy: no_proxy(s),
        upstream_protocol: upstream_protocol(s),
    }
}

/// The file's parent goes with the file's device: only when neither a module identity nor a
/// flag names another device or hub (a hub, a device id, a connection string). A key
/// (`--sas-key`, `--x509-cert`) does not count: it is the configured device's key to try.
fn configured_device_in_use(s: &Sources) -> bool {
    let named = s.module.is_some()
        || s.args.iothub_hostname.is_some()
        || s.args.device_id.is_some()
        || s.connection_string.is_some();
    !named
}

/// The configured identity of a manually provisioned device: hub, device id, credentials.
///
/// Flags override the file value by value (PRODUCT.md): `--device-id` alone checks another
/// device on the configured hub, `--iothub-hostname` alone the configured device on another
/// hub. The configured credentials belong to the configured hub and device together, so
/// they are presented only when both of those are the file's ([`credentials`]).
fn configured_identity(s: &Sources) -> Option<(String, String, Credentials)> {
    s.config.and_then(EdgeConfig::device_credentials)
}

/// `--parent-hostname`, else the configuration's `parent_hostname`.
///
/// The file's parent is the parent of the device the file describes, so it applies while
/// that device is the one checked ([`configured_device_in_use`]): once a flag or a module
/// names another device or hub, that device's parent is not the file's, and
/// sending its credentials to the file's parent would be wrong (PRODUCT.md: credentials go
/// only to the service they belong to; a module talks to its own edgeHub). It is not gated
/// on [`configured_identity`] being present, though: a DPS device's file names no hub yet
/// its identity is still the file's, and its parent still the one it reaches.
fn parent(s: &Sources) -> Option<Sourced<String>> {
    first_of([
        (
            Origin::Flag("--parent-hostname"),
            s.args.parent_hostname.clone(),
        ),
        (
            Origin::Config("parent_hostname"),
            s.config
                .filter(|_| configured_device_in_use(s))
                .and_then(|c| c.parent_hostname.clone()),
        ),
    ])
}

fn hub(s: &Sources) -> Option<Sourced<String>> {
    first_of([
        (Origin::Module, s.module.map(|m| m.hub.clone())),
        (
            Origin::Flag("--iothub-hostname"),
            s.args.iothub_hostname.clone(),
        ),
        (
            Origin::ConnectionString("HostName"),
            s.connection_string.map(|c| c.host_name.clone()),
        ),
        (
            Origin::Config("provisioning.iothub_hostname"),
            configured_identity(s).map(|(hub, _, _)| hub),
        ),
    ])
}

fn device_id(s: &Sources) -> Option<Sourced<String>> {
    first_of([
        (Origin::Module, s.module.map(|m| m.device_id.clone())),
        (Origin::Flag("--device-id"), s.args.device_id.clone()),
        (
            Origin::ConnectionString("DeviceId"),
            s.connection_string.map(|c| c.device_id.clone()),
        ),
        (
            Origin::Config("provisioning.device_id"),
            configured_identity(s).map(|(_, device, _)| device),
        ),
    ])
}

/// The credentials to present: a flag's, a connection string's, a module's token, else the
/// configured ones, when the hub and the device in use are the configured ones (a key is
/// never presented for a device or a hub it does not belong to).
fn credentials(
    s: &Sources,
    hub: Option<&Sourced<String>>,
    device: Option<&Sourced<String>>,
) -> Option<Sourced<Credentials>> {
    let from_config =
        |v: Option<&Sourced<String>>| v.is_some_and(|v| matches!(v.from, Origin::Config(_)));
    let configured_device = from_config(hub) && from_config(device);
    let x509 = match (&s.args.x509_cert, &s.args.x509_key) {
        (Some(cert), Some(key)) => Some(Credentials::X509 {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    first_of([
        (Origin::Flag("--x509-cert"), x509),
        (
            Origin::Flag("--sas-key"),
            s.sas_key.cloned().map(Credentials::SasKey),
        ),
        (
            Origin::ConnectionString("SharedAccessKey"),
            s.connection_string
                .and_then(|c| c.key.clone())
                .map(Credentials::SasKey),
        ),
        (
            Origin::Module,
            s.module.map(|m| Credentials::SignedToken(m.token.clone())),
        ),
        (
            Origin::Config("provisioning.authentication"),
            configured_identity(s)
                .filter(|_| configured_device)
                .map(|(_, _, creds)| creds),
        ),
    ])
}

fn gateway(s: &Sources) -> Option<Sourced<String>> {
    first_of([
        (
            Origin::Flag("--gateway-hostname"),
            s.args.gateway_hostname.clone(),
        ),
        (
            Origin::ConnectionString("GatewayHostName"),
            s.connection_string
                .and_then(|c| c.gateway_host_name.clone()),
        ),
    ])
}

/// The runtime trusts `trust_bundle_cert`; so do we, beside `--trust-bundle`; a module also
/// trusts the Edge CA (edgeHub's and a parent's chains end there).
fn trust_bundle(s: &Sources) -> Vec<Sourced<TrustPart>> {
    [
        (
            Origin::Flag("--trust-bundle"),
            s.args.trust_bundle.clone().map(TrustPart::File),
        ),
        (
            Origin::Config("trust_bundle_cert"),
            s.config
                .and_then(|c| c.trust_bundle_cert.clone())
                .map(TrustPart::File),
        ),
        (
            Origin::Module,
            s.module.map(|m| TrustPart::Pem {
                pem: m.trust_pem.clone(),
                uri: m.uri.clone(),
            }),
        ),
    ]
    .into_iter()
    .filter_map(|(from, part)| part.map(|value| Sourced { value, from }))
    .collect()
}

/// Like the runtime: the host's services verify with the OS store, modules with the Mozilla
/// set their images carry.
fn roots(s: &Sources) -> Sourced<RootSet> {
    first_or(
        [
            (
                Origin::Flag("--roots"),
                s.args.roots.as_deref().and_then(RootSet::from_code),
            ),
            (Origin::Module, s.module.map(|_| RootSet::Mozilla)),
            (
                Origin::Env("IOTEDGE_MODULEID"),
                s.env.module_id_set.then_some(RootSet::Mozilla),
            ),
        ],
        RootSet::Os,
    )
}

/// The configuration's DPS provisioning: (ID scope, registration id, endpoint, key).
type ConfiguredDps = (String, Option<String>, String, Option<Secret>);

fn configured_dps(s: &Sources) -> Option<ConfiguredDps> {
    match s.config.map(|c| &c.provisioning) {
        Some(Provisioning::Dps {
            global_endpoint,
            id_scope,
            registration_id,
            attestation,
        }) => Some((
            id_scope.clone(),
            registration_id.clone(),
            global_endpoint.clone(),
            match attestation {
                DpsAttestation::SymmetricKey {
                    key: KeyMaterial::Available(k),
                } => Some(k.clone()),
                _ => None,
            },
        )),
        _ => None,
    }
}

/// A device is provisioned by DPS when some source names an ID scope. Each value is then
/// picked on its own: a flag's ID scope goes with the configuration's registration id and
/// endpoint when no flag names those.
fn dps(
    s: &Sources,
    device_id: Option<&Sourced<String>>,
    credentials: Option<&Sourced<Credentials>>,
) -> Option<Dps> {
    let (cfg_scope, cfg_registration, cfg_endpoint, cfg_key) = match configured_dps(s) {
        Some((scope, registration, endpoint, key)) => {
            (Some(scope), registration, Some(endpoint), key)
        }
        None => (None, None, None, None),
    };
    let id_scope = first_of([
        (Origin::Flag("--id-scope"), s.args.id_scope.clone()),
        (Origin::Config("provisioning.id_scope"), cfg_scope),
    ])?;
    let registration_id = first_of([
        (
            Origin::Flag("--registration-id"),
            s.args.registration_id.clone(),
        ),
        (
            Origin::Config("provisioning.attestation.registration_id"),
            cfg_registration,
        ),
        // The registration id defaults to the device id, wherever that came from.
        (
            device_id.map_or(Origin::Default, |d| d.from),
            device_id.map(|d| d.value.clone()),
        ),
    ]);
    let endpoint = first_or(
        [
            (Origin::Flag("--dps-endpoint"), s.args.dps_endpoint.clone()),
            (Origin::Config("provisioning.global_endpoint"), cfg_endpoint),
        ],
        DPS_GLOBAL_ENDPOINT.to_owned(),
    );
    // Group enrollment, else the device's SAS key (whichever source won it), else the key
    // the configuration's attestation holds.
    let device_key = match credentials {
        Some(Sourced {
            value: Credentials::SasKey(k),
            from,
        }) => (*from, Some(DpsKey::Device(k.clone()))),
        _ => (Origin::Default, None),
    };
    let key = first_of([
        (
            Origin::Flag("--dps-group-key"),
            s.args
                .dps_group_key
                .as_ref()
                .map(|g| DpsKey::Group(Secret::new(g.as_str()))),
        ),
        device_key,
        (
            Origin::Config("provisioning.attestation.symmetric_key"),
            cfg_key.map(DpsKey::Device),
        ),
    ]);
    Some(Dps {
        id_scope,
        registration_id,
        endpoint,
        key,
    })
}

/// `--proxy`, else the configuration's agent `https_proxy`, else the environment
/// (PRODUCT.md). A blank winner means no proxy: the sources after it are not consulted.
fn proxy(s: &Sources) -> Option<Sourced<String>> {
    first_of([
        (Origin::Flag("--proxy"), s.args.proxy.clone()),
        (
            Origin::Config("agent.env.https_proxy"),
            s.config
                .and_then(|c| c.https_proxy.as_ref())
                .map(|p| p.expose().to_owned()),
        ),
        (Origin::Env("HTTPS_PROXY"), s.env.https_proxy_upper.clone()),
        (Origin::Env("https_proxy"), s.env.https_proxy_lower.clone()),
    ])
    .filter(|p| !p.value.trim().is_empty())
}

/// `NO_PROXY`, else `no_proxy` (a blank `NO_PROXY` wins too), else nothing is exempt.
fn no_proxy(s: &Sources) -> Sourced<String> {
    first_or(
        [
            (Origin::Env("NO_PROXY"), s.env.no_proxy_upper.clone()),
            (Origin::Env("no_proxy"), s.env.no_proxy_lower.clone()),
        ],
        String::new(),
    )
}

/// `--upstream-protocol`, else the configuration's `agent.env.UpstreamProtocol` when it is
/// one the runtime knows (`gather()` refuses one it does not).
fn upstream_protocol(s: &Sources) -> Option<Sourced<UpstreamProtocol>> {
    first_of([
        (
            Origin::Flag("--upstream-protocol"),
            s.args
                .upstream_protocol
                .as_deref()
                .and_then(UpstreamProtocol::parse),
        ),
        (
            Origin::Config("agent.env.UpstreamProtocol"),
            s.config.and_then(EdgeConfig::upstream_protocol_parsed),
        ),
    ])
}

#[cfg(test)]
mod tests;

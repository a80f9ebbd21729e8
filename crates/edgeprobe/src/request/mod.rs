//! The run's request: flags, the device configuration and the environment resolved once
//! into validated [`Inputs`] (bad input is exit 2 with one line naming the culprit), and
//! the secrets the run must scrub.

/// Reads the sources, asks `precedence` which wins, validates the winners: [`Inputs`].
mod gather;
/// Which source wins for each value: flags, connection string, configuration, environment.
pub(crate) mod precedence;
/// The provisioning state a DPS device keeps.
pub mod state;
/// The trust bundle, the roots and the client certificate: the TLS settings of the run.
mod trust;
/// Checks of single values: host names, device ids, `--var`.
pub mod values;

pub(crate) use gather::gather;
pub(crate) use state::provisioning_state;
pub use state::state_path;
pub use values::user_vars;
pub(crate) use values::{cut, device_id_problem, hint, is_host_name};

use edgeprobe_core::catalog::Vars;
use edgeprobe_iotedge::config::{self, EdgeConfig};
use edgeprobe_iotedge::identity::{Credentials, DeviceIdentity, DpsIdentity};
use edgeprobe_iotedge::secret::Secret;
use edgeprobe_iotedge::verdict::UpstreamProtocol;
use edgeprobe_probes::dns::Overrides;
use edgeprobe_probes::proxy::ProxyConfig;
use edgeprobe_probes::tls::TlsSettings;

use crate::cli::CheckArgs;
use crate::AppError;

/// Everything `check` needs, validated.
pub(crate) struct Inputs {
    pub(crate) vars: Vars,
    /// The extra trusted roots as PEM, to hand on to the container vantage.
    pub(crate) bundle_pem: String,
    pub(crate) identity: Option<DeviceIdentity>,
    pub(crate) dps: Option<DpsIdentity>,
    pub(crate) tls: TlsSettings,
    pub(crate) overrides: Overrides,
    pub(crate) proxy: Option<ProxyConfig>,
    pub(crate) no_proxy: String,
    pub(crate) configured: Option<UpstreamProtocol>,
}

impl Inputs {
    /// A DPS device's hub and device id, from DPS or from the identity service's state: the
    /// hub checks target them, authenticated with the DPS key (the device key DPS knows).
    pub(crate) fn assign_hub(&mut self, hub: String, device_id: String) {
        self.vars.insert("iothub_hostname".into(), hub.clone());
        self.vars.insert("device_id".into(), device_id.clone());
        let credentials = match self.dps.as_ref().and_then(|d| d.key.clone()) {
            Some(key) => Credentials::SasKey(key),
            None => Credentials::None,
        };
        self.identity = Some(DeviceIdentity {
            hub,
            device_id,
            module_id: None,
            credentials,
        });
    }
}

pub(crate) fn usage(msg: impl Into<String>) -> AppError {
    AppError::Usage(msg.into())
}

/// Reads the device's IoT Edge configuration: `--config`, else the default paths. A file
/// named on the command line must load; a default one that cannot be read is fatal only
/// when the flags do not say which hub to check.
pub(crate) fn load_config(
    args: &CheckArgs,
    notes: &mut Vec<String>,
) -> Result<Option<EdgeConfig>, AppError> {
    if let Some(path) = &args.config {
        return config::load(path)
            .map(Some)
            .map_err(|e| usage(format!("--config: {e}")));
    }
    if args.no_config {
        return Ok(None);
    }
    let Some(path) = config::find_default() else {
        return Ok(None);
    };
    match config::load(&path) {
        Ok(c) => Ok(Some(c)),
        Err(e) if args.iothub_hostname.is_some() || args.connection_string.is_some() => {
            notes.push(format!("the device configuration was not used: {e}"));
            Ok(None)
        }
        Err(e) => Err(usage(e.to_string())),
    }
}

/// No configuration and no flag naming anything to check is a usage error, not a green run.
pub(crate) fn something_to_check(
    args: &CheckArgs,
    cfg: Option<&EdgeConfig>,
    inputs: &Inputs,
) -> Result<(), AppError> {
    let named = [
        "iothub_hostname",
        "dps_endpoint",
        "parent_hostname",
        "gateway_hostname",
    ]
    .iter()
    .any(|v| inputs.vars.contains_key(*v));
    // An IoT Edge module learns who it is from the workload API (`crate::workload`).
    let module = std::env::var_os("IOTEDGE_WORKLOADURI").is_some()
        && std::env::var_os("IOTEDGE_IOTHUBHOSTNAME").is_some();
    if cfg.is_some()
        || named
        || module
        || !args.registry.is_empty()
        || args.checks_dir.is_some()
        || !args.only.is_empty()
    {
        return Ok(());
    }
    let looked = if args.no_config {
        "--no-config was given".to_owned()
    } else {
        format!(
            "no IoT Edge configuration at {} (--config FILE names another)",
            config::DEFAULT_PATHS.join(" or ")
        )
    };
    Err(usage(format!(
        "nothing to check: {looked}, and no flag names a device (--connection-string, --iothub-hostname with --device-id, --id-scope, --gateway-hostname or --registry)"
    )))
}

/// Every secret the run knows, to scrub from reports and bundles.
pub(crate) fn run_secrets(
    args: &CheckArgs,
    inputs: &Inputs,
    cfg: Option<&EdgeConfig>,
) -> Vec<Secret> {
    let mut secrets: Vec<Secret> = Vec::new();
    if let Some(Credentials::SasKey(k) | Credentials::SignedToken(k)) =
        inputs.identity.as_ref().map(|i| &i.credentials)
    {
        secrets.push(k.clone());
    }
    if let Some(k) = inputs.dps.as_ref().and_then(|d| d.key.clone()) {
        secrets.push(k);
    }
    if let Some(proxy) = &inputs.proxy {
        if let Some(p) = &proxy.password {
            // Also as `user:password`, the form Basic auth sends (base64) and URLs carry.
            let user = proxy.username.as_deref().unwrap_or_default();
            secrets.push(Secret::new(format!("{user}:{}", p.expose())));
            secrets.push(p.clone());
        }
    }
    for raw in [&args.sas_key, &args.connection_string, &args.dps_group_key]
        .into_iter()
        .flatten()
    {
        secrets.push(Secret::new(raw.clone()));
    }
    if let Some(c) = cfg {
        secrets.extend(c.secrets().into_iter().cloned());
    }
    secrets
}

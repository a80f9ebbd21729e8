//! The run's request: flags, the device configuration and the environment resolved once
//! into validated [`Inputs`] (bad input is exit 2 with one line naming the culprit), and
//! the secrets the run must scrub.

/// Which source wins for each value: flags, connection string, configuration, environment.
pub(crate) mod precedence;
/// The provisioning state a DPS device keeps.
pub mod state;
/// The trust bundle, the roots and the client certificate: the TLS settings of the run.
mod trust;
/// Checks of single values: host names, device ids, `--var`.
pub mod values;

pub(crate) use state::provisioning_state;
pub use state::state_path;
pub use values::user_vars;
pub(crate) use values::{cut, device_id_problem, hint, is_host_name};

use edgeprobe_core::catalog::Vars;
use edgeprobe_iotedge::config::{self, EdgeConfig};
use edgeprobe_iotedge::identity::{ConnectionString, Credentials, DeviceIdentity, DpsIdentity};
use edgeprobe_iotedge::secret::Secret;
use edgeprobe_iotedge::verdict::UpstreamProtocol;
use edgeprobe_probes::dns::Overrides;
use edgeprobe_probes::proxy::ProxyConfig;
use edgeprobe_probes::tls::{self, TlsSettings};

use self::precedence::{DpsKey, Environment, Resolved, Sources};
use crate::cli::CheckArgs;
use crate::workload::ModuleIdentity;
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

/// The request: reads what the sources hold (files, the environment), asks [`precedence`]
/// which source wins for each value, and validates the winners.
pub(crate) fn gather(
    args: &CheckArgs,
    cfg: Option<&EdgeConfig>,
    module: Option<&ModuleIdentity>,
) -> Result<Inputs, AppError> {
    let mut vars: Vars = user_vars(&args.vars)?.into_iter().collect();
    let config_name = cfg.map(|c| c.source.clone()).unwrap_or_default();
    let connection_string = match &args.connection_string {
        Some(cs) => Some(
            cs.parse::<ConnectionString>()
                .map_err(|e| usage(format!("--connection-string: {e}")))?,
        ),
        None => None,
    };
    let sas_key = match &args.sas_key {
        Some(key) => {
            let key = Secret::new(key.trim());
            edgeprobe_iotedge::sas::validate_key(&key)
                .map_err(|e| usage(format!("--sas-key: {e}")))?;
            Some(key)
        }
        None => None,
    };
    let env = Environment::read();
    let chosen = precedence::resolve(&Sources {
        args,
        connection_string: connection_string.as_ref(),
        sas_key: sas_key.as_ref(),
        config: cfg,
        module,
        env: &env,
    });

    let (bundle, tls) = trust::settings(&chosen, &config_name)?;
    let (credentials, tls) = trust::credentials(chosen.credentials.as_ref(), tls, &config_name)?;
    let mut overrides = Overrides::default();
    for r in &args.resolve {
        overrides.add_resolve(r).map_err(usage)?;
    }
    for c in &args.connect_to {
        overrides.add_connect_to(c).map_err(usage)?;
    }

    named_vars(args, &chosen, &mut vars)?;
    let dps = dps_identity(args, &chosen, &mut vars)?;
    if credentials.is_some() && chosen.device_id.is_none() && dps.is_none() {
        return Err(usage(
            "--sas-key needs --device-id (or use --connection-string)",
        ));
    }
    let identity = match (&chosen.hub, &chosen.device_id) {
        (Some(h), Some(d)) => Some(DeviceIdentity {
            hub: h.value.clone(),
            device_id: d.value.clone(),
            module_id: module.map(|m| m.module_id.clone()),
            credentials: credentials.unwrap_or(Credentials::None),
        }),
        _ => None,
    };
    let proxy = match &chosen.proxy {
        Some(url) => Some(
            ProxyConfig::parse(&url.value)
                .map_err(|e| usage(format!("{}: {e}", url.from.describe(&config_name))))?,
        ),
        None => None,
    };
    if let Some(raw) = cfg.and_then(|c| c.upstream_protocol.as_deref()) {
        if UpstreamProtocol::parse(raw).is_none() {
            return Err(usage(format!(
                "{config_name}: agent.env.UpstreamProtocol {raw:?} is not one of Amqp, Mqtt, AmqpWs, MqttWs"
            )));
        }
    }
    let bundle_pem: String = bundle.iter().map(|c| tls::cert_info(c).pem).collect();
    Ok(Inputs {
        vars,
        bundle_pem,
        identity,
        dps,
        tls,
        overrides,
        proxy,
        no_proxy: chosen.no_proxy.value,
        configured: chosen.upstream_protocol.map(|u| u.value),
    })
}

/// The hub, device id, parent, gateway and a module's edgeHub, each checked, into `vars`.
fn named_vars(args: &CheckArgs, chosen: &Resolved, vars: &mut Vars) -> Result<(), AppError> {
    if let Some(gw) = &chosen.edgehub {
        vars.insert("edgehub_hostname".into(), gw.value.clone());
    }
    if let Some(h) = &chosen.hub {
        if !is_host_name(&h.value) {
            return Err(usage(format!(
                "--iothub-hostname {:?} is not a host name",
                cut(&h.value)
            )));
        }
        vars.insert("iothub_hostname".into(), h.value.clone());
    }
    if let Some(d) = &chosen.device_id {
        if let Some(problem) = device_id_problem(&d.value) {
            // Named after the flags given, not after the winner (`d.from`).
            let from = if args.device_id.is_some() {
                "--device-id"
            } else if args.connection_string.is_some() {
                "--connection-string: DeviceId"
            } else {
                "device_id"
            };
            return Err(usage(format!("{from}: the device id {problem}")));
        }
        vars.insert("device_id".into(), d.value.clone());
    }
    for (var, flag, value) in [
        ("parent_hostname", "--parent-hostname", &chosen.parent),
        ("gateway_hostname", "--gateway-hostname", &chosen.gateway),
    ] {
        if let Some(v) = value {
            if !is_host_name(&v.value) {
                return Err(usage(format!(
                    "{flag} {:?} is not a host name",
                    cut(&v.value)
                )));
            }
            vars.insert(var.into(), v.value.clone());
        }
    }
    Ok(())
}

/// A DPS device's identity, checked, its values into `vars`; the key of a group enrollment
/// derived.
fn dps_identity(
    args: &CheckArgs,
    chosen: &Resolved,
    vars: &mut Vars,
) -> Result<Option<DpsIdentity>, AppError> {
    let Some(dps) = &chosen.dps else {
        return Ok(None);
    };
    let scope = &dps.id_scope.value;
    let registration_id = dps
        .registration_id
        .as_ref()
        .map(|r| r.value.clone())
        .ok_or_else(|| usage("--id-scope needs --registration-id (or --device-id)"))?;
    let endpoint = dps
        .endpoint
        .value
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    if !is_host_name(&endpoint) || !is_host_name(scope) {
        return Err(usage(format!(
            "--dps-endpoint {:?} / --id-scope {:?}: not usable names",
            cut(&endpoint),
            cut(scope)
        )));
    }
    vars.insert("dps_endpoint".into(), endpoint);
    vars.insert("id_scope".into(), scope.clone());
    vars.insert("registration_id".into(), registration_id.clone());
    let key = match dps.key.as_ref().map(|k| &k.value) {
        // Group enrollment: the device key is HMAC(group key, registration id).
        Some(DpsKey::Group(group)) => Some(
            edgeprobe_iotedge::sas::derive_device_key(
                &Secret::new(group.expose().trim()),
                &registration_id,
            )
            .map_err(|e| usage(format!("--dps-group-key: {e}")))?,
        ),
        Some(DpsKey::Device(k)) => Some(k.clone()),
        None => None,
    };
    Ok(Some(DpsIdentity {
        id_scope: scope.clone(),
        registration_id,
        key,
        group_enrollment: args.dps_group_key.is_some(),
    }))
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

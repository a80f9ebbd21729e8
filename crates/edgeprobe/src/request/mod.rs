//! The run's request: flags, the device configuration and the environment resolved once
//! into validated [`Inputs`] (bad input is exit 2 with one line naming the culprit), and
//! the secrets the run must scrub.

/// The provisioning state a DPS device keeps.
pub mod state;
/// Checks of single values: host names, device ids, `--var`.
pub mod values;

pub(crate) use state::provisioning_state;
pub use state::state_path;
pub use values::user_vars;
pub(crate) use values::{cut, device_id_problem, hint, is_host_name};

use edgeprobe_core::catalog::Vars;
use edgeprobe_iotedge::config::{self, DpsAttestation, EdgeConfig, KeyMaterial, Provisioning};
use edgeprobe_iotedge::identity::{
    ConnectionString, Credentials, DeviceIdentity, DpsIdentity, DPS_GLOBAL_ENDPOINT,
};
use edgeprobe_iotedge::secret::Secret;
use edgeprobe_iotedge::verdict::UpstreamProtocol;
use edgeprobe_probes::dns::Overrides;
use edgeprobe_probes::proxy::ProxyConfig;
use edgeprobe_probes::tls::{self, TlsSettings};

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

pub(crate) fn gather(
    args: &CheckArgs,
    cfg: Option<&EdgeConfig>,
    module: Option<&ModuleIdentity>,
) -> Result<Inputs, AppError> {
    let mut vars: Vars = user_vars(&args.vars)?.into_iter().collect();
    let mut hub = args.iothub_hostname.clone();
    let mut device = args.device_id.clone();
    let mut credentials = None;
    if let Some(m) = module {
        // An IoT Edge module: its own identity, its token signed by the workload API.
        hub = Some(m.hub.clone());
        device = Some(m.device_id.clone());
        credentials = Some(Credentials::SignedToken(m.token.clone()));
        if let Some(gw) = &m.gateway {
            vars.insert("edgehub_hostname".into(), gw.clone());
        }
    }
    let mut gateway = args.gateway_hostname.clone();
    let config_name = cfg.map(|c| c.source.clone()).unwrap_or_default();

    if let Some(cs) = &args.connection_string {
        let cs: ConnectionString = cs
            .parse()
            .map_err(|e| usage(format!("--connection-string: {e}")))?;
        hub.get_or_insert(cs.host_name.clone());
        device.get_or_insert(cs.device_id.clone());
        if let Some(gw) = &cs.gateway_host_name {
            gateway.get_or_insert(gw.clone());
        }
        if let Some(key) = cs.key {
            credentials = Some(Credentials::SasKey(key));
        }
    }
    if let Some(key) = &args.sas_key {
        let key = Secret::new(key.trim());
        edgeprobe_iotedge::sas::validate_key(&key).map_err(|e| usage(format!("--sas-key: {e}")))?;
        credentials = Some(Credentials::SasKey(key));
    }

    let mut bundle = match &args.trust_bundle {
        Some(path) => {
            tls::load_pem_certs(path).map_err(|e| usage(format!("--trust-bundle: {e}")))?
        }
        None => Vec::new(),
    };
    let mut bundle_name = args
        .trust_bundle
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // The runtime trusts trust_bundle_cert; so do we (beside --trust-bundle).
    if let Some(path) = cfg.and_then(|c| c.trust_bundle_cert.as_ref()) {
        bundle.extend(
            tls::load_pem_certs(path)
                .map_err(|e| usage(format!("{config_name}: trust_bundle_cert: {e}")))?,
        );
        bundle_name = path.display().to_string();
    }
    if let Some(m) = module {
        // The Edge CA: edgeHub's (and a parent's) chains end there.
        bundle.extend(
            tls::parse_pem_certs(m.trust_pem.as_bytes(), &format!("{}: trust bundle", m.uri))
                .map_err(|e| usage(e.to_string()))?,
        );
        bundle_name = format!("{} (trust bundle)", m.uri);
    }
    // Like the runtime: the host's services verify with the OS store, modules with the
    // Mozilla set their images carry; each with the trust bundle.
    let roots = match args.roots.as_deref().and_then(tls::RootSet::from_code) {
        Some(set) => set,
        None if module.is_some() || std::env::var_os("IOTEDGE_MODULEID").is_some() => {
            tls::RootSet::Mozilla
        }
        None => tls::RootSet::Os,
    };
    let mut tls = TlsSettings::new(&bundle, &bundle_name, roots)
        .map_err(|e| usage(format!("--trust-bundle: {e}")))?;
    // Flags override the file: the configured identity counts only when no flag named one.
    let flags_identity = hub.is_some() || device.is_some() || credentials.is_some();
    if let (false, Some((h, d, creds))) = (flags_identity, cfg.and_then(|c| c.device_credentials()))
    {
        hub = Some(h);
        device = Some(d);
        credentials = Some(match creds {
            Credentials::X509 { cert, key } => {
                let loaded = tls::load_pem_certs(&cert)
                    .and_then(|chain| Ok((chain, tls::load_private_key(&key)?)))
                    .and_then(|(chain, pk)| tls.clone().with_client_cert(chain, pk));
                match loaded {
                    Ok(with_cert) => {
                        tls = with_cert;
                        Credentials::X509 { cert, key }
                    }
                    Err(e) => Credentials::Unavailable(format!(
                        "the X.509 identity in {config_name} cannot be used: {e}"
                    )),
                }
            }
            other => other,
        });
    }
    if let (Some(cert), Some(key)) = (&args.x509_cert, &args.x509_key) {
        let chain = tls::load_pem_certs(cert).map_err(|e| usage(format!("--x509-cert: {e}")))?;
        let pk = tls::load_private_key(key).map_err(|e| usage(format!("--x509-key: {e}")))?;
        tls = tls
            .with_client_cert(chain, pk)
            .map_err(|e| usage(format!("--x509-cert/--x509-key: {e}")))?;
        credentials = Some(Credentials::X509 {
            cert: cert.clone(),
            key: key.clone(),
        });
    }

    let mut overrides = Overrides::default();
    for r in &args.resolve {
        overrides.add_resolve(r).map_err(usage)?;
    }
    for c in &args.connect_to {
        overrides.add_connect_to(c).map_err(usage)?;
    }

    if let Some(h) = &hub {
        if !is_host_name(h) {
            return Err(usage(format!(
                "--iothub-hostname {:?} is not a host name",
                cut(h)
            )));
        }
        vars.insert("iothub_hostname".into(), h.clone());
    }
    if let Some(d) = &device {
        if let Some(problem) = device_id_problem(d) {
            let from = if args.device_id.is_some() {
                "--device-id"
            } else if args.connection_string.is_some() {
                "--connection-string: DeviceId"
            } else {
                "device_id"
            };
            return Err(usage(format!("{from}: the device id {problem}")));
        }
        vars.insert("device_id".into(), d.clone());
    }
    for (var, flag, value) in [
        (
            "parent_hostname",
            "--parent-hostname",
            &args.parent_hostname,
        ),
        ("gateway_hostname", "--gateway-hostname", &gateway),
    ] {
        if let Some(v) = value {
            if !is_host_name(v) {
                return Err(usage(format!("{flag} {:?} is not a host name", cut(v))));
            }
            vars.insert(var.into(), v.clone());
        }
    }
    let (cfg_scope, cfg_registration, cfg_endpoint, cfg_key) = match cfg.map(|c| &c.provisioning) {
        Some(Provisioning::Dps {
            global_endpoint,
            id_scope,
            registration_id,
            attestation,
        }) => (
            Some(id_scope.clone()),
            registration_id.clone(),
            Some(global_endpoint.clone()),
            match attestation {
                DpsAttestation::SymmetricKey {
                    key: KeyMaterial::Available(k),
                } => Some(k.clone()),
                _ => None,
            },
        ),
        _ => (None, None, None, None),
    };
    let dps = match args.id_scope.clone().or(cfg_scope) {
        Some(scope) => {
            let scope = &scope;
            let registration_id = args
                .registration_id
                .clone()
                .or(cfg_registration)
                .or_else(|| device.clone())
                .ok_or_else(|| usage("--id-scope needs --registration-id (or --device-id)"))?;
            let endpoint = args
                .dps_endpoint
                .clone()
                .or(cfg_endpoint)
                .unwrap_or_else(|| DPS_GLOBAL_ENDPOINT.to_owned())
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
            let key = match (&args.dps_group_key, &credentials) {
                // Group enrollment: the device key is HMAC(group key, registration id).
                (Some(group), _) => Some(
                    edgeprobe_iotedge::sas::derive_device_key(
                        &Secret::new(group.trim()),
                        &registration_id,
                    )
                    .map_err(|e| usage(format!("--dps-group-key: {e}")))?,
                ),
                (None, Some(Credentials::SasKey(k))) => Some(k.clone()),
                _ => cfg_key,
            };
            Some(DpsIdentity {
                id_scope: scope.clone(),
                registration_id,
                key,
                group_enrollment: args.dps_group_key.is_some(),
            })
        }
        None => None,
    };
    if credentials.is_some() && device.is_none() && dps.is_none() {
        return Err(usage(
            "--sas-key needs --device-id (or use --connection-string)",
        ));
    }
    let identity = match (&hub, &device) {
        (Some(h), Some(d)) => Some(DeviceIdentity {
            hub: h.clone(),
            device_id: d.clone(),
            module_id: module.map(|m| m.module_id.clone()),
            credentials: credentials.unwrap_or(Credentials::None),
        }),
        _ => None,
    };

    // --proxy, else the config's agent https_proxy, else the environment (PRODUCT.md).
    let config_proxy = format!("{config_name}: agent.env.https_proxy");
    let proxy_url = args
        .proxy
        .clone()
        .map(|p| (p, "--proxy"))
        .or_else(|| {
            cfg.and_then(|c| c.https_proxy.as_ref())
                .map(|p| (p.expose().to_owned(), config_proxy.as_str()))
        })
        .or_else(|| {
            std::env::var("HTTPS_PROXY")
                .ok()
                .map(|p| (p, "HTTPS_PROXY"))
        })
        .or_else(|| {
            std::env::var("https_proxy")
                .ok()
                .map(|p| (p, "https_proxy"))
        })
        .filter(|(p, _)| !p.trim().is_empty());
    let proxy = match proxy_url {
        Some((url, from)) => {
            Some(ProxyConfig::parse(&url).map_err(|e| usage(format!("{from}: {e}")))?)
        }
        None => None,
    };
    let no_proxy = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    let configured = args
        .upstream_protocol
        .as_deref()
        .and_then(UpstreamProtocol::parse)
        .or_else(|| cfg.and_then(|c| c.upstream_protocol_parsed()));
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
        no_proxy,
        configured,
    })
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

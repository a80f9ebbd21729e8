//! `gather()`: reads what the sources hold (the flags, the device configuration, a module's
//! identity, the environment), asks [`super::precedence`] which source wins for each value,
//! then validates the winners into [`Inputs`] (bad input is exit 2 with one line naming the
//! culprit).

use edgeprobe_core::catalog::Vars;
use edgeprobe_iotedge::config::EdgeConfig;
use edgeprobe_iotedge::identity::{ConnectionString, Credentials, DeviceIdentity, DpsIdentity};
use edgeprobe_iotedge::secret::Secret;
use edgeprobe_iotedge::verdict::UpstreamProtocol;
use edgeprobe_probes::dns::Overrides;
use edgeprobe_probes::proxy::ProxyConfig;
use edgeprobe_probes::tls;

use super::precedence::{self, DpsKey, Environment, Resolved, Sources};
use super::{cut, device_id_problem, is_host_name, trust, usage, user_vars, Inputs};
use crate::cli::CheckArgs;
use crate::workload::ModuleIdentity;
use crate::AppError;

/// The request, resolved once: read, ask, validate.
pub(crate) fn gather(
    args: &CheckArgs,
    cfg: Option<&EdgeConfig>,
    module: Option<&ModuleIdentity>,
) -> Result<Inputs, AppError> {
    let mut vars: Vars = user_vars(&args.vars)?.into_iter().collect();
    let config_name = cfg.map(|c| c.source.clone()).unwrap_or_default();
    let (connection_string, sas_key) = device_flags(args)?;
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
    let overrides = overrides(args)?;

    named_vars(&chosen, &config_name, &mut vars)?;
    let dps = dps_identity(args, &chosen, &config_name, &mut vars)?;
    if let (Some(c), None, None) = (&chosen.credentials, &chosen.device_id, &dps) {
        return Err(usage(format!(
            "{} needs --device-id (or use --connection-string)",
            c.from.describe(&config_name)
        )));
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
    configured_protocol_known(cfg)?;
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

/// The hub, device id, parent, gateway and a module's edgeHub, each checked, into `vars`
/// (the parent from the configuration too: the catalog's `parent` family, the registries'
/// `$upstream` and the report's context all read `parent_hostname` there).
fn named_vars(chosen: &Resolved, config_name: &str, vars: &mut Vars) -> Result<(), AppError> {
    if let Some(gw) = &chosen.edgehub {
        vars.insert("edgehub_hostname".into(), gw.value.clone());
    }
    // A bad value is named after where it came from: a flag, a connection string's part,
    // the configuration's file and key, the module's identity.
    if let Some(h) = &chosen.hub {
        if !is_host_name(&h.value) {
            return Err(usage(format!(
                "{} {:?} is not a host name",
                h.from.describe(config_name),
                cut(&h.value)
            )));
        }
        vars.insert("iothub_hostname".into(), h.value.clone());
    }
    if let Some(d) = &chosen.device_id {
        if let Some(problem) = device_id_problem(&d.value) {
            return Err(usage(format!(
                "{}: the device id {problem}",
                d.from.describe(config_name)
            )));
        }
        vars.insert("device_id".into(), d.value.clone());
    }
    for (var, value) in [
        ("parent_hostname", &chosen.parent),
        ("gateway_hostname", &chosen.gateway),
    ] {
        if let Some(v) = value {
            if !is_host_name(&v.value) {
                return Err(usage(format!(
                    "{} {:?} is not a host name",
                    v.from.describe(config_name),
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
    config_name: &str,
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
    for (ok, value, from) in [
        (is_host_name(&endpoint), &endpoint, dps.endpoint.from),
        (is_host_name(scope), scope, dps.id_scope.from),
    ] {
        if !ok {
            return Err(usage(format!(
                "{} {:?} is not a usable name",
                from.describe(config_name),
                cut(value)
            )));
        }
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

/// `--connection-string` parsed and `--sas-key` checked: the sources that must be usable
/// before anything is picked.
fn device_flags(args: &CheckArgs) -> Result<(Option<ConnectionString>, Option<Secret>), AppError> {
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
    Ok((connection_string, sas_key))
}

/// `--resolve` and `--connect-to`.
fn overrides(args: &CheckArgs) -> Result<Overrides, AppError> {
    let mut overrides = Overrides::default();
    for r in &args.resolve {
        overrides.add_resolve(r).map_err(usage)?;
    }
    for c in &args.connect_to {
        overrides.add_connect_to(c).map_err(usage)?;
    }
    Ok(overrides)
}

/// The configuration's `agent.env.UpstreamProtocol` must be one the runtime knows, even when
/// `--upstream-protocol` names another.
fn configured_protocol_known(cfg: Option<&EdgeConfig>) -> Result<(), AppError> {
    let Some(c) = cfg else {
        return Ok(());
    };
    if let Some(raw) = c.upstream_protocol.as_deref() {
        if UpstreamProtocol::parse(raw).is_none() {
            return Err(usage(format!(
                "{}: agent.env.UpstreamProtocol {raw:?} is not one of Amqp, Mqtt, AmqpWs, MqttWs",
                c.source
            )));
        }
    }
    Ok(())
}

//! From flags to a report: validate every input up front (bad input is exit 2 with one
//! line naming the culprit), plan the catalog against what is known, run it under one
//! deadline, judge the upstream protocols, render.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use edgeprobe_core::catalog::{matches_pattern, Catalog, CheckDef, Vars};
use edgeprobe_core::runner::{self, CheckResult, Plan, Planned, RunOptions};
use edgeprobe_core::{Endpoint, Outcome, Protocol, Reason, Status, Vantage};
use edgeprobe_iotedge::config::{self, DpsAttestation, EdgeConfig, KeyMaterial, Provisioning};
use edgeprobe_iotedge::identity::{
    ConnectionString, Credentials, DeviceIdentity, DpsIdentity, DPS_GLOBAL_ENDPOINT,
};
use edgeprobe_iotedge::identity_state::{self, ProvisioningState};
use edgeprobe_iotedge::proxy_sources;
use edgeprobe_iotedge::secret::{Scrubber, Secret};
use edgeprobe_iotedge::verdict::{self, UpstreamProtocol};
use edgeprobe_probes::dns::{Dns, Overrides};
use edgeprobe_probes::proxy::ProxyConfig;
use edgeprobe_probes::tls::{self, TlsSettings};
use edgeprobe_probes::{ProbeSettings, Prober};
use edgeprobe_report::html::HtmlRenderer;
use edgeprobe_report::json::JsonRenderer;
use edgeprobe_report::junit::JunitRenderer;
use edgeprobe_report::prometheus::PrometheusRenderer;
use edgeprobe_report::text::TextRenderer;
use edgeprobe_report::{Renderer, RunContext, RunReport};
use tokio::time::Instant;

use crate::cli::{CheckArgs, Cli, Command, ListArgs, ManArgs, Output};
use crate::workload::ModuleIdentity;
use crate::{demo, gateway_view, vantage, AppError};

/// Id of the derived check that judges the configured UpstreamProtocol.
pub const CONFIG_UPSTREAM_ID: &str = "config-upstream-protocol";
/// The DPS registration status lookup, which tells a DPS device its hub.
const DPS_LOOKUP_ID: &str = "dps-https";
/// Id of the derived check that compares the proxy each runtime component uses.
pub const PROXY_CONSISTENCY_ID: &str = "proxy-consistency";
/// Id of the derived check that compares the device clock with the services'.
pub const CLOCK_ID: &str = "device-clock";

/// Checks produced outside the catalog (the container vantage and the gateway view).
const OTHER_IDS: [&str; 6] = [
    vantage::DOCKER_NETWORK_ID,
    vantage::VANTAGE_COMPARE_ID,
    gateway_view::GATEWAY_INBOUND_ID,
    "inbound-mqtt",
    "inbound-amqp",
    "inbound-https",
];

/// A check computed from the results of the others.
struct Derived {
    id: &'static str,
    title: &'static str,
    endpoint: Endpoint,
    protocol: Protocol,
    required: bool,
    from: &'static str,
}

const DERIVED: [Derived; 3] = [
    Derived {
        id: CONFIG_UPSTREAM_ID,
        title: "Configured UpstreamProtocol works",
        endpoint: Endpoint::Iothub,
        protocol: Protocol::Config,
        required: true,
        from: "the iothub-* protocol checks",
    },
    Derived {
        id: PROXY_CONSISTENCY_ID,
        title: "The runtime's components agree on the proxy",
        endpoint: Endpoint::Device,
        protocol: Protocol::Config,
        required: false,
        from: "config.toml, the aziot systemd units and the Docker daemon's settings",
    },
    Derived {
        id: CLOCK_ID,
        title: "Device clock agrees with the services",
        endpoint: Endpoint::Device,
        protocol: Protocol::Time,
        required: false,
        from: "the Date headers of HTTPS answers",
    },
];

impl Derived {
    fn def(&self) -> CheckDef {
        CheckDef {
            id: self.id.into(),
            title: self.title.into(),
            endpoint: self.endpoint,
            protocol: self.protocol,
            host: String::new(),
            port: None,
            required: self.required,
            requires: Vec::new(),
            unless: Vec::new(),
            source: "derived".into(),
            expect: Default::default(),
            credentials: false,
        }
    }
}

pub async fn dispatch(cli: Cli) -> Result<u8, AppError> {
    match cli.command {
        Command::Check(args) => {
            check_output_file(args.output_file.as_deref())?;
            if args.dry_run {
                let text = dry_run(&args)?;
                write_atomically("-", text.as_bytes())?;
                return Ok(0);
            }
            let report = check(&args, RunContext::default()).await?;
            match args.output_file.as_deref() {
                Some(path) if path != "-" => {
                    let text = render(&report, &args, false);
                    write_atomically(path, text.as_bytes())?;
                }
                _ if args.quiet => {}
                _ => emit(&report, &args)?,
            }
            Ok(exit_code(&report))
        }
        Command::List(args) => list(&args),
        Command::Demo(args) => demo::run(&args).await,
        Command::Bundle(args) => crate::bundle::run(&args).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "edgeprobe", &mut out);
            write_atomically("-", &out)?;
            Ok(0)
        }
        Command::Man(args) => man(&args),
        Command::ServeFixture(args) => crate::serve::run(&args).await,
        Command::Serve(args) => crate::module::run(*args).await,
        Command::Image(args) => crate::module::image(&args).await,
    }
}

/// `edgeprobe man`: the top-level page, one subcommand's page (`edgeprobe-check(1)`, the
/// pages the top-level one refers to), or every page written to a directory.
fn man(args: &ManArgs) -> Result<u8, AppError> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    if let Some(dir) = &args.out_dir {
        clap_mangen::generate_to(cmd, dir)
            .map_err(|e| usage(format!("--out-dir {}: {e}", dir.display())))?;
        return Ok(0);
    }
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => {
            let sub = cmd
                .get_subcommands()
                .find(|c| c.get_name() == name && !c.is_hide_set())
                .ok_or_else(|| {
                    let names: Vec<&str> = cmd
                        .get_subcommands()
                        .filter(|c| !c.is_hide_set())
                        .map(|c| c.get_name())
                        .collect();
                    usage(format!(
                        "man: no subcommand {name:?} (one of {})",
                        names.join(", ")
                    ))
                })?;
            // The page's name, as the top-level page refers to it: edgeprobe-check(1).
            let title = format!("edgeprobe-{}", sub.get_name());
            sub.clone().name(title)
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| AppError::Internal(format!("cannot render the man page: {e}")))?;
    write_atomically("-", &out)?;
    Ok(0)
}

/// `--output-file json` is almost always `iotedge check -o json` muscle memory: refuse it
/// rather than write the report into a file named like a format.
fn check_output_file(path: Option<&str>) -> Result<(), AppError> {
    let Some(path) = path else { return Ok(()) };
    let formats = <Output as clap::ValueEnum>::value_variants();
    if formats.iter().any(|f| {
        clap::ValueEnum::to_possible_value(f)
            .is_some_and(|v| v.get_name().eq_ignore_ascii_case(path))
    }) {
        return Err(usage(format!(
            "--output-file {path}: that is a format name; use -o {path} for the format (or --output-file ./{path} for a file of that name)"
        )));
    }
    Ok(())
}

/// `check --dry-run`: the checks that would run, with their resolved hosts and ports, and why
/// the others would not. No probe is sent.
pub fn dry_run(args: &CheckArgs) -> Result<String, AppError> {
    let mut notes = Vec::new();
    let catalog = load_catalog(args.checks_dir.as_deref(), &args.vars)?;
    let cfg = load_config(args, &mut notes)?;
    let mut inputs = gather(args, cfg.as_ref(), None)?;
    provisioning_state(args, cfg.as_ref(), &mut inputs, &mut notes)?;
    something_to_check(args, cfg.as_ref(), &inputs)?;
    let mut planned = plan(&catalog, args, &inputs.vars)?;
    let registries =
        crate::registries::registries(&args.registry, cfg.as_ref(), &inputs.vars, &mut notes)?;
    planned.extend(crate::registries::plan(&registries, |id| {
        selected(args, id)
    }));
    let width = planned.iter().map(|p| p.def.id.len()).max().unwrap_or(10);
    let mut out = String::new();
    if let Some(c) = &cfg {
        notes.insert(0, format!("the device configuration is {}", c.source));
    }
    for note in &notes {
        out.push_str(&format!("note: {note}\n"));
    }
    for p in &planned {
        let line = match &p.plan {
            Plan::Run(t) => {
                let port = t.port.map(|p| format!(":{p}")).unwrap_or_default();
                let proxy = match &inputs.proxy {
                    Some(proxy) if p.def.protocol.proxiable() => {
                        format!(" via {}", proxy.redacted())
                    }
                    _ => String::new(),
                };
                format!("run   {:<width$}  {}{port}{proxy}", p.def.id, t.host)
            }
            Plan::Skip(o) => format!("skip  {:<width$}  {}", p.def.id, o.message),
        };
        out.push_str(&line);
        out.push('\n');
    }
    if inputs.dps.is_some() && !inputs.vars.contains_key("iothub_hostname") {
        out.push_str("then  the iothub-* checks, against the hub DPS's status lookup names\n");
    }
    for d in DERIVED.iter().filter(|d| selected(args, d.id)) {
        out.push_str(&format!(
            "then  {:<width$}  derived from {}\n",
            d.id, d.from
        ));
    }
    Ok(out)
}

/// No configuration and no flag naming anything to check is a usage error, not a green run.
fn something_to_check(
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

/// Renders the report in a format; colour only when asked.
pub fn render(report: &RunReport, args: &CheckArgs, color: bool) -> String {
    match args.output {
        Output::Json => JsonRenderer.render(report),
        Output::Text => TextRenderer {
            color,
            verbose: args.verbose,
        }
        .render(report),
        Output::Junit => JunitRenderer.render(report),
        Output::Prometheus => PrometheusRenderer.render(report),
        Output::Html => HtmlRenderer.render(report),
    }
}

/// Writes `bytes` to `path` so that a reader never sees half a file and nothing the user
/// had is lost to a failed write (see [`crate::safe_write`]). `-` is stdout.
pub fn write_atomically(path: &str, bytes: &[u8]) -> Result<(), AppError> {
    if path == "-" {
        let mut out = std::io::stdout().lock();
        return match out.write_all(bytes).and_then(|_| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(AppError::Internal(format!("cannot write to stdout: {e}"))),
        };
    }
    crate::safe_write::write(
        std::path::Path::new(path),
        bytes,
        crate::safe_write::WriteOptions::REPORT,
    )
    .map_err(|e| usage(format!("--output-file {path}: {e}")))
}

/// Writes the report to stdout.
pub fn emit(report: &RunReport, args: &CheckArgs) -> Result<(), AppError> {
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let text = render(report, args, color);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not our failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(AppError::Internal(format!("cannot write the report: {e}"))),
    }
}

/// 0 the device can run, 1 it cannot: the report's readiness, which every renderer states.
pub fn exit_code(report: &RunReport) -> u8 {
    u8::from(!report.readiness.ready)
}

/// `--var NAME=VALUE`: the user's own template variables; run variables keep their meaning.
pub fn user_vars(raw: &[String]) -> Result<Vec<(String, String)>, AppError> {
    raw.iter()
        .map(|r| {
            let shown: String = r.chars().take(64).collect();
            let (name, value) = r
                .split_once('=')
                .ok_or_else(|| usage(format!("--var {shown:?}: expected NAME=VALUE")))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(usage(format!(
                    "--var {shown:?}: NAME is lowercase letters, digits and _"
                )));
            }
            if edgeprobe_core::catalog::RUN_VARS.contains(&name) {
                return Err(usage(format!(
                    "--var {name}: the run sets {name} itself (use its own flag)"
                )));
            }
            let value = value.trim();
            if value.is_empty()
                || value.len() > 253
                || value.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(usage(format!(
                    "--var {name}: VALUE must be a non-empty name without spaces"
                )));
            }
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

fn load_catalog(dir: Option<&std::path::Path>, vars: &[String]) -> Result<Catalog, AppError> {
    let mut catalog =
        Catalog::builtin().map_err(|e| AppError::Internal(format!("built-in catalog: {e}")))?;
    catalog.allow_vars(user_vars(vars)?.into_iter().map(|(name, _)| name));
    if let Some(dir) = dir {
        catalog
            .add_dir(dir)
            .map_err(|e| AppError::Usage(format!("--checks-dir: {e}")))?;
    }
    Ok(catalog)
}

fn list(args: &ListArgs) -> Result<u8, AppError> {
    let catalog = load_catalog(args.checks_dir.as_deref(), &args.vars)?;
    let mut out = String::new();
    let width = catalog
        .checks()
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(10)
        .max(DERIVED.iter().map(|d| d.id.len()).max().unwrap_or(0));
    for c in catalog.checks() {
        let needs = c.needs();
        let when = if needs.is_empty() {
            "always".to_owned()
        } else {
            format!("when {} is known", needs.join(", "))
        };
        let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
        out.push_str(&format!(
            "{:<width$}  {:<7} {:<8} {}{port}  {}{}  [{when}; {}]\n",
            c.id,
            c.endpoint.as_str(),
            c.protocol.as_str(),
            c.host,
            c.title,
            if c.required { " (required)" } else { "" },
            c.source
        ));
    }
    for d in &DERIVED {
        out.push_str(&format!(
            "{:<width$}  {:<7} {:<8} -  {}{}  [derived from {}]\n",
            d.id,
            d.endpoint.as_str(),
            d.protocol.as_str(),
            d.title,
            if d.required { " (required)" } else { "" },
            d.from
        ));
    }
    out.push_str(&crate::registries::list_lines(width));
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(0)
}

/// Everything `check` needs, validated.
struct Inputs {
    vars: Vars,
    /// The extra trusted roots as PEM, to hand on to the container vantage.
    bundle_pem: String,
    identity: Option<DeviceIdentity>,
    dps: Option<DpsIdentity>,
    tls: TlsSettings,
    overrides: Overrides,
    proxy: Option<ProxyConfig>,
    no_proxy: String,
    configured: Option<UpstreamProtocol>,
}

impl Inputs {
    /// A DPS device's hub and device id, from DPS or from the identity service's state: the
    /// hub checks target them, authenticated with the DPS key (the device key DPS knows).
    fn assign_hub(&mut self, hub: String, device_id: String) {
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

fn usage(msg: impl Into<String>) -> AppError {
    AppError::Usage(msg.into())
}

/// Reads the device's IoT Edge configuration: `--config`, else the default paths. A file
/// named on the command line must load; a default one that cannot be read is fatal only
/// when the flags do not say which hub to check.
fn load_config(args: &CheckArgs, notes: &mut Vec<String>) -> Result<Option<EdgeConfig>, AppError> {
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

fn gather(
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
    let mut tls = TlsSettings::new(&bundle, &bundle_name, true)
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

/// A DPS device whose hub no flag names: take the hub it was assigned from the identity
/// service's state, so the hub checks run beside the DPS checks (and even when DPS cannot be
/// reached). Without usable state the hub comes from DPS's status lookup later. Returns the
/// hub the state named.
fn provisioning_state(
    args: &CheckArgs,
    cfg: Option<&EdgeConfig>,
    inputs: &mut Inputs,
    notes: &mut Vec<String>,
) -> Result<Option<String>, AppError> {
    if inputs.dps.is_none() || inputs.vars.contains_key("iothub_hostname") {
        if args.identity_state.is_some() {
            notes.push(
                if inputs.dps.is_none() {
                    "--identity-state was not used: the device is not provisioned by DPS"
                } else {
                    "--identity-state was not used: the flags name the hub"
                }
                .into(),
            );
        }
        return Ok(None);
    }
    // Ad-hoc DPS flags without a configuration: this machine's state is not the device's.
    let Some(path) = state_path(args, cfg) else {
        return Ok(None);
    };
    let fallback = "the hub comes from DPS's registration status lookup";
    match identity_state::read(&path) {
        Ok(ProvisioningState::Assigned(a)) => {
            if !is_host_name(&a.hub) {
                return Err(usage(format!(
                    "{}: hub_name {:?} is not a host name",
                    a.source.display(),
                    a.hub
                )));
            }
            notes.push(format!(
                "the identity service's state ({}) says DPS assigned this device to {} as {}; the hub checks use that",
                a.source.display(),
                a.hub,
                a.device_id
            ));
            inputs.assign_hub(a.hub.clone(), a.device_id);
            Ok(Some(a.hub))
        }
        Ok(ProvisioningState::Unprovisioned { source }) => {
            notes.push(format!(
                "{}: the device is not provisioned yet; {fallback}",
                source.display()
            ));
            Ok(None)
        }
        // A file the user named must be usable.
        Err(e) if args.identity_state.is_some() => Err(usage(format!("--identity-state: {e}"))),
        Err(e) => {
            notes.push(format!("no provisioning state: {e}; {fallback}"));
            Ok(None)
        }
    }
}

/// Where the identity service keeps a DPS device's provisioning: `--identity-state`, else
/// the default for the configuration's IoT Edge version (under `--system-root`).
pub fn state_path(args: &CheckArgs, cfg: Option<&EdgeConfig>) -> Option<std::path::PathBuf> {
    match (&args.identity_state, cfg) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(c)) => {
            let default = identity_state::default_path(c.format, c.homedir.as_deref());
            Some(
                args.system_root
                    .join(default.strip_prefix("/").unwrap_or(&default)),
            )
        }
        (None, None) => None,
    }
}

/// Do edgeAgent, aziot-edged, aziot-identityd and the Docker daemon use the same proxy?
/// A mismatch is the classic "the host works but the runtime does not".
fn proxy_consistency(root: &std::path::Path, cfg: Option<&EdgeConfig>) -> Outcome {
    let sources = proxy_sources::discover(root, cfg);
    if sources.len() < 2 {
        return Outcome::skip(
            Reason::NotConfigured,
            "fewer than two runtime components have readable proxy settings to compare",
        );
    }
    let names: Vec<&str> = sources.iter().map(|s| s.component).collect();
    let mismatches = proxy_sources::mismatches(&sources);
    if mismatches.is_empty() {
        return Outcome::new(
            Status::Pass,
            Reason::Ok,
            format!("{} use the same proxy settings", names.join(", ")),
        );
    }
    Outcome::new(Status::Warn, Reason::ProxyMismatch, mismatches.join("; ")).with_fix(
        "give edgeAgent ([agent.env] https_proxy), aziot-edged and aziot-identityd (systemd Environment=https_proxy) and the Docker daemon (daemon.json proxies) the same proxy, then restart them",
    )
}

/// A DNS name or address: at most 253 printable ASCII characters, none that a URL or a
/// terminal would read as something else.
fn is_host_name(h: &str) -> bool {
    !h.trim().is_empty()
        && h.len() <= 253
        && h.bytes().all(|b| b.is_ascii_graphic())
        && !h.contains(['/', '@', '?', '#'])
}

/// IoT Hub device ids: at most 128 printable ASCII characters, no spaces (IoT Hub's rule).
fn device_id_problem(d: &str) -> Option<&'static str> {
    if d.is_empty() {
        Some("is empty")
    } else if d.len() > 128 {
        Some("is longer than 128 characters")
    } else if !d.bytes().all(|b| b.is_ascii_graphic()) {
        Some("holds spaces, control characters or non-ASCII characters")
    } else {
        None
    }
}

/// A value short enough to echo in an error.
fn cut(v: &str) -> String {
    match v.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &v[..i]),
        None => v.to_owned(),
    }
}

fn hint(var: &str) -> &'static str {
    match var {
        "iothub_hostname" => "no IoT Hub host name (--iothub-hostname, --connection-string or the device configuration)",
        "device_id" => "no device id (--device-id)",
        "dps_endpoint" | "id_scope" | "registration_id" => "the device is not provisioned by DPS",
        "parent_hostname" => "the device is not nested (no parent_hostname)",
        "gateway_hostname" => "no gateway to check (--gateway-hostname)",
        "edgehub_hostname" => "not an IoT Edge module (no IOTEDGE_GATEWAYHOSTNAME)",
        _ => "a value it needs is unknown",
    }
}

pub(crate) fn selected(args: &CheckArgs, id: &str) -> bool {
    (args.only.is_empty() || args.only.iter().any(|p| matches_pattern(p, id)))
        && !args.skip.iter().any(|p| matches_pattern(p, id))
}

fn plan(catalog: &Catalog, args: &CheckArgs, vars: &Vars) -> Result<Vec<Planned>, AppError> {
    let ids = catalog.ids();
    for p in args.only.iter().chain(&args.skip) {
        // No id is that long; do not match (or echo) a huge pattern.
        let known = p.len() <= 200
            && (ids.iter().any(|id| matches_pattern(p, id))
                || DERIVED.iter().any(|d| matches_pattern(p, d.id))
                || OTHER_IDS.iter().any(|id| matches_pattern(p, id))
                || crate::registries::known_pattern(p));
        if !known {
            return Err(usage(format!(
                "--only/--skip: {:?} matches no check (see `edgeprobe list`)",
                cut(p)
            )));
        }
    }

    Ok(catalog
        .checks()
        .iter()
        .filter(|c| selected(args, &c.id))
        .map(|c| Planned {
            def: c.clone(),
            plan: match c.resolve(vars) {
                Ok(_) if c.excluded_by(vars).is_some() => Plan::Skip(Outcome::skip(
                    Reason::NotConfigured,
                    match c.excluded_by(vars) {
                        Some("parent_hostname") => "not applicable: the device is nested and reaches IoT Hub through its parent",
                        Some("gateway_hostname") => "not applicable: a downstream device reaches IoT Hub through its gateway",
                        _ => "not applicable here",
                    },
                )),
                Ok(target) => Plan::Run(target),
                Err(missing) => Plan::Skip(Outcome::skip(
                    Reason::NotConfigured,
                    format!("not applicable: {}", hint(&missing)),
                )),
            },
        })
        .collect())
}

/// Runs `check` and returns the report.
/// What a run leaves for a support bundle besides the report.
#[derive(Default)]
pub struct RunFacts {
    /// The configuration file that was read.
    pub config: Option<EdgeConfig>,
    /// The container's /etc/resolv.conf, when the container vantage ran.
    pub container_resolv_conf: Option<String>,
    /// The Docker network's inspect output, when the engine answered.
    pub network_inspect: Option<String>,
    /// Every secret the run knew, to scrub from anything collected.
    pub secrets: Vec<Secret>,
}

/// Runs `check` and returns the report.
pub async fn check(args: &CheckArgs, context: RunContext) -> Result<RunReport, AppError> {
    check_with_facts(args, context)
        .await
        .map(|(report, _)| report)
}

/// Runs `check` and returns the report with the facts a support bundle needs.
pub async fn check_with_facts(
    args: &CheckArgs,
    mut context: RunContext,
) -> Result<(RunReport, RunFacts), AppError> {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let mut deadline = start + Duration::from_secs_f64(args.timeout);
    if let Some(ms) = args.until_unix_ms {
        let until = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let left = until.duration_since(started_at).unwrap_or(Duration::ZERO);
        deadline = deadline.min(start + left);
    }
    let catalog = load_catalog(args.checks_dir.as_deref(), &args.vars)?;
    let cfg = load_config(args, &mut context.notes)?;
    let module = crate::workload::module_identity(args, deadline).await?;
    if let Some(m) = &module {
        context.notes.push(format!(
            "authenticating as the module {}/{} with a token from the workload API at {}",
            m.device_id, m.module_id, m.uri
        ));
    }
    let mut inputs = gather(args, cfg.as_ref(), module.as_ref())?;
    let state_hub = provisioning_state(args, cfg.as_ref(), &mut inputs, &mut context.notes)?;
    something_to_check(args, cfg.as_ref(), &inputs)?;
    if let Some(c) = &cfg {
        context
            .notes
            .push(format!("read the device configuration from {}", c.source));
        context.network = Some(c.moby_runtime.network.name.clone());
    }
    // Validate --only/--skip and the catalog up front, before any probe runs.
    plan(&catalog, args, &inputs.vars)?;
    let registries = crate::registries::registries(
        &args.registry,
        cfg.as_ref(),
        &inputs.vars,
        &mut context.notes,
    )?;
    let registry_plan = crate::registries::plan(&registries, |id| selected(args, id));

    context.proxy = inputs.proxy.as_ref().map(|p| p.redacted());
    context.configured_upstream_protocol = inputs.configured.map(|p| p.as_str().to_owned());
    context.dps = inputs
        .dps
        .as_ref()
        .map(|d| format!("{} at {}", d.id_scope, inputs.vars["dps_endpoint"]));

    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = plan(&catalog, args, &inputs.vars)?.len() + registry_plan.len();
    let progress = crate::progress::Progress::start(done.clone(), total, deadline, !args.quiet);
    let opts = RunOptions {
        deadline,
        budget: deadline.saturating_duration_since(start),
        progress: Some(done),
        concurrency: args.concurrency,
        vantage: Vantage::Host,
    };
    // One resolver for the whole run: every prober below shares its answers.
    let dns = Arc::new(Dns::system(inputs.overrides.clone()));
    // The registries' names are known now: start resolving them (unless a proxy will).
    for p in &registry_plan {
        let proxied = inputs.proxy.is_some()
            && !edgeprobe_probes::proxy::no_proxy_matches(&inputs.no_proxy, &p.def.host);
        if !proxied {
            dns.prefetch(&p.def.host, deadline);
        }
    }
    let prober = |inputs: &Inputs| {
        Arc::new(Prober::new(ProbeSettings {
            dns: dns.clone(),
            tls: inputs.tls.clone(),
            identity: inputs.identity.clone(),
            dps: inputs.dps.clone(),
            proxy: inputs.proxy.clone(),
            no_proxy: inputs.no_proxy.clone(),
            no_auth: args.no_auth,
            registries: registries.iter().map(|r| r.access.clone()).collect(),
            credential_hosts: [
                "iothub_hostname",
                "dps_endpoint",
                "parent_hostname",
                "gateway_hostname",
                "edgehub_hostname",
            ]
            .iter()
            .filter_map(|v| inputs.vars.get(*v).cloned())
            .collect(),
        }))
    };

    // The container side (engine, network, probe image, then the run) is prepared beside
    // the host's probes: building the probe image on a first run takes no time from them.
    let container_inputs = vantage::ContainerInputs {
        vars: inputs
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        credentials: inputs.identity.as_ref().map(|i| i.credentials.clone()),
        sas_key: match inputs.identity.as_ref().map(|i| &i.credentials) {
            Some(Credentials::SasKey(k)) => Some(k.expose().to_owned()),
            _ => inputs
                .dps
                .as_ref()
                .and_then(|d| d.key.as_ref())
                .map(|k| k.expose().to_owned()),
        },
        trust_pem: inputs.bundle_pem.clone(),
        proxy_url: inputs
            .proxy
            .as_ref()
            .map(|p| p.url_with_credentials().expose().to_owned()),
        no_proxy: inputs.no_proxy.clone(),
        configured: inputs.configured.map(|p| p.as_str().to_owned()),
    };
    let mut container_notes = Vec::new();
    // The engine, once known, so that Ctrl-C can remove what the container side started.
    let engine_slot: std::sync::Mutex<Option<edgeprobe_docker::Engine>> = Default::default();
    let notes = &mut context.notes;
    // The registry checks depend on nothing the run learns: they start now, beside the DPS
    // lookup and the rest, and each data endpoint right after its registry.
    let registry_prober = prober(&inputs);
    let registries = crate::registries::run(registry_plan, registry_prober, &opts, |id| {
        selected(args, id)
    });
    // A DPS device learns its hub from DPS: look it up first (the status lookup, never a
    // registration), then run everything else against the assigned hub. Other tools skip
    // the hub checks on DPS devices; this is how we do not.
    let hub_side = async {
        let mut results = Vec::new();
        if inputs.dps.is_some()
            && !inputs.vars.contains_key("iothub_hostname")
            && selected(args, DPS_LOOKUP_ID)
        {
            let lookup: Vec<Planned> = plan(&catalog, args, &inputs.vars)?
                .into_iter()
                .filter(|p| p.def.id == DPS_LOOKUP_ID)
                .collect();
            results = runner::run_all(lookup, prober(&inputs), &opts).await;
            let learned: Vec<(String, String)> = results
                .iter()
                .flat_map(|r| r.outcome.learned.clone())
                .collect();
            for (k, v) in learned {
                inputs.vars.entry(k).or_insert(v);
            }
            if let (Some(hub), Some(device)) = (
                inputs.vars.get("iothub_hostname").cloned(),
                inputs.vars.get("device_id").cloned(),
            ) {
                notes.push(format!(
                    "DPS assigned this device to {hub} as {device}; the hub checks use that"
                ));
                inputs.assign_hub(hub, device);
            }
        }
        let rest: Vec<Planned> = plan(&catalog, args, &inputs.vars)?
            .into_iter()
            .filter(|p| !results.iter().any(|r: &CheckResult| r.def.id == p.def.id))
            .collect();
        results.extend(runner::run_all(rest, prober(&inputs), &opts).await);
        Ok::<_, AppError>(results)
    };
    let host = async {
        let (results, registry_results) = tokio::join!(hub_side, registries);
        let mut results = results?;
        results.extend(registry_results);
        Ok::<_, AppError>(results)
    };
    let container = async {
        let Some(side) =
            vantage::prepare(args, cfg.as_ref(), &mut container_notes, deadline).await?
        else {
            return Ok((None, None));
        };
        *engine_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(side.engine.clone());
        let outcome = vantage::run(&side, args, container_inputs, deadline).await;
        Ok::<_, AppError>((Some(side), Some(outcome)))
    };
    // A container side that must run and cannot (`--vantage container`) ends the run at once.
    let work = async { tokio::try_join!(host, container) };
    let outcome = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => {
            let engine = engine_slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(engine) = engine {
                engine.cleanup().await;
            }
            return Err(AppError::Interrupted);
        }
    };
    let (host_results, (side, container_outcome)) = outcome?;
    context.notes.append(&mut container_notes);
    if let Some(side) = &side {
        // Wait for the probe container's removal before reporting.
        side.engine.cleanup().await;
    }
    progress.finish().await;
    let mut results = host_results;
    if let Some(state_hub) = &state_hub {
        // DPS may have moved the device since: the runtime keeps its state until it
        // reprovisions, so that is what was checked, but the user should know.
        let looked_up = results
            .iter()
            .filter(|r| r.def.id == DPS_LOOKUP_ID)
            .flat_map(|r| r.outcome.learned.iter())
            .find(|(k, _)| k == "iothub_hostname")
            .map(|(_, hub)| hub.clone());
        if let Some(now) = looked_up.filter(|hub| hub != state_hub) {
            context.notes.push(format!(
                "DPS's status lookup names {now}, but the device stays on {state_hub} (its provisioning state) until it reprovisions; the hub checks used {state_hub}"
            ));
        }
    }
    let firewall = match &container_outcome {
        Some(c) if c.error.is_none() => {
            vantage::firewall_rules(Instant::now() + Duration::from_millis(300)).await
        }
        _ => Vec::new(),
    };
    let mut container_run = None;
    if let Some(c) = container_outcome {
        if let Some(e) = &c.error {
            context
                .notes
                .push(format!("the container vantage failed: {e}"));
        }
        // Image pulls are the engine's, on the host: container registry results say nothing.
        results.extend(
            c.results
                .into_iter()
                .filter(|r| !crate::registries::is_registry_check(r)),
        );
        container_run = c.run;
    }
    // Keep catalog order whatever the stages were.
    let order: Vec<&str> = catalog.checks().iter().map(|c| c.id.as_str()).collect();
    results.sort_by_key(|r| {
        (
            order
                .iter()
                .position(|id| *id == r.def.id)
                .unwrap_or(usize::MAX),
            r.vantage.clone(),
        )
    });

    context.iothub_hostname = inputs.vars.get("iothub_hostname").cloned();
    context.device_id = inputs.vars.get("device_id").cloned();
    context.parent_hostname = inputs.vars.get("parent_hostname").cloned();
    context.gateway_hostname = inputs.vars.get("gateway_hostname").cloned();

    // The upstream that matters: the gateway for a downstream device, the parent for a
    // nested device, IoT Hub otherwise.
    let upstream = if inputs.vars.contains_key("gateway_hostname") {
        Endpoint::Gateway
    } else if inputs.vars.contains_key("parent_hostname") {
        Endpoint::Parent
    } else {
        Endpoint::Iothub
    };
    // The one boundary: whatever came from peers and errors, on the host or in the
    // container, loses every secret the run knew before the verdict quotes it.
    let secrets = run_secrets(args, &inputs, cfg.as_ref());
    let scrubber = Scrubber::of(&secrets);
    scrubber.scrub_results(&mut results);
    let protocol_selected = |up: UpstreamProtocol| {
        catalog
            .checks()
            .iter()
            .any(|c| c.endpoint == upstream && c.protocol == up.protocol() && selected(args, &c.id))
    };
    let verdict = verdict::judge(&results, upstream, inputs.configured, protocol_selected);
    if !UpstreamProtocol::ALL.into_iter().any(protocol_selected) {
        context.notes.push(
            "the selection leaves no upstream protocol check: no UpstreamProtocol was judged"
                .into(),
        );
    }
    for r in &mut results {
        verdict::align_fix(r, &verdict, upstream);
    }
    let offsets: Vec<f64> = results
        .iter()
        .filter_map(|r| r.outcome.clock_offset_secs)
        .collect();
    for d in &DERIVED {
        if !selected(args, d.id) {
            continue;
        }
        let outcome = match d.id {
            CONFIG_UPSTREAM_ID if upstream == Endpoint::Gateway => {
                verdict::downstream_outcome(&verdict)
            }
            CONFIG_UPSTREAM_ID => verdict::configured_protocol_outcome(&verdict),
            PROXY_CONSISTENCY_ID => proxy_consistency(&args.system_root, cfg.as_ref()),
            _ => edgeprobe_iotedge::clock::clock_outcome(&offsets),
        };
        results.push(CheckResult {
            def: d.def(),
            target: None,
            vantage: Vantage::Host,
            outcome,
            duration: Duration::ZERO,
        });
    }
    if let Some(side) = &side {
        let mut derived = vec![(
            vantage::DOCKER_NETWORK_ID,
            vantage::network_outcome(side, cfg.as_ref(), container_run.as_ref()),
        )];
        if container_run.is_some() {
            derived.push((
                vantage::VANTAGE_COMPARE_ID,
                vantage::compare_outcome(&results, side, container_run.as_ref(), &firewall),
            ));
        }
        for (id, outcome) in derived {
            if selected(args, id) {
                results.push(CheckResult {
                    def: vantage::def(id),
                    target: None,
                    vantage: side.vantage(),
                    outcome,
                    duration: Duration::ZERO,
                });
            }
        }
    }
    if selected(args, gateway_view::GATEWAY_INBOUND_ID) {
        let uri = cfg.as_ref().and_then(|c| c.moby_runtime.uri.clone());
        let view = gateway_view::checks(
            uri.as_deref(),
            &args.edgehub_container,
            &args.system_root.join("proc"),
            deadline + runner::GRACE,
        )
        .await;
        for (def, outcome) in view {
            if selected(args, &def.id) {
                results.push(CheckResult {
                    def,
                    target: None,
                    vantage: Vantage::Host,
                    outcome,
                    duration: Duration::ZERO,
                });
            }
        }
    }
    let readiness = verdict::readiness(
        &results,
        &verdict,
        verdict::ReadinessPolicy {
            warnings_as_errors: args.warnings_as_errors,
            only: !args.only.is_empty(),
        },
    );
    let vantage_label = match &side {
        Some(side) => format!("host+{}", side.vantage()),
        None => Vantage::Host.to_string(),
    };
    let network_inspect = match &side {
        Some(side) => side
            .engine
            .network_inspect_json(&side.network, Instant::now() + Duration::from_millis(500))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    // The boundary again, for the derived checks and the notes.
    scrubber.scrub_results(&mut results);
    for note in &mut context.notes {
        *note = scrubber.scrub(note);
    }
    let facts = RunFacts {
        config: cfg,
        container_resolv_conf: container_run.as_ref().and_then(|r| r.resolv_conf.clone()),
        network_inspect,
        secrets,
    };
    Ok((
        RunReport {
            started_at,
            duration: start.elapsed(),
            vantage: vantage_label,
            context,
            results,
            verdict,
            readiness,
        },
        facts,
    ))
}

/// Every secret the run knows, to scrub from reports and bundles.
fn run_secrets(args: &CheckArgs, inputs: &Inputs, cfg: Option<&EdgeConfig>) -> Vec<Secret> {
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

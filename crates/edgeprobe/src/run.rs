//! From flags to a report: validate every input up front (bad input is exit 2 with one
//! line naming the culprit), plan the catalog against what is known, run it under one
//! deadline, judge the upstream protocols, render.

use std::io::{IsTerminal as _, Write as _};

use edgeprobe_core::catalog::{Catalog, CheckDef};
use edgeprobe_core::runner::Plan;
use edgeprobe_core::{Endpoint, Protocol};
use edgeprobe_report::html::HtmlRenderer;
use edgeprobe_report::json::JsonRenderer;
use edgeprobe_report::junit::JunitRenderer;
use edgeprobe_report::prometheus::PrometheusRenderer;
use edgeprobe_report::text::TextRenderer;
use edgeprobe_report::{Renderer, RunContext, RunReport};

use crate::cli::{CheckArgs, Cli, Command, ListArgs, ManArgs, Output};
use crate::request::{
    gather, load_config, provisioning_state, something_to_check, usage, user_vars,
};
use crate::stages::{check, plan, selected};
use crate::{demo, AppError};

/// Id of the derived check that judges the configured UpstreamProtocol.
pub const CONFIG_UPSTREAM_ID: &str = "config-upstream-protocol";
/// The DPS registration status lookup, which tells a DPS device its hub.
pub(crate) const DPS_LOOKUP_ID: &str = "dps-https";
/// Id of the derived check that compares the proxy each runtime component uses.
pub const PROXY_CONSISTENCY_ID: &str = "proxy-consistency";
/// Id of the derived check that compares the device clock with the services'.
pub const CLOCK_ID: &str = "device-clock";

/// Checks produced outside the catalog (the container vantage and the gateway view).
pub(crate) const OTHER_IDS: [&str; 6] = crate::check_ids::PRODUCED_IDS;

/// A check computed from the results of the others.
pub(crate) struct Derived {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    pub(crate) endpoint: Endpoint,
    pub(crate) protocol: Protocol,
    pub(crate) required: bool,
    pub(crate) from: &'static str,
}

pub(crate) const DERIVED: [Derived; 3] = [
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
    pub(crate) fn def(&self) -> CheckDef {
        CheckDef::derived(self.id, self.title, self.endpoint, self.protocol).required(self.required)
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
pub(crate) fn man(args: &ManArgs) -> Result<u8, AppError> {
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
pub(crate) fn check_output_file(path: Option<&str>) -> Result<(), AppError> {
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

pub(crate) fn load_catalog(
    dir: Option<&std::path::Path>,
    vars: &[String],
) -> Result<Catalog, AppError> {
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

pub(crate) fn list(args: &ListArgs) -> Result<u8, AppError> {
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
    out.push_str(&crate::check_ids::list_lines(width));
    out.push_str(&crate::registries::list_lines(width));
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(0)
}

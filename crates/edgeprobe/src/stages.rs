//! The run: plan the catalog against what is known, run it under one deadline (a DPS
//! lookup first when the hub comes from DPS, the container vantage beside the host's
//! probes, registry data endpoints once known, then the derived checks), judge the
//! upstream protocols, and hand the report back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use edgeprobe_core::catalog::{matches_pattern, Catalog, Vars};
use edgeprobe_core::runner::{self, CheckResult, Plan, Planned, RunOptions};
use edgeprobe_core::{Endpoint, Outcome, Reason, Status, Vantage};
use edgeprobe_iotedge::config::EdgeConfig;
use edgeprobe_iotedge::identity::Credentials;
use edgeprobe_iotedge::proxy_sources;
use edgeprobe_iotedge::secret::{Scrubber, Secret};
use edgeprobe_iotedge::verdict::{self, UpstreamProtocol};
use edgeprobe_probes::dns::Dns;
use edgeprobe_probes::{ProbeSettings, Prober};
use edgeprobe_report::{RunContext, RunReport};
use tokio::time::Instant;

use crate::cli::CheckArgs;
use crate::request::{
    cut, gather, hint, load_config, provisioning_state, run_secrets, something_to_check, usage,
    Inputs,
};
use crate::run::{
    load_catalog, CONFIG_UPSTREAM_ID, DERIVED, DPS_LOOKUP_ID, OTHER_IDS, PROXY_CONSISTENCY_ID,
};
use crate::{gateway_view, vantage, AppError};

/// Do edgeAgent, aziot-edged, aziot-identityd and the Docker daemon use the same proxy?
/// A mismatch is the classic "the host works but the runtime does not".
pub(crate) fn proxy_consistency(root: &std::path::Path, cfg: Option<&EdgeConfig>) -> Outcome {
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

pub(crate) fn selected(args: &CheckArgs, id: &str) -> bool {
    (args.only.is_empty() || args.only.iter().any(|p| matches_pattern(p, id)))
        && !args.skip.iter().any(|p| matches_pattern(p, id))
}

pub(crate) fn plan(
    catalog: &Catalog,
    args: &CheckArgs,
    vars: &Vars,
) -> Result<Vec<Planned>, AppError> {
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
    context.trust_roots = Some(inputs.tls.roots.describe());
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
            connector: None,
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
            for r in &results {
                if let Some(hub) = r.outcome.assigned_hub() {
                    inputs
                        .vars
                        .entry("iothub_hostname".into())
                        .or_insert(hub.into());
                }
                if let Some(device) = r.outcome.assigned_device_id() {
                    inputs
                        .vars
                        .entry("device_id".into())
                        .or_insert(device.into());
                }
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
            .find_map(|r| r.outcome.assigned_hub())
            .map(str::to_owned);
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

//! The container registry checks, as the Moby engine needs them to pull module images:
//! which registries (mcr.microsoft.com, the configured agent image's, `[agent.config.auth]`'s
//! server, `--registry`; the parent instead of mcr on a nested device), their checks
//! `registry-{slug}`, and the second stage: each data endpoint the registries redirected blob
//! downloads to becomes a check `registry-data-{slug}`, run right after, under the same
//! deadline. `/v2/` working while the data endpoint is blocked is the classic "pulls start,
//! then stall"; the registry check's message says so. A data endpoint check the run's
//! deadline cut short (reason `deadline`) says nothing about the endpoint, and never "stall".

use std::sync::Arc;

use futures_util::stream::{self, StreamExt as _};

use edgeprobe_core::catalog::{matches_pattern, CheckDef, Target, Vars};
use edgeprobe_core::runner::{self, CheckResult, Plan, Planned, RunOptions};
use edgeprobe_core::{Endpoint, Protocol, Status};
use edgeprobe_iotedge::config::EdgeConfig;
use edgeprobe_probes::registry::{self, ImageRef, RegistryAccess};
use edgeprobe_probes::Prober;

use crate::AppError;

/// Microsoft's container registry: IoT Edge's own images come from it.
pub const MCR: &str = "mcr.microsoft.com";
/// Id prefix of the registry checks.
pub const PREFIX: &str = "registry-";
/// Id prefix of the data endpoint checks.
pub const DATA_PREFIX: &str = "registry-data-";

/// One registry to check.
#[derive(Clone, Debug)]
pub struct Registry {
    pub access: RegistryAccess,
    /// Named by the configuration or a flag (a failure then means pulls fail).
    pub required: bool,
}

impl Registry {
    pub fn id(&self) -> String {
        format!("{PREFIX}{}", slug(&self.authority()))
    }

    fn authority(&self) -> String {
        registry::host_port(&self.access.host, self.access.port, 443)
    }

    fn def(&self) -> CheckDef {
        CheckDef::derived(
            self.id(),
            format!("Container registry {} (Registry API v2)", self.authority()),
            Endpoint::Registry,
            Protocol::Registry,
        )
        .at(self.access.host.clone(), Some(self.access.port))
        .required(self.required)
    }
}

/// `host[:port]` → kebab-case: lowercase, every run of other characters one '-'.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// Does an `--only`/`--skip` pattern name registry checks? Their ids are made at run time
/// (the data endpoints only once the registries answered), so any `registry-` id counts.
pub fn known_pattern(p: &str) -> bool {
    matches_pattern(p, PREFIX) || p.starts_with(PREFIX)
}

/// The registry part of an image or a server address, on a nested device's `$upstream`
/// resolved to the parent. `None` for Docker Hub and unresolvable names.
fn server(raw: &str, vars: &Vars) -> Result<Option<(String, u16)>, String> {
    let raw = raw.trim();
    let raw = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .unwrap_or(raw);
    let raw = raw.split('/').next().unwrap_or(raw);
    let (host, port) =
        registry::split_host_port(raw, 443).ok_or_else(|| format!("{raw:?} is not HOST[:PORT]"))?;
    if host.eq_ignore_ascii_case("$upstream") {
        return Ok(vars.get("parent_hostname").map(|p| (p.clone(), port)));
    }
    if ["docker.io", "index.docker.io", "registry-1.docker.io"]
        .iter()
        .any(|h| host.eq_ignore_ascii_case(h))
    {
        return Ok(None);
    }
    if host.is_empty() || host.contains(['$', ' ', '@', '?', '#']) {
        return Err(format!("{raw:?} is not HOST[:PORT]"));
    }
    Ok(Some((host.to_ascii_lowercase(), port)))
}

/// The registries to check, in order: mcr (or the parent of a nested device) when the
/// device's IoT Edge configuration was read (the runtime pulls its system modules from
/// there), the agent image's, the auth server's, then `--registry`. An ad-hoc run without a
/// configuration checks only the registries named with `--registry`, so it never reaches
/// out to a registry nobody asked about.
pub fn registries(
    flags: &[String],
    cfg: Option<&EdgeConfig>,
    vars: &Vars,
    notes: &mut Vec<String>,
) -> Result<Vec<Registry>, AppError> {
    let mut out: Vec<Registry> = Vec::new();
    fn add(out: &mut Vec<Registry>, host: String, port: u16, required: bool) -> &mut Registry {
        let i = match out
            .iter()
            .position(|r| r.access.host == host && r.access.port == port)
        {
            Some(i) => i,
            None => {
                out.push(Registry {
                    access: RegistryAccess {
                        host,
                        port,
                        ..RegistryAccess::default()
                    },
                    required: false,
                });
                out.len() - 1
            }
        };
        out[i].required |= required;
        &mut out[i]
    }
    // A nested device pulls through its parent (`$upstream:443`), not from mcr.
    if cfg.is_some() {
        match vars.get("parent_hostname") {
            Some(parent) => add(&mut out, parent.clone(), 443, false),
            None => add(&mut out, MCR.to_owned(), 443, false),
        };
    }
    let source = cfg.map(|c| c.source.clone()).unwrap_or_default();
    if let Some(image) = cfg.and_then(|c| c.agent_image.as_deref()) {
        match ImageRef::parse(image) {
            Some(r) => match r.registry.as_deref().map(|s| server(s, vars)) {
                None | Some(Ok(None)) if r.registry.as_deref().is_some_and(|s| s.starts_with('$')) => {
                    notes.push(format!("{source}: agent.config.image {image:?} pulls through the parent ($upstream), but no parent_hostname is known: its registry is not checked"));
                }
                None | Some(Ok(None)) => notes.push(format!(
                    "{source}: agent.config.image {image:?} comes from Docker Hub, which is not checked"
                )),
                Some(Ok(Some((host, port)))) => {
                    add(&mut out, host, port, true).access.image = Some(r);
                }
                Some(Err(e)) => notes.push(format!(
                    "{source}: agent.config.image: {e}; its registry is not checked"
                )),
            },
            None => notes.push(format!("{source}: agent.config.image is empty")),
        }
    }
    for cred in cfg
        .map(|c| c.registry_credentials.as_slice())
        .unwrap_or_default()
    {
        match server(&cred.server, vars) {
            Ok(Some((host, port))) => {
                let r = add(&mut out, host, port, true);
                r.access.username = cred.username.clone();
                r.access.password = cred.password.clone();
            }
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "{source}: agent.config.auth.serveraddress: {e}; not checked"
            )),
        }
    }
    for flag in flags {
        match server(flag, vars) {
            Ok(Some((host, port))) if !flag.contains('/') => {
                add(&mut out, host, port, true);
            }
            Ok(_) if flag.trim().starts_with('$') => {
                return Err(AppError::Usage(format!(
                    "--registry {flag:?}: $upstream needs --parent-hostname (or the configuration's parent_hostname)"
                )))
            }
            Ok(_) => {
                return Err(AppError::Usage(format!(
                    "--registry {flag:?}: give a registry host (HOST[:PORT]); Docker Hub is not checked"
                )))
            }
            Err(e) => return Err(AppError::Usage(format!("--registry: {e}"))),
        }
    }
    Ok(out)
}

/// The registry checks the selection keeps.
pub fn plan(regs: &[Registry], selected: impl Fn(&str) -> bool) -> Vec<Planned> {
    regs.iter()
        .filter(|r| selected(&r.id()))
        .map(|r| Planned {
            def: r.def(),
            plan: Plan::Run(Target {
                host: r.access.host.clone(),
                port: Some(r.access.port),
            }),
        })
        .collect()
}

/// Runs the registry checks, each followed at once by a check of the data endpoint it
/// learned (the first registry to name an endpoint checks it; a slow registry holds back no
/// other's), then tells each registry check how its data endpoint fared. All under
/// `opts.deadline`.
pub async fn run(
    planned: Vec<Planned>,
    prober: Arc<Prober>,
    opts: &RunOptions,
    selected: impl Fn(&str) -> bool,
) -> Vec<CheckResult> {
    if planned.is_empty() {
        return Vec::new();
    }
    let data_opts = RunOptions {
        progress: None,
        ..opts.clone()
    };
    // Data endpoint ids already claimed by a registry's chain.
    let claimed = std::sync::Mutex::new(Vec::<String>::new());
    let chains: Vec<(usize, CheckResult, Vec<CheckResult>)> =
        stream::iter(planned.into_iter().enumerate())
            .map(|(index, planned)| {
                let (prober, claimed, selected) = (prober.clone(), &claimed, &selected);
                let data_opts = &data_opts;
                async move {
                    let r = runner::run_all(vec![planned], prober.clone(), opts)
                        .await
                        .remove(0);
                    let data: Vec<Planned> = data_checks(&r, selected)
                        .into_iter()
                        .filter(|p| {
                            let mut claimed = claimed.lock().unwrap_or_else(|e| e.into_inner());
                            let new = !claimed.contains(&p.def.id);
                            if new {
                                claimed.push(p.def.id.clone());
                            }
                            new
                        })
                        .collect();
                    let data = runner::run_all(data, prober, data_opts).await;
                    (index, r, data)
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
    let mut chains = chains;
    chains.sort_by_key(|(index, _, _)| *index);
    let mut results = Vec::with_capacity(chains.len());
    let mut data_results = Vec::new();
    for (_, r, data) in chains {
        results.push(r);
        data_results.extend(data);
    }
    // A data endpoint is required when any registry that uses it is.
    for d in &mut data_results {
        let endpoint = registry::host_port(&d.def.host, d.def.port.unwrap_or(443), 443);
        d.def.required |= results
            .iter()
            .any(|r| r.def.required && r.outcome.data_endpoints().any(|e| e == endpoint));
    }
    for d in &mut data_results {
        let endpoint = registry::host_port(&d.def.host, d.def.port.unwrap_or(443), 443);
        let users: Vec<String> = results
            .iter()
            .filter(|r| r.outcome.data_endpoints().any(|e| e == endpoint))
            .map(|r| registry::host_port(&r.def.host, r.def.port.unwrap_or(443), 443))
            .collect();
        let by = users.join(", ");
        if d.outcome.status == Status::Fail {
            d.outcome.message.push_str(&format!(
                " — {by} sends image layer downloads here: pulls will start, then stall"
            ));
            d.outcome.fix = Some(format!(
                "allow outbound TCP {} to {} (a registry data endpoint, e.g. *.data.mcr.microsoft.com, *.azurecr.io, *.blob.core.windows.net) in the firewall and the proxy",
                d.def.port.unwrap_or(443),
                d.def.host
            ));
        } else {
            d.outcome
                .message
                .push_str(&format!(" (the data endpoint of {by})"));
        }
        let cut_short = d.outcome.reason == edgeprobe_core::Reason::Deadline;
        for r in results
            .iter_mut()
            .filter(|r| r.outcome.data_endpoints().any(|e| e == endpoint))
        {
            if d.outcome.status == Status::Fail {
                r.outcome.message.push_str(&format!(
                    "; but the data endpoint {endpoint} is unreachable ({}, see {}): image pulls will start, then stall",
                    d.outcome.reason, d.def.id
                ));
                r.outcome.fix.get_or_insert_with(|| {
                    let (host, port) = edgeprobe_probes::registry::split_host_port(&endpoint, 443)
                        .unwrap_or_else(|| (endpoint.clone(), 443));
                    format!("allow outbound TCP {port} to {host} as well as to the registry")
                });
            } else if cut_short {
                r.outcome.message.push_str(&format!(
                    "; its data endpoint {endpoint} was not checked to the end: the run's time ran out (see {})",
                    d.def.id
                ));
            } else {
                r.outcome
                    .message
                    .push_str(&format!(" ({} checks it)", d.def.id));
            }
        }
    }
    // Each data check right after the first registry that uses it.
    let mut ordered = Vec::with_capacity(results.len() + data_results.len());
    for r in results.drain(..) {
        let learned: Vec<String> = r
            .outcome
            .data_endpoints()
            .map(|v| format!("{DATA_PREFIX}{}", slug(v)))
            .collect();
        ordered.push(r);
        for id in learned {
            if let Some(i) = data_results.iter().position(|d| d.def.id == id) {
                ordered.push(data_results.remove(i));
            }
        }
    }
    ordered.extend(data_results);
    ordered
}

/// The data endpoint checks a registry check's outcome asks for (selected ones only).
fn data_checks(r: &CheckResult, selected: &impl Fn(&str) -> bool) -> Vec<Planned> {
    let mut data: Vec<Planned> = Vec::new();
    for value in r.outcome.data_endpoints() {
        let Some((host, port)) = registry::split_host_port(value, 443) else {
            continue;
        };
        let id = format!("{DATA_PREFIX}{}", slug(value));
        if !selected(&id) || data.iter().any(|p| p.def.id == id) {
            continue;
        }
        data.push(Planned {
            def: CheckDef::derived(
                id,
                format!("Registry data endpoint {value} (image layer downloads)"),
                Endpoint::Registry,
                Protocol::Https,
            )
            .at(host.clone(), Some(port))
            .required(r.def.required),
            plan: Plan::Run(Target {
                host,
                port: Some(port),
            }),
        });
    }
    data
}

/// Is this a generated registry check (container vantage results drop them: the engine
/// pulls from the host)?
pub fn is_registry_check(r: &CheckResult) -> bool {
    r.def.endpoint == Endpoint::Registry && r.def.id.starts_with(PREFIX)
}

/// Lines for `edgeprobe list`.
pub fn list_lines(width: usize) -> String {
    format!(
        "{:<width$}  {:<7} {:<8} -  Container registry answers the Registry API and serves the configured agent image's manifest  [derived: mcr.microsoft.com (the parent on a nested device) when a device configuration is read, [agent.config] image's and [agent.config.auth]'s registry, --registry; one per registry]\n\
         {:<width$}  {:<7} {:<8} -  Registry data endpoint (where blob downloads redirect) answers HTTPS  [derived from the registry-* checks' blob redirects]\n",
        "registry-{host}",
        Endpoint::Registry.as_str(),
        Protocol::Registry.as_str(),
        "registry-data-{host}",
        Endpoint::Registry.as_str(),
        Protocol::Https.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(parent: Option<&str>) -> Vars {
        let mut v = Vars::new();
        if let Some(p) = parent {
            v.insert("parent_hostname".into(), p.into());
        }
        v
    }

    #[test]
    fn slugs_are_kebab_case() {
        assert_eq!(slug("mcr.microsoft.com"), "mcr-microsoft-com");
        assert_eq!(slug("My_Reg.example:5000"), "my-reg-example-5000");
        assert_eq!(slug("[::1]:5000"), "1-5000");
    }

    #[test]
    fn without_a_configuration_only_the_flags_count() {
        let mut notes = Vec::new();
        let regs = registries(
            &["reg.example:5000".into(), "mcr.microsoft.com".into()],
            None,
            &vars(None),
            &mut notes,
        )
        .unwrap();
        let ids: Vec<String> = regs.iter().map(Registry::id).collect();
        assert_eq!(
            ids,
            ["registry-reg-example-5000", "registry-mcr-microsoft-com"]
        );
        assert!(regs.iter().all(|r| r.required));
        assert!(registries(&[], None, &vars(None), &mut notes)
            .unwrap()
            .is_empty());
        assert!(registries(&["docker.io".into()], None, &vars(None), &mut notes).is_err());
        assert!(registries(&["a:b".into()], None, &vars(None), &mut notes).is_err());
    }

    #[test]
    fn a_nested_device_pulls_through_its_parent() {
        let mut notes = Vec::new();
        let cfg = edgeprobe_iotedge::config::parse_str(
            "hostname = \"child\"\n",
            "config.toml",
            edgeprobe_iotedge::config::ConfigFormat::Toml,
        )
        .unwrap();
        let regs = registries(&[], Some(&cfg), &vars(Some("parent.lab")), &mut notes).unwrap();
        assert_eq!(regs.len(), 1);
        assert_eq!(regs[0].access.host, "parent.lab");
        assert!(known_pattern("registry-*"));
        assert!(known_pattern("registry-data-x"));
        assert!(!known_pattern("iothub-*"));
    }

    #[test]
    fn the_configuration_names_image_and_credentials() {
        let text = "[agent.config]\nimage = \"$upstream:443/azureiotedge-agent:1.5\"\n\n[agent.config.auth]\nserveraddress = \"$upstream:443\"\nusername = \"u\"\npassword = \"pw-1234\"\n";
        let cfg = edgeprobe_iotedge::config::parse_str(
            text,
            "config.toml",
            edgeprobe_iotedge::config::ConfigFormat::Toml,
        )
        .unwrap();
        let mut notes = Vec::new();
        let regs = registries(&[], Some(&cfg), &vars(Some("parent.lab")), &mut notes).unwrap();
        assert_eq!(regs.len(), 1, "{regs:?}");
        let r = &regs[0];
        assert!(r.required);
        assert_eq!(
            r.access.image.as_ref().unwrap().repository,
            "azureiotedge-agent"
        );
        assert_eq!(r.access.username.as_deref(), Some("u"));
        assert!(r.access.password.is_some());
        // Without a parent, $upstream cannot be resolved: a note, mcr only.
        let regs = registries(&[], Some(&cfg), &vars(None), &mut notes).unwrap();
        assert_eq!(regs.len(), 1);
        assert_eq!(regs[0].access.host, MCR);
        assert!(notes.iter().any(|n| n.contains("$upstream")), "{notes:?}");
        let cfg = edgeprobe_iotedge::config::parse_str(
            "[agent.config]\nimage = \"myacr.azurecr.io/team/agent:2\"\n",
            "config.toml",
            edgeprobe_iotedge::config::ConfigFormat::Toml,
        )
        .unwrap();
        let regs = registries(&[], Some(&cfg), &vars(None), &mut notes).unwrap();
        let ids: Vec<String> = regs.iter().map(Registry::id).collect();
        assert_eq!(
            ids,
            ["registry-mcr-microsoft-com", "registry-myacr-azurecr-io"]
        );
        assert!(!regs[0].required && regs[1].required);
    }
}

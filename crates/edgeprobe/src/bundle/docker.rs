//! What the engine's API says: its versions, the modules' network, and each IoT Edge
//! module's inspect and logs, within the budgets of the engine and of each log.

use tokio::time::Instant;

use super::{entry, Entry, Window, ENGINE_BUDGET, LOG_BUDGET};
use crate::cli::BundleArgs;

/// Through the engine's API: its versions, the modules' network, and each IoT Edge
/// module's inspect and logs. One entry says why when the engine cannot be reached.
pub(super) async fn collect_docker(
    args: &BundleArgs,
    facts: &crate::stages::RunFacts,
    window: Window,
    deadline: Instant,
) -> Vec<Entry> {
    use futures_util::StreamExt as _;
    let network = crate::vantage::network_name(&args.check, facts.config.as_ref());
    let uri = facts
        .config
        .as_ref()
        .and_then(|c| c.moby_runtime.uri.clone());
    let budget = || deadline.min(Instant::now() + ENGINE_BUDGET);
    let mut out = Vec::new();
    let engine = match edgeprobe_docker::Engine::connect(uri.as_deref(), budget()).await {
        Ok(e) => e,
        Err(e) => {
            let why = e.to_string();
            out.push(entry(
                "versions/docker.json",
                "Docker engine API: version",
                Err(why.clone()),
            ));
            out.push(entry(
                "docker/network.json",
                format!("Docker engine API: network inspect {network}"),
                facts.network_inspect.clone().ok_or(why.clone()),
            ));
            out.push(entry(
                "modules/modules.tsv",
                "Docker engine API: containers",
                Err(why),
            ));
            return out;
        }
    };
    out.push(entry(
        "versions/docker.json",
        "Docker engine API: version",
        engine
            .version_json(budget())
            .await
            .map_err(|e| e.to_string()),
    ));
    let net = match &facts.network_inspect {
        Some(json) => Ok(json.clone()),
        None => match engine.network_inspect_json(&network, budget()).await {
            Ok(Some(json)) => Ok(json),
            Ok(None) => Err(format!("the engine has no network named {network}")),
            Err(e) => Err(e.to_string()),
        },
    };
    out.push(entry(
        "docker/network.json",
        format!("Docker engine API: network inspect {network}"),
        net,
    ));
    let selector = edgeprobe_docker::ModuleSelector {
        network: network.clone(),
        name_prefix: args.module_prefix.clone(),
    };
    let how_selected = format!(
        "Docker engine API: containers named edgeAgent or edgeHub, labelled {}={}, or on network {network}",
        edgeprobe_docker::EDGE_OWNER_LABEL.0,
        edgeprobe_docker::EDGE_OWNER_LABEL.1
    );
    let modules = match engine.edge_modules(&selector, budget()).await {
        Ok(m) if m.is_empty() => {
            out.push(entry(
                "modules/modules.tsv",
                how_selected,
                Err("no IoT Edge module container on this engine".into()),
            ));
            return out;
        }
        Ok(m) => m,
        Err(e) => {
            out.push(entry(
                "modules/modules.tsv",
                how_selected,
                Err(e.to_string()),
            ));
            return out;
        }
    };
    out.push(entry(
        "modules/modules.tsv",
        how_selected,
        Ok(modules
            .iter()
            .map(|m| {
                format!(
                    "{}\t{}\t{}\n",
                    m.name,
                    m.id.get(..12).unwrap_or(&m.id),
                    m.selected_by
                )
            })
            .collect()),
    ));
    let log_window = edgeprobe_docker::LogWindow {
        since: window.since,
        until: window.until,
        max_bytes: window.limit,
    };
    let per_module = futures_util::stream::iter(modules)
        .map(|m| {
            let engine = engine.clone();
            async move {
                let inspect = match engine.container_inspect_json(&m.name, budget()).await {
                    Ok(Some(json)) => Ok(json),
                    Ok(None) => Err(format!("the container {} is gone", m.name)),
                    Err(e) => Err(e.to_string()),
                };
                let logs_deadline = deadline.min(Instant::now() + LOG_BUDGET);
                let logs = match engine.container_logs(&m.name, log_window, logs_deadline).await {
                    Ok(l) if l.text.trim().is_empty() && !l.timed_out => {
                        Err(format!("{} logged nothing in the window", m.name))
                    }
                    Ok(l) => {
                        let mut text = String::new();
                        if l.dropped_bytes > 0 {
                            text.push_str(&format!(
                                "[edgeprobe: {} earlier bytes dropped; the last {} KiB are kept]\n",
                                l.dropped_bytes,
                                window.limit / 1024
                            ));
                        }
                        text.push_str(&l.text);
                        if l.timed_out {
                            text.push_str("\n[edgeprobe: the engine was still sending at the deadline; the log ends here]\n");
                        }
                        Ok(text)
                    }
                    Err(e) => Err(e.to_string()),
                };
                [
                    entry(
                        format!("modules/{}/inspect.json", m.name),
                        format!("Docker engine API: container inspect {} ({})", m.name, m.selected_by),
                        inspect,
                    ),
                    entry(
                        format!("modules/{}/logs.txt", m.name),
                        format!("Docker engine API: container logs {}, {}", m.name, window.describe()),
                        logs,
                    ),
                ]
            }
        })
        .buffered(4)
        .collect::<Vec<_>>()
        .await;
    out.extend(per_module.into_iter().flatten());
    out
}

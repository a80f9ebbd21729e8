//! One registry of check ids. The catalog (`checks/*.toml`, `--checks-dir`) declares its own
//! and refuses duplicates when it loads; every other check is produced by a stage from facts
//! the catalog cannot hold — the container vantage, the gateway view, the derived checks of
//! `run`, the registries — and those ids are declared here or named by their stage beside
//! this list. One test holds them all to the same rules: unique, kebab-case, and each shown
//! by `edgeprobe list`.

use edgeprobe_core::{Endpoint, Protocol};

/// The container vantage: the IoT Edge Docker network's facts.
pub const DOCKER_NETWORK_ID: &str = "docker-network";
/// The container vantage: host and container agree, or why not.
pub const VANTAGE_COMPARE_ID: &str = "vantage-compare";
/// The gateway view's summary: is this device a gateway, and can downstream devices reach it.
pub const GATEWAY_INBOUND_ID: &str = "gateway-inbound";
/// The gateway view, per inbound port.
pub const INBOUND_MQTT_ID: &str = "inbound-mqtt";
pub const INBOUND_AMQP_ID: &str = "inbound-amqp";
pub const INBOUND_HTTPS_ID: &str = "inbound-https";

/// A check a stage produces outside the catalog, as `edgeprobe list` shows it.
pub struct Produced {
    pub id: &'static str,
    pub title: &'static str,
    pub endpoint: Endpoint,
    pub protocol: Protocol,
    /// What it is made from (the list's `[derived from ...]`).
    pub from: &'static str,
}

/// Every check the container vantage and the gateway view produce, in report order.
pub const PRODUCED: [Produced; 6] = [
    Produced {
        id: DOCKER_NETWORK_ID,
        title: "The IoT Edge Docker network",
        endpoint: Endpoint::Device,
        protocol: Protocol::Config,
        from: "the engine's network facts and the configuration's moby_runtime.network",
    },
    Produced {
        id: VANTAGE_COMPARE_ID,
        title: "Host and container vantages agree",
        endpoint: Endpoint::Device,
        protocol: Protocol::Config,
        from: "the same checks run from the host and from the Docker network",
    },
    Produced {
        id: GATEWAY_INBOUND_ID,
        title: "Inbound ports for downstream devices (gateway view)",
        endpoint: Endpoint::Device,
        protocol: Protocol::Config,
        from: "edgeHub's published ports, the host firewall and the ports' holders",
    },
    Produced {
        id: INBOUND_MQTT_ID,
        title: "Inbound MQTT (8883) to edgeHub",
        endpoint: Endpoint::Device,
        protocol: Protocol::Mqtt,
        from: "the gateway view, on a gateway",
    },
    Produced {
        id: INBOUND_AMQP_ID,
        title: "Inbound AMQP (5671) to edgeHub",
        endpoint: Endpoint::Device,
        protocol: Protocol::Amqp,
        from: "the gateway view, on a gateway",
    },
    Produced {
        id: INBOUND_HTTPS_ID,
        title: "Inbound HTTPS (443) to edgeHub",
        endpoint: Endpoint::Device,
        protocol: Protocol::Https,
        from: "the gateway view, on a gateway",
    },
];

/// The ids of [`PRODUCED`], for selections (`--only`, `--skip`).
pub const PRODUCED_IDS: [&str; 6] = [
    DOCKER_NETWORK_ID,
    VANTAGE_COMPARE_ID,
    GATEWAY_INBOUND_ID,
    INBOUND_MQTT_ID,
    INBOUND_AMQP_ID,
    INBOUND_HTTPS_ID,
];

/// The title a produced check is listed under.
pub fn title(id: &str) -> &'static str {
    PRODUCED.iter().find(|p| p.id == id).map_or("", |p| p.title)
}

/// `edgeprobe list`'s lines for [`PRODUCED`], in the derived checks' layout.
pub fn list_lines(width: usize) -> String {
    PRODUCED
        .iter()
        .map(|p| {
            format!(
                "{:<width$}  {:<7} {:<8} -  {}  [derived from {}]\n",
                p.id,
                p.endpoint.as_str(),
                p.protocol.as_str(),
                p.title,
                p.from
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use edgeprobe_core::catalog::{is_kebab_case, Catalog};

    use super::*;

    /// The invariant: every check id, wherever it is produced, is unique, kebab-case, and
    /// shown by `edgeprobe list` (the catalog and the derived checks are listed from the same
    /// lists that produce them; the rest from [`list_lines`]).
    #[test]
    fn every_check_id_is_unique_kebab_case_and_listed() {
        let catalog = Catalog::builtin().unwrap();
        let derived = [
            crate::run::CONFIG_UPSTREAM_ID,
            crate::run::PROXY_CONSISTENCY_ID,
            crate::run::CLOCK_ID,
        ];
        // A registry's checks are named for its host; their stems stand for them here.
        let registries = ["registry-host", "registry-data-host"];
        let all: Vec<&str> = catalog
            .checks()
            .iter()
            .map(|c| c.id.as_str())
            .chain(derived)
            .chain(PRODUCED_IDS)
            .chain(registries)
            .collect();
        let mut seen = HashSet::new();
        for id in &all {
            assert!(is_kebab_case(id), "{id} is not kebab-case");
            assert!(seen.insert(*id), "{id} is registered twice");
        }
        let listed = list_lines(20);
        for p in &PRODUCED {
            assert!(
                listed.lines().any(|l| l.starts_with(p.id)),
                "{} missing from `list`",
                p.id
            );
        }
        assert!(crate::registries::list_lines(20).contains("registry-data-{host}"));
        let produced: Vec<&str> = PRODUCED.iter().map(|p| p.id).collect();
        assert_eq!(produced, PRODUCED_IDS, "PRODUCED_IDS follows PRODUCED");
        let inbound: Vec<&str> = crate::gateway_view::INBOUND
            .iter()
            .map(|(id, _, _)| *id)
            .collect();
        assert_eq!(inbound, PRODUCED_IDS[3..], "the gateway view's ports");
    }
}

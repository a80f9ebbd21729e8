//! The gateway view, on the edge device itself: downstream devices reach edgeHub on at least
//! one of 8883 (MQTT), 5671 (AMQP) or 443 (WebSocket, HTTPS), so a gateway needs them open
//! inbound; a device that is not a gateway needs no inbound port at all. Three facts decide
//! it: what edgeHub's container publishes (from the engine's API — the deployment's
//! createOptions), whether another process already holds the port, and whether the host
//! firewall's INPUT chain drops or rejects it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use edgeprobe_core::catalog::CheckDef;
use edgeprobe_core::{Endpoint, Outcome, Protocol, Reason, Status};
use edgeprobe_docker::{Engine, PublishedPort};
use tokio::time::Instant;

use crate::firewall;

/// The summary check.
pub use crate::check_ids::GATEWAY_INBOUND_ID;
use crate::check_ids::{INBOUND_AMQP_ID, INBOUND_HTTPS_ID, INBOUND_MQTT_ID};
/// The inbound ports of an edge gateway: (check id, protocol, port).
pub const INBOUND: [(&str, Protocol, u16); 3] = [
    (INBOUND_MQTT_ID, Protocol::Mqtt, 8883),
    (INBOUND_AMQP_ID, Protocol::Amqp, 5671),
    (INBOUND_HTTPS_ID, Protocol::Https, 443),
];

/// A listening TCP socket on the host and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub process: Option<String>,
}

/// Listening TCP sockets from `/proc/net/tcp{,6}`, with the process holding each (readable as root).
pub fn listeners(proc_root: &Path) -> Vec<Listener> {
    let mut by_inode: HashMap<String, u16> = HashMap::new();
    for file in ["net/tcp", "net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(proc_root.join(file)) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let Some(port) = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            by_inode.insert(cols[9].to_owned(), port);
        }
    }
    let mut holders: HashMap<String, String> = HashMap::new();
    if let Ok(procs) = std::fs::read_dir(proc_root) {
        for p in procs.flatten() {
            let pid = p.file_name().to_string_lossy().into_owned();
            if !pid.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let target = target.to_string_lossy();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|t| t.strip_suffix(']'))
                {
                    if by_inode.contains_key(inode) {
                        let comm =
                            std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                        holders.insert(inode.to_owned(), format!("{} (pid {pid})", comm.trim()));
                    }
                }
            }
        }
    }
    let mut out: Vec<Listener> = by_inode
        .into_iter()
        .map(|(inode, port)| Listener {
            port,
            process: holders.get(&inode).cloned(),
        })
        .collect();
    out.sort_by_key(|l| l.port);
    out.dedup();
    out
}

/// The first INPUT rule that drops or rejects `port`, or the policy when it drops and no
/// rule accepts the port. `(is_reject, description)`.
pub fn blocking_rule(rules: &[String], port: u16) -> Option<(bool, String)> {
    for rule in rules.iter().filter(|r| r.starts_with("-A INPUT")) {
        let verdict_drop = rule.ends_with("-j DROP");
        let verdict_reject = rule.contains("-j REJECT");
        let accepts = rule.ends_with("-j ACCEPT");
        // Rules without a port match everything (e.g. a blanket DROP); port rules match theirs.
        let has_port = rule.contains("--dport");
        let tcp_or_all = !rule.contains(" -p ") || rule.contains("-p tcp");
        if !tcp_or_all || (has_port && !firewall::matches_port(rule, port)) {
            continue;
        }
        // Only rules about new traffic in general: skip established/related accepts.
        if accepts && (has_port || rule.contains("ESTABLISHED")) {
            if has_port {
                return None;
            }
            continue;
        }
        if verdict_drop || verdict_reject {
            return Some((verdict_reject, rule.clone()));
        }
    }
    if rules.iter().any(|r| r == "-P INPUT DROP") {
        return Some((
            false,
            "-P INPUT DROP (and no rule accepts the port)".to_owned(),
        ));
    }
    None
}

fn def(id: &str, protocol: Protocol, port: Option<u16>, title: String) -> CheckDef {
    CheckDef::derived(id, title, Endpoint::Device, protocol).at(String::new(), port)
}

/// Runs the gateway view: the summary and, on a gateway, one check per inbound port.
pub async fn checks(
    uri: Option<&str>,
    container: &str,
    proc_root: &Path,
    deadline: Instant,
) -> Vec<(CheckDef, Outcome)> {
    let budget = deadline.min(Instant::now() + Duration::from_secs(2));
    let summary_def = def(
        GATEWAY_INBOUND_ID,
        Protocol::Config,
        None,
        crate::check_ids::title(GATEWAY_INBOUND_ID).into(),
    );
    let published: Vec<PublishedPort> = match Engine::connect(uri, budget).await {
        Err(e) => {
            return vec![(
                summary_def,
                Outcome::skip(Reason::NotConfigured, format!("cannot tell whether this device is a gateway: {e}")),
            )]
        }
        Ok(engine) => match engine.published_ports(container, budget).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return vec![(
                    summary_def,
                    Outcome::skip(
                        Reason::NotConfigured,
                        format!("not a gateway: no {container} container runs here, so no inbound port is needed"),
                    ),
                )]
            }
            Err(e) => {
                return vec![(
                    summary_def,
                    Outcome::skip(Reason::NotConfigured, format!("cannot read {container}'s port bindings: {e}")),
                )]
            }
        },
    };
    let inbound: Vec<&PublishedPort> = published
        .iter()
        .filter(|p| {
            p.protocol == "tcp" && INBOUND.iter().any(|(_, _, port)| *port == p.container_port)
        })
        .collect();
    if inbound.is_empty() {
        return vec![(
            summary_def,
            Outcome::skip(
                Reason::NotConfigured,
                format!("not a gateway: {container} publishes none of 8883, 5671, 443, so no inbound port is needed"),
            ),
        )];
    }
    let rules = firewall::chain_rules("INPUT", budget).await;
    let listening = listeners(proc_root);
    let mut out = Vec::new();
    let mut open = Vec::new();
    let mut closed = Vec::new();
    for (id, protocol, port) in INBOUND {
        let title = format!("Inbound {} ({port}) to {container}", protocol.title());
        let Some(binding) = inbound.iter().find(|p| p.container_port == port) else {
            out.push((
                def(id, protocol, Some(port), title),
                Outcome::skip(
                    Reason::NotConfigured,
                    format!("{container} does not publish {port} (its createOptions PortBindings)"),
                ),
            ));
            continue;
        };
        let host_port = binding.host_port.unwrap_or(port);
        let bound = format!(
            "{}:{host_port}",
            if binding.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &binding.host_ip
            }
        );
        let other = listening.iter().find(|l| {
            l.port == host_port
                && l.process
                    .as_deref()
                    .is_some_and(|p| !p.starts_with("docker-proxy"))
        });
        let outcome = if let Some((reject, rule)) = blocking_rule(&rules, host_port) {
            closed.push(port);
            Outcome::new(
                Status::Fail,
                if reject { Reason::TcpRefused } else { Reason::TcpTimeout },
                format!("{container} publishes {port} on {bound}, but the host firewall {} it: {rule}", if reject { "rejects" } else { "drops" }),
            )
            .with_fix(format!("accept inbound TCP {host_port} in the INPUT chain (e.g. `iptables -I INPUT -p tcp --dport {host_port} -j ACCEPT`, or the equivalent ufw/firewalld rule)"))
        } else if let Some(l) = other {
            closed.push(port);
            Outcome::new(
                Status::Fail,
                Reason::WrongService,
                format!(
                    "port {host_port} is held by {}, so {container} cannot publish it",
                    l.process.as_deref().unwrap_or("another process")
                ),
            )
            .with_fix(format!("stop or move the other service on {host_port}"))
        } else {
            open.push(port);
            Outcome::new(
                Status::Pass,
                Reason::Ok,
                format!("{container} publishes {port} on {bound}, and no INPUT rule blocks it"),
            )
        };
        out.push((def(id, protocol, Some(port), title), outcome));
    }
    let summary = if open.is_empty() {
        Outcome::new(
            Status::Fail,
            Reason::TcpTimeout,
            format!("a gateway with 0 of 3 inbound paths open: downstream devices cannot reach {container}"),
        )
        .with_fix("open at least one of 8883, 5671 or 443 inbound to edgeHub")
    } else {
        let list = |v: &[u16]| {
            v.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut msg = format!(
            "a gateway with {} of 3 inbound paths open ({})",
            open.len(),
            list(&open)
        );
        if !closed.is_empty() {
            msg.push_str(&format!("; blocked: {}", list(&closed)));
        }
        Outcome::new(Status::Pass, Reason::Ok, msg)
    };
    out.insert(0, (summary_def, summary));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_rules_are_matched_by_port_and_verdict() {
        let rules: Vec<String> = [
            "-P INPUT ACCEPT",
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A INPUT -i eth0 -p tcp -m tcp --dport 8883 -j DROP",
            "-A INPUT -p tcp -m multiport --dports 5600:5700 -j REJECT --reject-with tcp-reset",
            "-A INPUT -p udp --dport 443 -j DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(blocking_rule(&rules, 8883).map(|r| r.0), Some(false));
        assert_eq!(blocking_rule(&rules, 5671).map(|r| r.0), Some(true));
        assert_eq!(
            blocking_rule(&rules, 443),
            None,
            "a UDP rule does not block TCP 443"
        );
        let closed: Vec<String> = ["-P INPUT DROP", "-A INPUT -p tcp --dport 443 -j ACCEPT"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(blocking_rule(&closed, 443), None);
        assert!(
            blocking_rule(&closed, 8883).unwrap().1.contains("policy")
                || blocking_rule(&closed, 8883)
                    .unwrap()
                    .1
                    .contains("-P INPUT DROP")
        );
    }

    #[test]
    fn proc_net_tcp_listeners_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("net")).unwrap();
        std::fs::write(
            dir.join("net/tcp"),
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:22B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0\n",
        )
        .unwrap();
        let l = listeners(dir);
        assert_eq!(
            l,
            vec![Listener {
                port: 8883,
                process: None
            }],
            "only LISTEN sockets count"
        );
    }
}

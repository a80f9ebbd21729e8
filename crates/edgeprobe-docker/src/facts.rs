//! Facts about a network and the daemon, for the report and the support bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::time::{timeout_at, Instant};

use crate::error::{api, io_reason, is_not_found, one_line, DockerError};
use crate::Engine;

/// The network driver option that sets the MTU of a bridge network.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// One IPAM configuration entry, as the network was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamEntry {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
}

/// What the engine says about a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFacts {
    pub name: String,
    pub id: String,
    pub driver: Option<String>,
    pub scope: Option<String>,
    pub internal: bool,
    pub enable_ipv6: bool,
    /// Every subnet in the IPAM config (IPv4 and IPv6).
    pub subnets: Vec<String>,
    /// Every gateway in the IPAM config.
    pub gateways: Vec<String>,
    pub ipam_driver: Option<String>,
    /// The IPAM config as created.
    pub ipam: Vec<IpamEntry>,
    /// `com.docker.network.driver.mtu`; `None` when not set (the daemon's default applies).
    pub mtu: Option<u32>,
    /// All driver options.
    pub options: BTreeMap<String, String>,
    /// Containers attached on this host.
    pub containers: usize,
}

pub(crate) async fn network_facts(
    engine: &Engine,
    name: &str,
    deadline: Instant,
) -> Result<Option<NetworkFacts>, DockerError> {
    let docker = &engine.shared().docker;
    let net = match timeout_at(deadline, docker.inspect_network(name, None)).await {
        Err(_) => return Err(DockerError::Timeout("inspecting the Docker network")),
        Ok(Err(e)) if is_not_found(&e) => return Ok(None),
        Ok(Err(e)) => {
            return Err(api(
                &format!("inspecting network {name}"),
                &engine.shared().uri,
                e,
            ))
        }
        Ok(Ok(n)) => n,
    };
    let ipam = net.ipam.unwrap_or_default();
    let entries: Vec<IpamEntry> = ipam
        .config
        .unwrap_or_default()
        .into_iter()
        .map(|c| IpamEntry {
            subnet: c.subnet.filter(|s| !s.is_empty()),
            ip_range: c.ip_range.filter(|s| !s.is_empty()),
            gateway: c.gateway.filter(|s| !s.is_empty()),
        })
        .collect();
    let options: BTreeMap<String, String> = net.options.unwrap_or_default().into_iter().collect();
    Ok(Some(NetworkFacts {
        name: net.name.unwrap_or_else(|| name.to_string()),
        id: net.id.unwrap_or_default(),
        driver: net.driver,
        scope: net.scope,
        internal: net.internal.unwrap_or(false),
        enable_ipv6: net.enable_ipv6.unwrap_or(false),
        subnets: entries.iter().filter_map(|e| e.subnet.clone()).collect(),
        gateways: entries.iter().filter_map(|e| e.gateway.clone()).collect(),
        ipam_driver: ipam.driver,
        ipam: entries,
        mtu: options.get(MTU_OPTION).and_then(|v| v.trim().parse().ok()),
        options,
        containers: net.containers.map(|c| c.len()).unwrap_or(0),
    }))
}

/// Proxy settings from `daemon.json`'s `proxies` (Engine 23+), passwords redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonProxies {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

/// The keys of `daemon.json` that matter for connectivity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonJson {
    /// `dns`: the servers containers get instead of the host's.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opts: Vec<String>,
    /// `mtu` of the default bridge.
    pub mtu: Option<u64>,
    pub ipv6: Option<bool>,
    pub fixed_cidr_v6: Option<String>,
    pub bip: Option<String>,
    /// `default-address-pools` as `base/size` strings, e.g. `172.80.0.0/16 size 24`.
    pub default_address_pools: Vec<String>,
    pub proxies: Option<DaemonProxies>,
    /// `log-driver`, useful in a bundle.
    pub log_driver: Option<String>,
}

/// Daemon-level facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonFacts {
    /// Engine version, e.g. `20.10.24+dfsg1`.
    pub server_version: Option<String>,
    /// Highest API version the engine speaks.
    pub server_api_version: Option<String>,
    /// API version this client uses.
    pub client_api_version: String,
    pub operating_system: Option<String>,
    pub kernel_version: Option<String>,
    pub storage_driver: Option<String>,
    pub docker_root_dir: Option<String>,
    /// Proxies the daemon itself uses (for pulls), as the info API reports them, passwords
    /// redacted.
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
    /// Where `daemon.json` was looked for.
    pub daemon_json_path: PathBuf,
    /// `None` when the file does not exist or could not be read/parsed.
    pub daemon_json: Option<DaemonJson>,
    /// Why the file could not be read or parsed (absence is not an error).
    pub daemon_json_error: Option<String>,
}

/// `http://user:pass@host:3128` -> `http://user:<redacted>@host:3128`. The url crate finds
/// the password (the last `@` ends the userinfo), reading the text under a scheme of ours so
/// that host, port and path stay as written; a text with an `@` that is no URL is redacted
/// whole.
pub(crate) fn redact_url(s: &str) -> String {
    let (scheme, rest) = s.find("://").map_or(("", s), |i| s.split_at(i + 3));
    match url::Url::parse(&format!("proxy://{rest}")) {
        Ok(u) if u.password().is_some() => format!(
            "{scheme}{}:<redacted>@{}",
            u.username(),
            &u[url::Position::BeforeHost..]
        ),
        Ok(_) => s.to_owned(),
        Err(_) if rest.contains('@') => format!("{scheme}<redacted>"),
        Err(_) => s.to_owned(),
    }
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub(crate) fn parse_daemon_json(text: &str) -> Result<DaemonJson, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let obj = v
        .as_object()
        .ok_or_else(|| "the top level is not a JSON object".to_string())?;
    let s = |k: &str| obj.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let proxies = obj.get("proxies").and_then(|p| p.as_object()).map(|p| {
        let g = |k: &str| p.get(k).and_then(|x| x.as_str()).map(redact_url);
        DaemonProxies {
            http_proxy: g("http-proxy"),
            https_proxy: g("https-proxy"),
            no_proxy: g("no-proxy"),
        }
    });
    let pools = match obj.get("default-address-pools") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|p| {
                let base = p.get("base")?.as_str()?;
                Some(match p.get("size").and_then(|x| x.as_u64()) {
                    Some(size) => format!("{base} size {size}"),
                    None => base.to_string(),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(DaemonJson {
        dns: strings(obj.get("dns")),
        dns_search: strings(obj.get("dns-search")),
        dns_opts: strings(obj.get("dns-opts")),
        mtu: obj.get("mtu").and_then(|x| x.as_u64()),
        ipv6: obj.get("ipv6").and_then(|x| x.as_bool()),
        fixed_cidr_v6: s("fixed-cidr-v6"),
        bip: s("bip"),
        default_address_pools: pools,
        proxies,
        log_driver: s("log-driver"),
    })
}

pub(crate) async fn daemon_facts(
    engine: &Engine,
    root: &Path,
    deadline: Instant,
) -> Result<DaemonFacts, DockerError> {
    let shared = engine.shared();
    let docker = &shared.docker;
    let version = match timeout_at(deadline, docker.version()).await {
        Err(_) => return Err(DockerError::Timeout("asking the engine for its version")),
        Ok(Err(e)) => return Err(api("asking the engine for its version", &shared.uri, e)),
        Ok(Ok(v)) => v,
    };
    // The info API's models are newer than some engines; a field that fails to decode
    // must not lose the rest of the facts.
    let info = match timeout_at(deadline, docker.info()).await {
        Err(_) => return Err(DockerError::Timeout("asking the engine for its info")),
        Ok(Ok(i)) => Some(i),
        Ok(Err(_)) => None,
    };
    let path = root.join("etc/docker/daemon.json");
    let (daemon_json, daemon_json_error) = match std::fs::read_to_string(&path) {
        Ok(text) => match parse_daemon_json(&text) {
            Ok(d) => (Some(d), None),
            Err(e) => (
                None,
                Some(format!(
                    "{} is not valid JSON: {}",
                    path.display(),
                    one_line(&e)
                )),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => (
            None,
            Some(format!("cannot read {}: {}", path.display(), io_reason(&e))),
        ),
    };
    let info = info.unwrap_or_default();
    Ok(DaemonFacts {
        server_version: nonempty(version.version).or(nonempty(info.server_version)),
        server_api_version: nonempty(version.api_version),
        client_api_version: shared.api_version.clone(),
        operating_system: nonempty(info.operating_system),
        kernel_version: nonempty(version.kernel_version).or(nonempty(info.kernel_version)),
        storage_driver: nonempty(info.driver),
        docker_root_dir: nonempty(info.docker_root_dir),
        http_proxy: nonempty(info.http_proxy).map(|s| redact_url(&s)),
        https_proxy: nonempty(info.https_proxy).map(|s| redact_url(&s)),
        no_proxy: nonempty(info.no_proxy),
        daemon_json_path: path,
        daemon_json,
        daemon_json_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_proxy_passwords() {
        assert_eq!(
            redact_url("http://alice:s3cret@proxy:3128/"),
            "http://alice:<redacted>@proxy:3128/"
        );
        assert_eq!(redact_url("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(redact_url("http://bob@proxy:3128"), "http://bob@proxy:3128");
        assert_eq!(
            redact_url("u:p@ss@proxy:80/x"),
            "u:<redacted>@proxy:80/x",
            "no scheme, an @ in the password, the default port"
        );
        assert_eq!(redact_url("http://u:pw@h:notaport"), "http://<redacted>");
        assert_eq!(redact_url("u:p@host:1"), "u:<redacted>@host:1");
    }

    #[test]
    fn parses_daemon_json() {
        let d = parse_daemon_json(
            r#"{"dns": ["10.0.0.2", "8.8.8.8"], "mtu": 1400, "ipv6": true,
                "fixed-cidr-v6": "fd00::/80", "log-driver": "local",
                "default-address-pools": [{"base": "172.80.0.0/16", "size": 24}],
                "proxies": {"https-proxy": "http://u:pw@p:3128", "no-proxy": "localhost"}}"#,
        )
        .unwrap();
        assert_eq!(d.dns, vec!["10.0.0.2", "8.8.8.8"]);
        assert_eq!(d.mtu, Some(1400));
        assert_eq!(d.ipv6, Some(true));
        assert_eq!(d.fixed_cidr_v6.as_deref(), Some("fd00::/80"));
        assert_eq!(d.default_address_pools, vec!["172.80.0.0/16 size 24"]);
        let p = d.proxies.unwrap();
        assert_eq!(p.https_proxy.as_deref(), Some("http://u:<redacted>@p:3128"));
        assert_eq!(p.no_proxy.as_deref(), Some("localhost"));
        assert!(p.http_proxy.is_none());
        assert!(parse_daemon_json("[1]").is_err());
        assert!(parse_daemon_json("{").is_err());
        assert_eq!(parse_daemon_json("{}").unwrap(), DaemonJson::default());
    }
}

/// A port a container publishes on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// The port inside the container, e.g. 8883.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The host address it is bound to (empty: all addresses).
    pub host_ip: String,
    pub host_port: Option<u16>,
}

/// The ports a container publishes (from its configuration, so a stopped container
/// answers too); `None` when no container has that name.
pub(crate) async fn published_ports(
    engine: &Engine,
    container: &str,
    deadline: Instant,
) -> Result<Option<Vec<PublishedPort>>, DockerError> {
    let docker = &engine.shared().docker;
    let inspected = match timeout_at(deadline, docker.inspect_container(container, None)).await {
        Err(_) => return Err(DockerError::Timeout("inspecting the container")),
        Ok(Err(e)) if is_not_found(&e) => return Ok(None),
        Ok(Err(e)) => {
            return Err(api(
                &format!("inspecting container {container}"),
                &engine.shared().uri,
                e,
            ))
        }
        Ok(Ok(c)) => c,
    };
    let bindings = inspected
        .host_config
        .and_then(|h| h.port_bindings)
        .unwrap_or_default();
    let mut out = Vec::new();
    for (key, binds) in bindings {
        let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for b in binds.unwrap_or_default() {
            out.push(PublishedPort {
                container_port,
                protocol: protocol.to_owned(),
                host_ip: b.host_ip.unwrap_or_default(),
                host_port: b.host_port.and_then(|p| p.parse().ok()),
            });
        }
    }
    out.sort_by_key(|p| (p.container_port, p.host_port));
    Ok(Some(out))
}

/// The engine's own inspect output for a network, as JSON (for support bundles).
pub(crate) async fn network_inspect_json(
    engine: &Engine,
    name: &str,
    deadline: Instant,
) -> Result<Option<String>, DockerError> {
    let docker = &engine.shared().docker;
    match timeout_at(deadline, docker.inspect_network(name, None)).await {
        Err(_) => Err(DockerError::Timeout("inspecting the Docker network")),
        Ok(Err(e)) if is_not_found(&e) => Ok(None),
        Ok(Err(e)) => Err(api(
            &format!("inspecting network {name}"),
            &engine.shared().uri,
            e,
        )),
        Ok(Ok(n)) => Ok(Some(serde_json::to_string_pretty(&n).unwrap_or_default())),
    }
}

//! Name resolution as the runtime does it: the system's resolver configuration
//! (/etc/resolv.conf and /etc/hosts) through hickory-resolver, A and AAAA asked in
//! parallel and each family reported on its own, because "IPv6 resolves but does not
//! route" is a failure worth naming. `--resolve` and `--connect-to` override it, like curl.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{PhaseName, PhaseStatus, Reason};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use serde_json::json;
use tokio::time::Instant;

/// A layer failure: the reason code and a message for people.
pub type Failure = (Reason, String);

/// Address overrides from the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--resolve HOST:ADDR`: the addresses a name resolves to.
    pub resolve: HashMap<String, Vec<IpAddr>>,
    /// `--connect-to HOST:PORT:ADDR:PORT2`: where a host and port really are.
    pub connect_to: HashMap<(String, u16), SocketAddr>,
}

impl Overrides {
    /// Parses `HOST:ADDR` (also curl's `HOST:PORT:ADDR`, port ignored). IPv6 addresses may
    /// be bracketed.
    pub fn add_resolve(&mut self, spec: &str) -> Result<(), String> {
        let (host, rest) = spec
            .split_once(':')
            .ok_or_else(|| format!("--resolve {spec:?}: expected HOST:ADDR"))?;
        let addr_text = match rest.split_once(':') {
            Some((port, addr)) if port.parse::<u16>().is_ok() && !rest.starts_with('[') => addr,
            _ => rest,
        };
        let addr: IpAddr = addr_text
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("--resolve {spec:?}: {addr_text:?} is not an IP address"))?;
        if host.is_empty() {
            return Err(format!("--resolve {spec:?}: the host name is empty"));
        }
        self.resolve
            .entry(host.to_ascii_lowercase())
            .or_default()
            .push(addr);
        Ok(())
    }

    /// Parses `HOST:PORT:ADDR:PORT2` (ADDR an IP address, IPv6 in brackets).
    pub fn add_connect_to(&mut self, spec: &str) -> Result<(), String> {
        let bad = || {
            format!("--connect-to {spec:?}: expected HOST:PORT:ADDR:PORT2 with ADDR an IP address")
        };
        let (host, rest) = spec.split_once(':').ok_or_else(bad)?;
        let (port, target) = rest.split_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let (addr, port2) = target.rsplit_once(':').ok_or_else(bad)?;
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad())?;
        let port2: u16 = port2.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        if port == 0 || port2 == 0 {
            return Err(format!("--connect-to {spec:?}: port 0 is not usable"));
        }
        self.connect_to.insert(
            (host.to_ascii_lowercase(), port),
            SocketAddr::new(addr, port2),
        );
        Ok(())
    }
}

/// Resolves names for probes.
pub struct Dns {
    resolver: Result<TokioResolver, String>,
    overrides: Overrides,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl Dns {
    /// Uses the system configuration. A broken resolv.conf is reported by each lookup,
    /// not here: overrides and IP literals still work without it.
    pub fn system(overrides: Overrides) -> Self {
        let resolver = TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system resolver configuration: {e}"))
            .and_then(|b| {
                b.build()
                    .map_err(|e| format!("cannot start the resolver: {e}"))
            });
        Dns {
            resolver,
            overrides,
        }
    }

    /// The addresses to try for `host:port`, recording the `dns` phase.
    pub async fn lookup(
        &self,
        host: &str,
        port: u16,
        rec: &PhaseRecorder,
        deadline: Instant,
    ) -> Result<Vec<SocketAddr>, Failure> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(addr) = self.overrides.connect_to.get(&(key.clone(), port)) {
            rec.instant(
                PhaseName::Dns,
                PhaseStatus::Ok,
                vec![
                    ("source".into(), json!("--connect-to")),
                    ("addresses".into(), json!([addr.to_string()])),
                ],
            );
            return Ok(vec![*addr]);
        }
        if let Some(ips) = self.overrides.resolve.get(&key) {
            rec.instant(
                PhaseName::Dns,
                PhaseStatus::Ok,
                vec![
                    ("source".into(), json!("--resolve")),
                    (
                        "addresses".into(),
                        json!(ips.iter().map(|i| i.to_string()).collect::<Vec<_>>()),
                    ),
                ],
            );
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            rec.instant(
                PhaseName::Dns,
                PhaseStatus::Ok,
                vec![("source".into(), json!("literal"))],
            );
            return Ok(vec![SocketAddr::new(ip, port)]);
        }

        rec.start(PhaseName::Dns);
        let resolver = match &self.resolver {
            Ok(r) => r,
            Err(e) => {
                rec.end(PhaseStatus::Fail, vec![("error".into(), json!(e))]);
                return Err((Reason::DnsError, e.clone()));
            }
        };
        // A fully qualified query: no search-domain guesses for cloud names.
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let (v4, v6) = both_families(resolver, &fqdn, deadline).await;

        let detail = vec![
            ("a".into(), family_json(&v4)),
            ("aaaa".into(), family_json(&v6)),
        ];
        // IPv6 first, as the runtime's resolver order would try it; the TCP layer races both.
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for ip in v6
            .as_ref()
            .ok()
            .into_iter()
            .flatten()
            .chain(v4.as_ref().ok().into_iter().flatten())
        {
            addrs.push(SocketAddr::new(*ip, port));
        }
        if !addrs.is_empty() {
            rec.end(PhaseStatus::Ok, detail);
            return Ok(addrs);
        }
        rec.end(PhaseStatus::Fail, detail);
        let errs = [v4.err(), v6.err()];
        let has = |f: fn(&FamilyError) -> bool| errs.iter().flatten().any(f);
        Err(if has(|e| matches!(e, FamilyError::NxDomain)) {
            (
                Reason::DnsNxdomain,
                format!("{host} does not exist in DNS (NXDOMAIN)"),
            )
        } else if errs
            .iter()
            .flatten()
            .all(|e| matches!(e, FamilyError::NoRecords))
        {
            (
                Reason::DnsNoRecords,
                format!("{host} has no A or AAAA records"),
            )
        } else if has(|e| matches!(e, FamilyError::Timeout)) {
            (
                Reason::DnsTimeout,
                format!("no DNS answer for {host} in time"),
            )
        } else {
            let why = errs
                .iter()
                .flatten()
                .find_map(|e| match e {
                    FamilyError::Other(m) => Some(m.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            (
                Reason::DnsError,
                format!("DNS lookup of {host} failed: {why}"),
            )
        })
    }
}

/// How long to wait for the other family once one has answered with addresses (RFC 8305's
/// Resolution Delay): a resolver that drops AAAA queries must not cost the whole deadline.
pub const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

type FamilyResult = Result<Vec<IpAddr>, FamilyError>;

/// Asks A and AAAA in parallel; once one family has addresses, the other gets
/// [`RESOLUTION_DELAY`] more, not the rest of the deadline.
async fn both_families(
    resolver: &TokioResolver,
    fqdn: &str,
    deadline: Instant,
) -> (FamilyResult, FamilyResult) {
    let settle = |r: Result<
        Result<hickory_resolver::lookup::Lookup, NetError>,
        tokio::time::error::Elapsed,
    >| {
        family(
            r.map_err(|_| FamilyError::Timeout)
                .and_then(|r| r.map_err(FamilyError::from)),
        )
    };
    let v4 = tokio::time::timeout_at(deadline, resolver.ipv4_lookup(fqdn));
    let v6 = tokio::time::timeout_at(deadline, resolver.ipv6_lookup(fqdn));
    tokio::pin!(v4, v6);
    let (first_is_v4, first) = tokio::select! {
        r = &mut v4 => (true, settle(r)),
        r = &mut v6 => (false, settle(r)),
    };
    let later = if first.is_ok() {
        (Instant::now() + RESOLUTION_DELAY).min(deadline)
    } else {
        deadline
    };
    let second = if first_is_v4 {
        tokio::time::timeout_at(later, &mut v6).await
    } else {
        tokio::time::timeout_at(later, &mut v4).await
    };
    // Not answered within the resolution delay (or the deadline): a timeout for that family.
    let second = match second {
        Ok(inner) => settle(inner),
        Err(_) => Err(FamilyError::Timeout),
    };
    if first_is_v4 {
        (first, second)
    } else {
        (second, first)
    }
}

enum FamilyError {
    NxDomain,
    NoRecords,
    Timeout,
    Other(String),
}

impl From<NetError> for FamilyError {
    fn from(e: NetError) -> Self {
        if e.is_nx_domain() {
            FamilyError::NxDomain
        } else if e.is_no_records_found() {
            FamilyError::NoRecords
        } else if matches!(e, NetError::Timeout) {
            FamilyError::Timeout
        } else if let NetError::Dns(DnsError::NoRecordsFound(_)) = e {
            FamilyError::NoRecords
        } else {
            FamilyError::Other(e.to_string())
        }
    }
}

fn family(
    r: Result<hickory_resolver::lookup::Lookup, FamilyError>,
) -> Result<Vec<IpAddr>, FamilyError> {
    let lookup = r?;
    let ips: Vec<IpAddr> = lookup
        .answers()
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    if ips.is_empty() {
        Err(FamilyError::NoRecords)
    } else {
        Ok(ips)
    }
}

fn family_json(r: &Result<Vec<IpAddr>, FamilyError>) -> serde_json::Value {
    match r {
        Ok(ips) => json!(ips.iter().map(|i| i.to_string()).collect::<Vec<_>>()),
        Err(FamilyError::NxDomain) => json!("nxdomain"),
        Err(FamilyError::NoRecords) => json!("no records"),
        Err(FamilyError::Timeout) => json!("timeout"),
        Err(FamilyError::Other(m)) => json!(format!("error: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_like_curl_and_name_the_bad_part() {
        let mut o = Overrides::default();
        o.add_resolve("hub.example:127.0.0.1").unwrap();
        o.add_resolve("hub.example:443:[::1]").unwrap();
        assert_eq!(o.resolve["hub.example"].len(), 2);
        o.add_connect_to("hub.example:8883:127.0.0.1:40000")
            .unwrap();
        assert_eq!(
            o.connect_to[&("hub.example".into(), 8883)],
            "127.0.0.1:40000".parse().unwrap()
        );
        assert_eq!(
            o.add_resolve("hub.example").unwrap_err(),
            "--resolve \"hub.example\": expected HOST:ADDR"
        );
        assert_eq!(
            o.add_resolve("hub.example:not-an-ip").unwrap_err(),
            "--resolve \"hub.example:not-an-ip\": \"not-an-ip\" is not an IP address"
        );
        assert!(o.add_connect_to("h:1:name:2").is_err());
    }
}

//! Name resolution as the runtime does it: the system's resolver configuration
//! (/etc/resolv.conf and /etc/hosts) through hickory-resolver, A and AAAA asked in
//! parallel and each family reported on its own, because "IPv6 resolves but does not
//! route" is a failure worth naming. `--resolve` and `--connect-to` override it, like curl.
//!
//! One [`Dns`] serves a whole run: each name is asked once per family, concurrent lookups
//! of a name share that one query, and every check gets the shared answer, whatever TTL the
//! server gave (a TTL of 0 is common and would otherwise cost a query per request). A check
//! that resolves a name many times (a registry pull: `/v2/`, manifests, blob) or many checks
//! of one host would otherwise pay a slow resolver each time and run out of the run's time.
//! [`Dns::prefetch`] starts a lookup as soon as a name is known (a blob redirect's data
//! endpoint), before the check that needs it runs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{PhaseName, PhaseStatus, Reason};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use serde_json::json;
use tokio::time::Instant;

/// A layer failure: the reason code and a message for people.
use crate::Failure;

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

/// The address families asked apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

/// One family's lookup, as the resolver answered it.
type FamilyResult = Result<Vec<IpAddr>, FamilyError>;

/// Asks the DNS servers: the seam between the coalescing layer and hickory (a fake in
/// unit tests). Each call is one query of one family.
trait Backend: Send + Sync {
    fn query(&self, fqdn: String, family: Family) -> BoxFuture<'static, FamilyResult>;
}

/// hickory's resolver with the system configuration.
struct Hickory(TokioResolver);

impl Backend for Hickory {
    fn query(&self, fqdn: String, family: Family) -> BoxFuture<'static, FamilyResult> {
        let resolver = self.0.clone();
        async move {
            let r = match family {
                Family::V4 => resolver.ipv4_lookup(fqdn.as_str()).await,
                Family::V6 => resolver.ipv6_lookup(fqdn.as_str()).await,
            };
            family_ips(r.map_err(FamilyError::from))
        }
        .boxed()
    }
}

/// A lookup in flight or answered, shared by everyone who asks for the same name and family.
type SharedLookup = Shared<BoxFuture<'static, FamilyResult>>;

/// Resolves names for probes; one per run, shared by every check (see the module docs).
pub struct Dns {
    backend: Result<Arc<dyn Backend>, String>,
    overrides: Overrides,
    /// Lookups by (lowercase fully qualified name, family), for the whole run.
    lookups: Mutex<HashMap<(String, Family), SharedLookup>>,
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
        let backend = TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system resolver configuration: {e}"))
            .and_then(|b| {
                b.build()
                    .map_err(|e| format!("cannot start the resolver: {e}"))
            })
            .map(|r| Arc::new(Hickory(r)) as Arc<dyn Backend>);
        Dns {
            backend,
            overrides,
            lookups: Mutex::new(HashMap::new()),
        }
    }

    /// The shared lookup of `fqdn` in `family`: started on first use, as a task of its own
    /// so that it runs to its answer (or `deadline`) even when the check that started it
    /// stops waiting; everyone later gets the same answer.
    fn shared(
        &self,
        backend: &Arc<dyn Backend>,
        fqdn: &str,
        family: Family,
        deadline: Instant,
    ) -> SharedLookup {
        let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        lookups
            .entry((fqdn.to_owned(), family))
            .or_insert_with(|| {
                let query = backend.query(fqdn.to_owned(), family);
                let task = tokio::spawn(tokio::time::timeout_at(deadline, query));
                async move {
                    match task.await {
                        Ok(Ok(answer)) => answer,
                        Ok(Err(_elapsed)) => Err(FamilyError::Timeout),
                        Err(e) => Err(FamilyError::Other(format!("the lookup task ended: {e}"))),
                    }
                }
                .boxed()
                .shared()
            })
            .clone()
    }

    /// Starts resolving `host` (both families) now, for a check that will need it later: a
    /// name known before its check runs (a registry's data endpoint, from the blob redirect).
    /// Nothing is recorded; the check's own lookup records the `dns` phase and gets this
    /// answer. Overridden names and IP literals need no lookup.
    pub fn prefetch(&self, host: &str, deadline: Instant) {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok();
        let overridden = self.overrides.resolve.contains_key(&key)
            || self.overrides.connect_to.keys().any(|(h, _)| *h == key);
        if literal || overridden {
            return;
        }
        if let Ok(backend) = &self.backend {
            let fqdn = format!("{key}.");
            for family in [Family::V4, Family::V6] {
                drop(self.shared(backend, &fqdn, family, deadline));
            }
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
        let backend = match &self.backend {
            Ok(b) => b,
            Err(e) => {
                rec.end(PhaseStatus::Fail, vec![("error".into(), json!(e))]);
                return Err((Reason::DnsError, e.clone()));
            }
        };
        // A fully qualified query: no search-domain guesses for cloud names.
        let fqdn = format!("{key}.");
        let (v4, v6) = both_families(
            self.shared(backend, &fqdn, Family::V4, deadline),
            self.shared(backend, &fqdn, Family::V6, deadline),
            deadline,
        )
        .await;

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

/// Waits for the A and AAAA lookups; once one family has addresses, the other gets
/// [`RESOLUTION_DELAY`] more, not the rest of the deadline.
async fn both_families(
    v4: SharedLookup,
    v6: SharedLookup,
    deadline: Instant,
) -> (FamilyResult, FamilyResult) {
    let settle = |r: Result<FamilyResult, tokio::time::error::Elapsed>| {
        r.unwrap_or(Err(FamilyError::Timeout))
    };
    let v4 = tokio::time::timeout_at(deadline, v4);
    let v6 = tokio::time::timeout_at(deadline, v6);
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

#[derive(Clone, Debug)]
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

fn family_ips(r: Result<hickory_resolver::lookup::Lookup, FamilyError>) -> FamilyResult {
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

    /// The queries a fake resolver was asked, in order.
    type Asked = Arc<Mutex<Vec<(String, Family)>>>;

    /// A resolver that counts its queries and answers only once the gate opens.
    struct Gated {
        queries: Asked,
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Backend for Gated {
        fn query(&self, fqdn: String, family: Family) -> BoxFuture<'static, FamilyResult> {
            self.queries.lock().unwrap().push((fqdn.clone(), family));
            let gate = self.gate.clone();
            async move {
                let _open = gate.acquire().await;
                match family {
                    Family::V4 => Ok(vec![IpAddr::from([192, 0, 2, 7])]),
                    Family::V6 => Err(FamilyError::NoRecords),
                }
            }
            .boxed()
        }
    }

    fn gated() -> (Dns, Asked, Arc<tokio::sync::Semaphore>) {
        let queries = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let dns = Dns {
            backend: Ok(Arc::new(Gated {
                queries: queries.clone(),
                gate: gate.clone(),
            })),
            overrides: Overrides::default(),
            lookups: Mutex::new(HashMap::new()),
        };
        (dns, queries, gate)
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_name_share_one_query_per_family() {
        let (dns, queries, gate) = gated();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (a, b) = (PhaseRecorder::new(), PhaseRecorder::new());
        let first = dns.lookup("Registry.Example", 443, &a, deadline);
        let second = dns.lookup("registry.example.", 8443, &b, deadline);
        tokio::pin!(first, second);
        // Both lookups are waiting on the resolver before it answers.
        tokio::select! {
            biased;
            _ = &mut first => panic!("answered before the resolver did"),
            _ = &mut second => panic!("answered before the resolver did"),
            () = std::future::ready(()) => {}
        }
        gate.add_permits(1000);
        let (ra, rb) = tokio::join!(first, second);
        assert_eq!(ra.unwrap(), vec!["192.0.2.7:443".parse().unwrap()]);
        assert_eq!(rb.unwrap(), vec!["192.0.2.7:8443".parse().unwrap()]);
        let asked = |q: &Asked| q.lock().unwrap().clone();
        assert_eq!(
            asked(&queries),
            vec![
                ("registry.example.".to_owned(), Family::V4),
                ("registry.example.".to_owned(), Family::V6)
            ]
        );
        // Each check still records its own dns phase, with the shared answer.
        for rec in [&a, &b] {
            let phases = rec.finish();
            assert_eq!(phases.len(), 1);
            assert_eq!(phases[0].detail("a").unwrap(), &json!(["192.0.2.7"]));
            assert_eq!(phases[0].detail("aaaa").unwrap(), &json!("no records"));
        }
        // Later lookups of the name get the answer the run already has; a new name is asked.
        dns.lookup("registry.example", 443, &PhaseRecorder::new(), deadline)
            .await
            .unwrap();
        assert_eq!(asked(&queries).len(), 2);
        dns.lookup("data.example", 443, &PhaseRecorder::new(), deadline)
            .await
            .unwrap();
        assert_eq!(asked(&queries).len(), 4);
    }

    #[tokio::test]
    async fn a_prefetched_name_is_asked_once_and_overridden_names_never() {
        let (mut dns, queries, gate) = gated();
        dns.overrides
            .add_resolve("pinned.example:192.0.2.9")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        dns.prefetch("data.example", deadline);
        dns.prefetch("pinned.example", deadline);
        dns.prefetch("192.0.2.1", deadline);
        assert_eq!(
            queries.lock().unwrap().len(),
            2,
            "A and AAAA of data.example"
        );
        gate.add_permits(1000);
        let addrs = dns
            .lookup("data.example", 443, &PhaseRecorder::new(), deadline)
            .await
            .unwrap();
        assert_eq!(addrs, vec!["192.0.2.7:443".parse().unwrap()]);
        assert_eq!(queries.lock().unwrap().len(), 2);
    }

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

//! The Docker engine, through its API (bollard): facts about the IoT Edge network and the
//! daemon, a probe image built locally from a host binary (never pulled), and runs of that
//! image attached to the network, with the container always removed afterwards.
//!
//! Every async function takes the run's deadline and never waits past it. Containers whose
//! removal could not finish before the deadline (or whose run future was dropped) are
//! removed in the background; [`Engine::cleanup`] waits for those removals.

mod error;
mod facts;
mod image;
mod modules;
mod run;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::{ClientVersion, Docker};
use tokio::time::{timeout_at, Instant};

pub use error::DockerError;
pub use facts::{DaemonFacts, DaemonJson, DaemonProxies, IpamEntry, NetworkFacts, PublishedPort};
pub use image::{probe_reference, ProbeImage, PROBE_ENTRYPOINT, PROBE_REPOSITORY};
pub use modules::{
    ContainerLogs, EdgeModule, LogWindow, ModuleSelector, Tail, EDGE_OWNER_LABEL, MAX_MODULES,
    RUNTIME_MODULES,
};
pub use run::{ContainerRun, RunSpec};

use error::{api, io_reason};

/// `moby_runtime.uri` when the configuration does not set it.
pub const DEFAULT_URI: &str = "unix:///var/run/docker.sock";

/// Label put on every container this crate creates (`edgeprobe=1`).
pub const LABEL: (&str, &str) = ("edgeprobe", "1");

/// Label naming the [`Engine`] that created a container, so [`Engine::cleanup`] can find
/// containers whose creation raced with a dropped future.
pub const SESSION_LABEL: &str = "edgeprobe.session";

/// The API version asked first. Docker Engine 20.10 speaks at most 1.41; newer engines
/// accept it too (up to Engine 28), and the version is then raised to what the engine
/// reports, capped at what bollard's models describe.
const FIRST_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// bollard's own request timeout; our deadlines are what bound each call.
const CLIENT_TIMEOUT_SECS: u64 = 3600;

/// How long a background removal may take (it runs after the deadline, see `cleanup`).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection to one Docker engine. Cheap to clone; clones share pending removals.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("uri", &self.shared.uri)
            .field("api_version", &self.shared.api_version)
            .finish()
    }
}

pub(crate) struct Shared {
    pub(crate) docker: Docker,
    pub(crate) uri: String,
    pub(crate) api_version: String,
    /// Unique per engine: container names and the session label.
    pub(crate) session: String,
    counter: AtomicU64,
    pending: Mutex<Vec<Pending>>,
}

enum Pending {
    Task(tokio::task::JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

enum Endpoint {
    Unix(String),
    Http(String),
}

fn parse_uri(uri: &str) -> Result<Endpoint, DockerError> {
    if let Some(path) = uri.strip_prefix("unix://") {
        Ok(Endpoint::Unix(path.to_string()))
    } else if uri.starts_with('/') {
        Ok(Endpoint::Unix(uri.to_string()))
    } else if uri.starts_with("tcp://") || uri.starts_with("http://") {
        Ok(Endpoint::Http(uri.to_string()))
    } else {
        Err(DockerError::Unavailable(format!(
            "cannot reach the Docker engine at {uri}: unsupported URI (expected unix:// or tcp://)"
        )))
    }
}

fn client(endpoint: &Endpoint, version: &ClientVersion, uri: &str) -> Result<Docker, DockerError> {
    let r = match endpoint {
        Endpoint::Unix(path) => Docker::connect_with_unix(path, CLIENT_TIMEOUT_SECS, version),
        Endpoint::Http(addr) => Docker::connect_with_http(addr, CLIENT_TIMEOUT_SECS, version),
    };
    r.map_err(|e| api("connecting", uri, e))
}

fn parse_api_version(s: &str) -> Option<(usize, usize)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Engine {
    /// Connects to the engine at `uri` (`moby_runtime.uri` style, default
    /// [`DEFAULT_URI`]), agrees on an API version and pings it.
    pub async fn connect(uri: Option<&str>, deadline: Instant) -> Result<Engine, DockerError> {
        let uri = uri.unwrap_or(DEFAULT_URI).to_string();
        let endpoint = parse_uri(&uri)?;
        if let Endpoint::Unix(path) = &endpoint {
            // A clearer message than bollard's "Socket not found".
            if let Err(e) = std::fs::metadata(path) {
                return Err(DockerError::Unavailable(format!(
                    "cannot reach the Docker engine at {uri}: {}",
                    io_reason(&e)
                )));
            }
        }
        let first = client(&endpoint, &FIRST_API_VERSION, &uri)?;
        let version = match timeout_at(deadline, first.version()).await {
            Err(_) => return Err(DockerError::Timeout("connecting to the Docker engine")),
            Ok(Ok(v)) => v.api_version.as_deref().and_then(parse_api_version),
            // An engine whose minimum API version is above 1.41 (Engine 29+) refuses the
            // first request: let bollard start from its own version and negotiate down.
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 400, ..
            })) => None,
            Ok(Err(e)) => return Err(api("asking the engine for its version", &uri, e)),
        };
        let docker = match version {
            Some((major, minor)) => {
                let max = bollard::API_DEFAULT_VERSION;
                let chosen = if (major, minor) > (max.major_version, max.minor_version) {
                    ClientVersion {
                        major_version: max.major_version,
                        minor_version: max.minor_version,
                    }
                } else {
                    ClientVersion {
                        major_version: major,
                        minor_version: minor,
                    }
                };
                client(&endpoint, &chosen, &uri)?
            }
            None => {
                let c = client(&endpoint, bollard::API_DEFAULT_VERSION, &uri)?;
                match timeout_at(deadline, c.negotiate_version()).await {
                    Err(_) => return Err(DockerError::Timeout("connecting to the Docker engine")),
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        return Err(api("negotiating the API version", &uri, e));
                    }
                }
            }
        };
        match timeout_at(deadline, docker.ping()).await {
            Err(_) => return Err(DockerError::Timeout("pinging the Docker engine")),
            Ok(Err(e)) => return Err(api("pinging the engine", &uri, e)),
            Ok(Ok(_)) => {}
        }
        let api_version = docker.client_version().to_string();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let session = format!("{}-{:08x}", std::process::id(), nanos);
        Ok(Engine {
            shared: Arc::new(Shared {
                docker,
                uri,
                api_version,
                session,
                counter: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The URI this engine was reached at.
    pub fn uri(&self) -> &str {
        &self.shared.uri
    }

    /// The API version in use, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.shared.api_version
    }

    /// The bollard client, for callers that need an API this crate does not wrap.
    pub fn docker(&self) -> &Docker {
        &self.shared.docker
    }

    /// The value of the [`SESSION_LABEL`] put on this engine's containers.
    pub fn session(&self) -> &str {
        &self.shared.session
    }

    pub(crate) fn next_container_name(&self) -> String {
        let n = self.shared.counter.fetch_add(1, Ordering::Relaxed);
        format!("edgeprobe-{}-{n}", self.shared.session)
    }

    /// Facts about a network, `None` when it does not exist.
    pub async fn network_facts(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<NetworkFacts>, DockerError> {
        facts::network_facts(self, name, deadline).await
    }

    /// The engine's inspect output for a network, as JSON; `None` when it does not exist.
    pub async fn network_inspect_json(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<String>, DockerError> {
        facts::network_inspect_json(self, name, deadline).await
    }

    /// The IoT Edge modules (see [`ModuleSelector`]), edgeAgent and edgeHub first; at most
    /// [`MAX_MODULES`].
    pub async fn edge_modules(
        &self,
        selector: &ModuleSelector,
        deadline: Instant,
    ) -> Result<Vec<EdgeModule>, DockerError> {
        modules::edge_modules(self, selector, deadline).await
    }

    /// The engine's inspect output for a container, as JSON; `None` when it does not exist.
    pub async fn container_inspect_json(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<String>, DockerError> {
        modules::container_inspect_json(self, name, deadline).await
    }

    /// A container's logs (stdout and stderr, timestamped) within `window`, the last
    /// `window.max_bytes` of them; at the deadline, what came so far.
    pub async fn container_logs(
        &self,
        name: &str,
        window: LogWindow,
        deadline: Instant,
    ) -> Result<ContainerLogs, DockerError> {
        modules::container_logs(self, name, window, deadline).await
    }

    /// The engine's version answer (versions of the engine, API, Go, containerd, runc), as JSON.
    pub async fn version_json(&self, deadline: Instant) -> Result<String, DockerError> {
        modules::version_json(self, deadline).await
    }

    /// The ports `container` publishes on the host (its port bindings); `None` when no
    /// container has that name. The gateway view reads edgeHub's this way.
    pub async fn published_ports(
        &self,
        container: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<PublishedPort>>, DockerError> {
        facts::published_ports(self, container, deadline).await
    }

    /// Daemon-level facts: version, proxies from the info API, and `etc/docker/daemon.json`
    /// read under `root` (`/` on the device; a support bundle's copy otherwise).
    pub async fn daemon_facts(
        &self,
        root: &Path,
        deadline: Instant,
    ) -> Result<DaemonFacts, DockerError> {
        facts::daemon_facts(self, root, deadline).await
    }

    /// Builds the probe image for `binary` (a Linux executable, dynamically or statically
    /// linked), or reuses it when its tag already exists. Never pulls.
    pub async fn ensure_probe_image(
        &self,
        binary: &Path,
        version: &str,
        deadline: Instant,
    ) -> Result<ProbeImage, DockerError> {
        run::ensure_probe_image(self, binary, version, deadline).await
    }

    /// Tags `image` as `repo:tag` (the module image people deploy is the probe image under
    /// a name of their choosing).
    pub async fn tag_image(
        &self,
        image: &str,
        repo: &str,
        tag: &str,
        deadline: Instant,
    ) -> Result<(), DockerError> {
        let options = bollard::query_parameters::TagImageOptionsBuilder::new()
            .repo(repo)
            .tag(tag)
            .build();
        match tokio::time::timeout_at(deadline, self.docker().tag_image(image, Some(options))).await
        {
            Err(_) => Err(DockerError::Timeout("tagging the image")),
            Ok(Err(e)) => Err(DockerError::Api(error::one_line(&e.to_string()))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Runs `spec.image` (entrypoint [`PROBE_ENTRYPOINT`]) on `spec.network` and returns what
    /// it printed, its exit code and the resolver configuration it saw. The container is
    /// removed afterwards in every case (see [`Engine::cleanup`]).
    pub async fn run_in_network(
        &self,
        spec: RunSpec,
        deadline: Instant,
    ) -> Result<ContainerRun, DockerError> {
        run::run_in_network(self, spec, deadline).await
    }

    /// Waits for every pending background removal, then removes any container this engine
    /// created that is still there (a creation that raced with a dropped future). Each
    /// removal is bounded (20 s). Call it before exit and on Ctrl-C.
    pub async fn cleanup(&self) {
        loop {
            let pending: Vec<Pending> = {
                let mut guard = self
                    .shared
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                std::mem::take(&mut *guard)
            };
            if pending.is_empty() {
                break;
            }
            for p in pending {
                match p {
                    Pending::Task(h) => {
                        let _ = h.await;
                    }
                    Pending::Thread(h) => {
                        let _ = tokio::task::spawn_blocking(move || h.join()).await;
                    }
                }
            }
        }
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        if let Ok(names) = run::list_session_containers(self, deadline).await {
            for name in names {
                let _ =
                    timeout_at(deadline, run::remove_container(&self.shared.docker, &name)).await;
            }
        }
    }

    /// Removes `name` in the background (on the current runtime, or on a thread of its own
    /// when there is none); `cleanup` waits for it.
    pub(crate) fn remove_in_background(shared: &Arc<Shared>, name: String) {
        let docker = shared.docker.clone();
        let work = async move {
            let _ =
                tokio::time::timeout(REMOVE_TIMEOUT, run::remove_container(&docker, &name)).await;
        };
        let pending = match tokio::runtime::Handle::try_current() {
            Ok(handle) => Pending::Task(handle.spawn(work)),
            Err(_) => {
                let spawned = std::thread::Builder::new()
                    .name("edgeprobe-docker-cleanup".into())
                    .spawn(move || {
                        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            rt.block_on(work);
                        }
                    });
                match spawned {
                    Ok(h) => Pending::Thread(h),
                    Err(_) => return,
                }
            }
        };
        shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pending);
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert!(
            matches!(parse_uri("unix:///var/run/docker.sock"), Ok(Endpoint::Unix(p)) if p == "/var/run/docker.sock")
        );
        assert!(matches!(
            parse_uri("/run/docker.sock"),
            Ok(Endpoint::Unix(_))
        ));
        assert!(matches!(
            parse_uri("tcp://10.0.0.1:2375"),
            Ok(Endpoint::Http(_))
        ));
        let e = parse_uri("npipe:////./pipe/docker_engine").err().unwrap();
        assert_eq!(e.code(), "docker_unavailable");
        assert!(e.to_string().contains("npipe:"), "{e}");
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(parse_api_version("x"), None);
    }
}

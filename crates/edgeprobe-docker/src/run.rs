//! The probe image and runs of it inside a Docker network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::time::{timeout_at, Instant};

use crate::error::{api, is_not_found, one_line, DockerError};
use crate::image::{self, ProbeImage, PROBE_ENTRYPOINT};
use crate::{Engine, Shared, LABEL, SESSION_LABEL};

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSpec {
    /// Image reference, e.g. [`ProbeImage::reference`]. Must exist locally: never pulled.
    pub image: String,
    /// Docker network to attach to (e.g. `azure-iot-edge`).
    pub network: String,
    /// Arguments to [`PROBE_ENTRYPOINT`].
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Read-only bind mounts: host path -> container path.
    pub mounts: Vec<(PathBuf, String)>,
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRun {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i64,
    /// The container's `/etc/resolv.conf`, `None` when it could not be read.
    pub resolv_conf: Option<String>,
    /// The `nameserver` lines of `resolv_conf` (on a user-defined network, the engine's
    /// embedded resolver `127.0.0.11`).
    pub dns_servers: Vec<String>,
    /// The container's address on the network while it ran; `None` when the container
    /// had already exited when asked (the engine releases the address at exit).
    pub container_ip: Option<String>,
}

/// Output kept per stream; more is cut (the probe prints one JSON report).
const MAX_OUTPUT: usize = 8 * 1024 * 1024;

pub(crate) async fn ensure_probe_image(
    engine: &Engine,
    binary: &Path,
    version: &str,
    deadline: Instant,
) -> Result<ProbeImage, DockerError> {
    let shared = engine.shared();
    let docker = &shared.docker;
    let bytes = std::fs::read(binary).map_err(|e| {
        DockerError::Image(format!(
            "cannot read {}: {}",
            binary.display(),
            crate::error::io_reason(&e)
        ))
    })?;
    let reference = image::probe_reference(&image::sha256_hex(&bytes), version);

    if let Some(found) = inspect(engine, &reference, deadline).await? {
        return Ok(found);
    }
    // Another edgeprobe may be importing the same image: wait for it, then use its image
    // instead of importing a second copy (which would leave the first one dangling).
    let _turn = build_turn(deadline).await?;
    if let Some(found) = inspect(engine, &reference, deadline).await? {
        return Ok(found);
    }

    let libs = image::ldd(binary, deadline).await?;
    let ca = std::fs::read("/etc/ssl/certs/ca-certificates.crt").ok();
    let files = image::rootfs_files(&bytes, &libs, ca)?;
    let tar = image::rootfs_tar(&files)?;

    let (repo, tag) = reference
        .split_once(':')
        .unwrap_or((reference.as_str(), "latest"));
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .message("edgeprobe probe image")
        .changes(vec![
            format!("ENTRYPOINT [\"{PROBE_ENTRYPOINT}\"]"),
            "WORKDIR /tmp".to_string(),
            "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_string(),
            format!("LABEL {}={}", LABEL.0, LABEL.1),
        ])
        .build();
    let import = async {
        let mut stream =
            docker.create_image(Some(options), Some(bollard::body_full(tar.into())), None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => {
                    DockerError::Image(format!("importing {reference}: {}", one_line(&error)))
                }
                other => api(&format!("importing {reference}"), &shared.uri, other),
            })?;
        }
        Ok::<(), DockerError>(())
    };
    timeout_at(deadline, import)
        .await
        .map_err(|_| DockerError::Timeout("importing the probe image"))??;

    match inspect(engine, &reference, deadline).await? {
        Some(found) => {
            prune_other_probe_images(engine, &reference, deadline).await;
            Ok(ProbeImage {
                built: true,
                ..found
            })
        }
        None => Err(DockerError::Image(format!(
            "the engine accepted the import but has no image {reference}"
        ))),
    }
}

/// An exclusive lock on a file beside other edgeprobe processes, held while the probe image
/// is built; released when dropped. Best effort: without a usable lock file, no lock.
async fn build_turn(deadline: Instant) -> Result<Option<std::fs::File>, DockerError> {
    let path = std::env::temp_dir().join("edgeprobe-probe-image.lock");
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    else {
        return Ok(None);
    };
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Err(DockerError::Timeout(
                        "waiting for another edgeprobe to import the probe image",
                    ));
                }
                // Polling a lock held for seconds at most: a short nap, bounded by the deadline.
                tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(50)))
                    .await;
            }
            Err(std::fs::TryLockError::Error(_)) => return Ok(None),
        }
    }
}

/// Removes the probe images of other builds of the same version (`{version}-{other hash}`),
/// so rebuilding the binary does not pile images up. Best effort and never forced: an image a
/// running container uses stays. Other versions' images are left to the user.
async fn prune_other_probe_images(engine: &Engine, keep: &str, deadline: Instant) {
    // `edgeprobe-probe:{version}-{hash}`: the prefix up to the hash.
    let Some((same_version, _)) = keep.rsplit_once('-') else {
        return;
    };
    let docker = &engine.shared().docker;
    let filters = HashMap::from([(
        "reference".to_string(),
        vec![image::PROBE_REPOSITORY.to_string()],
    )]);
    let options = bollard::query_parameters::ListImagesOptions {
        filters: Some(filters),
        ..Default::default()
    };
    let Ok(Ok(images)) = timeout_at(deadline, docker.list_images(Some(options))).await else {
        return;
    };
    for tag in images.iter().flat_map(|i| i.repo_tags.iter()) {
        if tag != keep && tag.starts_with(&format!("{same_version}-")) {
            let _ = timeout_at(
                deadline,
                docker.remove_image(
                    tag,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                ),
            )
            .await;
        }
    }
}

async fn inspect(
    engine: &Engine,
    reference: &str,
    deadline: Instant,
) -> Result<Option<ProbeImage>, DockerError> {
    let shared = engine.shared();
    match timeout_at(deadline, shared.docker.inspect_image(reference)).await {
        Err(_) => Err(DockerError::Timeout("looking up the probe image")),
        Ok(Err(e)) if is_not_found(&e) => Ok(None),
        Ok(Err(e)) => Err(api(
            &format!("inspecting image {reference}"),
            &shared.uri,
            e,
        )),
        Ok(Ok(i)) => Ok(Some(ProbeImage {
            reference: reference.to_string(),
            id: i.id.unwrap_or_default(),
            built: false,
            size: i.size,
        })),
    }
}

/// Removes the container when dropped, unless disarmed (it was removed in line).
struct ContainerGuard {
    shared: Arc<Shared>,
    name: Option<String>,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            Engine::remove_in_background(&self.shared, name);
        }
    }
}

pub(crate) async fn remove_container(docker: &Docker, name: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // "removal of container ... is already in progress"
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(api(&format!("removing container {name}"), "", e)),
    }
}

pub(crate) async fn list_session_containers(
    engine: &Engine,
    deadline: Instant,
) -> Result<Vec<String>, DockerError> {
    let shared = engine.shared();
    let mut filters = HashMap::new();
    filters.insert(
        "label".to_string(),
        vec![format!("{SESSION_LABEL}={}", shared.session)],
    );
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = timeout_at(deadline, shared.docker.list_containers(Some(options)))
        .await
        .map_err(|_| DockerError::Timeout("listing containers"))?
        .map_err(|e| api("listing containers", &shared.uri, e))?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

pub(crate) async fn run_in_network(
    engine: &Engine,
    spec: RunSpec,
    deadline: Instant,
) -> Result<ContainerRun, DockerError> {
    let shared = engine.shared();
    let name = engine.next_container_name();
    // Armed before the create request is sent: a drop at any point removes by name.
    let mut guard = ContainerGuard {
        shared: shared.clone(),
        name: Some(name.clone()),
    };
    let result = run_inner(engine, &name, &spec, deadline).await;
    // Remove in line when there is time left; otherwise the guard does it in the
    // background and `Engine::cleanup` waits for it.
    if Instant::now() < deadline {
        if let Ok(Ok(())) = timeout_at(deadline, remove_container(&shared.docker, &name)).await {
            guard.name = None;
        }
    }
    drop(guard);
    result
}

async fn run_inner(
    engine: &Engine,
    name: &str,
    spec: &RunSpec,
    deadline: Instant,
) -> Result<ContainerRun, DockerError> {
    let shared = engine.shared();
    let docker = &shared.docker;
    let uri = shared.uri.as_str();

    let mut labels = HashMap::new();
    labels.insert(LABEL.0.to_string(), LABEL.1.to_string());
    labels.insert(SESSION_LABEL.to_string(), shared.session.clone());
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .map(|(host, ctr)| format!("{}:{ctr}:ro", host.display()))
        .collect();
    let config = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec![PROBE_ENTRYPOINT.to_string()]),
        cmd: Some(spec.cmd.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        host_config: Some(HostConfig {
            network_mode: Some(spec.network.clone()),
            binds: if binds.is_empty() { None } else { Some(binds) },
            // The output is read back through the logs API, which needs a driver that
            // keeps logs: do not inherit a daemon default such as `none` or `syslog`.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    match timeout_at(deadline, docker.create_container(Some(options), config)).await {
        Err(_) => return Err(DockerError::Timeout("creating the probe container")),
        Ok(Err(e)) => {
            return Err(api(
                &format!(
                    "creating a container of {} on network {}",
                    spec.image, spec.network
                ),
                uri,
                e,
            ))
        }
        Ok(Ok(_)) => {}
    }
    match timeout_at(deadline, docker.start_container(name, None)).await {
        Err(_) => return Err(DockerError::Timeout("starting the probe container")),
        Ok(Err(e)) => {
            return Err(api(
                &format!("starting the probe container on network {}", spec.network),
                uri,
                e,
            ))
        }
        Ok(Ok(())) => {}
    }

    // Best effort: a short-lived container may already have exited and lost its address.
    let container_ip = match timeout_at(deadline, docker.inspect_container(name, None)).await {
        Ok(Ok(c)) => c
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|mut n| n.remove(&spec.network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty()),
        _ => None,
    };

    let wait = async {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut stream = docker.wait_container(name, Some(options));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard turns a non-zero exit into an error; it is data here.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(api("waiting for the probe container", uri, e)),
            None => Err(DockerError::Api(
                "waiting for the probe container: the engine closed the stream".into(),
            )),
        }
    };
    let exit_code = timeout_at(deadline, wait)
        .await
        .map_err(|_| DockerError::Timeout("waiting for the probe container to exit"))??;

    let logs = async {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(false)
            .build();
        let mut stream = docker.logs(name, Some(options));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(item) = stream.next().await {
            let item = item.map_err(|e| api("reading the probe container's output", uri, e))?;
            let (buf, bytes) = match item {
                LogOutput::StdErr { message } => (&mut err, message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    (&mut out, message)
                }
                LogOutput::StdIn { .. } => continue,
            };
            let room = MAX_OUTPUT.saturating_sub(buf.len());
            buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        Ok::<_, DockerError>((out, err))
    };
    let (stdout, stderr) = timeout_at(deadline, logs)
        .await
        .map_err(|_| DockerError::Timeout("reading the probe container's output"))??;

    let resolv_conf = timeout_at(deadline, read_file(docker, name, "/etc/resolv.conf"))
        .await
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let dns_servers = resolv_conf.as_deref().map(nameservers).unwrap_or_default();

    Ok(ContainerRun {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        exit_code,
        resolv_conf,
        dns_servers,
        container_ip,
    })
}

/// One file out of a (possibly stopped) container, through the archive API.
async fn read_file(docker: &Docker, name: &str, path: &str) -> Option<Vec<u8>> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(name, Some(options));
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.ok()?);
        if tar.len() > MAX_OUTPUT {
            return None;
        }
    }
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut out).ok()?;
    Some(out)
}

pub(crate) fn nameservers(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then(|| words.next().map(str::to_string))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers() {
        let r = "# comment\nnameserver 127.0.0.11\nsearch lan\noptions ndots:0\nnameserver  ::1\n";
        assert_eq!(nameservers(r), vec!["127.0.0.11", "::1"]);
        assert!(nameservers("").is_empty());
    }
}

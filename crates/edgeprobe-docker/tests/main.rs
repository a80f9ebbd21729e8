//! Against the real Docker engine of this machine. Every test makes its own bridge network
//! (`edgeprobe-test-{pid}-{n}`) and a `Scratch` guard removes what the test made (containers
//! on its networks, the networks, its images), also when the test fails. The engine's socket
//! is root's: as another user those tests say "skipped: needs root" (see `fixtures::root`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use edgeprobe_docker::{DockerError, Engine, RunSpec, DEFAULT_URI};
use tokio::time::Instant;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn in_secs(s: u64) -> Instant {
    Instant::now() + Duration::from_secs(s)
}

/// What a test made; removed on drop from a thread of its own (Drop cannot await).
#[derive(Default)]
struct Scratch {
    networks: Vec<String>,
    images: Vec<String>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let networks = std::mem::take(&mut self.networks);
        let images = std::mem::take(&mut self.images);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let docker = Engine::connect(None, in_secs(20)).await.unwrap();
                let docker = docker.docker();
                for net in &networks {
                    for id in containers_on(docker, net, None).await {
                        let _ = docker
                            .remove_container(
                                &id,
                                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                            )
                            .await;
                    }
                    let _ = docker.remove_network(net).await;
                }
                for image in &images {
                    let _ = docker
                        .remove_image(
                            image,
                            Some(bollard::query_parameters::RemoveImageOptions {
                                force: true,
                                ..Default::default()
                            }),
                            None,
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

/// Ids of the containers (any state) attached to `network`, optionally with a label.
async fn containers_on(docker: &Docker, network: &str, label: Option<&str>) -> Vec<String> {
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    filters.insert("network".into(), vec![network.to_string()]);
    if let Some(l) = label {
        filters.insert("label".into(), vec![l.to_string()]);
    }
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

async fn engine() -> Engine {
    Engine::connect(None, in_secs(10)).await.expect("connect")
}

async fn make_network(
    engine: &Engine,
    scratch: &mut Scratch,
    options: &[(&str, &str)],
    ipv6_subnet: Option<String>,
) -> String {
    let name = unique("edgeprobe-test");
    scratch.networks.push(name.clone());
    let mut labels = HashMap::new();
    labels.insert("edgeprobe-test".to_string(), "1".to_string());
    let ipam = ipv6_subnet.as_ref().map(|s| Ipam {
        driver: Some("default".into()),
        config: Some(vec![IpamConfig {
            subnet: Some(s.clone()),
            ..Default::default()
        }]),
        options: None,
    });
    engine
        .docker()
        .create_network(NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            enable_ipv6: Some(ipv6_subnet.is_some()),
            ipam,
            options: Some(
                options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .expect("create network");
    name
}

async fn probe_image(engine: &Engine, scratch: &mut Scratch, binary: &str) -> String {
    let version = unique("test");
    let image = engine
        .ensure_probe_image(Path::new(binary), &version, in_secs(60))
        .await
        .expect("probe image");
    scratch.images.push(image.reference.clone());
    image.reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_facts_report_driver_subnet_gateway_mtu_and_ipv6() {
    if !fixtures::needs_root() {
        return;
    }
    let engine = engine().await;
    assert!(
        engine.api_version().starts_with("1."),
        "{}",
        engine.api_version()
    );
    let mut scratch = Scratch::default();

    let plain = make_network(&engine, &mut scratch, &[], None).await;
    let facts = engine
        .network_facts(&plain, in_secs(10))
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(facts.name, plain);
    assert_eq!(facts.driver.as_deref(), Some("bridge"));
    assert_eq!(facts.subnets.len(), 1, "{facts:?}");
    assert!(facts.subnets[0].contains('/'), "{facts:?}");
    assert_eq!(facts.gateways.len(), 1, "{facts:?}");
    assert!(!facts.enable_ipv6);
    assert_eq!(facts.mtu, None);
    assert_eq!(facts.containers, 0);
    assert_eq!(facts.ipam.len(), 1);

    let mtu = make_network(
        &engine,
        &mut scratch,
        &[("com.docker.network.driver.mtu", "1350")],
        None,
    )
    .await;
    let facts = engine
        .network_facts(&mtu, in_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.mtu, Some(1350));

    let v6_subnet = format!(
        "fd00:e6e:{:x}:{:x}::/64",
        std::process::id() & 0xffff,
        COUNTER.load(Ordering::Relaxed)
    );
    let v6 = make_network(&engine, &mut scratch, &[], Some(v6_subnet.clone())).await;
    let facts = engine
        .network_facts(&v6, in_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert!(facts.enable_ipv6, "{facts:?}");
    assert!(facts.subnets.contains(&v6_subnet), "{facts:?}");

    let missing = engine
        .network_facts(&unique("edgeprobe-test-missing"), in_secs(10))
        .await
        .unwrap();
    assert!(missing.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_image_is_built_once_then_reused() {
    if !fixtures::needs_root() {
        return;
    }
    let engine = engine().await;
    let mut scratch = Scratch::default();
    let version = unique("test");
    let started = std::time::Instant::now();
    let first = engine
        .ensure_probe_image(Path::new("/usr/bin/getent"), &version, in_secs(60))
        .await
        .expect("first build");
    scratch.images.push(first.reference.clone());
    let build_time = started.elapsed();
    assert!(first.built);
    assert!(first
        .reference
        .starts_with(&format!("edgeprobe-probe:{version}-")));
    assert_eq!(
        first.reference.len(),
        "edgeprobe-probe:".len() + version.len() + 13
    );
    assert!(first.id.starts_with("sha256:"), "{first:?}");

    let started = std::time::Instant::now();
    let second = engine
        .ensure_probe_image(Path::new("/usr/bin/getent"), &version, in_secs(60))
        .await
        .expect("reuse");
    assert!(!second.built);
    assert_eq!(first.id, second.id);
    assert_eq!(first.reference, second.reference);
    // Not printed by the library; the test shows it with --nocapture.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "probe image {} size {:?} bytes, built in {:?}, reused in {:?}",
            first.reference,
            first.size,
            build_time,
            started.elapsed()
        );
    }

    let err = engine
        .ensure_probe_image(Path::new("/nonexistent/edgeprobe"), &version, in_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "docker_image_error");
    assert!(err.to_string().contains("/nonexistent/edgeprobe"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_the_network_and_reports_output_exit_code_and_resolv_conf() {
    if !fixtures::needs_root() {
        return;
    }
    let engine = engine().await;
    let mut scratch = Scratch::default();
    let net = make_network(&engine, &mut scratch, &[], None).await;
    let image = probe_image(&engine, &mut scratch, "/usr/bin/getent").await;

    let run = engine
        .run_in_network(
            RunSpec {
                image: image.clone(),
                network: net.clone(),
                cmd: vec!["ahosts".into(), "localhost".into()],
                env: vec![("EDGEPROBE_TEST".into(), "1".into())],
                mounts: vec![],
            },
            in_secs(30),
        )
        .await
        .expect("run");
    assert_eq!(run.exit_code, 0, "{run:?}");
    assert!(
        run.stdout.contains("127.0.0.1") || run.stdout.contains("::1"),
        "{run:?}"
    );
    let resolv = run.resolv_conf.as_deref().expect("resolv.conf captured");
    // A user-defined network uses the engine's embedded DNS server.
    assert!(resolv.contains("nameserver"), "{resolv}");
    assert_eq!(run.dns_servers, vec!["127.0.0.11".to_string()], "{resolv}");

    // A failing command: exit code propagated, not an error.
    let run = engine
        .run_in_network(
            RunSpec {
                image: image.clone(),
                network: net.clone(),
                cmd: vec!["hosts".into(), "no-such-name.invalid".into()],
                ..Default::default()
            },
            in_secs(30),
        )
        .await
        .expect("run");
    assert_eq!(run.exit_code, 2, "{run:?}");
    assert_eq!(run.stdout, "");

    // A read-only bind mount: our own hosts file replaces the engine's.
    let tmp = tempfile::Builder::new()
        .prefix("edgeprobe-test-mount")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "10.9.8.7 edgeprobe-mount-test\n").unwrap();
    let run = engine
        .run_in_network(
            RunSpec {
                image: image.clone(),
                network: net.clone(),
                cmd: vec!["hosts".into(), "edgeprobe-mount-test".into()],
                mounts: vec![(hosts.clone(), "/etc/hosts".into())],
                ..Default::default()
            },
            in_secs(30),
        )
        .await
        .expect("run");
    drop(tmp);
    assert_eq!(run.exit_code, 0, "{run:?}");
    assert!(run.stdout.starts_with("10.9.8.7"), "{run:?}");

    // Every container was removed in line, no cleanup() needed.
    assert!(containers_on(engine.docker(), &net, Some("edgeprobe=1"))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_errors_are_api_errors_and_the_container_is_removed() {
    if !fixtures::needs_root() {
        return;
    }
    let engine = engine().await;
    let mut scratch = Scratch::default();
    let net = make_network(&engine, &mut scratch, &[], None).await;
    let image = probe_image(&engine, &mut scratch, "/usr/bin/getent").await;

    let err = engine
        .run_in_network(
            RunSpec {
                image: image.clone(),
                network: unique("edgeprobe-test-no-such-network"),
                cmd: vec!["hosts".into(), "localhost".into()],
                ..Default::default()
            },
            in_secs(30),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "docker_api_error", "{err}");
    assert!(err.to_string().contains("no-such-network"), "{err}");

    let err = engine
        .run_in_network(
            RunSpec {
                image: "edgeprobe-probe:no-such-tag".into(),
                network: net.clone(),
                ..Default::default()
            },
            in_secs(30),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "docker_api_error", "{err}");
    assert!(err.to_string().contains("No such image"), "{err}");
    assert!(!err.to_string().contains('\n'));

    engine.cleanup().await;
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    filters.insert(
        "label".into(),
        vec![format!("edgeprobe.session={}", engine.session())],
    );
    let left = engine
        .docker()
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_runs_forever_is_removed_at_the_deadline() {
    if !fixtures::needs_root() {
        return;
    }
    let engine = engine().await;
    let mut scratch = Scratch::default();
    let net = make_network(&engine, &mut scratch, &[], None).await;
    let image = probe_image(&engine, &mut scratch, "/usr/bin/sleep").await;

    let started = Instant::now();
    let err = engine
        .run_in_network(
            RunSpec {
                image,
                network: net.clone(),
                cmd: vec!["600".into()],
                ..Default::default()
            },
            started + Duration::from_secs(4),
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, DockerError::Timeout(_)), "{err}");
    assert_eq!(err.code(), "docker_timeout");
    assert!(elapsed < Duration::from_millis(4500), "{elapsed:?}");

    engine.cleanup().await;
    assert!(
        containers_on(engine.docker(), &net, Some("edgeprobe=1"))
            .await
            .is_empty(),
        "a probe container is left on {net}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_future_still_removes_the_container() {
    if !fixtures::needs_root() {
        return;
    }
    let engine = engine().await;
    let mut scratch = Scratch::default();
    let net = make_network(&engine, &mut scratch, &[], None).await;
    let image = probe_image(&engine, &mut scratch, "/usr/bin/sleep").await;

    let task = tokio::spawn({
        let engine = engine.clone();
        let net = net.clone();
        async move {
            engine
                .run_in_network(
                    RunSpec {
                        image,
                        network: net,
                        cmd: vec!["600".into()],
                        ..Default::default()
                    },
                    in_secs(300),
                )
                .await
        }
    });
    // Wait until the container exists and runs, then drop the future mid-flight.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("network".into(), vec![net.clone()]);
        filters.insert("status".into(), vec!["running".into()]);
        let running = engine
            .docker()
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap();
        if !running.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < until, "the container never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    engine.cleanup().await;
    assert!(
        containers_on(engine.docker(), &net, Some("edgeprobe=1"))
            .await
            .is_empty(),
        "a probe container is left on {net}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bogus_socket_is_unavailable_and_named() {
    let err = Engine::connect(Some("unix:///nonexistent/edgeprobe.sock"), in_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, DockerError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), "docker_unavailable");
    assert_eq!(
        err.to_string(),
        "cannot reach the Docker engine at unix:///nonexistent/edgeprobe.sock: No such file or directory"
    );

    // A path that exists but is not a socket: the transport error is named too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "").unwrap();
    let uri = format!("unix://{}", file.display());
    let err = Engine::connect(Some(&uri), in_secs(5)).await.unwrap_err();
    drop(dir);
    assert_eq!(err.code(), "docker_unavailable", "{err}");
    assert!(err.to_string().contains(&uri), "{err}");

    assert_eq!(DEFAULT_URI, "unix:///var/run/docker.sock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_facts_read_the_api_and_daemon_json_under_root() {
    if !fixtures::needs_root() {
        return;
    }
    let engine = engine().await;
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = tmp.path().to_owned();
    std::fs::create_dir_all(root.join("etc/docker")).unwrap();
    std::fs::write(
        root.join("etc/docker/daemon.json"),
        r#"{"dns": ["10.1.2.3"], "mtu": 1400, "ipv6": false,
            "proxies": {"https-proxy": "http://user:pw@proxy:3128"}}"#,
    )
    .unwrap();
    let facts = engine.daemon_facts(&root, in_secs(10)).await.unwrap();
    assert!(facts.server_version.is_some(), "{facts:?}");
    assert_eq!(facts.client_api_version, engine.api_version());
    assert!(facts.server_api_version.is_some());
    let json = facts.daemon_json.clone().expect("daemon.json parsed");
    assert_eq!(json.dns, vec!["10.1.2.3"]);
    assert_eq!(json.mtu, Some(1400));
    assert_eq!(json.ipv6, Some(false));
    let proxy = json.proxies.unwrap().https_proxy.unwrap();
    assert!(!proxy.contains("pw"), "{proxy}");

    std::fs::write(root.join("etc/docker/daemon.json"), "{not json").unwrap();
    let facts = engine.daemon_facts(&root, in_secs(10)).await.unwrap();
    assert!(facts.daemon_json.is_none());
    assert!(facts.daemon_json_error.unwrap().contains("daemon.json"));

    std::fs::remove_file(root.join("etc/docker/daemon.json")).unwrap();
    let facts = engine.daemon_facts(&root, in_secs(10)).await.unwrap();
    assert!(facts.daemon_json.is_none());
    assert!(facts.daemon_json_error.is_none());
    drop(tmp);

    // The host's own: the info API decodes on this engine (storage driver, root dir).
    let facts = engine
        .daemon_facts(Path::new("/"), in_secs(10))
        .await
        .unwrap();
    assert!(facts.storage_driver.is_some(), "{facts:?}");
    assert!(facts.docker_root_dir.is_some(), "{facts:?}");
    #[allow(clippy::print_stderr)]
    {
        eprintln!("daemon facts of this host: {facts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_binary_of_the_same_version_replaces_the_old_probe_image() {
    if !fixtures::needs_root() {
        return;
    }
    let engine = engine().await;
    let mut scratch = Scratch::default();
    let version = unique("test");
    let old = engine
        .ensure_probe_image(Path::new("/usr/bin/getent"), &version, in_secs(60))
        .await
        .expect("first build");
    scratch.images.push(old.reference.clone());
    let new = engine
        .ensure_probe_image(Path::new("/usr/bin/id"), &version, in_secs(60))
        .await
        .expect("second build");
    scratch.images.push(new.reference.clone());
    assert!(new.built && new.reference != old.reference);
    let gone = engine.docker().inspect_image(&old.reference).await.is_err();
    assert!(gone, "{} should have been pruned", old.reference);
}

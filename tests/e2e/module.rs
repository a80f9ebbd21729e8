//! `edgeprobe serve`, the fleet mode (issue 16): the real binary serving /metrics, /probe,
//! /report.json and /history.json against the simulated hub; a port closed between runs in
//! the history and the counters; the floor under a burst; SIGTERM; a corrupt state file; and
//! a real Prometheus scraping it by container name on a Docker network.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fixtures::HubFaults;

use crate::docker::{start_remote_hub, DockerNet, Link};
use crate::support::{bin, sh, Hub, IptablesRule, Netns, DEVICE, HUB, KEY};

/// `edgeprobe serve` as a process on an ephemeral loopback port; killed on drop.
pub struct Serve {
    child: Child,
    pub addr: String,
}

impl Serve {
    pub fn start(args: &[String]) -> Serve {
        Serve::start_env(args, &[])
    }

    /// With extra environment variables (IoT Edge's, for a module).
    pub fn start_env(args: &[String], env: &[(String, String)]) -> Serve {
        let mut child = Command::new(bin())
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .env_remove("IOTEDGE_MODULEID")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("EDGEPROBE_SAS_KEY")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("edgeprobe serve starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // Notes (a corrupt history, say) may come first; the address is on the listening line.
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0
            && !line.starts_with("edgeprobe serve: listening on ")
        {
            line.clear();
        }
        let Some(addr) = line
            .strip_prefix("edgeprobe serve: listening on ")
            .and_then(|rest| rest.split_whitespace().next())
        else {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve said {line:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let addr = addr.to_owned();
        // Keep reading its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stdout.lines() {});
        Serve { child, addr }
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        get(&format!("http://{}{path}", self.addr))
    }

    /// Polls `path` until `done` holds for its body (bounded: the runs have deadlines).
    pub fn wait_for(&self, path: &str, done: impl Fn(u16, &str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get(path);
            if done(status, &body) {
                return body;
            }
            assert!(
                Instant::now() < until,
                "{path} never got there: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn history(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/history.json").1).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `serve` with the hub's arguments.
fn serve_args(hub: &Hub, extra: &[&str]) -> Vec<String> {
    let mut args = hub.args(5.0);
    args[0] = "serve".into();
    args.extend(["--vantage", "host"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The samples of a family, parsed by a real Prometheus parser: (labels, value).
fn samples(text: &str, family: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let e = openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("unparsable exposition: {e:?}\n{text}"));
    let Some(f) = e.families.get(family) else {
        return Vec::new();
    };
    f.iter_samples()
        .map(|s| {
            let labels = s
                .get_labelset()
                .map(|set| set.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let value = match &s.value {
                openmetrics_parser::PrometheusValue::Gauge(v)
                | openmetrics_parser::PrometheusValue::Unknown(v) => v.as_f64(),
                openmetrics_parser::PrometheusValue::Counter(c) => c.value.as_f64(),
                other => panic!("{family}: {other:?}"),
            };
            (labels, value)
        })
        .collect()
}

fn has(labels: &[(String, String)], k: &str, v: &str) -> bool {
    labels.iter().any(|(a, b)| a == k && b == v)
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_exposes_metrics_and_remembers_a_port_closed_between_runs() {
    if !fixtures::needs_root() {
        return;
    }
    let hub = Hub::start(HubFaults::default()).await;
    let state = tempfile::tempdir().unwrap();
    let s = Serve::start(&serve_args(
        &hub,
        &[
            "--interval",
            "3600",
            "--min-interval",
            "0.2",
            "--state-dir",
            &state.path().display().to_string(),
        ],
    ));
    assert_eq!(s.get("/healthz"), (200, "ok\n".into()));
    let report = s.wait_for("/report.json", |status, _| status == 200);
    let report: edgeprobe_report::json::JsonReport = serde_json::from_str(&report).unwrap();
    assert!(report.ready, "{:?}", report.readiness);

    let metrics = s.get("/metrics").1;
    assert_eq!(samples(&metrics, "edgeprobe_ready")[0].1, 1.0);
    let info = &samples(&metrics, "edgeprobe_info")[0].0;
    for (k, v) in [
        ("iothub", HUB),
        ("edge_device", DEVICE),
        ("module_name", "edgeprobe"),
    ] {
        assert!(has(info, k, v), "{k}={v}: {info:?}");
    }
    let runs = samples(&metrics, "edgeprobe_runs_total");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, 1.0);
    assert!(has(&runs[0].0, "edge_device", DEVICE) && has(&runs[0].0, "module_name", "edgeprobe"));
    assert!(
        metrics.contains("# TYPE edgeprobe_runs_total counter"),
        "{metrics}"
    );

    // Reject MQTT from now on: the next run shows it down, in the history and the counters.
    let port = hub.hub.mqtt.port().to_string();
    let _rule = IptablesRule::insert(
        "OUTPUT",
        &[
            "-p",
            "tcp",
            "-d",
            "127.0.0.1",
            "--dport",
            &port,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    );
    // /probe runs now once the floor (0.2 s) has passed; until then it answers the last run.
    s.wait_for("/probe", |status, body| {
        status == 200 && body.contains("edgeprobe_upstream_protocol_works{protocol=\"Mqtt\"} 0")
    });
    let history = s.history();
    let mqtt = &history["protocols"]["Mqtt"];
    assert_eq!(mqtt["down"], true, "{history}");
    assert_eq!(mqtt["outages"], 1, "{history}");
    assert_eq!(mqtt["last_failed_reason"], "tcp_refused", "{history}");
    assert!(mqtt["last_worked"].is_string(), "{history}");
    assert_eq!(history["protocols"]["Amqp"]["down"], false);
    assert_eq!(history["runs_total"], 2);

    let metrics = s.get("/metrics").1;
    let failures = samples(&metrics, "edgeprobe_check_failures_total");
    let mqtt_refused = failures
        .iter()
        .find(|(l, _)| has(l, "protocol", "mqtt") && has(l, "reason", "tcp_refused"))
        .unwrap_or_else(|| panic!("no MQTT failure counted:\n{metrics}"));
    assert_eq!(mqtt_refused.1, 1.0);
    assert!(
        has(&mqtt_refused.0, "endpoint", "iothub") && has(&mqtt_refused.0, "vantage", "host"),
        "{:?}",
        mqtt_refused.0
    );
    let down = samples(&metrics, "edgeprobe_upstream_protocol_down_seconds");
    assert!(
        down.iter().any(|(l, _)| has(l, "protocol", "Mqtt")),
        "{metrics}"
    );
    assert!(!samples(
        &metrics,
        "edgeprobe_upstream_protocol_last_success_timestamp_seconds"
    )
    .is_empty());

    // The history survives a restart, from the state directory.
    drop(s);
    let s = Serve::start(&serve_args(
        &hub,
        &[
            "--interval",
            "3600",
            "--state-dir",
            &state.path().display().to_string(),
        ],
    ));
    s.wait_for("/history.json", |_, body| {
        body.contains("\"runs_total\": 3")
    });
    assert_eq!(s.history()["protocols"]["Mqtt"]["outages"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_probes_costs_the_hub_one_run_and_sigterm_ends_serve_cleanly() {
    let hub = Hub::start(HubFaults::default()).await;
    let mut s = Serve::start(&serve_args(
        &hub,
        &["--interval", "3600", "--min-interval", "600"],
    ));
    s.wait_for("/report.json", |status, _| status == 200);
    let after_first = hub.hub.connections();
    assert!(
        after_first >= 5,
        "the first run reached the hub: {after_first}"
    );

    // Twenty scrapes at once of the full run, then ten of one check: the floor answers the
    // first from the last run, and the ten share a single new run.
    let addr = s.addr.clone();
    let burst = |path: &'static str, n: usize| {
        let addr = addr.clone();
        (0..n)
            .map(|_| {
                let url = format!("http://{addr}{path}");
                std::thread::spawn(move || get(&url))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    };
    for (status, body) in burst("/probe", 20) {
        assert_eq!(status, 200);
        assert!(body.contains("edgeprobe_ready 1"), "{body}");
    }
    assert_eq!(
        hub.hub.connections(),
        after_first,
        "no new connection within the floor"
    );
    for (status, body) in burst("/probe?only=iothub-amqp", 10) {
        assert_eq!(status, 200);
        assert!(
            body.contains("edgeprobe_check_success{id=\"iothub-amqp\""),
            "{body}"
        );
        assert!(
            !body.contains("id=\"iothub-mqtt\""),
            "only what was asked: {body}"
        );
    }
    assert_eq!(
        hub.hub.connections(),
        after_first + 1,
        "one AMQP connection for ten probes"
    );
    let (status, body) = s.get("/probe?only=no-such-check");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no-such-check"), "{body}");
    assert_eq!(s.get("/nope").0, 404);

    sh(&["kill", "-TERM", &s.child.id().to_string()]);
    let until = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < until, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_state_file_starts_a_fresh_history_with_a_note() {
    let hub = Hub::start(HubFaults::default()).await;
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("history.json"), "\u{0}garbage{{{").unwrap();
    let s = Serve::start(&serve_args(
        &hub,
        &[
            "--interval",
            "3600",
            "--state-dir",
            &state.path().display().to_string(),
        ],
    ));
    let body = s.wait_for("/history.json", |_, body| {
        body.contains("\"runs_total\": 1")
    });
    assert!(body.contains("started a fresh history"), "{body}");
    assert_eq!(s.get("/healthz").0, 200);
    // The new state replaced the corrupt one.
    let saved = std::fs::read_to_string(state.path().join("history.json")).unwrap();
    assert!(
        saved.starts_with('{') && saved.contains("\"runs_total\":1"),
        "{saved}"
    );
}

/// An image whose root holds `binary` at /bin/NAME and the libraries `ldd` names.
fn import_image(binary: &str, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut files = vec![binary.to_owned()];
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(path.to_owned());
        }
    }
    for f in &files {
        let to = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(f, &to).unwrap();
    }
    for d in ["tmp", "etc/prometheus", "prometheus"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    sh(&[
        "chmod",
        "1777",
        &root.join("tmp").display().to_string(),
        &root.join("prometheus").display().to_string(),
    ]);
    let tar = dir.path().join("rootfs.tar");
    sh(&[
        "tar",
        "-C",
        &root.display().to_string(),
        "-cf",
        &tar.display().to_string(),
        ".",
    ]);
    sh(&[
        "docker",
        "import",
        "--change",
        &format!("ENTRYPOINT [\"{binary}\"]"),
        &tar.display().to_string(),
        tag,
    ]);
}

/// Containers and images of one test, removed on drop.
struct DockerThings {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for DockerThings {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", i]).output();
        }
    }
}

fn docker_out(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_serve_by_container_name_on_a_docker_network() {
    if !fixtures::needs_root() {
        return;
    }
    let ns = Netns::new("promhub");
    let _link = Link::new(&ns, 'p', "10.213.9.1", "10.213.9.2");
    let hub = start_remote_hub(&ns, "10.213.9.2", &[]);
    let net = DockerNet::new("prom");
    let pid = std::process::id();
    let module_image = format!("edgeprobe-e2e-module:{pid}");
    let prom_image = format!("edgeprobe-e2e-prometheus:{pid}");
    let mut things = DockerThings {
        containers: Vec::new(),
        images: vec![module_image.clone()],
    };

    // The module image, built from this binary by edgeprobe itself.
    let r = crate::support::run(["image", "--tag", &module_image]).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().starts_with(&module_image), "{}", r.stdout());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &hub.ca_pem).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: edgeprobe\n    static_configs:\n      - targets: ['edgeprobe:9600']\n",
    )
    .unwrap();
    let mounted = format!("{}:/in:ro", dir.path().display());
    let module = format!("edgeprobe-e2e-module-{pid}");
    let mut run = vec![
        "run",
        "-d",
        "--name",
        &module,
        "--network",
        &net.name,
        "--network-alias",
        "edgeprobe",
        "-v",
        &mounted,
        "-e",
    ];
    let key_env = format!("EDGEPROBE_SAS_KEY={KEY}");
    // What IoT Edge gives every module: its id, hence its name in the labels.
    run.extend([key_env.as_str(), "-e", "IOTEDGE_MODULEID=edgeprobe"]);
    run.extend([
        &module_image,
        "serve",
        "--iothub-hostname",
        HUB,
        "--device-id",
        DEVICE,
    ]);
    run.extend([
        "--trust-bundle",
        "/in/ca.pem",
        "--timeout",
        "10",
        "--interval",
        "3600",
    ]);
    run.extend(["--network", &net.name]);
    let connect: Vec<String> = [(8883, &hub.mqtt), (5671, &hub.amqp), (443, &hub.https)]
        .iter()
        .map(|(port, addr)| format!("{HUB}:{port}:{addr}"))
        .collect();
    for c in &connect {
        run.extend(["--connect-to", c.as_str()]);
    }
    docker_out(&run);
    things.containers.push(module.clone());

    import_image("/usr/bin/prometheus", &prom_image);
    things.images.push(prom_image.clone());
    let prom = format!("edgeprobe-e2e-prometheus-{pid}");
    docker_out(&[
        "run",
        "-d",
        "--name",
        &prom,
        "--network",
        &net.name,
        "-v",
        &mounted,
        &prom_image,
        "--config.file=/in/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        "--web.listen-address=:9090",
    ]);
    things.containers.push(prom.clone());
    let ip = docker_out(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &prom,
    ]);

    // Ask Prometheus's query API until the scrape has landed.
    let until = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let (status, body) = get(&format!(
            "http://{ip}:9090/api/v1/query?query=edgeprobe_ready"
        ));
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(first) = v["data"]["result"].as_array().and_then(|a| a.first()) {
                break first.clone();
            }
        }
        if Instant::now() > until {
            let logs = Command::new("docker")
                .args(["logs", &module])
                .output()
                .unwrap();
            panic!(
                "Prometheus never had edgeprobe_ready ({status} {body}); module log:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(result["metric"]["instance"], "edgeprobe:9600", "{result}");
    assert_eq!(result["metric"]["job"], "edgeprobe");
    assert_eq!(result["value"][1], "1", "the device is ready: {result}");

    // The module's vantage is its own network's, and its labels are IoT Edge's.
    let (_, body) = get(&format!(
        "http://{ip}:9090/api/v1/query?query=edgeprobe_check_success%7Bid%3D%22iothub-amqp%22%7D"
    ));
    assert!(
        body.contains(&format!("\"vantage\":\"container:{}\"", net.name)),
        "{body}"
    );
    let (_, body) = get(&format!(
        "http://{ip}:9090/api/v1/query?query=edgeprobe_info"
    ));
    for label in [
        format!("\"edge_device\":\"{DEVICE}\""),
        "\"module_name\":\"edgeprobe\"".into(),
    ] {
        assert!(body.contains(&label), "{label}: {body}");
    }
    drop(things);
}

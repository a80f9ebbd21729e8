//! Container registry checks against a real registry: Debian's `docker-registry`
//! (distribution 2.8) with TLS, optional htpasswd or token auth (our token service signs
//! the JWTs the registry verifies) and the redirect storage middleware,
//! so blob requests answer a real 307 to a data host. A tiny image is pushed through the
//! Registry API first; the data host is a TLS listener of ours, or a closed port. Through a
//! real squid, too.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fixtures::pki::{Ca, Validity};
use fixtures::registry::{DataEndpoint, RegistryClient};
use fixtures::token::{TokenOptions, TokenService};

use crate::support::{check, run, Hub, Run};
use crate::thirdparty::{self, free_port, ProxyOptions};

const REGISTRY: &str = "registry.lab";
/// The token service's host (the realm of the registry's Bearer challenge).
const AUTH: &str = "auth.lab";
const DATA: &str = "data.lab";
const REPO: &str = "azureiotedge-agent";
const TAG: &str = "1.5";
const USER: &str = "edge";
const PASSWORD: &str = "Registry-Pw-7f3a9c1e";

/// A running docker-registry; killed by PID on drop.
struct Registry {
    addr: SocketAddr,
    /// The registry part of image references: `registry.lab`, or `registry.lab:PORT`.
    name: String,
    child: Child,
    dir: tempfile::TempDir,
    ca: Ca,
    bundle: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the registry authenticates pulls.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Anonymous,
    /// Basic, from an htpasswd file.
    Htpasswd,
    /// Bearer tokens from this token service (whose TLS root is the `&str`, PEM).
    Token(&'a TokenService, &'a str),
}

impl Registry {
    /// Starts the registry on a loopback port, its blobs redirected to `https://data.lab/`;
    /// runs reach both on 443 with `--connect-to`.
    fn start(auth: bool) -> Registry {
        Self::start_with(
            if auth {
                Auth::Htpasswd
            } else {
                Auth::Anonymous
            },
            None,
        )
    }

    /// The registry named with its real port (`registry.lab:PORT` in image references), its
    /// blobs redirected to `https://data.lab:DATA_PORT/`: what a proxy needs, since
    /// `--connect-to` cannot change the authority of a CONNECT.
    fn start_on_named_ports(data_port: u16) -> Registry {
        Self::start_with(Auth::Anonymous, Some(data_port))
    }

    fn start_with(auth: Auth<'_>, data_port: Option<u16>) -> Registry {
        let binary = Path::new("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "docker-registry is missing: `make test-deps` installs Debian's docker-registry package"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = Ca::new("edgeprobe registry test CA");
        let leaf = ca.leaf(&[REGISTRY], Validity::Valid);
        std::fs::write(d.join("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(d.join("key.pem"), &leaf.key_pem).unwrap();
        let bundle = d.join("ca.pem");
        let token_root = match auth {
            Auth::Token(_, root) => root,
            _ => "",
        };
        std::fs::write(&bundle, format!("{}{token_root}", ca.cert_pem)).unwrap();
        std::fs::create_dir(d.join("data")).unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (name, data) = match data_port {
            Some(p) => (format!("{REGISTRY}:{port}"), format!("{DATA}:{p}")),
            None => (REGISTRY.to_owned(), DATA.to_owned()),
        };
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: {addr}\n  secret: edgeprobe-test-secret\n  tls:\n    certificate: {root}/../cert.pem\n    key: {root}/../key.pem\n\
             middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: https://{data}/\n",
            root = d.join("data").display(),
        );
        match auth {
            Auth::Anonymous => {}
            Auth::Htpasswd => {
                let hash = bcrypt::hash(PASSWORD, 5).unwrap();
                std::fs::write(d.join("htpasswd"), format!("{USER}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: edgeprobe-test\n    path: {}\n",
                    d.join("htpasswd").display()
                ));
            }
            Auth::Token(service, _) => {
                std::fs::write(d.join("token-roots.pem"), &service.signing_ca_pem).unwrap();
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {REGISTRY}\n    issuer: {}\n    rootcertbundle: {}\n",
                    service.realm,
                    fixtures::token::ISSUER,
                    d.join("token-roots.pem").display()
                ));
            }
        }
        std::fs::write(d.join("config.yml"), config).unwrap();
        let log = d.join("registry.log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(std::fs::File::create(d.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        // Ours to kill on drop from here on, also when it never gets ready.
        let mut reg = Registry {
            addr,
            name,
            child,
            dir,
            ca,
            bundle,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited ({status}):\n{}", reg.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {addr}:\n{}",
                reg.log()
            );
            // Readiness poll of a process we do not control.
            std::thread::sleep(Duration::from_millis(25));
        }
        reg
    }

    async fn push(&self, auth: bool) {
        let client = RegistryClient::new(
            self.addr,
            REGISTRY,
            self.ca.cert_der.clone(),
            auth.then_some((USER, PASSWORD)),
        );
        self.push_with(client).await;
    }

    /// Pushes with a push token the service minted for the test (not through its endpoint).
    async fn push_with_token(&self, tokens: &TokenService) {
        let token = tokens.mint(USER, REPO, &["pull", "push"]);
        let client = RegistryClient::new(self.addr, REGISTRY, self.ca.cert_der.clone(), None)
            .with_authorization(format!("Bearer {token}"));
        self.push_with(client).await;
    }

    async fn push_with(&self, client: RegistryClient) {
        client
            .push_test_image(REPO, TAG)
            .await
            .unwrap_or_else(|e| panic!("push to docker-registry: {e}\n{}", self.log()));
    }

    /// The data endpoint its blobs redirect to: TLS for `data.lab` from the registry's CA, on
    /// a loopback `port` (0 for any).
    async fn data_endpoint(&self, port: u16) -> DataEndpoint {
        DataEndpoint::start(
            SocketAddr::from(([127, 0, 0, 1], port)),
            &self.ca.leaf(&[DATA], Validity::Valid),
        )
        .await
        .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// An IoT Edge config naming the image on this registry, with credentials if given.
    fn config(&self, password: Option<&str>) -> PathBuf {
        let name = &self.name;
        let mut text = format!("[agent.config]\nimage = \"{name}/{REPO}:{TAG}\"\n");
        if let Some(p) = password {
            text.push_str(&format!(
                "\n[agent.config.auth]\nserveraddress = \"{name}\"\nusername = \"{USER}\"\npassword = \"{p}\"\n"
            ));
        }
        let path = self
            .dir
            .path()
            .join(format!("config-{}.toml", password.map_or(0, str::len)));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A run of the registry checks only (mcr is not reachable from the test machine).
    fn args(&self, config: &Path, data_port: u16) -> Vec<String> {
        let mut args = crate::support::registry_check_args(config, &self.bundle, 8.0);
        args.extend([
            "--connect-to".into(),
            format!("{REGISTRY}:443:127.0.0.1:{}", self.addr.port()),
            "--connect-to".into(),
            format!("{DATA}:443:127.0.0.1:{data_port}"),
        ]);
        args
    }
}

/// Every output the run made: none may hold the registry password.
fn assert_no_password(r: &Run) {
    for (what, text) in [("stdout", r.stdout()), ("stderr", r.stderr())] {
        assert!(
            !text.contains(PASSWORD),
            "the registry password leaked on {what}:\n{text}"
        );
    }
}

fn registry_id() -> String {
    "registry-registry-lab".into()
}

fn data_id() -> String {
    "registry-data-data-lab".into()
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_and_its_data_endpoint_both_reachable() {
    let reg = Registry::start(false);
    reg.push(false).await;
    let data = reg.data_endpoint(0).await;
    let r = run(reg.args(&reg.config(None), data.addr.port())).await;
    let rep = r.json();
    let c = check(&rep, &registry_id());
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("pass", "ok"),
        "{}\n{}",
        c.message,
        reg.log()
    );
    assert_eq!(c.endpoint, "registry");
    assert_eq!(c.protocol, "registry");
    assert!(c.message.contains(DATA), "{}", c.message);
    assert!(c.message.contains("linux/amd64"), "{}", c.message);
    let names: Vec<&str> = c.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["dns", "tcp", "tls", "protocol", "auth"],
        "{names:?}"
    );
    let auth = c.phases.iter().find(|p| p.name == "auth").unwrap();
    let requests = auth.detail["requests"].as_array().unwrap();
    assert_eq!(
        requests.len(),
        3,
        "manifest list, manifest, blob: {requests:?}"
    );
    // All three go to the registry: on /v2/'s connection, kept alive (no new TCP or TLS).
    assert!(
        requests
            .iter()
            .all(|q| q["reused"] == true && q.get("tls_ms").is_none() && q["http_ms"].is_number()),
        "{requests:?}"
    );
    assert_eq!(auth.detail["data_endpoint"], DATA);
    let d = check(&rep, &data_id());
    assert_eq!(
        (d.status.as_str(), d.endpoint.as_str(), d.protocol.as_str()),
        ("pass", "registry", "https"),
        "{}",
        d.message
    );
    assert_eq!(d.host.as_deref(), Some(DATA));
    assert_eq!(r.code(), 0, "{}", r.stdout());
    assert_no_password(&r);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_data_endpoint_means_pulls_stall() {
    let reg = Registry::start(false);
    reg.push(false).await;
    let closed = fixtures::ClosedPort::loopback().unwrap();
    let mut args = reg.args(&reg.config(None), closed.port());
    let r = run(args.clone()).await;
    let rep = r.json();
    let c = check(&rep, &registry_id());
    assert_eq!(c.status, "pass", "{}", c.message);
    assert!(c.message.contains("stall"), "{}", c.message);
    let d = check(&rep, &data_id());
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("fail", "tcp_refused"),
        "{}",
        d.message
    );
    assert!(d.message.contains("stall"), "{}", d.message);
    assert_eq!(
        r.code(),
        1,
        "the configured image's data endpoint is required"
    );
    // The text report says it too, and --skip keeps the data check out.
    crate::support::set_arg(&mut args, "--output", "text");
    let text = run(args.clone()).await.stdout();
    assert!(text.contains("pulls will start, then stall"), "{text}");
    args.extend(["--skip".into(), "registry-data-*".into()]);
    crate::support::set_arg(&mut args, "--output", "json");
    let rep = run(args).await.json();
    assert!(rep
        .checks
        .iter()
        .all(|c| !c.id.starts_with("registry-data-")));
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry_with_right_and_wrong_credentials() {
    let reg = Registry::start(true);
    reg.push(true).await;
    let data = reg.data_endpoint(0).await;

    let r = run(reg.args(&reg.config(Some(PASSWORD)), data.addr.port())).await;
    let rep = r.json();
    let c = check(&rep, &registry_id());
    assert_eq!(
        (c.status.as_str(), c.auth.as_deref()),
        ("pass", Some("ok")),
        "{}\n{}",
        c.message,
        reg.log()
    );
    assert!(
        c.message.contains("configured credentials"),
        "{}",
        c.message
    );
    assert_eq!(check(&rep, &data_id()).status, "pass");
    assert_no_password(&r);

    let mut args = reg.args(&reg.config(Some("not-the-password")), data.addr.port());
    let r = run(args.clone()).await;
    let rep = r.json();
    let c = check(&rep, &registry_id());
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.auth.as_deref()),
        ("warn", "auth_rejected", Some("rejected")),
        "{}",
        c.message
    );
    assert!(rep
        .checks
        .iter()
        .all(|c| !c.id.starts_with("registry-data-")));
    assert_no_password(&r);
    assert!(!r.stdout().contains("not-the-password"));

    // Text, verbose (every phase detail) and a bundle: still no password anywhere.
    let config = reg.config(Some(PASSWORD));
    args = reg.args(&config, data.addr.port());
    crate::support::set_arg(&mut args, "--output", "text");
    args.push("--verbose".into());
    let r = run(args.clone()).await;
    assert!(r.stdout().contains(&registry_id()), "{}", r.stdout());
    assert_no_password(&r);
    let bundle = reg.dir.path().join("bundle.tar.gz");
    args[0] = "bundle".into();
    args.retain(|a| a != "--verbose");
    args.extend(["--output-file".into(), bundle.display().to_string()]);
    let r = run(args).await;
    assert_no_password(&r);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&bundle).unwrap(),
    ));
    let mut files = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut entry, &mut text);
        assert!(
            !text.contains(PASSWORD),
            "the bundle's {} holds the registry password",
            entry.path().unwrap().display()
        );
        files += 1;
    }
    assert!(files > 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_is_not_a_registry_is_wrong_service() {
    // IoT Hub's HTTPS endpoint answers /v2/ with its own 401: TLS works, no Registry API.
    let hub = Hub::start(Default::default()).await;
    let host = crate::support::HUB;
    let r = run([
        "check".to_string(),
        "--vantage".into(),
        "host".into(),
        "--registry".into(),
        host.into(),
        "--only".into(),
        "registry-*".into(),
        "--skip".into(),
        "registry-mcr-microsoft-com".into(),
        "--trust-bundle".into(),
        hub.bundle.display().to_string(),
        "--connect-to".into(),
        format!("{host}:443:{}:{}", hub.hub.https.ip(), hub.hub.https.port()),
        "--timeout".into(),
        "5".into(),
        "--output".into(),
        "json".into(),
    ])
    .await;
    let rep = r.json();
    let c = check(&rep, "registry-testhub-azure-devices-net");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "wrong_service"),
        "{}",
        c.message
    );
    assert!(c.message.contains("HTTP 401"), "{}", c.message);
    assert_eq!(r.code(), 1, "a --registry is required");
    // An unknown registry id pattern is still a usage error; registry ids are accepted.
    let bad = run(["check", "--only", "nosuch-*"]).await;
    assert_eq!(bad.code(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_and_its_data_endpoint_through_squid() {
    // squid's shared memory (/dev/shm/squid-*) is machine-wide, and a squid that root started
    // leaves it owned by `proxy`: as another user squid cannot start.
    if !fixtures::needs_root() {
        return;
    }
    let data_port = free_port();
    let reg = Registry::start_on_named_ports(data_port);
    reg.push(false).await;
    let _data = reg.data_endpoint(data_port).await;
    // squid knows the names and, beside 443, allows CONNECT to the two ports.
    let loopback = reg.addr.ip();
    let squid = thirdparty::squid(&ProxyOptions {
        hosts: vec![(REGISTRY.into(), loopback), (DATA.into(), loopback)],
        connect_ports: vec![reg.addr.port(), data_port],
        ..ProxyOptions::default()
    });
    let registry = format!("{REGISTRY}:{}", reg.addr.port());
    let data_host = format!("{DATA}:{data_port}");
    // Straight from here the names lead nowhere (nothing listens on those ports on
    // 127.0.0.2, and no DNS query leaves the machine): only the way through squid works.
    let mut args = reg.args(&reg.config(None), data_port);
    args.extend(
        [
            "--proxy",
            &format!("http://{}", squid.addr),
            "--resolve",
            &format!("{REGISTRY}:127.0.0.2"),
            "--resolve",
            &format!("{DATA}:127.0.0.2"),
        ]
        .map(String::from),
    );
    let r = run(args).await;
    let rep = r.json();

    let c = check(&rep, &format!("registry-registry-lab-{}", reg.addr.port()));
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("pass", "ok"),
        "{}\n{}",
        c.message,
        reg.log()
    );
    assert!(c.via_proxy, "the registry check should go through squid");
    let names: Vec<&str> = c.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["dns", "tcp", "proxy", "tls", "protocol", "auth"],
        "{names:?}"
    );
    let proxy = &c.phases[2];
    assert_eq!(proxy.status, "ok");
    assert_eq!(proxy.detail["connect"], registry);
    assert_eq!(proxy.detail["status"], 200);
    let auth = c.phases.iter().find(|p| p.name == "auth").unwrap();
    assert_eq!(auth.detail["data_endpoint"], data_host);
    // The pull's own requests (manifest list, manifest, blob) crossed squid too, in the
    // tunnel /v2/ opened: kept alive, no second CONNECT.
    let requests = auth.detail["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|q| q["reused"] == true && q.get("proxy_ms").is_none()),
        "{requests:?}"
    );

    let d = check(&rep, &format!("registry-data-data-lab-{data_port}"));
    assert_eq!(
        (d.status.as_str(), d.protocol.as_str()),
        ("pass", "https"),
        "{}",
        d.message
    );
    assert!(
        d.via_proxy,
        "the data endpoint check should go through squid"
    );
    let proxy = d
        .phases
        .iter()
        .find(|p| p.name == "proxy")
        .expect("a proxy phase");
    assert_eq!(
        (proxy.status.as_str(), &proxy.detail["connect"]),
        ("ok", &serde_json::json!(data_host))
    );
    assert_eq!(r.code(), 0, "{}", r.stdout());

    // squid's log: one tunnel to the registry carried /v2/ and the three pull requests;
    // the data endpoint had its own.
    let registry_connect = format!("CONNECT {registry} ");
    let data_connect = format!("CONNECT {data_host} ");
    squid.log_once(
        "access.log",
        "the registry's and data endpoint's CONNECTs",
        |log| log.matches(&registry_connect).count() == 1 && log.contains(&data_connect),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_registry_gives_the_device_a_pull_token_and_refuses_wrong_or_no_credentials() {
    let auth_ca = Ca::new("edgeprobe token service CA");
    let tokens = TokenService::start(
        "127.0.0.1:0".parse().unwrap(),
        &auth_ca,
        TokenOptions {
            hostname: AUTH.into(),
            service: REGISTRY.into(),
            account: Some((USER.into(), PASSWORD.into())),
            anonymous_pull: false,
        },
    )
    .await
    .unwrap();
    let reg = Registry::start_with(Auth::Token(&tokens, &auth_ca.cert_pem), None);
    reg.push_with_token(&tokens).await;
    let data = reg.data_endpoint(0).await;
    let args = |password: Option<&str>| {
        let mut a = reg.args(&reg.config(password), data.addr.port());
        a.extend(["--resolve".into(), format!("{AUTH}:127.0.0.1")]);
        a
    };

    // The configured account gets a pull token from the realm; the registry takes it.
    let r = run(args(Some(PASSWORD))).await;
    let rep = r.json();
    let c = check(&rep, &registry_id());
    assert_eq!(
        (c.status.as_str(), c.auth.as_deref()),
        ("pass", Some("ok")),
        "{}\n{}",
        c.message,
        reg.log()
    );
    let protocol = c.phases.iter().find(|p| p.name == "protocol").unwrap();
    assert!(
        serde_json::Value::Object(protocol.detail.clone())
            .to_string()
            .contains(&tokens.realm),
        "the Bearer challenge names the realm: {:?}",
        protocol.detail
    );
    let pull = format!("repository:{REPO}:pull");
    let asked = tokens.requests();
    assert!(
        asked
            .iter()
            .any(|q| q.scope.as_deref() == Some(pull.as_str())
                && q.service.as_deref() == Some(REGISTRY)
                && q.user.as_deref() == Some(USER)
                && q.status == 200),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .all(|q| !q.scope.as_deref().unwrap_or_default().contains("push")),
        "read-only: {asked:?}"
    );
    assert_eq!(check(&rep, &data_id()).status, "pass");
    assert_no_password(&r);
    // The registry itself accepted the device's token for the manifest pull.
    let log = reg.log();
    assert!(
        log.lines().any(|l| l.contains("msg=\"authorized request\"")
            && l.contains("http.request.method=GET")
            && l.contains(&format!("/v2/{REPO}/manifests/{TAG}"))),
        "{log}"
    );
    assert!(
        !r.stdout().contains("eyJ"),
        "no token (a JWT) in the report:\n{}",
        r.stdout()
    );

    // A wrong password: the token service refuses it.
    let rep = run(args(Some("not-the-password"))).await.json();
    let c = check(&rep, &registry_id());
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.auth.as_deref()),
        ("warn", "auth_rejected", Some("rejected")),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("configured credentials"),
        "{}",
        c.message
    );
    assert!(tokens.requests().iter().any(|q| q.status == 401));

    // No credentials: an anonymous token without access, which the registry refuses.
    let rep = run(args(None)).await.json();
    let c = check(&rep, &registry_id());
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("warn", "auth_rejected"),
        "{}",
        c.message
    );
    assert!(c.message.contains("anonymous pull"), "{}", c.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_data_endpoint_on_its_own_port_is_named_with_that_port() {
    let closed = fixtures::ClosedPort::loopback().unwrap();
    let reg = Registry::start_on_named_ports(closed.port());
    reg.push(false).await;
    let mut args = reg.args(&reg.config(None), closed.port());
    args.extend(
        [
            "--resolve",
            &format!("{REGISTRY}:127.0.0.1"),
            "--resolve",
            &format!("{DATA}:127.0.0.1"),
        ]
        .map(String::from),
    );
    let rep = run(args).await.json();
    let c = check(&rep, &format!("registry-registry-lab-{}", reg.addr.port()));
    assert_eq!(c.status, "pass", "{}\n{}", c.message, reg.log());
    assert_eq!(
        c.fix.as_deref(),
        Some(
            format!(
                "allow outbound TCP {} to {DATA} as well as to the registry",
                closed.port()
            )
            .as_str()
        ),
        "{}",
        c.message
    );
    let d = check(&rep, &format!("registry-data-data-lab-{}", closed.port()));
    assert_eq!(d.reason, "tcp_refused", "{}", d.message);
}

/// A resolver that answers every query, but only after [`SlowDns::DELAY`]: Debian's dnsmasq
/// (the names `registry.lab` and `data.lab` → 127.0.0.1, every query logged) behind a UDP
/// relay that holds each answer back. The run sees it through a private mount of
/// /etc/resolv.conf (`unshare --mount`); dnsmasq and the relay are killed on drop.
struct SlowDns {
    dnsmasq: Child,
    relay: tokio::task::JoinHandle<()>,
    /// Every datagram the relay saw, decoded: (name, type, message id).
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, u16)>>>,
    dir: tempfile::TempDir,
}

impl SlowDns {
    /// Within glibc's 5 s per try: a slow resolver, not a broken one.
    const DELAY: Duration = Duration::from_millis(2500);

    async fn start() -> SlowDns {
        assert!(
            Path::new("/usr/sbin/dnsmasq").exists(),
            "dnsmasq is missing: `make test-deps` installs Debian's dnsmasq-base package"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let dnsmasq = Command::new("/usr/sbin/dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--user=root",
                "--log-queries",
                "--local=/lab/",
            ])
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-facility={}",
                dir.path().join("dnsmasq.log").display()
            ))
            .arg(format!("--address=/{REGISTRY}/127.0.0.1"))
            .arg(format!("--address=/{DATA}/127.0.0.1"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("dnsmasq starts");
        // The relay listens on port 53 (resolv.conf names no port) of a loopback address of
        // this process's own, and forwards each query to dnsmasq, each in a task of its own.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 50;
        let pid = std::process::id();
        let listen: SocketAddr = format!("127.{}.{}.{}:53", 53 + n, (pid >> 8) % 256, pid % 256)
            .parse()
            .unwrap();
        let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind(listen).await.unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let relay = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, client)) = socket.recv_from(&mut buf).await {
                let query = buf[..n].to_vec();
                // A client may send a query again before the answer comes (hickory does, at
                // 1.2 × the round-trip time): the same message id, one lookup.
                if let Ok(m) = hickory_resolver::proto::op::Message::from_vec(&query) {
                    let mut log = log.lock().unwrap();
                    for q in &m.queries {
                        let name = q.name().to_string().trim_end_matches('.').to_lowercase();
                        log.push((name, q.query_type().to_string(), m.metadata.id));
                    }
                }
                let socket = socket.clone();
                tokio::spawn(async move {
                    let up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    up.send_to(&query, upstream).await.unwrap();
                    let mut answer = vec![0u8; 4096];
                    let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(5), up.recv(&mut answer)).await
                    else {
                        return;
                    };
                    // The fault under test: a resolver that takes its time to answer.
                    tokio::time::sleep(Self::DELAY).await;
                    let _ = socket.send_to(&answer[..n], client).await;
                });
            }
        });
        std::fs::write(
            dir.path().join("resolv.conf"),
            format!("nameserver {}\n", listen.ip()),
        )
        .unwrap();
        let mut dns = SlowDns {
            dnsmasq,
            relay,
            seen,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&upstream, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = dns.dnsmasq.try_wait() {
                panic!("dnsmasq exited ({status}): {}", dns.log("stderr.log"));
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not listen on {upstream}"
            );
            // Readiness poll of a process we do not control.
            std::thread::sleep(Duration::from_millis(25));
        }
        dns
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// How often dnsmasq was asked `qtype` (A, AAAA) for `name`, resends included.
    fn queries(&self, qtype: &str, name: &str) -> usize {
        let needle = format!("query[{qtype}] {name} from ");
        self.log("dnsmasq.log").matches(&needle).count()
    }

    /// The lookups of `qtype` for `name`: distinct message ids (a resend keeps its id).
    fn lookups(&self, qtype: &str, name: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        let ids: std::collections::BTreeSet<u16> = seen
            .iter()
            .filter(|(n, t, _)| n == name && t == qtype)
            .map(|(_, _, id)| *id)
            .collect();
        ids.len()
    }

    /// Runs edgeprobe with this resolver as its /etc/resolv.conf.
    async fn run(&self, args: Vec<String>) -> Run {
        let resolv = self.dir.path().join("resolv.conf").display().to_string();
        let prefix = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
            resolv.as_str(),
        ];
        crate::support::run_prefixed(&prefix, args).await
    }
}

impl Drop for SlowDns {
    fn drop(&mut self) {
        self.relay.abort();
        let _ = self.dnsmasq.kill();
        let _ = self.dnsmasq.wait();
    }
}

// Regression: a resolver answering in 2.5 s turned a working registry into "no DNS answer for
// the data endpoint … pulls will stall": the run asked the same names again and again (a TTL
// of 0 is never cached), one lookup after another, until its deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_resolver_is_asked_each_name_once_and_the_registry_passes() {
    if !fixtures::needs_root() {
        return;
    }
    let data_port = free_port();
    let reg = Registry::start_on_named_ports(data_port);
    reg.push(false).await;
    let _data = reg.data_endpoint(data_port).await;
    let dns = SlowDns::start().await;
    let args = crate::support::registry_check_args(&reg.config(None), &reg.bundle, 10.0);
    let r = dns.run(args).await;
    let rep = r.json();
    let registry_check = format!("registry-registry-lab-{}", reg.addr.port());
    let data_check = format!("registry-data-data-lab-{data_port}");
    for id in [&registry_check, &data_check] {
        let c = check(&rep, id);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("pass", "ok"),
            "{id}: {}\ndnsmasq:\n{}",
            c.message,
            dns.log("dnsmasq.log")
        );
        // Resolved through the slow resolver, not an override.
        let phase = c.phases.iter().find(|p| p.name == "dns").unwrap();
        assert_eq!(phase.detail["a"], serde_json::json!(["127.0.0.1"]), "{id}");
    }
    let registry_dns = check(&rep, &registry_check)
        .phases
        .iter()
        .find(|p| p.name == "dns")
        .unwrap()
        .duration_ms;
    // The relay held the answer back (the lookup may have begun a moment before the check,
    // as soon as the registry's name was known).
    assert!(
        registry_dns >= (SlowDns::DELAY / 2).as_millis() as f64,
        "the relay held the answer back: {registry_dns} ms"
    );
    // Each name once per family, for the registry's four requests and the data check alike
    // (the resolver library may resend a query it has no answer for yet: same id).
    for name in [REGISTRY, DATA] {
        for qtype in ["A", "AAAA"] {
            assert_eq!(
                dns.lookups(qtype, name),
                1,
                "{qtype} {name}: {:?}",
                dns.seen.lock().unwrap()
            );
            assert!(
                dns.queries(qtype, name) >= 1,
                "dnsmasq answered {qtype} {name}"
            );
        }
    }
    assert_eq!(r.code(), 0, "{}", r.stdout());
}

// The same resolver with a run too short for it: the check the deadline cut short says the
// run's time ran out (reason `deadline`, with --timeout as the fix), never that the
// registry or its data endpoint is blocked.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_resolver_and_a_short_run_say_deadline_not_blocked() {
    if !fixtures::needs_root() {
        return;
    }
    let data_port = free_port();
    let reg = Registry::start_on_named_ports(data_port);
    reg.push(false).await;
    let _data = reg.data_endpoint(data_port).await;
    let dns = SlowDns::start().await;
    let args = crate::support::registry_check_args(&reg.config(None), &reg.bundle, 3.0);
    let r = dns.run(args).await;
    let rep = r.json();
    assert!(
        r.elapsed < Duration::from_secs(3) + Duration::from_millis(500),
        "took {:?}",
        r.elapsed
    );
    let registry_checks: Vec<_> = rep
        .checks
        .iter()
        .filter(|c| c.id.starts_with("registry-"))
        .collect();
    assert!(!registry_checks.is_empty());
    let mut cut = 0;
    for c in &registry_checks {
        assert!(
            !c.message.contains("stall") && !c.message.contains("unreachable"),
            "{}: {}",
            c.id,
            c.message
        );
        match (c.status.as_str(), c.reason.as_str()) {
            ("pass", "ok") => {}
            ("warn", "deadline") => {
                cut += 1;
                assert!(
                    c.message.contains("ran out in the "),
                    "{}: {}",
                    c.id,
                    c.message
                );
                assert!(
                    c.fix.as_deref().is_some_and(|f| f.contains("--timeout")),
                    "{}: {:?}",
                    c.id,
                    c.fix
                );
            }
            other => panic!("{}: {other:?}: {}", c.id, c.message),
        }
    }
    // The data endpoint's name cannot resolve before 5 s: its check, if the registry got to
    // the redirect, was cut short in DNS; otherwise the registry check itself was.
    assert!(cut >= 1, "nothing was cut short: {registry_checks:?}");
    if let Some(d) = rep
        .checks
        .iter()
        .find(|c| c.id.starts_with("registry-data-"))
    {
        assert_eq!(d.reason, "deadline", "{}", d.message);
        assert!(
            d.message.contains("the run's time (3.0 s) ran out"),
            "{}",
            d.message
        );
    }
    assert_eq!(
        r.code(),
        0,
        "a run cut short is no verdict on the device: {}",
        r.stdout()
    );
}

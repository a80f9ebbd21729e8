//! The lab's third-party servers (Debian's dnsmasq, mosquitto, nginx, squid, RabbitMQ,
//! docker-registry) and the certificates they present, made with `openssl` at test time. Every
//! server runs in the `cloud` namespace, is started here and killed by PID (or process group)
//! on drop.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{FixtureProcess, Netns, DEVICE, KEY};

/// The lab's IoT Hub name (served by dnsmasq, on every certificate).
pub const LAB_HUB: &str = "labhub.azure-devices.net";
/// The issuer a TLS-inspecting middlebox signs with.
pub const INSPECT_CA: &str = "XYZ_Access_SSLInspect";

/// A server process, killed on drop (its whole process group when `group`).
pub struct Proc {
    pub name: &'static str,
    child: Child,
    group: bool,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, ns: &Netns, argv: &[&str], log: &Path, group: bool) -> Proc {
        Self::spawn_env(name, ns, argv, log, group, &[])
    }

    fn spawn_env(
        name: &'static str,
        ns: &Netns,
        argv: &[&str],
        log: &Path,
        group: bool,
        env: &[(&str, String)],
    ) -> Proc {
        Self::spawn_in(name, Some(ns), argv, log, group, env)
    }

    /// Starts `argv` inside `ns`, or on the host when `None`.
    fn spawn_in(
        name: &'static str,
        ns: Option<&Netns>,
        argv: &[&str],
        log: &Path,
        group: bool,
        env: &[(&str, String)],
    ) -> Proc {
        let file = std::fs::File::create(log).unwrap();
        let mut cmd = match ns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns.name]).args(argv);
                cmd
            }
            None => {
                let mut cmd = Command::new(argv[0]);
                cmd.args(&argv[1..]);
                cmd
            }
        };
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        if group {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Proc {
            name,
            child,
            group,
            log: log.to_owned(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ip:port` accepts TCP inside `ns`, or panics with the server's log.
    pub fn wait_tcp(&mut self, ns: &Netns, ip: &str, port: u16, within: Duration) {
        let probe = format!("exec 3<>/dev/tcp/{ip}/{port}");
        self.wait_for(&format!("{ip}:{port}"), within, || {
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "bash", "-c", &probe])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
    }

    /// Waits until `addr` accepts TCP on the host, or panics with the server's log.
    fn wait_host_tcp(&mut self, addr: SocketAddr, within: Duration) {
        self.wait_for(&addr.to_string(), within, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    fn wait_for(&mut self, what: &str, within: Duration, mut listening: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if listening() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {what}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {what} within {within:?}:\n{}",
                self.name,
                self.log_text()
            );
            // Readiness poll of a process we do not control.
            std::thread::sleep(Duration::from_millis(40));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key and certificate on disk (`{name}.key`, `{name}.pem`; `{name}-chain.pem` for leaves).
#[derive(Clone)]
pub struct Cert {
    pub key: PathBuf,
    pub pem: PathBuf,
    pub chain: PathBuf,
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn ca(dir: &Path, name: &str, cn: &str) -> Cert {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-x509"];
    args.extend(EC);
    args.extend([
        "-nodes", "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj,
    ]);
    openssl(dir, &args);
    Cert {
        key: dir.join(&key),
        pem: dir.join(&pem),
        chain: dir.join(&pem),
    }
}

fn leaf(dir: &Path, name: &str, cn: &str, issuer: &Cert) -> Cert {
    let (key, pem, csr, ext) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName=DNS:{cn}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-new"];
    args.extend(EC);
    args.extend(["-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &args);
    let (ca_pem, ca_key) = (
        issuer.pem.display().to_string(),
        issuer.key.display().to_string(),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    let chain = dir.join(format!("{name}-chain.pem"));
    let text = std::fs::read_to_string(dir.join(&pem)).unwrap()
        + &std::fs::read_to_string(&issuer.pem).unwrap();
    std::fs::write(&chain, text).unwrap();
    Cert {
        key: dir.join(&key),
        pem: dir.join(&pem),
        chain,
    }
}

/// The lab's PKI: a root the device trusts (`--trust-bundle`), the hub's leaf under it, and
/// an inspection CA the device does not know, issuing a leaf with the same name.
pub struct Pki {
    pub root: Cert,
    pub hub: Cert,
    pub inspect: Cert,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let root = ca(dir, "root", "Edgeprobe Lab Root CA");
        let hub = leaf(dir, "hub", LAB_HUB, &root);
        let inspect_ca = ca(dir, "inspect-ca", INSPECT_CA);
        let inspect = leaf(dir, "inspect", LAB_HUB, &inspect_ca);
        // Servers that drop privileges must still read their files.
        for entry in std::fs::read_dir(dir).unwrap() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(
                entry.unwrap().path(),
                std::fs::Permissions::from_mode(0o644),
            );
        }
        Pki { root, hub, inspect }
    }

    /// A leaf for `cn` (its only DNS name) under the lab's root.
    pub fn issue(&self, dir: &Path, name: &str, cn: &str) -> Cert {
        leaf(dir, name, cn, &self.root)
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// dnsmasq: authoritative for the lab's names, NXDOMAIN for anything else under
/// azure-devices.net and azurecr.io, no upstream at all.
pub fn dnsmasq(ns: &Netns, dir: &Path, ip: &str, records: &[(&str, &str)]) -> Proc {
    let mut args: Vec<String> = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        "--log-facility=-",
        "--log-queries",
        "--pid-file=",
        "--local=/azure-devices.net/",
        "--local=/azurecr.io/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--listen-address={ip}"));
    for (name, addr) in records {
        args.push(format!("--address=/{name}/{addr}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut proc = Proc::spawn("dnsmasq", ns, &argv, &dir.join("dnsmasq.log"), false);
    proc.wait_tcp(ns, ip, 53, Duration::from_secs(10));
    proc
}

/// mosquitto's own plain WebSocket listener (nginx forwards `mqtt` upgrades to it).
pub const MOSQUITTO_WS_PORT: u16 = 8080;

pub struct MosquittoOptions {
    /// Listen with TLS on `ip:8883` (off when another service holds 8883).
    pub tls_8883: bool,
    /// Reject every client but one unrelated user (a password file; no anonymous access).
    pub reject_device: bool,
}

pub fn mosquitto(ns: &Netns, dir: &Path, ip: &str, pki: &Pki, o: &MosquittoOptions) -> Proc {
    let mut conf = String::from(
        "user root\npersistence false\nlog_dest stderr\nlog_type all\nper_listener_settings false\n",
    );
    if o.reject_device {
        let pw = dir.join("mosquitto.passwd");
        let out = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&pw)
            .args(["some-other-device", "its-password"])
            .output()
            .expect("mosquitto_passwd runs");
        assert!(out.status.success(), "mosquitto_passwd: {out:?}");
        conf.push_str(&format!(
            "allow_anonymous false\npassword_file {}\n",
            p(&pw)
        ));
    } else {
        conf.push_str("allow_anonymous true\n");
    }
    // mosquitto 2.0 cannot run a WebSocket listener alone: keep a plain one on loopback.
    conf.push_str("listener 1883 127.0.0.1\n");
    if o.tls_8883 {
        conf.push_str(&format!(
            "listener 8883 {ip}\ncertfile {}\nkeyfile {}\n",
            p(&pki.hub.pem),
            p(&pki.hub.key)
        ));
    }
    // libwebsockets binds every address of the namespace (it ignores the IP): the cloud
    // namespace has only the lab's addresses, and the router forwards only what a scenario allows.
    conf.push_str(&format!(
        "listener {MOSQUITTO_WS_PORT}\nprotocol websockets\n"
    ));
    let conf_path = dir.join("mosquitto.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut proc = Proc::spawn(
        "mosquitto",
        ns,
        &["mosquitto", "-c", &p(&conf_path)],
        &dir.join("mosquitto.log"),
        false,
    );
    let port = if o.tls_8883 { 8883 } else { 1883 };
    let addr = if o.tls_8883 { ip } else { "127.0.0.1" };
    proc.wait_tcp(ns, addr, port, Duration::from_secs(10));
    proc.wait_tcp(ns, "127.0.0.1", MOSQUITTO_WS_PORT, Duration::from_secs(10));
    proc
}

pub struct NginxOptions {
    /// Present the inspection CA's chain on 443 instead of the hub's.
    pub intercept_443: bool,
    /// Also serve HTTPS on 8883 (a web server where MQTT should be).
    pub https_on_8883: bool,
    /// Where `AMQPWSB10` upgrades go (an https://IP:PORT), if anywhere.
    pub amqp_ws_backend: Option<String>,
    /// A registry's data endpoint, if any.
    pub data_endpoint: Option<DataSite>,
}

/// A registry's data endpoint as a second nginx site on an address of its own: TLS with the
/// data host's certificate, then 404 to every request (a real one answers a request without a
/// signed blob URL with an error too). Requests land in `nginx-data-access.log`.
pub struct DataSite {
    pub ip: String,
    pub host: String,
    pub cert: Cert,
}

/// The IoT Hub body for an unauthenticated request (PROTOCOLS.md).
const UNAUTHORIZED: &str = r#"{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized","ExceptionMessage":"Tracking ID:lab-nginx-0-G:0-TimeStamp:01/01/2026 00:00:00"}"#;

pub fn nginx(ns: &Netns, dir: &Path, ip: &str, pki: &Pki, o: &NginxOptions) -> Proc {
    let d = p(dir);
    let cert443 = if o.intercept_443 {
        &pki.inspect
    } else {
        &pki.hub
    };
    let amqp_ws = o
        .amqp_ws_backend
        .as_ref()
        .map(|b| format!("        AMQPWSB10 {b};\n"))
        .unwrap_or_default();
    let mut conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    map $http_sec_websocket_protocol $iothub_ws {{
        default "";
        mqtt http://127.0.0.1:{MOSQUITTO_WS_PORT};
{amqp_ws}    }}
    server {{
        listen {ip}:443 ssl;
        server_name {LAB_HUB};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        location = /$iothub/websocket {{
            if ($iothub_ws = "") {{ return 400; }}
            proxy_pass $iothub_ws;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_ssl_server_name on;
            proxy_ssl_name {LAB_HUB};
        }}
        location / {{
            default_type application/json;
            add_header iothub-errorcode IotHubUnauthorizedAccess always;
            return 401 '{UNAUTHORIZED}';
        }}
    }}
"#,
        chain = p(&cert443.chain),
        key = p(&cert443.key),
    );
    if o.https_on_8883 {
        conf.push_str(&format!(
            r#"    server {{
        listen {ip}:8883 ssl;
        server_name {LAB_HUB};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        location / {{ return 200 'a web page, not MQTT'; }}
    }}
"#,
            chain = p(&pki.hub.chain),
            key = p(&pki.hub.key),
        ));
    }
    if let Some(site) = &o.data_endpoint {
        conf.push_str(&format!(
            r#"    server {{
        listen {ip}:443 ssl;
        server_name {host};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        access_log {d}/nginx-data-access.log;
        location / {{ return 404; }}
    }}
"#,
            ip = site.ip,
            host = site.host,
            chain = p(&site.cert.chain),
            key = p(&site.cert.key),
        ));
    }
    conf.push_str("}\n");
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut proc = Proc::spawn(
        "nginx",
        ns,
        &[
            "nginx",
            "-p",
            &d,
            "-e",
            &format!("{d}/nginx-error.log"),
            "-c",
            &p(&conf_path),
        ],
        &dir.join("nginx.log"),
        false,
    );
    proc.wait_tcp(ns, ip, 443, Duration::from_secs(10));
    if let Some(site) = &o.data_endpoint {
        proc.wait_tcp(ns, &site.ip, 443, Duration::from_secs(10));
    }
    proc
}

/// squid on `ip:3128`, resolving through the lab's dnsmasq (and nothing else), allowing
/// CONNECT to 443 only, from the device's subnet or with Basic credentials.
pub fn squid(
    ns: &Netns,
    dir: &Path,
    ip: &str,
    device_subnet: &str,
    auth: Option<(&str, &str)>,
) -> Proc {
    let d = p(dir);
    std::fs::write(dir.join("squid-hosts"), "127.0.0.1 localhost\n").unwrap();
    let mut conf = format!(
        "http_port {ip}:3128\nvisible_hostname lab-proxy\npid_filename {d}/squid.pid\n\
         cache_log {d}/squid-cache.log\naccess_log stdio:{d}/squid-access.log\ncache deny all\n\
         coredump_dir {d}\nshutdown_lifetime 0 seconds\nhosts_file {d}/squid-hosts\n\
         dns_nameservers {ip}\nacl SSL_ports port 443\nacl CONNECT method CONNECT\n\
         http_access deny CONNECT !SSL_ports\n"
    );
    match auth {
        Some((user, pass)) => {
            let out = Command::new("openssl")
                .args(["passwd", "-apr1", pass])
                .output()
                .expect("openssl runs");
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            std::fs::write(dir.join("squid-passwd"), format!("{user}:{hash}\n")).unwrap();
            conf.push_str(&format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/squid-passwd\n\
                 auth_param basic realm lab\nacl authed proxy_auth REQUIRED\nhttp_access allow authed\n"
            ));
        }
        None => conf.push_str(&format!(
            "acl lab src {device_subnet}\nhttp_access allow lab\n"
        )),
    }
    conf.push_str("http_access deny all\n");
    let conf_path = dir.join("squid.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut proc = Proc::spawn(
        "squid",
        ns,
        &["squid", "-N", "-f", &p(&conf_path)],
        &dir.join("squid.log"),
        false,
    );
    proc.wait_tcp(ns, ip, 3128, Duration::from_secs(20));
    proc
}

/// RabbitMQ with the AMQP 1.0 plugin, TLS on `ip:5671` (no plain listener), SASL ANONYMOUS
/// mapped to guest. Its own epmd runs next to it; the broker's start script and the Erlang VM
/// share a process group that is killed whole.
pub struct Rabbit {
    // Field order is drop order: the broker before its epmd.
    _broker: Proc,
    _epmd: Proc,
}

pub fn rabbitmq(ns: &Netns, dir: &Path, ip: &str, pki: &Pki) -> Rabbit {
    let home = dir.join("rabbit");
    std::fs::create_dir_all(&home).unwrap();
    let conf = home.join("rabbitmq.conf");
    std::fs::write(
        &conf,
        format!(
            "listeners.tcp = none\nlisteners.ssl.default = {ip}:5671\n\
             ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n\
             loopback_users = none\namqp1_0.default_user = guest\n",
            p(&pki.root.pem),
            p(&pki.hub.pem),
            p(&pki.hub.key)
        ),
    )
    .unwrap();
    let plugins = home.join("enabled_plugins");
    std::fs::write(&plugins, "[rabbitmq_amqp1_0].\n").unwrap();
    let mut epmd = Proc::spawn(
        "epmd",
        ns,
        &["epmd", "-address", "127.0.0.1"],
        &dir.join("epmd.log"),
        false,
    );
    epmd.wait_tcp(ns, "127.0.0.1", 4369, Duration::from_secs(10));
    let h = p(&home);
    let env = [
        ("HOME", h.clone()),
        ("RABBITMQ_CONFIG_FILE", p(&conf)),
        ("RABBITMQ_ENABLED_PLUGINS_FILE", p(&plugins)),
        ("RABBITMQ_MNESIA_BASE", format!("{h}/mnesia")),
        ("RABBITMQ_LOG_BASE", format!("{h}/log")),
        ("RABBITMQ_LOGS", "-".to_owned()),
        ("RABBITMQ_PID_FILE", format!("{h}/rabbit.pid")),
        ("RABBITMQ_NODENAME", "rabbit@localhost".to_owned()),
        ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
    ];
    let mut broker = Proc::spawn_env(
        "rabbitmq-server",
        ns,
        &["/usr/lib/rabbitmq/bin/rabbitmq-server"],
        &dir.join("rabbitmq.log"),
        true,
        &env,
    );
    broker.wait_tcp(ns, ip, 5671, Duration::from_secs(40));
    Rabbit {
        _broker: broker,
        _epmd: epmd,
    }
}

/// edgeprobe's own simulated hub (`serve-fixture`) on the cloud namespace's loopback. The lab
/// uses it for one thing only: the AMQP-over-WebSocket backend behind nginx, because no
/// Debian package speaks AMQP 1.0 over WebSocket with `AMQPWSB10`.
pub struct Fixture {
    _process: FixtureProcess,
    pub https: String,
}

pub fn fixture(ns: &Netns) -> Fixture {
    let device = format!("{DEVICE}:{KEY}");
    let process = FixtureProcess::start(
        ns,
        &[
            "--bind",
            "127.0.0.1",
            "--hostname",
            LAB_HUB,
            "--device",
            &device,
        ],
    );
    Fixture {
        https: process.get("https"),
        _process: process,
    }
}

/// The lab's container registry: a name shaped like an Azure Container Registry's, its blob
/// downloads redirected to a data endpoint named like ACR's regional ones.
pub const ACR: &str = "myregistry.azurecr.io";
pub const ACR_DATA: &str = "myregistry.westeurope.data.azurecr.io";
/// The image pushed to it (what `[agent.config] image` names).
pub const ACR_REPO: &str = "azureiotedge-agent";
pub const ACR_TAG: &str = "1.5";

/// A docker-registry configuration: TLS with `cert` on `addr`, storage in
/// `dir/registry-storage` (shared by every registry of the lab), blobs redirected if asked.
fn registry_config(
    dir: &Path,
    file: &str,
    addr: &str,
    cert: &Cert,
    redirect: Option<&str>,
) -> PathBuf {
    let mut conf = format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n\
         http:\n  addr: {addr}\n  secret: edgeprobe-lab-secret\n  tls:\n    certificate: {chain}\n    key: {key}\n",
        storage = p(&dir.join("registry-storage")),
        chain = p(&cert.chain),
        key = p(&cert.key),
    );
    if let Some(host) = redirect {
        conf.push_str(&format!(
            "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: https://{host}/\n"
        ));
    }
    let path = dir.join(file);
    std::fs::write(&path, conf).unwrap();
    path
}

/// Debian's docker-registry (distribution 2.8) inside `ns` on `ip:443`: TLS with `cert`,
/// storage in the test's directory, and the `redirect` storage middleware, so every blob
/// request answers 307 to `https://{data_host}/...`.
pub fn docker_registry(ns: &Netns, dir: &Path, ip: &str, cert: &Cert, data_host: &str) -> Proc {
    let conf = registry_config(
        dir,
        "registry.yml",
        &format!("{ip}:443"),
        cert,
        Some(data_host),
    );
    let mut proc = Proc::spawn(
        "docker-registry",
        ns,
        &["docker-registry", "serve", &p(&conf)],
        &dir.join("registry.log"),
        false,
    );
    proc.wait_tcp(ns, ip, 443, Duration::from_secs(20));
    proc
}

/// Pushes the tiny test image (`ACR_REPO:ACR_TAG`, a manifest list naming a linux/amd64
/// image) into the storage [`docker_registry`] serves, through the Registry API: the client
/// runs in the test process, which cannot enter the cloud namespace, so a second
/// docker-registry over the same storage takes the push on the host's loopback and is
/// stopped again. `cert` names `ACR`; `root` issued it.
pub fn push_test_image(dir: &Path, cert: &Cert, root: &Cert) {
    let der = dir.join("root.der");
    openssl(
        dir,
        &[
            "x509",
            "-in",
            &p(&root.pem),
            "-outform",
            "DER",
            "-out",
            &p(&der),
        ],
    );
    let der = std::fs::read(der).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], crate::thirdparty::free_port()));
    let conf = registry_config(dir, "registry-push.yml", &addr.to_string(), cert, None);
    let mut proc = Proc::spawn_in(
        "docker-registry (push)",
        None,
        &["docker-registry", "serve", &p(&conf)],
        &dir.join("registry-push.log"),
        false,
        &[],
    );
    proc.wait_host_tcp(addr, Duration::from_secs(20));
    let client = fixtures::registry::RegistryClient::new(addr, ACR, der.into(), None);
    // A runtime of its own, on a thread of its own: callers may be inside a runtime.
    let pushed = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(client.push_test_image(ACR_REPO, ACR_TAG))
        })
        .join()
        .expect("the push thread")
    });
    if let Err(e) = pushed {
        panic!("push to docker-registry: {e}\n{}", proc.log_text());
    }
}

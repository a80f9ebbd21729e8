//! Real third-party servers from Debian's packages (squid, tinyproxy, stunnel), started per
//! test in a temporary directory and killed by PID when the test ends, pass or fail.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process; killed on drop.
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port for a server that binds it itself, right after.
///
/// Taken below Linux's ephemeral range (32768–60999), where the kernel never hands out a
/// port to the run's own `bind(0)` listeners and fixtures, so nothing else of the run can
/// claim it between this check and the server's bind. Numbers are not reused within the
/// run; the start depends on the PID so that concurrent runs rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (base + n) % SPAN).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + SPAN);
}

impl Server {
    /// Waits until the server listens; panics with `log` (a file of its directory) if it
    /// dies or takes too long. The process is already ours to kill on drop by then.
    fn ready(mut self, name: &str, log: &str) -> Server {
        let log = self.dir.path().join(log);
        wait_ready(name, self.addr, &mut self.child, &log);
        self
    }

    /// The text of `file` in the server's directory once `done` holds for it: servers log a
    /// connection when it ends, which may be a moment after the client process has exited.
    /// Panics with the text if that does not happen within 10 s.
    pub fn log_once(&self, file: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        log_when(&self.dir.path().join(file), what, done)
    }
}

/// The text of the log at `path` once `done` holds for it; panics with the text if that
/// does not happen within 10 s. For logs a server writes after it has answered.
pub fn log_when(path: &Path, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not in {} within 10 s:\n{text}",
            path.display()
        );
        // Polls a log another process writes, not synchronisation of our own code.
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until `addr` accepts connections or the process dies; panics with its log otherwise.
fn wait_ready(name: &str, addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{name} exited ({status}) before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not listen on {addr} within 20 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        // Readiness poll of a process we do not control, not synchronisation of our own code.
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn require(binary: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).exists()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(binary).exists();
    assert!(
        found,
        "{binary} is missing: `make test-deps` installs Debian's {package} package"
    );
}

/// Proxy options.
#[derive(Default, Clone)]
pub struct ProxyOptions {
    /// Basic credentials the proxy demands.
    pub auth: Option<(String, String)>,
    /// Names the proxy resolves (the simulated hub lives on loopback, not in DNS).
    pub hosts: Vec<(String, IpAddr)>,
    /// Ports CONNECT may reach besides 443 (squid only).
    pub connect_ports: Vec<u16>,
}

fn hosts_file(dir: &Path, hosts: &[(String, IpAddr)]) -> String {
    let mut text = String::from("127.0.0.1 localhost\n");
    for (name, ip) in hosts {
        text.push_str(&format!("{ip} {name}\n"));
    }
    let path = dir.join("hosts");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn world_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// squid, allowing CONNECT to 443 only (its default policy) plus `connect_ports`, optionally
/// with Basic auth.
pub fn squid(opts: &ProxyOptions) -> Server {
    require("squid", "squid");
    let dir = tempfile::tempdir().unwrap();
    world_writable(dir.path());
    let d = dir.path().display().to_string();
    let port = free_port();
    let hosts = hosts_file(dir.path(), &opts.hosts);
    let ssl_ports: String = opts.connect_ports.iter().map(|p| format!(" {p}")).collect();
    let mut conf = format!(
        "http_port 127.0.0.1:{port}\nvisible_hostname edgeprobe-test\npid_filename {d}/squid.pid\n\
         cache_log {d}/cache.log\naccess_log stdio:{d}/access.log\ncache deny all\n\
         coredump_dir {d}\nshutdown_lifetime 0 seconds\nhosts_file {hosts}\n\
         acl SSL_ports port 443{ssl_ports}\nacl CONNECT method CONNECT\nhttp_access deny CONNECT !SSL_ports\n"
    );
    match &opts.auth {
        Some((user, pass)) => {
            let out = Command::new("openssl")
                .args(["passwd", "-apr1", pass])
                .output()
                .expect("openssl runs");
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            std::fs::write(dir.path().join("passwd"), format!("{user}:{hash}\n")).unwrap();
            conf.push_str(&format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/passwd\nauth_param basic realm edgeprobe\n\
                 acl authed proxy_auth REQUIRED\nhttp_access allow authed\n"
            ));
        }
        None => conf.push_str("http_access allow localhost\n"),
    }
    conf.push_str("http_access deny all\n");
    let conf_path = dir.path().join("squid.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("stderr.log");
    let child = Command::new("squid")
        .args(["-N", "-f"])
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("squid starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Server { addr, child, dir }.ready("squid", "cache.log")
}

/// tinyproxy, allowing CONNECT to 443, optionally with Basic auth. It resolves names with
/// the system resolver, so it runs in a private mount namespace whose /etc/hosts knows the hub.
pub fn tinyproxy(opts: &ProxyOptions) -> Server {
    require("tinyproxy", "tinyproxy");
    let dir = tempfile::tempdir().unwrap();
    world_writable(dir.path());
    let port = free_port();
    let hosts = hosts_file(dir.path(), &opts.hosts);
    let mut conf = format!(
        "User nobody\nGroup nogroup\nPort {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\n\
         MaxClients 50\nAllow 127.0.0.1\nConnectPort 443\nLogFile \"{}/tinyproxy.log\"\n",
        dir.path().display()
    );
    if let Some((user, pass)) = &opts.auth {
        conf.push_str(&format!("BasicAuth {user} {pass}\n"));
    }
    let conf_path = dir.path().join("tinyproxy.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("stderr.log");
    let script = format!(
        "mount --bind {hosts} /etc/hosts && exec tinyproxy -d -c {}",
        conf_path.display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("tinyproxy starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Server { addr, child, dir }.ready("tinyproxy", "stderr.log")
}

/// stunnel, in the foreground: TLS on a loopback port with `leaf` as its certificate, each
/// connection forwarded as plain TCP to `upstream`. In front of a proxy, an `https://` proxy.
pub fn stunnel(leaf: &fixtures::pki::Leaf, upstream: SocketAddr) -> Server {
    require("stunnel4", "stunnel4");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), &leaf.key_pem).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(d.join("key.pem"), private).unwrap();
    }
    let port = free_port();
    // No pid file and no fork: the child we hold is stunnel itself, so killing it on drop
    // leaves nothing behind.
    let conf = format!(
        "foreground = yes\npid =\nsyslog = no\ndebug = info\n\n[proxy]\n\
         accept = 127.0.0.1:{port}\nconnect = {upstream}\ncert = {cert}\nkey = {key}\n",
        cert = d.join("cert.pem").display(),
        key = d.join("key.pem").display(),
    );
    let conf_path = d.join("stunnel.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = d.join("stunnel.log");
    let child = Command::new("stunnel4")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("stunnel starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Server { addr, child, dir }.ready("stunnel", "stunnel.log")
}

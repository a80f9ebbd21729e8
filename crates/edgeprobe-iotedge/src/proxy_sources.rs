//! Where each IoT Edge component takes its HTTPS proxy from, so that "the host gets through
//! but the runtime does not" can be explained. edgeAgent reads `agent.env` of the config
//! file; aziot-edged and aziot-identityd (and 1.1's iotedge) read systemd `Environment=`
//! settings; the Docker daemon pulls images through `daemon.json` `proxies` or its own
//! systemd environment. When they disagree, [`mismatches`] says so, one line each, with
//! passwords redacted.
//!
//! Files are read under a root directory (`/` in production). A component is recorded when
//! its files exist and could all be read; an unreadable file records nothing, never an error.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use edgeprobe_core::bounded;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::config::{ConfigFormat, EdgeConfig};
use crate::secret::{Secret, REDACTED};

/// edgeAgent, as configured in `/etc/aziot/config.toml`.
pub const EDGE_AGENT_TOML: &str = "edgeAgent (config.toml agent.env)";
/// edgeAgent, as configured in 1.1's `/etc/iotedge/config.yaml`.
pub const EDGE_AGENT_YAML: &str = "edgeAgent (config.yaml agent.env)";
/// The Docker (Moby) daemon, which pulls the images.
pub const DOCKER: &str = "docker daemon";

/// The systemd units whose environment matters, with their component names.
const UNITS: [(&str, &str); 3] = [
    ("aziot-edged", "aziot-edged (systemd)"),
    ("aziot-identityd", "aziot-identityd (systemd)"),
    ("iotedge", "iotedge (systemd)"),
];

/// Where systemd looks for units and drop-ins, highest priority first.
const UNIT_DIRS: [&str; 4] = [
    "etc/systemd/system",
    "run/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

/// The default port of a proxy URL that names none.
pub const DEFAULT_PROXY_PORT: &str = "3128";

/// One component's proxy setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySource {
    /// e.g. "edgeAgent (config.toml agent.env)", "aziot-edged (systemd)", "docker daemon".
    pub component: &'static str,
    /// The file the setting came from (or, with no setting, the component's main file).
    pub origin: String,
    pub https_proxy: Option<Secret>,
}

/// Finds each component's HTTPS proxy under `root`. `config` is the parsed IoT Edge
/// configuration, when there is one (its `agent.env` is edgeAgent's setting). Order:
/// edgeAgent, aziot-edged, aziot-identityd, iotedge (1.1), docker daemon.
pub fn discover(root: &Path, config: Option<&EdgeConfig>) -> Vec<ProxySource> {
    let mut out = Vec::new();
    if let Some(cfg) = config {
        out.push(ProxySource {
            component: match cfg.format {
                ConfigFormat::Toml => EDGE_AGENT_TOML,
                ConfigFormat::Yaml => EDGE_AGENT_YAML,
            },
            origin: cfg.source.clone(),
            https_proxy: cfg.https_proxy.clone(),
        });
    }
    for (unit, component) in UNITS {
        if let Some(env) = systemd_env(root, unit) {
            out.push(ProxySource {
                component,
                origin: env.origin.display().to_string(),
                https_proxy: env.https_proxy,
            });
        }
    }
    out.extend(docker(root));
    out
}

/// One line per component whose proxy differs from the first source's (edgeAgent's when a
/// config was given). URLs are compared normalized: scheme and host without case, port
/// 3128 when absent, path and trailing slash ignored, user and password included.
/// Passwords are printed as `<redacted>`.
pub fn mismatches(sources: &[ProxySource]) -> Vec<String> {
    let Some((first, rest)) = sources.split_first() else {
        return Vec::new();
    };
    let parse = |s: &ProxySource| s.https_proxy.as_ref().map(|p| ProxyUrl::parse(p.expose()));
    let reference = parse(first);
    rest.iter()
        .filter_map(|s| {
            let this = parse(s);
            if this == reference {
                return None;
            }
            let mut line = format!(
                "{} uses {} ({}), but {} uses {} ({})",
                s.component,
                describe(this.as_ref()),
                s.origin,
                first.component,
                describe(reference.as_ref()),
                first.origin
            );
            if let (Some(a), Some(b)) = (&this, &reference) {
                if a.same_but_password(b) {
                    line.push_str(": the passwords differ");
                }
            }
            Some(line)
        })
        .collect()
}

fn describe(url: Option<&ProxyUrl>) -> String {
    match url {
        None => "no proxy".into(),
        Some(u) => format!("proxy {}", u.shown()),
    }
}

/// A proxy URL taken apart leniently (people write `host:port`, `http://host/`, ...).
/// No `Debug`: it holds the password.
#[derive(PartialEq, Eq)]
struct ProxyUrl {
    scheme: String,
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: String,
}

impl ProxyUrl {
    fn parse(raw: &str) -> ProxyUrl {
        let s = raw.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_owned(), s),
        };
        // The password may hold '@' or '/': the host starts after the last '@'.
        let (userinfo, after) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        // The url crate reads the authority under a scheme of ours, which has no default
        // port: `:80` stays what the user wrote (http's own would drop it), and the host is
        // taken as written. One it cannot read is shown as written, without a port.
        let (host, port) = match url::Url::parse(&format!("proxy://{after}")) {
            Ok(u) => (
                u.host_str().unwrap_or_default().to_owned(),
                u.port()
                    .map_or_else(|| DEFAULT_PROXY_PORT.to_owned(), |p| p.to_string()),
            ),
            Err(_) => (
                after
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                String::new(),
            ),
        };
        let (user, password) = userinfo.map(userinfo_parts).unwrap_or_default();
        ProxyUrl {
            scheme,
            user,
            password,
            host: host.to_ascii_lowercase(),
            port,
        }
    }

    /// `scheme://user:<redacted>@host:port`.
    fn shown(&self) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(user) = &self.user {
            out.push_str(user);
            if self.password.is_some() {
                out.push(':');
                out.push_str(REDACTED);
            }
            out.push('@');
        }
        out.push_str(&self.host);
        if !self.port.is_empty() {
            out.push(':');
            out.push_str(&self.port);
        }
        out
    }

    fn same_but_password(&self, other: &ProxyUrl) -> bool {
        self.password != other.password
            && self.scheme == other.scheme
            && self.user == other.user
            && self.host == other.host
            && self.port == other.port
    }
}

/// A URL's userinfo as user and password, decoded. Escaped first, so that the url crate
/// keeps in it what would otherwise end it (`/`, `?`, `#`, `@`).
fn userinfo_parts(userinfo: &str) -> (Option<String>, Option<String>) {
    const ENDS_USERINFO: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'/')
        .add(b'?')
        .add(b'#')
        .add(b'@')
        .add(b'[')
        .add(b']')
        .add(b'\\');
    let escaped = utf8_percent_encode(userinfo, ENDS_USERINFO);
    let decode = |v: &str| percent_decode_str(v).decode_utf8_lossy().into_owned();
    match url::Url::parse(&format!("proxy://{escaped}@host")) {
        Ok(u) => (Some(decode(u.username())), u.password().map(decode)),
        // Unreadable userinfo is still someone's: keep it secret, as a password.
        Err(_) => (Some(String::new()), Some(decode(userinfo))),
    }
}

// ---------------------------------------------------------------------------------------
// Files.

enum Read {
    Missing,
    Unreadable,
    Text(String),
}

fn read(path: &Path) -> Read {
    match bounded::read_to_string(path, bounded::CONFIG_LIMIT) {
        Ok(t) => Read::Text(t),
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => Read::Missing,
        Err(_) => Read::Unreadable,
    }
}

/// What systemd would put in a unit's environment, as far as the proxy goes.
struct UnitEnv {
    https_proxy: Option<Secret>,
    origin: PathBuf,
}

/// `None` when the unit is not there or one of its files cannot be read.
fn systemd_env(root: &Path, unit: &str) -> Option<UnitEnv> {
    let service = format!("{unit}.service");
    let mut unit_file = None;
    for dir in UNIT_DIRS {
        let path = root.join(dir).join(&service);
        match read(&path) {
            Read::Missing => continue,
            Read::Unreadable => return None,
            Read::Text(t) => {
                unit_file = Some((path, t));
                break;
            }
        }
    }
    // Drop-ins of the same name: the higher-priority directory wins; applied in name order.
    let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in UNIT_DIRS {
        let d = root.join(dir).join(format!("{service}.d"));
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                dropins.entry(name).or_insert_with(|| entry.path());
            }
        }
    }

    let mut files = Vec::new();
    files.extend(unit_file);
    for path in dropins.into_values() {
        match read(&path) {
            Read::Text(t) => files.push((path, t)),
            Read::Missing => {} // a dangling symlink: systemd ignores it too
            Read::Unreadable => return None,
        }
    }
    let main = files.first()?.0.clone();

    let mut env: HashMap<String, (String, PathBuf)> = HashMap::new();
    for (path, text) in &files {
        for assignment in environment_assignments(text) {
            match assignment {
                None => env.clear(),
                Some((k, v)) => {
                    env.insert(k, (v, path.clone()));
                }
            }
        }
    }
    // Like Go and curl: the upper-case name first.
    let found = ["HTTPS_PROXY", "https_proxy"]
        .iter()
        .find_map(|k| env.get(*k).filter(|(v, _)| !v.trim().is_empty()));
    Some(match found {
        Some((value, path)) => UnitEnv {
            https_proxy: Some(Secret::new(value.trim())),
            origin: path.clone(),
        },
        None => UnitEnv {
            https_proxy: None,
            origin: main,
        },
    })
}

/// The `Environment=` assignments of a unit file's `[Service]` section, in order; `None`
/// for an empty `Environment=`, which resets the list.
fn environment_assignments(text: &str) -> Vec<Option<(String, String)>> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        // Continuation lines end with a backslash.
        if let Some(head) = raw.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line.to_owned();
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "Environment" {
            continue;
        }
        let value = value.trim();
        if value.is_empty() {
            out.push(None);
            continue;
        }
        for word in split_words(value) {
            if let Some((k, v)) = word.split_once('=') {
                out.push(Some((k.to_owned(), v.replace("%%", "%"))));
            }
        }
    }
    out
}

/// Splits on whitespace, honoring single and double quotes and backslash escapes.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) if c == '\\' => current.extend(chars.next()),
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == '\\' => {
                current.extend(chars.next());
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            None => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// The Docker daemon: `daemon.json` `proxies.https-proxy` wins over its environment.
fn docker(root: &Path) -> Option<ProxySource> {
    let json_path = root.join("etc/docker/daemon.json");
    let from_json = match read(&json_path) {
        Read::Missing => None,
        Read::Unreadable => return None,
        Read::Text(text) => {
            // Docker refuses to start with a broken daemon.json; record nothing from it.
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(
                value
                    .get("proxies")
                    .and_then(|p| p.get("https-proxy"))
                    .and_then(|v| v.as_str())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(Secret::new),
            )
        }
    };
    let unit = systemd_env(root, "docker");
    match (from_json, unit) {
        (Some(Some(proxy)), _) => Some(ProxySource {
            component: DOCKER,
            origin: json_path.display().to_string(),
            https_proxy: Some(proxy),
        }),
        (_, Some(env)) => Some(ProxySource {
            component: DOCKER,
            origin: env.origin.display().to_string(),
            https_proxy: env.https_proxy,
        }),
        (Some(None), None) => Some(ProxySource {
            component: DOCKER,
            origin: json_path.display().to_string(),
            https_proxy: None,
        }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, ConfigFormat};

    const PASSWORD: &str = "fake-proxy-pass-456";

    /// A scratch root directory, removed on drop.
    struct Root(tempfile::TempDir);

    impl Root {
        fn new(name: &str) -> Root {
            let prefix = format!("edgeprobe-proxy-{name}-");
            Root(tempfile::Builder::new().prefix(&prefix).tempdir().unwrap())
        }

        fn write(&self, rel: &str, text: &str) -> String {
            let path = self.0.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path.display().to_string()
        }

        fn path(&self, rel: &str) -> String {
            self.0.path().join(rel).display().to_string()
        }
    }

    fn config(proxy: Option<&str>) -> EdgeConfig {
        let env = proxy
            .map(|p| format!("[agent.env]\nhttps_proxy = \"{p}\"\n"))
            .unwrap_or_default();
        parse_str(&env, "/etc/aziot/config.toml", ConfigFormat::Toml).unwrap()
    }

    fn summary(sources: &[ProxySource]) -> Vec<(&'static str, String, Option<String>)> {
        sources
            .iter()
            .map(|s| {
                (
                    s.component,
                    s.origin.clone(),
                    s.https_proxy.as_ref().map(|p| p.expose().to_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn systemd_environment_lines_parse_like_systemd() {
        let text = "[Unit]\nEnvironment=https_proxy=http://unit-section:1\n\
                    [Service]\n# Environment=https_proxy=http://comment:1\n\
                    Environment=\"https_proxy=http://p:3128\" \"NO_PROXY=x,y\"\n\
                    Environment=A=1 'B=two words' C=\\\"q\\\"\n\
                    Environment=\n\
                    Environment=HTTPS_PROXY=http://u:p%%41@h:1 \\\n  D=4\n";
        let got = environment_assignments(text);
        let pair = |k: &str, v: &str| Some((k.to_owned(), v.to_owned()));
        assert_eq!(
            got,
            vec![
                pair("https_proxy", "http://p:3128"),
                pair("NO_PROXY", "x,y"),
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "\"q\""),
                None,
                pair("HTTPS_PROXY", "http://u:p%41@h:1"),
                pair("D", "4"),
            ]
        );
    }

    #[test]
    fn agreeing_components_are_found_and_do_not_mismatch() {
        let root = Root::new("agree");
        let edged = root.write(
            "etc/systemd/system/aziot-edged.service.d/override.conf",
            &format!(
                "[Service]\nEnvironment=\"https_proxy=http://proxyuser:{PASSWORD}@proxy.contoso.local:3128/\" \"NO_PROXY=localhost\"\n"
            ),
        );
        root.write(
            "lib/systemd/system/aziot-identityd.service",
            "[Service]\nExecStart=/x\n",
        );
        let identityd = root.write(
            "etc/systemd/system/aziot-identityd.service.d/10-proxy.conf",
            &format!("[Service]\nEnvironment=HTTPS_PROXY=HTTP://proxyuser:{PASSWORD}@PROXY.contoso.local\n"),
        );
        root.write(
            "etc/systemd/system/docker.service.d/http-proxy.conf",
            "[Service]\nEnvironment=HTTPS_PROXY=http://ignored-by-daemon-json:1\n",
        );
        let daemon = root.write(
            "etc/docker/daemon.json",
            &format!(
                r#"{{ "dns": ["1.1.1.1"], "proxies": {{ "https-proxy": "http://proxyuser:{PASSWORD}@proxy.contoso.local:3128" }} }}"#
            ),
        );
        let cfg = config(Some(&format!(
            "http://proxyuser:{PASSWORD}@Proxy.Contoso.local:3128"
        )));
        let sources = discover(root.0.path(), Some(&cfg));
        let proxy = |p: &str| Some(p.replace("PW", PASSWORD));
        assert_eq!(
            summary(&sources),
            vec![
                (
                    EDGE_AGENT_TOML,
                    "/etc/aziot/config.toml".into(),
                    proxy("http://proxyuser:PW@Proxy.Contoso.local:3128")
                ),
                (
                    "aziot-edged (systemd)",
                    edged,
                    proxy("http://proxyuser:PW@proxy.contoso.local:3128/")
                ),
                (
                    "aziot-identityd (systemd)",
                    identityd,
                    proxy("HTTP://proxyuser:PW@PROXY.contoso.local")
                ),
                (
                    DOCKER,
                    daemon,
                    proxy("http://proxyuser:PW@proxy.contoso.local:3128")
                ),
            ]
        );
        assert_eq!(mismatches(&sources), Vec::<String>::new());
        assert!(!format!("{sources:?}").contains(PASSWORD));
    }

    #[test]
    fn disagreements_are_one_line_each_with_passwords_redacted() {
        let root = Root::new("disagree");
        // aziot-edged installed without any proxy.
        let edged = root.write(
            "lib/systemd/system/aziot-edged.service",
            "[Service]\nExecStart=/x\n",
        );
        // aziot-identityd: a later drop-in resets the environment and sets a stale password.
        root.write(
            "etc/systemd/system/aziot-identityd.service.d/10-proxy.conf",
            &format!("[Service]\nEnvironment=https_proxy=http://proxyuser:{PASSWORD}@proxy.contoso.local:3128\n"),
        );
        let identityd = root.write(
            "etc/systemd/system/aziot-identityd.service.d/20-proxy.conf",
            "[Service]\nEnvironment=\nEnvironment=https_proxy=http://proxyuser:old-fake-pass@proxy.contoso.local:3128\n",
        );
        // Docker: daemon.json without proxies, a drop-in with another proxy.
        root.write("etc/docker/daemon.json", r#"{ "log-driver": "local" }"#);
        let docker = root.write(
            "etc/systemd/system/docker.service.d/http-proxy.conf",
            "[Service]\nEnvironment=\"HTTPS_PROXY=http://other-proxy.contoso.local:8080\"\n",
        );
        let cfg = config(Some(&format!(
            "http://proxyuser:{PASSWORD}@proxy.contoso.local"
        )));
        let sources = discover(root.0.path(), Some(&cfg));
        assert_eq!(
            sources.iter().map(|s| s.component).collect::<Vec<_>>(),
            [
                EDGE_AGENT_TOML,
                "aziot-edged (systemd)",
                "aziot-identityd (systemd)",
                DOCKER
            ]
        );
        let agent = "edgeAgent (config.toml agent.env) uses proxy http://proxyuser:<redacted>@proxy.contoso.local:3128 (/etc/aziot/config.toml)";
        let want = vec![
            format!("aziot-edged (systemd) uses no proxy ({edged}), but {agent}"),
            format!(
                "aziot-identityd (systemd) uses proxy http://proxyuser:<redacted>@proxy.contoso.local:3128 ({identityd}), but {agent}: the passwords differ"
            ),
            format!(
                "docker daemon uses proxy http://other-proxy.contoso.local:8080 ({docker}), but {agent}"
            ),
        ];
        let got = mismatches(&sources);
        assert_eq!(got, want);
        for line in &got {
            assert!(!line.contains(PASSWORD) && !line.contains("old-fake-pass"));
        }

        // No proxy in the config while a component has one is a mismatch too.
        let sources = discover(root.0.path(), Some(&config(None)));
        let got = mismatches(&sources);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0],
            format!(
                "aziot-identityd (systemd) uses proxy http://proxyuser:<redacted>@proxy.contoso.local:3128 ({identityd}), but edgeAgent (config.toml agent.env) uses no proxy (/etc/aziot/config.toml)"
            )
        );
    }

    #[test]
    fn unreadable_or_absent_files_record_nothing() {
        let root = Root::new("unreadable");
        assert!(discover(root.0.path(), None).is_empty());
        assert!(mismatches(&[]).is_empty());

        // A drop-in that cannot be read as a file (here: a directory) drops the component.
        fs::create_dir_all(
            root.0
                .path()
                .join("etc/systemd/system/aziot-edged.service.d/override.conf"),
        )
        .unwrap();
        // A broken daemon.json drops Docker.
        root.write("etc/docker/daemon.json", "{ not json");
        root.write(
            "etc/systemd/system/aziot-identityd.service.d/p.conf",
            "[Service]\nEnvironment=https_proxy=http://p:3128\n",
        );
        let sources = discover(root.0.path(), None);
        assert_eq!(
            summary(&sources),
            vec![(
                "aziot-identityd (systemd)",
                root.path("etc/systemd/system/aziot-identityd.service.d/p.conf"),
                Some("http://p:3128".to_owned())
            )]
        );
    }

    #[test]
    fn proxy_urls_normalize_and_redact() {
        let cases = [
            (
                "http://u:pw@Host.Example:3128/",
                "http://u:<redacted>@host.example:3128",
            ),
            ("host.example", "http://host.example:3128"),
            ("HTTPS://u@[FD00::1]:8443", "https://u@[fd00::1]:8443"),
            ("http://u:p@ss/w@h:0080", "http://u:<redacted>@h:80"),
            ("http://h:80", "http://h:80"),
            ("http://u:pw@h:notaport/", "http://u:<redacted>@h:notaport"),
        ];
        for (raw, shown) in cases {
            assert_eq!(ProxyUrl::parse(raw).shown(), shown, "{raw}");
        }
        assert!(ProxyUrl::parse("http://h") == ProxyUrl::parse("HTTP://H:3128/"));
        assert!(ProxyUrl::parse("http://u:a@h") != ProxyUrl::parse("http://u:b@h"));
    }
}

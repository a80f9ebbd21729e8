use super::files::environment_assignments;
use super::proxy_url::ProxyUrl;
use super::*;
use crate::config::{parse_str, ConfigFormat};
use std::fs;

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
        &format!(
            "[Service]\nEnvironment=HTTPS_PROXY=HTTP://proxyuser:{PASSWORD}@PROXY.contoso.local\n"
        ),
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

use edgeprobe_iotedge::config::{parse_str, ConfigFormat};

use super::*;

/// A manually provisioned device with a SAS key, a proxy and an UpstreamProtocol.
const MANUAL: &str = r#"
parent_hostname = "config-parent.example"
trust_bundle_cert = "file:///config/trust.pem"

[provisioning]
source = "manual"
iothub_hostname = "config-hub.example"
device_id = "config-device"

[provisioning.authentication]
method = "sas"
device_id_pk = { value = "Y29uZmlnLWtleQ==" }

[agent.env]
UpstreamProtocol = "AmqpWs"
https_proxy = "http://config-proxy:3128"
"#;

/// A manually provisioned device with an X.509 identity.
const MANUAL_X509: &str = r#"
[provisioning]
source = "manual"
iothub_hostname = "config-hub.example"
device_id = "config-device"

[provisioning.authentication]
method = "x509"
identity_cert = "file:///config/device.pem"
identity_pk = "file:///config/device.key.pem"
"#;

/// A nested DPS device with a symmetric key.
const DPS: &str = r#"
parent_hostname = "config-dps-parent.example"

[provisioning]
source = "dps"
global_endpoint = "https://config-dps.example/"
id_scope = "0neCONFIG"

[provisioning.attestation]
method = "symmetric_key"
registration_id = "config-registration"
symmetric_key = { value = "Y29uZmlnLWRwcy1rZXk=" }
"#;

const UNKNOWN_PROTOCOL: &str = r#"
[agent.env]
UpstreamProtocol = "Carrier-Pigeon"
"#;

const CS: &str = "HostName=cs-hub.example;DeviceId=cs-device;SharedAccessKey=Y3Mta2V5;GatewayHostName=cs-gateway.example";
const CS_X509: &str = "HostName=cs-hub.example;DeviceId=cs-device;x509=true";

#[derive(Default)]
struct Given {
    args: CheckArgs,
    connection_string: Option<&'static str>,
    config: Option<&'static str>,
    module: bool,
    env: Environment,
}

impl Given {
    fn resolve(&self) -> Resolved {
        let cs = self
            .connection_string
            .map(|c| c.parse::<ConnectionString>().unwrap());
        let sas_key = self.args.sas_key.as_deref().map(|k| Secret::new(k.trim()));
        let config = self
            .config
            .map(|t| parse_str(t, "config.toml", ConfigFormat::Toml).unwrap());
        let module = self.module.then(|| ModuleIdentity {
            hub: "module-hub.example".into(),
            device_id: "module-device".into(),
            module_id: "edgeprobe".into(),
            gateway: Some("module-edgehub".into()),
            token: Secret::new("module-token"),
            trust_pem: "EDGE CA".into(),
            uri: "unix:///workload.sock".into(),
        });
        resolve(&Sources {
            args: &self.args,
            connection_string: cs.as_ref(),
            sas_key: sas_key.as_ref(),
            config: config.as_ref(),
            module: module.as_ref(),
            env: &self.env,
        })
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

type Shown = Option<(String, Origin)>;

fn shown<T>(v: Option<&Sourced<T>>, show: impl Fn(&T) -> String) -> Shown {
    v.map(|v| (show(&v.value), v.from))
}

fn text(v: &Option<Sourced<String>>) -> Shown {
    shown(v.as_ref(), String::clone)
}

fn hub(r: &Resolved) -> Shown {
    text(&r.hub)
}

fn device(r: &Resolved) -> Shown {
    text(&r.device_id)
}

fn credentials(r: &Resolved) -> Shown {
    shown(r.credentials.as_ref(), |c| match c {
        Credentials::None => "none".into(),
        Credentials::SasKey(k) => format!("key {}", k.expose()),
        Credentials::SignedToken(t) => format!("token {}", t.expose()),
        Credentials::X509 { cert, .. } => format!("x509 {}", cert.display()),
        Credentials::Unavailable(why) => format!("unavailable {why}"),
    })
}

fn gateway(r: &Resolved) -> Shown {
    text(&r.gateway)
}

fn parent(r: &Resolved) -> Shown {
    text(&r.parent)
}

fn edgehub(r: &Resolved) -> Shown {
    text(&r.edgehub)
}

fn scope(r: &Resolved) -> Shown {
    r.dps.as_ref().and_then(|d| text(&Some(d.id_scope.clone())))
}

fn registration(r: &Resolved) -> Shown {
    r.dps.as_ref().and_then(|d| text(&d.registration_id))
}

fn endpoint(r: &Resolved) -> Shown {
    r.dps.as_ref().and_then(|d| text(&Some(d.endpoint.clone())))
}

fn dps_key(r: &Resolved) -> Shown {
    let key = r.dps.as_ref().and_then(|d| d.key.as_ref());
    shown(key, |k| match k {
        DpsKey::Group(g) => format!("group {}", g.expose()),
        DpsKey::Device(k) => format!("device {}", k.expose()),
    })
}

fn proxy(r: &Resolved) -> Shown {
    text(&r.proxy)
}

fn no_proxy(r: &Resolved) -> Shown {
    text(&Some(r.no_proxy.clone()))
}

fn roots(r: &Resolved) -> Shown {
    shown(Some(&r.roots), |r| r.as_str().to_owned())
}

fn upstream(r: &Resolved) -> Shown {
    shown(r.upstream_protocol.as_ref(), |u| u.as_str().to_owned())
}

type Row = (
    &'static str,
    fn(&mut Given),
    fn(&Resolved) -> Shown,
    Option<(&'static str, Origin)>,
);

const FLAG_HUB: Origin = Origin::Flag("--iothub-hostname");
const FLAG_DEVICE: Origin = Origin::Flag("--device-id");
const CONFIG_HUB: Origin = Origin::Config("provisioning.iothub_hostname");
const CONFIG_DEVICE: Origin = Origin::Config("provisioning.device_id");
const CONFIG_AUTH: Origin = Origin::Config("provisioning.authentication");
const CONFIG_PROXY: Origin = Origin::Config("agent.env.https_proxy");
const CONFIG_PARENT: Origin = Origin::Config("parent_hostname");

/// One row per rule, from what `gather()` did before the rules were data, and PRODUCT.md:
/// (rule, the sources given, the value looked at, its winner and where it came from).
#[rustfmt::skip] // a row stays a few lines: the rule, the sources, the winner
const RULES: &[Row] = &[
    // The hub.
    ("module identity beats --iothub-hostname",
        |g| { g.module = true; g.args.iothub_hostname = s("flag-hub.example"); },
        hub, Some(("module-hub.example", Origin::Module))),
    ("--iothub-hostname beats the connection string's HostName",
        |g| { g.args.iothub_hostname = s("flag-hub.example"); g.connection_string = Some(CS); },
        hub, Some(("flag-hub.example", FLAG_HUB))),
    ("the connection string's HostName names the hub when no flag does",
        |g| { g.connection_string = Some(CS); g.config = Some(MANUAL); },
        hub, Some(("cs-hub.example", Origin::ConnectionString("HostName")))),
    ("the configuration names the hub when no flag names an identity",
        |g| g.config = Some(MANUAL),
        hub, Some(("config-hub.example", CONFIG_HUB))),
    ("--device-id alone overrides the device, not the configured hub",
        |g| { g.args.device_id = s("flag-device"); g.config = Some(MANUAL); },
        hub, Some(("config-hub.example", CONFIG_HUB))),
    ("--sas-key (or EDGEPROBE_SAS_KEY) alone keeps the configured hub",
        |g| { g.args.sas_key = s("ZmxhZy1rZXk="); g.config = Some(MANUAL); },
        hub, Some(("config-hub.example", CONFIG_HUB))),
    ("--x509-cert alone keeps the configured hub",
        |g| {
            g.args.x509_cert = Some("/flag/cert.pem".into());
            g.args.x509_key = Some("/flag/key.pem".into());
            g.config = Some(MANUAL);
        },
        hub, Some(("config-hub.example", CONFIG_HUB))),
    ("a DPS configuration names no hub (DPS or the provisioning state does, later)",
        |g| g.config = Some(DPS),
        hub, None),
    // The device id.
    ("module identity beats --device-id",
        |g| { g.module = true; g.args.device_id = s("flag-device"); },
        device, Some(("module-device", Origin::Module))),
    ("--device-id beats the connection string's DeviceId",
        |g| { g.args.device_id = s("flag-device"); g.connection_string = Some(CS); },
        device, Some(("flag-device", FLAG_DEVICE))),
    ("the connection string's DeviceId names the device when no flag does",
        |g| g.connection_string = Some(CS),
        device, Some(("cs-device", Origin::ConnectionString("DeviceId")))),
    ("the configuration names the device when no flag names an identity",
        |g| g.config = Some(MANUAL),
        device, Some(("config-device", CONFIG_DEVICE))),
    ("--iothub-hostname alone overrides the hub, not the configured device",
        |g| { g.args.iothub_hostname = s("flag-hub.example"); g.config = Some(MANUAL); },
        device, Some(("config-device", CONFIG_DEVICE))),
    ("a connection string's device beats the configured one",
        |g| { g.connection_string = Some(CS); g.config = Some(MANUAL); },
        device, Some(("cs-device", Origin::ConnectionString("DeviceId")))),
    // The credentials.
    ("--x509-cert beats --sas-key",
        |g| {
            g.args.x509_cert = Some("/flag/cert.pem".into());
            g.args.x509_key = Some("/flag/key.pem".into());
            g.args.sas_key = s("ZmxhZy1rZXk=");
        },
        credentials, Some(("x509 /flag/cert.pem", Origin::Flag("--x509-cert")))),
    ("--sas-key beats the connection string's key",
        |g| { g.args.sas_key = s(" ZmxhZy1rZXk= "); g.connection_string = Some(CS); },
        credentials, Some(("key ZmxhZy1rZXk=", Origin::Flag("--sas-key")))),
    ("the connection string's key beats the module's signed token",
        |g| { g.module = true; g.connection_string = Some(CS); },
        credentials, Some(("key Y3Mta2V5", Origin::ConnectionString("SharedAccessKey")))),
    ("a module presents its token signed by the workload API",
        |g| g.module = true,
        credentials, Some(("token module-token", Origin::Module))),
    ("the configured key when no flag names an identity",
        |g| g.config = Some(MANUAL),
        credentials, Some(("key Y29uZmlnLWtleQ==", CONFIG_AUTH))),
    ("the configured X.509 identity when no flag names an identity",
        |g| g.config = Some(MANUAL_X509),
        credentials, Some(("x509 /config/device.pem", CONFIG_AUTH))),
    ("--x509-cert beats the configured key",
        |g| {
            g.args.x509_cert = Some("/flag/cert.pem".into());
            g.args.x509_key = Some("/flag/key.pem".into());
            g.config = Some(MANUAL);
        },
        credentials, Some(("x509 /flag/cert.pem", Origin::Flag("--x509-cert")))),
    ("--sas-key alone: the flag's key for the configured device",
        |g| { g.args.sas_key = s("ZmxhZy1rZXk="); g.config = Some(MANUAL); },
        credentials, Some(("key ZmxhZy1rZXk=", Origin::Flag("--sas-key")))),
    ("--device-id alone: the configured key is another device's, nothing is presented",
        |g| { g.args.device_id = s("flag-device"); g.config = Some(MANUAL); },
        credentials, None),
    ("--iothub-hostname alone: the configured key is another hub's, nothing is presented",
        |g| { g.args.iothub_hostname = s("flag-hub.example"); g.config = Some(MANUAL); },
        credentials, None),
    ("--iothub-hostname and --device-id naming the configured ones keep nothing of the file's key",
        |g| {
            g.args.iothub_hostname = s("config-hub.example");
            g.args.device_id = s("config-device");
            g.config = Some(MANUAL);
        },
        credentials, None),
    ("a connection string without a key (x509=true) presents nothing, nor the configured key",
        |g| { g.connection_string = Some(CS_X509); g.config = Some(MANUAL); },
        credentials, None),
    // The gateway, the parent, a module's edgeHub.
    ("--gateway-hostname beats the connection string's GatewayHostName",
        |g| { g.args.gateway_hostname = s("flag-gateway.example"); g.connection_string = Some(CS); },
        gateway, Some(("flag-gateway.example", Origin::Flag("--gateway-hostname")))),
    ("the connection string's GatewayHostName fills --gateway-hostname only when absent",
        |g| g.connection_string = Some(CS),
        gateway, Some(("cs-gateway.example", Origin::ConnectionString("GatewayHostName")))),
    ("--parent-hostname beats the configuration's parent_hostname",
        |g| { g.args.parent_hostname = s("flag-parent.example"); g.config = Some(MANUAL); },
        parent, Some(("flag-parent.example", Origin::Flag("--parent-hostname")))),
    ("--parent-hostname names the parent whatever names the device",
        |g| { g.args.parent_hostname = s("flag-parent.example"); g.connection_string = Some(CS); },
        parent, Some(("flag-parent.example", Origin::Flag("--parent-hostname")))),
    ("the configuration names the parent when no flag names a device",
        |g| g.config = Some(MANUAL),
        parent, Some(("config-parent.example", CONFIG_PARENT))),
    ("--x509-cert keeps the configured parent, as it keeps the configured hub",
        |g| {
            g.args.x509_cert = Some("/flag/cert.pem".into());
            g.args.x509_key = Some("/flag/key.pem".into());
            g.config = Some(MANUAL);
        },
        parent, Some(("config-parent.example", CONFIG_PARENT))),
    ("a DPS device's file names its parent too (no configured hub needed)",
        |g| g.config = Some(DPS),
        parent, Some(("config-dps-parent.example", CONFIG_PARENT))),
    ("--device-id keeps the configured parent out, as it keeps the configured identity",
        |g| { g.args.device_id = s("flag-device"); g.config = Some(MANUAL); },
        parent, None),
    ("--sas-key (or EDGEPROBE_SAS_KEY) keeps the configured parent: the same device, another key",
        |g| { g.args.sas_key = s("ZmxhZy1rZXk="); g.config = Some(MANUAL); },
        parent, Some(("config-parent.example", CONFIG_PARENT))),
    ("a connection string's device is not the file's: no configured parent",
        |g| { g.connection_string = Some(CS); g.config = Some(MANUAL); },
        parent, None),
    ("a module talks to its own edgeHub, not the file's parent",
        |g| { g.module = true; g.config = Some(MANUAL); },
        parent, None),
    ("a module's edgeHub is its IOTEDGE_GATEWAYHOSTNAME",
        |g| g.module = true,
        edgehub, Some(("module-edgehub", Origin::Module))),
    // DPS.
    ("--id-scope beats the configured id_scope",
        |g| { g.args.id_scope = s("0neFLAG"); g.config = Some(DPS); },
        scope, Some(("0neFLAG", Origin::Flag("--id-scope")))),
    ("the configured id_scope makes the device a DPS device",
        |g| g.config = Some(DPS),
        scope, Some(("0neCONFIG", Origin::Config("provisioning.id_scope")))),
    ("no ID scope, no DPS",
        |g| { g.args.registration_id = s("flag-registration"); g.config = Some(MANUAL); },
        scope, None),
    ("--registration-id beats the configured one",
        |g| {
            g.args.registration_id = s("flag-registration");
            g.args.device_id = s("flag-device");
            g.config = Some(DPS);
        },
        registration, Some(("flag-registration", Origin::Flag("--registration-id")))),
    ("the configured registration_id beats the device id (and goes with a flag's ID scope)",
        |g| { g.args.id_scope = s("0neFLAG"); g.args.device_id = s("flag-device"); g.config = Some(DPS); },
        registration, Some(("config-registration", Origin::Config("provisioning.attestation.registration_id")))),
    ("the device id is the registration id when nothing names one",
        |g| { g.args.id_scope = s("0neFLAG"); g.args.device_id = s("flag-device"); },
        registration, Some(("flag-device", FLAG_DEVICE))),
    ("the connection string's DeviceId is the registration id too",
        |g| { g.args.id_scope = s("0neFLAG"); g.connection_string = Some(CS); },
        registration, Some(("cs-device", Origin::ConnectionString("DeviceId")))),
    ("no registration id at all (gather refuses it)",
        |g| g.args.id_scope = s("0neFLAG"),
        registration, None),
    ("--dps-endpoint beats the configured global_endpoint",
        |g| { g.args.dps_endpoint = s("flag-dps.example"); g.config = Some(DPS); },
        endpoint, Some(("flag-dps.example", Origin::Flag("--dps-endpoint")))),
    ("the configured global_endpoint, as written",
        |g| g.config = Some(DPS),
        endpoint, Some(("https://config-dps.example/", Origin::Config("provisioning.global_endpoint")))),
    ("the global DPS endpoint by default",
        |g| { g.args.id_scope = s("0neFLAG"); g.args.device_id = s("flag-device"); },
        endpoint, Some((DPS_GLOBAL_ENDPOINT, Origin::Default))),
    ("--dps-group-key beats the device's key",
        |g| {
            g.args.id_scope = s("0neFLAG");
            g.args.dps_group_key = s("Z3JvdXAta2V5");
            g.connection_string = Some(CS);
        },
        dps_key, Some(("group Z3JvdXAta2V5", Origin::Flag("--dps-group-key")))),
    ("the device's SAS key (whichever source won it) beats the configured symmetric_key",
        |g| { g.args.sas_key = s("ZmxhZy1rZXk="); g.config = Some(DPS); },
        dps_key, Some(("device ZmxhZy1rZXk=", Origin::Flag("--sas-key")))),
    ("the configured symmetric_key otherwise",
        |g| g.config = Some(DPS),
        dps_key, Some(("device Y29uZmlnLWRwcy1rZXk=", Origin::Config("provisioning.attestation.symmetric_key")))),
    ("a module's signed token is no DPS key",
        |g| { g.module = true; g.config = Some(DPS); },
        dps_key, Some(("device Y29uZmlnLWRwcy1rZXk=", Origin::Config("provisioning.attestation.symmetric_key")))),
    ("an X.509 identity is no DPS key",
        |g| {
            g.args.x509_cert = Some("/flag/cert.pem".into());
            g.args.x509_key = Some("/flag/key.pem".into());
            g.args.id_scope = s("0neFLAG");
            g.args.device_id = s("flag-device");
        },
        dps_key, None),
    // The proxy (PRODUCT.md: --proxy, else agent.env.https_proxy, else HTTPS_PROXY/https_proxy).
    ("--proxy beats the configured https_proxy",
        |g| { g.args.proxy = s("http://flag-proxy:3128"); g.config = Some(MANUAL); },
        proxy, Some(("http://flag-proxy:3128", Origin::Flag("--proxy")))),
    ("the configured https_proxy beats HTTPS_PROXY",
        |g| { g.config = Some(MANUAL); g.env.https_proxy_upper = s("http://env-proxy:3128"); },
        proxy, Some(("http://config-proxy:3128", CONFIG_PROXY))),
    ("HTTPS_PROXY beats https_proxy",
        |g| { g.env.https_proxy_upper = s("http://upper:3128"); g.env.https_proxy_lower = s("http://lower:3128"); },
        proxy, Some(("http://upper:3128", Origin::Env("HTTPS_PROXY")))),
    ("https_proxy last",
        |g| g.env.https_proxy_lower = s("http://lower:3128"),
        proxy, Some(("http://lower:3128", Origin::Env("https_proxy")))),
    ("a blank --proxy means no proxy: the environment is not consulted",
        |g| { g.args.proxy = s(" "); g.env.https_proxy_upper = s("http://upper:3128"); },
        proxy, None),
    ("a blank HTTPS_PROXY means no proxy: https_proxy is not consulted",
        |g| { g.env.https_proxy_upper = s(""); g.env.https_proxy_lower = s("http://lower:3128"); },
        proxy, None),
    ("no proxy anywhere",
        |_| {},
        proxy, None),
    ("NO_PROXY beats no_proxy, even blank",
        |g| { g.env.no_proxy_upper = s(""); g.env.no_proxy_lower = s("lower.example"); },
        no_proxy, Some(("", Origin::Env("NO_PROXY")))),
    ("no_proxy when NO_PROXY is unset",
        |g| g.env.no_proxy_lower = s("lower.example"),
        no_proxy, Some(("lower.example", Origin::Env("no_proxy")))),
    ("nothing is exempt from the proxy by default",
        |_| {},
        no_proxy, Some(("", Origin::Default))),
    // The roots.
    ("--roots beats a module's default",
        |g| { g.args.roots = s("bundle-only"); g.module = true; },
        roots, Some(("bundle-only", Origin::Flag("--roots")))),
    ("a module verifies with the Mozilla set",
        |g| g.module = true,
        roots, Some(("mozilla", Origin::Module))),
    ("IOTEDGE_MODULEID set: the Mozilla set (the container vantage)",
        |g| g.env.module_id_set = true,
        roots, Some(("mozilla", Origin::Env("IOTEDGE_MODULEID")))),
    ("the host verifies with the OS store by default",
        |_| {},
        roots, Some(("os", Origin::Default))),
    // UpstreamProtocol.
    ("--upstream-protocol beats the configured UpstreamProtocol",
        |g| { g.args.upstream_protocol = s("Mqtt"); g.config = Some(MANUAL); },
        upstream, Some(("Mqtt", Origin::Flag("--upstream-protocol")))),
    ("the configured UpstreamProtocol, any case",
        |g| g.config = Some(MANUAL),
        upstream, Some(("AmqpWs", Origin::Config("agent.env.UpstreamProtocol")))),
    ("an UpstreamProtocol the runtime does not know is no value (gather refuses it)",
        |g| g.config = Some(UNKNOWN_PROTOCOL),
        upstream, None),
];

#[test]
fn each_value_comes_from_the_first_source_that_names_it() {
    let mut failures = Vec::new();
    for (rule, given, pick, want) in RULES {
        let mut g = Given::default();
        given(&mut g);
        let got = pick(&g.resolve());
        let want = want.map(|(v, from)| (v.to_owned(), from));
        if got != want {
            failures.push(format!("{rule}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_trust_bundle_part_is_used_in_order_and_the_last_names_the_bundle() {
    let g = Given {
        args: CheckArgs {
            trust_bundle: Some("/flag/bundle.pem".into()),
            ..CheckArgs::default()
        },
        config: Some(MANUAL),
        module: true,
        ..Given::default()
    };
    let parts = g.resolve().trust_bundle;
    let got: Vec<(Origin, String)> = parts.iter().map(|p| (p.from, p.value.name())).collect();
    assert_eq!(
        got,
        [
            (
                Origin::Flag("--trust-bundle"),
                "/flag/bundle.pem".to_owned()
            ),
            (
                Origin::Config("trust_bundle_cert"),
                "/config/trust.pem".to_owned()
            ),
            (
                Origin::Module,
                "unix:///workload.sock (trust bundle)".to_owned()
            ),
        ]
    );
    assert_eq!(
        parts[2].value,
        TrustPart::Pem {
            pem: "EDGE CA".into(),
            uri: "unix:///workload.sock".into()
        }
    );
    assert!(Given::default().resolve().trust_bundle.is_empty());
}

#[test]
fn first_of_skips_the_absent_and_first_or_falls_back_to_the_default() {
    let picked = first_of([
        (Origin::Flag("--a"), None),
        (Origin::Env("B"), Some(2)),
        (Origin::Default, Some(3)),
    ]);
    assert_eq!(
        picked,
        Some(Sourced {
            value: 2,
            from: Origin::Env("B")
        })
    );
    assert_eq!(first_of::<u8>([(Origin::Flag("--a"), None)]), None);
    assert_eq!(
        first_or([(Origin::Flag("--a"), None)], 7),
        Sourced {
            value: 7,
            from: Origin::Default
        }
    );
}

#[test]
fn origins_are_described_as_the_errors_name_them() {
    let name = "/etc/aziot/config.toml";
    assert_eq!(Origin::Flag("--proxy").describe(name), "--proxy");
    assert_eq!(
        CONFIG_PROXY.describe(name),
        "/etc/aziot/config.toml: agent.env.https_proxy"
    );
    assert_eq!(Origin::Env("HTTPS_PROXY").describe(name), "HTTPS_PROXY");
    assert_eq!(
        Origin::ConnectionString("DeviceId").describe(name),
        "--connection-string: DeviceId"
    );
}

//! The sample files of `fixtures/configs/` end to end, loading and finding files, syntax
//! errors; and the fixtures the other modules' tests share.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::identity::Credentials;
use crate::secret::Secret;
use crate::verdict::UpstreamProtocol;

pub(super) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/configs");

/// Every key and password in the sample files.
pub(super) const SECRETS: [&str; 8] = [
    "ZmFrZS1kZXZpY2Uta2V5LWZvci1lZGdlcHJvYmUtdGVzdHM=",
    "ZmFrZS1rZXktZnJvbS1hLWZpbGUtbm90LXJlYWw=",
    "ZmFrZS1kcHMtZW5yb2xsbWVudC1rZXktbm90LXJlYWw=",
    "ZmFrZS12MTEtZGV2aWNlLWtleS1ub3QtcmVhbA==",
    "ZmFrZS12MTEtZHBzLWdyb3VwLWtleS1ub3QtcmVhbA==",
    "fake-registry-password-123",
    "fake-proxy-pass-456",
    "fake-acr-password-789",
];

pub(super) fn fixture_text(name: &str) -> String {
    let text = fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
    text.replace("/EDGEPROBE_FIXTURES", FIXTURES)
}

pub(super) fn fixture(name: &str) -> EdgeConfig {
    let path = PathBuf::from(format!("{FIXTURES}/{name}"));
    parse_str(
        &fixture_text(name),
        &path.display().to_string(),
        ConfigFormat::from_path(&path),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub(super) fn sas(key: &str) -> ManualAuth {
    ManualAuth::Sas(KeyMaterial::Available(Secret::new(key)))
}

pub(super) fn manual(hub: &str, device: &str, auth: ManualAuth) -> Provisioning {
    Provisioning::Manual {
        iothub_hostname: hub.into(),
        device_id: device.into(),
        auth,
    }
}

pub(super) const HUB: &str = "contoso-hub.azure-devices.net";

#[test]
fn sample_files_parse_to_the_expected_settings() {
    let s = |v: &str| Some(v.to_owned());
    let p = |v: &str| Some(PathBuf::from(v));
    let default_moby = MobyRuntime {
        uri: s("unix:///var/run/docker.sock"),
        network: NetworkConfig::default(),
    };
    let cases: Vec<(&str, EdgeConfig)> = vec![
        (
            "v1.2-manual-connection-string.toml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Toml,
                hostname: s("edge-device-01"),
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: manual(HUB, "edge-device-01", sas(SECRETS[0])),
                agent_image: s("mcr.microsoft.com/azureiotedge-agent:1.5"),
                registry_credentials: vec![],
                upstream_protocol: None,
                https_proxy: None,
                moby_runtime: default_moby.clone(),
                homedir: None,
            },
        ),
        (
            "v1.2-manual-sas-inline.toml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Toml,
                hostname: s("edge-sas-inline"),
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: manual(HUB, "edge-sas-inline", sas(SECRETS[0])),
                agent_image: None,
                registry_credentials: vec![],
                upstream_protocol: s("mqttws"),
                https_proxy: None,
                moby_runtime: MobyRuntime::default(),
                homedir: None,
            },
        ),
        (
            "v1.2-manual-sas-file.toml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Toml,
                hostname: s("edge-sas-file"),
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: manual(HUB, "edge-sas-file", sas(SECRETS[1])),
                agent_image: None,
                registry_credentials: vec![],
                upstream_protocol: None,
                https_proxy: None,
                moby_runtime: MobyRuntime::default(),
                homedir: None,
            },
        ),
        (
            "v1.2-manual-x509.toml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Toml,
                hostname: s("edge-x509"),
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: manual(
                    HUB,
                    "edge-x509",
                    ManualAuth::X509 {
                        cert: "/var/aziot/certs/device-id.pem".into(),
                        key: "/var/aziot/secrets/device-id.key.pem".into(),
                    },
                ),
                agent_image: None,
                registry_credentials: vec![],
                upstream_protocol: None,
                https_proxy: None,
                moby_runtime: MobyRuntime::default(),
                homedir: None,
            },
        ),
        (
            "v1.2-dps-symmetric-key.toml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Toml,
                hostname: None,
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: Provisioning::Dps {
                    global_endpoint: DEFAULT_DPS_ENDPOINT.into(),
                    id_scope: "0ne00FAKE00".into(),
                    registration_id: s("edge-dps-sym"),
                    attestation: DpsAttestation::SymmetricKey {
                        key: KeyMaterial::Available(Secret::new(SECRETS[2])),
                    },
                },
                agent_image: None,
                registry_credentials: vec![],
                upstream_protocol: None,
                https_proxy: None,
                moby_runtime: MobyRuntime::default(),
                homedir: None,
            },
        ),
        (
            "v1.2-dps-x509.toml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Toml,
                hostname: None,
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: Provisioning::Dps {
                    global_endpoint: DEFAULT_DPS_ENDPOINT.into(),
                    id_scope: "0ne00FAKE01".into(),
                    registration_id: s("edge-dps-x509"),
                    attestation: DpsAttestation::X509 {
                        cert: p("/var/aziot/certs/dps-identity.pem"),
                        key: None,
                    },
                },
                agent_image: None,
                registry_credentials: vec![],
                upstream_protocol: None,
                https_proxy: None,
                moby_runtime: MobyRuntime::default(),
                homedir: None,
            },
        ),
        (
            "v1.2-dps-tpm.toml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Toml,
                hostname: None,
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: Provisioning::Dps {
                    global_endpoint: DEFAULT_DPS_ENDPOINT.into(),
                    id_scope: "0ne00FAKE02".into(),
                    registration_id: s("edge-dps-tpm"),
                    attestation: DpsAttestation::Tpm,
                },
                agent_image: None,
                registry_credentials: vec![],
                upstream_protocol: None,
                https_proxy: None,
                moby_runtime: MobyRuntime::default(),
                homedir: None,
            },
        ),
        (
            "v1.2-nested.toml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Toml,
                hostname: s("child-edge.contoso.local"),
                parent_hostname: s("parent-edge.contoso.local"),
                trust_bundle_cert: p("/etc/aziot/certificates/root ca.pem"),
                provisioning: manual(HUB, "child-edge", sas(SECRETS[0])),
                agent_image: s("$upstream:443/azureiotedge-agent:1.5"),
                registry_credentials: vec![RegistryCredential {
                    server: "parent-edge.contoso.local:443".into(),
                    username: s("registry-user"),
                    password: Some(Secret::new("fake-registry-password-123")),
                }],
                upstream_protocol: s("AmqpWs"),
                https_proxy: Some(Secret::new(
                    "http://proxyuser:fake-proxy-pass-456@Proxy.Contoso.local:3128",
                )),
                moby_runtime: MobyRuntime {
                    uri: s("unix:///var/run/docker.sock"),
                    network: NetworkConfig {
                        name: "azure-iot-edge".into(),
                        ipv6: Some(true),
                        ipam: vec![
                            IpamConfig {
                                gateway: s("172.18.0.1"),
                                subnet: s("172.18.0.0/16"),
                                ip_range: s("172.18.0.0/24"),
                            },
                            IpamConfig {
                                gateway: s("fd00:1:2::1"),
                                subnet: s("fd00:1:2::/64"),
                                ip_range: None,
                            },
                        ],
                    },
                },
                homedir: None,
            },
        ),
        (
            "v1.1-manual.yaml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Yaml,
                hostname: s("edge-v11"),
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: manual(HUB, "edge-v11", sas(SECRETS[3])),
                agent_image: s("mcr.microsoft.com/azureiotedge-agent:1.1"),
                registry_credentials: vec![],
                upstream_protocol: s("Mqtt"),
                https_proxy: None,
                moby_runtime: default_moby.clone(),
                homedir: p("/var/lib/iotedge"),
            },
        ),
        (
            "v1.1-dps.yaml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Yaml,
                hostname: s("edge-v11-dps"),
                parent_hostname: None,
                trust_bundle_cert: None,
                provisioning: Provisioning::Dps {
                    global_endpoint: DEFAULT_DPS_ENDPOINT.into(),
                    id_scope: "0ne00FAKE11".into(),
                    registration_id: s("edge-v11-dps"),
                    attestation: DpsAttestation::SymmetricKey {
                        key: KeyMaterial::Available(Secret::new(SECRETS[4])),
                    },
                },
                agent_image: s("mcr.microsoft.com/azureiotedge-agent:1.1"),
                registry_credentials: vec![RegistryCredential {
                    server: "contosoregistry.azurecr.io".into(),
                    username: s("contosoregistry"),
                    password: Some(Secret::new("fake-acr-password-789")),
                }],
                upstream_protocol: None,
                https_proxy: None,
                moby_runtime: MobyRuntime::default(),
                homedir: None,
            },
        ),
        (
            "v1.1-network.yaml",
            EdgeConfig {
                source: String::new(),
                format: ConfigFormat::Yaml,
                hostname: s("edge-v11-net"),
                parent_hostname: None,
                trust_bundle_cert: p("/etc/iotedge/certs/root-ca.pem"),
                provisioning: manual(
                    HUB,
                    "edge-v11-net",
                    ManualAuth::X509 {
                        cert: "/etc/iotedge/certs/device.pem".into(),
                        key: "/etc/iotedge/private/device.key.pem".into(),
                    },
                ),
                agent_image: s("mcr.microsoft.com/azureiotedge-agent:1.1"),
                registry_credentials: vec![],
                upstream_protocol: None,
                https_proxy: Some(Secret::new("http://proxy.contoso.local:8080/")),
                moby_runtime: MobyRuntime {
                    uri: s("unix:///var/run/docker.sock"),
                    network: NetworkConfig {
                        name: "custom-edge-net".into(),
                        ipv6: Some(true),
                        ipam: vec![
                            IpamConfig {
                                gateway: s("172.20.0.1"),
                                subnet: s("172.20.0.0/16"),
                                ip_range: s("172.20.10.0/24"),
                            },
                            IpamConfig {
                                gateway: s("fd00:1::1"),
                                subnet: s("fd00:1::/64"),
                                ip_range: None,
                            },
                        ],
                    },
                },
                homedir: None,
            },
        ),
    ];
    for (name, mut want) in cases {
        let got = fixture(name);
        want.source = format!("{FIXTURES}/{name}");
        // Secret's Debug hides keys, so compare the secrets themselves first.
        assert_eq!(
            got.secrets().iter().map(|s| s.expose()).collect::<Vec<_>>(),
            want.secrets()
                .iter()
                .map(|s| s.expose())
                .collect::<Vec<_>>(),
            "{name}: secrets"
        );
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn load_picks_the_format_from_the_extension_and_reads_real_files() {
    let cfg = load(Path::new(&format!("{FIXTURES}/v1.1-manual.yaml"))).unwrap();
    assert_eq!(cfg.format, ConfigFormat::Yaml);
    assert_eq!(cfg.upstream_protocol_parsed(), Some(UpstreamProtocol::Mqtt));
    let cfg = load(Path::new(&format!("{FIXTURES}/v1.2-nested.toml"))).unwrap();
    assert_eq!(cfg.format, ConfigFormat::Toml);
    assert_eq!(
        cfg.upstream_protocol_parsed(),
        Some(UpstreamProtocol::AmqpWs)
    );
    assert!(cfg.source.ends_with("fixtures/configs/v1.2-nested.toml"));

    // Loaded as is, the key file URI points nowhere: the key is unreadable, the load is not.
    let cfg = load(Path::new(&format!("{FIXTURES}/v1.2-manual-sas-file.toml"))).unwrap();
    assert_eq!(
        cfg.provisioning,
        manual(
            HUB,
            "edge-sas-file",
            ManualAuth::Sas(KeyMaterial::Unreadable {
                what: "/EDGEPROBE_FIXTURES/keys/device.key".into(),
                why: "not found".into(),
            })
        )
    );
    let (_, _, creds) = cfg.device_credentials().unwrap();
    assert_eq!(
        creds,
        Credentials::Unavailable(
            "device key /EDGEPROBE_FIXTURES/keys/device.key: not found".into()
        )
    );

    let missing = format!("{FIXTURES}/nope.toml");
    assert_eq!(
        load(Path::new(&missing)).unwrap_err().to_string(),
        format!("cannot read {missing}: not found")
    );
    assert_eq!(
        ConfigError::PermissionDenied {
            path: "/etc/aziot/config.toml".into()
        }
        .to_string(),
        "cannot read /etc/aziot/config.toml: permission denied (run with sudo)"
    );
}

#[test]
fn malformed_files_give_one_line_errors_with_line_and_key() {
    let cases = [
        (
            "bad-toml-syntax.toml",
            "/etc/aziot/config.toml",
            "/etc/aziot/config.toml: line 5: invalid TOML: invalid basic string",
        ),
        (
            "bad-unknown-source.toml",
            "/etc/aziot/config.toml",
            "/etc/aziot/config.toml: line 7: provisioning.source: unknown provisioning source \"manul\" (expected manual or dps)",
        ),
        (
            "bad-invalid-key.toml",
            "/etc/aziot/config.toml",
            "/etc/aziot/config.toml: line 9: provisioning.authentication.device_id_pk.value: the shared access key is not valid base64",
        ),
        (
            "bad-yaml.yaml",
            "/etc/iotedge/config.yaml",
            "/etc/iotedge/config.yaml: line 4: invalid YAML: did not find expected key, while parsing a block mapping at line 3 column 3",
        ),
    ];
    for (name, origin, want) in cases {
        let format = ConfigFormat::from_path(Path::new(name));
        let err = parse_str(&fixture_text(name), origin, format).unwrap_err();
        assert_eq!(err.to_string(), want, "{name}");
        for s in SECRETS {
            assert!(!err.to_string().contains(s), "{name} leaks a key");
        }
        assert!(!format!("{err:?}").contains("fake-secret-value"), "{name}");
    }
}

#[test]
fn find_default_prefers_the_1_2_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    assert_eq!(find_default_in(root), None);
    fs::create_dir_all(root.join("etc/iotedge")).unwrap();
    fs::write(root.join("etc/iotedge/config.yaml"), "").unwrap();
    assert_eq!(
        find_default_in(root),
        Some(root.join("etc/iotedge/config.yaml"))
    );
    fs::create_dir_all(root.join("etc/aziot")).unwrap();
    fs::write(root.join("etc/aziot/config.toml"), "").unwrap();
    assert_eq!(
        find_default_in(root),
        Some(root.join("etc/aziot/config.toml"))
    );
}

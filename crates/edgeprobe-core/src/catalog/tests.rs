use super::*;

#[test]
fn builtin_catalog_parses_with_unique_kebab_case_ids() {
    let catalog = Catalog::builtin().expect("the embedded catalog parses");
    let mut seen = HashSet::new();
    for c in catalog.checks() {
        assert!(is_kebab_case(&c.id), "{} is not kebab-case", c.id);
        assert!(seen.insert(c.id.clone()), "duplicate id {}", c.id);
    }
    for id in [
        "iothub-mqtt",
        "iothub-amqp",
        "iothub-mqtt-ws",
        "iothub-amqp-ws",
        "iothub-https",
    ] {
        assert!(catalog.get(id).is_some(), "missing {id}");
    }
}

#[test]
fn families_expand_with_protocol_ports_and_required_members() {
    let mut c = Catalog::default();
    c.add_text(
        "t.toml",
        r#"
[[family]]
id = "hub"
title = "Hub"
endpoint = "iothub"
host = "{iothub_hostname}"
protocols = ["mqtt", "https"]
ports = { https = 8443 }
required = ["https"]
"#,
    )
    .unwrap();
    let mqtt = c.get("hub-mqtt").unwrap();
    assert_eq!(mqtt.port, Some(8883));
    assert!(!mqtt.required);
    let https = c.get("hub-https").unwrap();
    assert_eq!(https.port, Some(8443));
    assert!(https.required);
    assert_eq!(https.title, "Hub over HTTPS (8443)");
}

#[test]
fn templates_resolve_or_name_the_missing_variable() {
    let c = CheckDef {
        id: "x".into(),
        title: "x".into(),
        endpoint: Endpoint::Iothub,
        protocol: Protocol::Mqtt,
        host: "{iothub_hostname}".into(),
        port: Some(8883),
        required: false,
        requires: vec!["device_id".into()],
        unless: vec!["parent_hostname".into()],
        source: "t".into(),
        expect: Default::default(),
        credentials: false,
        limits: Limits::default(),
        send: None,
    };
    let mut vars = Vars::new();
    assert_eq!(c.resolve(&vars), Err("iothub_hostname".into()));
    vars.insert("iothub_hostname".into(), "hub.example".into());
    assert_eq!(c.resolve(&vars), Err("device_id".into()));
    vars.insert("device_id".into(), "d1".into());
    assert_eq!(c.resolve(&vars).unwrap().host, "hub.example");
    assert_eq!(c.excluded_by(&vars), None);
    vars.insert("parent_hostname".into(), "parent".into());
    assert_eq!(c.excluded_by(&vars), Some("parent_hostname"));
}

#[test]
fn bad_catalog_files_name_file_line_and_problem() {
    let cases: &[(&str, &str)] = &[
            (
                "[[check]]\nid = \"Bad_Id\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\nhost = \"h\"\n",
                "f.toml: id \"Bad_Id\" is not kebab-case",
            ),
            (
                "[[check]]\nid = \"a\"\ntitle = \"t\"\nendpoint = \"moon\"\nprotocol = \"mqtt\"\nhost = \"h\"\n",
                "f.toml: line 4: unknown variant `moon`",
            ),
            (
                "[[check]]\nid = \"a\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\n",
                "f.toml: check \"a\": a mqtt probe needs a host",
            ),
            (
                "[[check]]\nid = \"a\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\nhost = \"h\"\nprot = 1\n",
                "f.toml: line 7: unknown field `prot`",
            ),
        ];
    for (text, want) in cases {
        let err = Catalog::default().add_text("f.toml", text).unwrap_err();
        assert!(
            err.to_string().starts_with(want),
            "{err} should start with {want}"
        );
    }
}

#[test]
fn duplicate_ids_are_refused_naming_both_files() {
    let mut c = Catalog::builtin().unwrap();
    let err = c
            .add_text(
                "mine.toml",
                "[[check]]\nid = \"iothub-mqtt\"\ntitle = \"t\"\nendpoint = \"iothub\"\nprotocol = \"mqtt\"\nhost = \"h\"\n",
            )
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mine.toml: check id \"iothub-mqtt\" is already defined in builtin:iothub.toml"
    );
}

#[test]
fn version_2_entries_load_with_their_limits_and_refuse_what_does_not_apply() {
    let mut c = Catalog::default();
    c.add_text(
        "v2.toml",
        r#"version = 2

[[check]]
id = "historian"
title = "Historian"
endpoint = "device"
protocol = "tcp"
host = "historian.plant"
port = 5450
timeout = 2.5
ip_family = "ipv6"
send = "PING\r\n"
[check.expect]
body_matches = "^PONG"

[[family]]
id = "hub"
title = "Hub"
endpoint = "iothub"
host = "{iothub_hostname}"
credentials = "none"
protocols = ["mqtt", "tls"]
ports = { tls = 8883 }
"#,
    )
    .unwrap();
    let h = c.get("historian").unwrap();
    assert_eq!(h.protocol, Protocol::Tcp);
    assert_eq!(h.limits.timeout, Some(Duration::from_millis(2500)));
    assert_eq!(h.limits.ip_family, Some(IpFamily::Ipv6));
    assert_eq!(h.send.as_deref(), Some("PING\r\n"));
    assert!(
        !c.get("hub-mqtt").unwrap().credentials,
        "credentials = none"
    );
    assert_eq!(c.get("hub-tls").unwrap().port, Some(8883));
    // Without the key (version 1), a family at the hub presents credentials over the
    // protocols that carry them and none over tls.
    let mut v1 = Catalog::default();
    v1.add_text(
            "v1.toml",
            "[[family]]\nid = \"hub\"\ntitle = \"Hub\"\nendpoint = \"iothub\"\nhost = \"{iothub_hostname}\"\nprotocols = [\"mqtt\", \"tls\"]\nports = { tls = 8883 }\n",
        )
        .unwrap();
    assert!(v1.get("hub-mqtt").unwrap().credentials);
    assert!(!v1.get("hub-tls").unwrap().credentials);

    let check = |body: &str| {
        format!("version = 2\n[[check]]\nid = \"a\"\ntitle = \"t\"\nendpoint = \"iothub\"\nhost = \"{{iothub_hostname}}\"\n{body}")
    };
    let cases: &[(String, &str)] = &[
            ("version = 3\n".into(), "f.toml: line 1: version: catalog version 3 is not one this edgeprobe reads (1, 2)"),
            (check("protocol = \"tcp\"\n"), "f.toml: check \"a\": a tcp probe needs a port"),
            (check("protocol = \"tls\"\nport = 1\ncredentials = \"device\"\n"), "f.toml: line 9: credentials: check \"a\": a tls probe presents no credentials"),
            (check("protocol = \"mqtt\"\ntimeout = 0\n"), "f.toml: line 8: timeout: 0 in \"a\" is not a number of seconds"),
            (check("protocol = \"mqtt\"\nsend = \"x\"\n"), "f.toml: line 8: send: check \"a\" is mqtt"),
            (check("protocol = \"https\"\n[check.expect]\nconnack = [0]\n"), "f.toml: line 9: expect.connack in \"a\": applies to mqtt and mqtt-ws checks, not to https"),
            (check("protocol = \"https\"\nip_family = \"ipx\"\n"), "f.toml: line 8: unknown variant `ipx`"),
            (check("protocol = \"dns\"\n"), "f.toml: line 7: protocol: \"dns\" in \"a\" is not a probe kind (mqtt, amqp, mqtt-ws, amqp-ws, https, tcp, tls)"),
        ];
    for (text, want) in cases {
        let err = Catalog::default().add_text("f.toml", text).unwrap_err();
        assert!(
            err.to_string().starts_with(want),
            "{err}\n  should start with\n{want}"
        );
    }
}

#[test]
fn built_in_families_of_the_device_s_services_present_its_credentials() {
    let c = Catalog::builtin().unwrap();
    for id in [
        "iothub-mqtt",
        "dps-https",
        "parent-amqp",
        "gateway-mqtt-ws",
        "edgehub-amqp",
    ] {
        assert!(c.get(id).unwrap().credentials, "{id}");
    }
}

#[test]
fn patterns_match_ids_and_prefixes() {
    assert!(matches_pattern("iothub-*", "iothub-mqtt"));
    assert!(matches_pattern("iothub-mqtt", "iothub-mqtt"));
    assert!(!matches_pattern("iothub-mqtt", "iothub-mqtt-ws"));
}

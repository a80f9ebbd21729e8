//! DPS devices: the Device Provisioning Service over all five protocols with DPS's own
//! usernames and SAS resource, the non-mutating status lookup, and — what other tools skip —
//! the hub checks against the hub DPS assigned.

use edgeprobe_iotedge::secret::Secret;
use fixtures::{DpsOptions, HubFaults, HubOptions, SimulatedHub};

use crate::support::{check, run, set_arg, Hub, DEVICE, HUB, KEY, WRONG_KEY};

const DPS: &str = "testdps.azure-devices-provisioning.net";
const SCOPE: &str = "0ne00TEST01";

struct Setup {
    _dps: SimulatedHub,
    _hub: Hub,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let hub = Hub::start(HubFaults::default()).await;
    let mut options = HubOptions::new(DPS);
    options.devices = vec![(DEVICE.into(), Secret::new(KEY))];
    options.dps = Some(DpsOptions {
        id_scope: SCOPE.into(),
        assigned_hub: HUB.into(),
    });
    let dps = SimulatedHub::start(options).await.unwrap();
    // One trust bundle holding both services' roots, as a real bundle would.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{}{}", hub.hub.ca_pem, dps.ca_pem)).unwrap();
    let mut args: Vec<String> = vec![
        "check".into(),
        "--id-scope".into(),
        SCOPE.into(),
        "--registration-id".into(),
        DEVICE.into(),
        "--dps-endpoint".into(),
        format!("https://{DPS}/"),
        "--sas-key".into(),
        KEY.into(),
        "--trust-bundle".into(),
        bundle.display().to_string(),
        "--timeout".into(),
        "10".into(),
        "--output".into(),
        "json".into(),
    ];
    args.extend(hub.hub.connect_to_args());
    args.extend(dps.connect_to_args());
    Setup {
        _dps: dps,
        _hub: hub,
        args,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dps_device_is_checked_at_dps_and_at_the_hub_dps_assigned() {
    let s = setup().await;
    let r = run(s.args.clone()).await;
    let rep = r.json();
    for p in ["mqtt", "amqp", "mqtt-ws", "amqp-ws", "https"] {
        let c = check(&rep, &format!("dps-{p}"));
        assert_eq!(
            (c.status.as_str(), c.endpoint.as_str()),
            ("pass", "dps"),
            "dps-{p}: {}",
            c.message
        );
        assert_eq!(c.host.as_deref(), Some(DPS));
    }
    let lookup = check(&rep, "dps-https");
    assert_eq!(lookup.auth.as_deref(), Some("ok"));
    assert!(
        lookup.message.contains(&format!("assigned to {HUB}")),
        "{}",
        lookup.message
    );
    assert!(lookup.phases.iter().any(|p| p.name == "protocol"
        && p.detail["request"]
            .as_str()
            .unwrap()
            .starts_with("POST /0ne00TEST01/registrations/dev-1?")));
    assert_eq!(
        check(&rep, "dps-amqp").auth.as_deref(),
        Some("ok"),
        "SASL PLAIN with the registration token"
    );
    assert_eq!(
        check(&rep, "dps-mqtt").auth.as_deref(),
        Some("untested"),
        "DPS checks MQTT keys only at registration"
    );
    // The hub was unknown until DPS said: the hub checks still ran, authenticated.
    assert_eq!(rep.context.iothub_hostname.as_deref(), Some(HUB));
    assert!(rep.context.notes.iter().any(|n| n.contains("DPS assigned")));
    for p in ["mqtt", "amqp", "mqtt-ws", "amqp-ws"] {
        let c = check(&rep, &format!("iothub-{p}"));
        assert_eq!(
            (c.status.as_str(), c.auth.as_deref()),
            ("pass", Some("ok")),
            "iothub-{p}: {}",
            c.message
        );
    }
    assert_eq!(r.code(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_dps_key_is_refused_and_the_hub_stays_unknown() {
    let s = setup().await;
    let mut args = s.args.clone();
    set_arg(&mut args, "--sas-key", WRONG_KEY);
    let rep = run(args).await.json();
    let lookup = check(&rep, "dps-https");
    assert_eq!(
        (lookup.status.as_str(), lookup.reason.as_str()),
        ("warn", "auth_rejected"),
        "{}",
        lookup.message
    );
    assert!(lookup.message.contains("401002"), "{}", lookup.message);
    assert_eq!(check(&rep, "dps-amqp").reason, "auth_rejected");
    let hub = check(&rep, "iothub-amqp");
    assert_eq!(
        (hub.status.as_str(), hub.reason.as_str()),
        ("skip", "not_configured")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_auth_proves_the_dps_paths_from_dps_refusals() {
    let s = setup().await;
    let mut args = s.args.clone();
    let i = args.iter().position(|a| a == "--sas-key").unwrap();
    args.drain(i..i + 2);
    args.push("--no-auth".into());
    let rep = run(args).await.json();
    for p in ["amqp", "https"] {
        let c = check(&rep, &format!("dps-{p}"));
        assert_eq!(
            (c.status.as_str(), c.auth.as_deref()),
            ("pass", Some("untested")),
            "dps-{p}: {}",
            c.message
        );
    }
    assert!(check(&rep, "dps-https").message.contains("401"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_enrollment_key_derives_the_device_key() {
    // The DPS fixture knows the device by its derived key; the run is given the group key.
    const GROUP_KEY: &str = "Z3JvdXAta2V5LWZvci1lZGdlcHJvYmUtZW5yb2xsbWVudA==";
    let derived =
        edgeprobe_iotedge::sas::derive_device_key(&Secret::new(GROUP_KEY), DEVICE).unwrap();
    let mut options = HubOptions::new(DPS);
    options.devices = vec![(DEVICE.into(), derived)];
    options.dps = Some(DpsOptions {
        id_scope: SCOPE.into(),
        assigned_hub: HUB.into(),
    });
    let dps = SimulatedHub::start(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &dps.ca_pem).unwrap();
    let mut args: Vec<String> = [
        "check",
        "--id-scope",
        SCOPE,
        "--registration-id",
        DEVICE,
        "--dps-endpoint",
        DPS,
        "--dps-group-key",
        GROUP_KEY,
        "--trust-bundle",
        &bundle.display().to_string(),
        "--timeout",
        "5",
        "--output",
        "json",
        "--only",
        "dps-https",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(dps.connect_to_args());
    let r = run(args).await;
    let rep = r.json();
    let c = check(&rep, "dps-https");
    assert_eq!(
        (c.status.as_str(), c.auth.as_deref()),
        ("pass", Some("ok")),
        "{}",
        c.message
    );
    assert!(
        !r.stdout().contains(GROUP_KEY),
        "the group key never reaches the output"
    );
}

//! DPS devices: the Device Provisioning Service over all five protocols with DPS's own
//! usernames and SAS resource, the non-mutating status lookup, and — what other tools skip —
//! the hub checks against the hub DPS assigned.

use edgeprobe_iotedge::secret::Secret;
use fixtures::{DpsOptions, DpsStatus, HubFaults, HubOptions, SimulatedHub};

use crate::support::{check, drop_arg, run, set_arg, Hub, DEVICE, HUB, KEY, WRONG_KEY};

const DPS: &str = "testdps.azure-devices-provisioning.net";
const SCOPE: &str = "0ne00TEST01";

struct Setup {
    _dps: SimulatedHub,
    _hub: Hub,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_assigning(HUB).await
}

/// A hub, and a DPS that assigns the device to `assigned_hub`.
async fn setup_assigning(assigned_hub: &str) -> Setup {
    setup_with(assigned_hub, DpsStatus::Assigned).await
}

/// A hub, and a DPS whose status lookup reports `status` (assigning to `assigned_hub`).
async fn setup_with(assigned_hub: &str, status: DpsStatus) -> Setup {
    let hub = Hub::start(HubFaults::default()).await;
    let mut options = HubOptions::new(DPS);
    options.devices = vec![(DEVICE.into(), Secret::new(KEY))];
    options.dps = Some(DpsOptions {
        id_scope: SCOPE.into(),
        assigned_hub: assigned_hub.into(),
        status,
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
        ("fail", "auth_rejected"),
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
    options.devices = vec![(DEVICE.into(), derived.clone())];
    options.dps = Some(DpsOptions {
        id_scope: SCOPE.into(),
        assigned_hub: HUB.into(),
        status: DpsStatus::Assigned,
    });
    let dps = SimulatedHub::start(options.clone()).await.unwrap();
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
    let r = run(args.clone()).await;
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

    // A disabled group enrollment: the fix names the group, not an individual enrollment.
    options.dps.as_mut().unwrap().status = DpsStatus::Disabled;
    let disabled = SimulatedHub::start(options).await.unwrap();
    std::fs::write(&bundle, &disabled.ca_pem).unwrap();
    let keep = args.len() - dps.connect_to_args().len();
    args.truncate(keep);
    args.extend(disabled.connect_to_args());
    let r = run(args).await;
    let rep = r.json();
    let c = check(&rep, "dps-https");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("fail", "dps_disabled"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("enrollment group of dev-1 is disabled"),
        "{}",
        c.message
    );
    assert!(
        c.fix
            .as_deref()
            .is_some_and(|f| f.contains("re-enable the enrollment group")),
        "{:?}",
        c.fix
    );
    assert_eq!(
        r.code(),
        1,
        "DPS is required: a disabled enrollment fails the run"
    );
}

// Regression: DPS answered 200 with "status": "disabled" and dps-https passed.
#[tokio::test(flavor = "multi_thread")]
async fn each_registration_state_is_judged_as_provisioning_will_experience_it() {
    // (state, status, reason, exit code, words in the message, words in the fix)
    type Row = (
        DpsStatus,
        &'static str,
        &'static str,
        i32,
        &'static [&'static str],
        &'static [&'static str],
    );
    let table: [Row; 6] = [
        (
            DpsStatus::Assigned,
            "pass",
            "ok",
            0,
            &["assigned to testhub.azure-devices.net"],
            &[],
        ),
        (
            DpsStatus::Disabled,
            "fail",
            "dps_disabled",
            1,
            &[
                "individual enrollment of dev-1 is disabled",
                "will not provision or reprovision",
            ],
            &["re-enable the individual enrollment dev-1", SCOPE],
        ),
        (
            DpsStatus::Failed {
                code: 400209,
                message: "Custom allocation failed with status code: 400".into(),
            },
            "fail",
            "dps_failed",
            1,
            &["failed (error 400209: Custom allocation failed with status code: 400)"],
            &["reprovision"],
        ),
        (
            DpsStatus::Unassigned,
            "warn",
            "dps_not_assigned",
            0,
            &["unassigned"],
            &["allocation policy"],
        ),
        (
            DpsStatus::Assigning,
            "warn",
            "dps_not_assigned",
            0,
            &["still assigning"],
            &["allocation"],
        ),
        (
            DpsStatus::NotFound,
            "fail",
            "dps_not_found",
            1,
            &["no registration dev-1 in ID scope 0ne00TEST01", "404"],
            &["registration id (dev-1)", "ID scope (0ne00TEST01)"],
        ),
    ];
    for (state, status, reason, code, says, fix_says) in table {
        let s = setup_with(HUB, state.clone()).await;
        let mut args = s.args.clone();
        args.extend(["--only".into(), "dps-https".into()]);
        let r = run(args).await;
        let rep = r.json();
        let c = check(&rep, "dps-https");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            (status, reason),
            "{state:?}: {}",
            c.message
        );
        for w in says {
            assert!(
                c.message.contains(w),
                "{state:?}: {:?} lacks {w:?}",
                c.message
            );
        }
        let fix = c.fix.clone().unwrap_or_default();
        for w in fix_says {
            assert!(fix.contains(w), "{state:?}: fix {fix:?} lacks {w:?}");
        }
        // DPS answered in every state: the HTTPS path to DPS is proven.
        assert!(
            c.phases
                .iter()
                .any(|p| p.name == "protocol" && p.status == "ok"),
            "{state:?}: {:?}",
            c.phases
        );
        assert_eq!(r.code(), code, "{state:?}: {}", r.stdout());
    }
}

/// aziot-identityd's `device_info`, as it writes it after provisioning.
fn device_info(dir: &std::path::Path, hub: &str) -> String {
    let path = dir.join("device_info");
    std::fs::write(
        &path,
        format!(
            "hub_name = \"{hub}\"\nlocal_gateway_hostname = \"{hub}\"\ndevice_id = \"{DEVICE}\"\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_identity_services_state_names_the_hub_even_when_dps_is_unreachable() {
    let s = setup().await;
    let mut args = s.args.clone();
    // DPS's ports refuse: only the provisioning state can tell the hub.
    let closed = fixtures::ClosedPort::loopback().unwrap();
    let dps_targets: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(_, a)| a.starts_with(&format!("{DPS}:")))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(dps_targets.len(), 3);
    for i in dps_targets {
        let port = args[i].split(':').nth(1).unwrap().to_owned();
        args[i] = format!("{DPS}:{port}:{}:{}", closed.addr().ip(), closed.port());
    }
    let state = device_info(s._dir.path(), HUB);
    args.extend(["--identity-state".into(), state.clone()]);
    let rep = run(args).await.json();
    for p in ["mqtt", "amqp", "mqtt-ws", "amqp-ws", "https"] {
        let c = check(&rep, &format!("dps-{p}"));
        assert_eq!(c.reason, "tcp_refused", "dps-{p}: {}", c.message);
        let h = check(&rep, &format!("iothub-{p}"));
        assert_eq!(h.status, "pass", "iothub-{p}: {}", h.message);
    }
    assert_eq!(check(&rep, "iothub-amqp").auth.as_deref(), Some("ok"));
    assert_eq!(rep.context.iothub_hostname.as_deref(), Some(HUB));
    assert_eq!(rep.context.device_id.as_deref(), Some(DEVICE));
    assert!(
        rep.context
            .notes
            .iter()
            .any(|n| n.contains(&state) && n.contains(&format!("assigned this device to {HUB}"))),
        "{:?}",
        rep.context.notes
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_dps_would_now_move_is_checked_where_it_is_and_told_so() {
    let s = setup_assigning("newhub.azure-devices.net").await;
    let mut args = s.args.clone();
    let state = device_info(s._dir.path(), HUB);
    args.extend(["--identity-state".into(), state]);
    let rep = run(args).await.json();
    // The hub checks ran against the hub in the state, beside the DPS checks.
    assert_eq!(rep.context.iothub_hostname.as_deref(), Some(HUB));
    assert_eq!(check(&rep, "iothub-amqp").host.as_deref(), Some(HUB));
    assert_eq!(check(&rep, "iothub-amqp").status, "pass");
    assert!(check(&rep, "dps-https")
        .message
        .contains("assigned to newhub.azure-devices.net"));
    assert!(
        rep.context.notes.iter().any(|n| n.contains(
            "status lookup names newhub.azure-devices.net, but the device stays on testhub"
        )),
        "{:?}",
        rep.context.notes
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1_1_config_finds_the_provisioning_backup_under_its_homedir() {
    let s = setup().await;
    let home = s._dir.path().join("iotedge");
    std::fs::create_dir_all(home.join("cache")).unwrap();
    std::fs::write(
        home.join("cache/provisioning_backup.json"),
        format!(
            r#"{{"device_id":"{DEVICE}","hub_name":"{HUB}","reconfigure":"None","credentials":{{"auth_type":"SymmetricKey","source":"Payload","key":"{BACKUP_KEY}"}}}}"#
        ),
    )
    .unwrap();
    let config = s._dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "provisioning:\n  source: \"dps\"\n  global_endpoint: \"https://{DPS}/\"\n  scope_id: \"{SCOPE}\"\n  attestation:\n    method: \"symmetric_key\"\n    registration_id: \"{DEVICE}\"\n    symmetric_key: \"{KEY}\"\nhostname: \"edge\"\nhomedir: \"{}\"\n",
            home.display()
        ),
    )
    .unwrap();
    let mut args = s.args.clone();
    for flag in [
        "--id-scope",
        "--registration-id",
        "--dps-endpoint",
        "--sas-key",
    ] {
        drop_arg(&mut args, flag);
    }
    args.extend([
        "--config".into(),
        config.display().to_string(),
        "--skip".into(),
        "registry-*".into(),
        "--vantage".into(),
        "host".into(),
    ]);
    let rep = run(args.clone()).await.json();
    assert!(
        rep.context
            .notes
            .iter()
            .any(|n| n.contains("cache/provisioning_backup.json") && n.contains(HUB)),
        "{:?}",
        rep.context.notes
    );
    assert_eq!(check(&rep, "dps-https").auth.as_deref(), Some("ok"));
    let amqp = check(&rep, "iothub-amqp");
    assert_eq!(
        (amqp.status.as_str(), amqp.auth.as_deref()),
        ("pass", Some("ok"))
    );

    // A support bundle carries the assignment, never what else the backup holds.
    let out = s._dir.path().join("bundle.tar.gz");
    args[0] = "bundle".into();
    args.extend(["--output-file".into(), out.display().to_string()]);
    let r = run(args).await;
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let files = crate::bundle::unpack(&std::fs::read(&out).unwrap());
    let state = &files
        .iter()
        .find(|(p, _)| p.ends_with("iotedge/provisioning-state.toml"))
        .expect("the provisioning state is in the bundle")
        .1;
    assert_eq!(
        state,
        &format!("hub_name = \"{HUB}\"\ndevice_id = \"{DEVICE}\"\n")
    );
    for (path, text) in &files {
        assert!(!text.contains(BACKUP_KEY), "{path} holds the backup's key");
        assert!(!text.contains(KEY), "{path} holds the device key");
    }
}

/// A key inside 1.1's provisioning backup: it must never leave the file.
const BACKUP_KEY: &str = "YmFja3VwLWtleS1uZXZlci1zaG93bi1pbi1hbnl0aGluZw==";

#[tokio::test(flavor = "multi_thread")]
async fn an_unprovisioned_state_falls_back_to_the_status_lookup() {
    let s = setup().await;
    let path = s._dir.path().join("device_info");
    std::fs::write(&path, "unprovisioned").unwrap();
    let mut args = s.args.clone();
    args.extend(["--identity-state".into(), path.display().to_string()]);
    let rep = run(args).await.json();
    let notes = &rep.context.notes;
    assert!(
        notes.iter().any(|n| n.contains("not provisioned yet")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("DPS assigned")),
        "{notes:?}"
    );
    assert_eq!(check(&rep, "iothub-mqtt").status, "pass");

    // A hub named on the command line wins; the state is not read, and the note says so.
    let mut args = s.args.clone();
    args.extend([
        "--iothub-hostname".into(),
        HUB.into(),
        "--identity-state".into(),
        "/nonexistent/device_info".into(),
    ]);
    let r = run(args).await;
    let rep = r.json();
    assert!(
        rep.context
            .notes
            .iter()
            .any(|n| n == "--identity-state was not used: the flags name the hub"),
        "{:?}",
        rep.context.notes
    );
}

//! The fast tier: the prober against the simulated hub in process. The hub's own TLS and
//! protocol handlers answer over `tokio::io::duplex` (its `connector()`), so everything above
//! TCP — TLS verification and its failures, the WebSocket upgrade, MQTT, AMQP and HTTPS,
//! the credentials and the judgement — runs as any user, without sockets to the probe or root.

use std::time::Duration;

use edgeprobe_core::catalog::{CheckDef, Target};
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::runner::Probe;
use edgeprobe_core::{AuthState, Endpoint, Learned, Outcome, PhaseName, Protocol, Reason, Status};
use edgeprobe_iotedge::identity::{Credentials, DeviceIdentity, DpsIdentity};
use edgeprobe_iotedge::secret::Secret;
use edgeprobe_probes::dns::{Dns, Overrides};
use edgeprobe_probes::tls::{self, RootSet, TlsSettings};
use edgeprobe_probes::{ProbeSettings, Prober};
use fixtures::{DpsOptions, DpsStatus, HubFaults, HubOptions, PortFault, SimulatedHub, WsFault};

const HUB: &str = "inproc.azure-devices.net";
const DEVICE: &str = "dev-1";
const KEY: &str = "aW4tcHJvY2Vzcy1kZXZpY2Uta2V5LTAxMjM0NTY3ODk=";
const WRONG_KEY: &str = "d3Jvbmcta2V5LW9mLWFub3RoZXItZGV2aWNlLTAxMjM=";

async fn hub(faults: HubFaults) -> SimulatedHub {
    let mut options = HubOptions::new(HUB);
    options.devices = vec![(DEVICE.into(), Secret::new(KEY))];
    options.faults = faults;
    SimulatedHub::start(options)
        .await
        .expect("the simulated hub")
}

/// One check of `protocol` against the hub, in process, with the device's `key` (or none).
async fn probe(hub: &SimulatedHub, protocol: Protocol, key: Option<&str>, secs: u64) -> Outcome {
    let mut settings = settings(hub);
    settings.identity = Some(DeviceIdentity {
        hub: HUB.into(),
        device_id: DEVICE.into(),
        module_id: None,
        credentials: key.map_or(Credentials::None, |k| Credentials::SasKey(Secret::new(k))),
    });
    settings.credential_hosts = vec![HUB.into()];
    run(settings, Endpoint::Iothub, protocol, HUB, secs).await
}

/// What the probes of a run share, with `hub` as the in-process network and its CA trusted.
fn settings(hub: &SimulatedHub) -> ProbeSettings {
    let roots = tls::parse_pem_certs(hub.ca_pem.as_bytes(), "the hub's CA").expect("CA");
    ProbeSettings {
        dns: std::sync::Arc::new(Dns::system(Overrides::default())),
        tls: TlsSettings::new(&roots, "the hub's CA", RootSet::BundleOnly).expect("roots"),
        identity: None,
        dps: None,
        proxy: None,
        no_proxy: String::new(),
        no_auth: false,
        registries: Vec::new(),
        credential_hosts: Vec::new(),
        connector: Some(hub.connector()),
    }
}

/// One check of the device's own service (`credentials = "device"`) at `host`.
async fn run(
    settings: ProbeSettings,
    endpoint: Endpoint,
    protocol: Protocol,
    host: &str,
    secs: u64,
) -> Outcome {
    let mut check = CheckDef::derived(format!("{endpoint}-{protocol}"), "t", endpoint, protocol);
    check.credentials = true;
    let target = Target {
        host: host.into(),
        port: Some(protocol.default_port().expect("a port")),
    };
    let rec = PhaseRecorder::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    Prober::new(settings)
        .run(&check, &target, &rec, deadline)
        .await
}

fn said(o: &Outcome, words: &str) -> bool {
    o.message.contains(words)
}

#[tokio::test]
async fn every_protocol_proves_its_path_and_the_device_s_key() {
    let hub = hub(HubFaults::default()).await;
    for protocol in [
        Protocol::Mqtt,
        Protocol::Amqp,
        Protocol::MqttWs,
        Protocol::AmqpWs,
    ] {
        let o = probe(&hub, protocol, Some(KEY), 10).await;
        assert_eq!(
            (o.status, o.reason, o.auth),
            (Status::Pass, Reason::Ok, Some(AuthState::Ok)),
            "{protocol}: {}",
            o.message
        );
        let names: Vec<PhaseName> = o.phases.iter().map(|p| p.name).collect();
        assert!(names.contains(&PhaseName::Tls), "{protocol}: {names:?}");
        assert!(names.contains(&PhaseName::Auth), "{protocol}: {names:?}");
        assert!(!o.message.contains(KEY), "{protocol}: {}", o.message);
    }
    // HTTPS: IoT Hub's 401 with its error code proves the service; nothing is presented.
    let o = probe(&hub, Protocol::Https, Some(KEY), 10).await;
    assert_eq!(
        (o.status, o.auth),
        (Status::Pass, Some(AuthState::Untested)),
        "{}",
        o.message
    );
    assert!(said(&o, "401"), "{}", o.message);
    assert!(hub.connections() >= 5);
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_the_path_proven_and_no_key_is_untested() {
    let hub = hub(HubFaults::default()).await;
    for protocol in [Protocol::Mqtt, Protocol::Amqp, Protocol::AmqpWs] {
        let o = probe(&hub, protocol, Some(WRONG_KEY), 10).await;
        assert_eq!(
            (o.status, o.reason, o.auth),
            (
                Status::Fail,
                Reason::AuthRejected,
                Some(AuthState::Rejected)
            ),
            "{protocol}: {}",
            o.message
        );
        assert!(said(&o, "path works"), "{protocol}: {}", o.message);
        assert!(o.fix.is_some(), "{protocol}");
        let o = probe(&hub, protocol, None, 10).await;
        assert_eq!(
            (o.status, o.auth),
            (Status::Pass, Some(AuthState::Untested)),
            "{protocol} without a key: {}",
            o.message
        );
    }
}

#[tokio::test]
async fn what_answers_instead_is_named_at_the_layer_it_answered() {
    let faults = HubFaults {
        mqtt: PortFault::UntrustedCert,
        amqp: PortFault::PlainHttp,
        https: PortFault::WrongService,
        ..HubFaults::default()
    };
    let hub = hub(faults).await;
    let o = probe(&hub, Protocol::Mqtt, Some(KEY), 10).await;
    assert_eq!(
        (o.status, o.reason),
        (Status::Fail, Reason::TlsUntrusted),
        "{}",
        o.message
    );
    assert!(said(&o, &hub.interceptor_name), "{}", o.message);
    let o = probe(&hub, Protocol::Amqp, Some(KEY), 10).await;
    assert_eq!(
        (o.status, o.reason),
        (Status::Fail, Reason::TlsNotTls),
        "{}",
        o.message
    );
    assert!(
        said(&o, "an HTTP server answered (HTTP/1.1 400"),
        "{}",
        o.message
    );
    let o = probe(&hub, Protocol::Https, Some(KEY), 10).await;
    assert_eq!(
        (o.status, o.reason),
        (Status::Fail, Reason::WrongService),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn websocket_refusals_and_silence_after_tls_have_their_own_reasons() {
    let faults = HubFaults {
        mqtt: PortFault::StallAfterTls,
        mqtt_ws: WsFault::RefuseUpgrade,
        amqp_ws: WsFault::WrongSubprotocol,
        ..HubFaults::default()
    };
    let hub = hub(faults).await;
    let o = probe(&hub, Protocol::MqttWs, Some(KEY), 10).await;
    assert_eq!(
        (o.status, o.reason),
        (Status::Fail, Reason::WsRejected),
        "{}",
        o.message
    );
    let o = probe(&hub, Protocol::AmqpWs, Some(KEY), 10).await;
    assert_eq!(
        (o.status, o.reason),
        (Status::Fail, Reason::WsSubprotocol),
        "{}",
        o.message
    );
    // TLS completes, then nothing: the protocol times out at the check's deadline.
    let o = probe(&hub, Protocol::Mqtt, Some(KEY), 2).await;
    assert_eq!(
        (o.status, o.reason),
        (Status::Fail, Reason::ProtocolTimeout),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn a_closed_port_is_refused_without_a_socket() {
    let hub = hub(HubFaults {
        amqp: PortFault::Closed,
        ..HubFaults::default()
    })
    .await;
    let o = probe(&hub, Protocol::Amqp, Some(KEY), 10).await;
    assert_eq!(
        (o.status, o.reason),
        (Status::Fail, Reason::TcpRefused),
        "{}",
        o.message
    );
}

const DPS: &str = "global.azure-devices-provisioning.net";
const SCOPE: &str = "0ne00000a1b";

async fn dps(status: DpsStatus) -> SimulatedHub {
    let mut options = HubOptions::new(DPS);
    options.devices = vec![(DEVICE.into(), Secret::new(KEY))];
    options.dps = Some(DpsOptions {
        id_scope: SCOPE.into(),
        assigned_hub: HUB.into(),
        status,
    });
    SimulatedHub::start(options)
        .await
        .expect("the simulated DPS")
}

/// A DPS check of the device's registration, with `key`, at `host` (DPS's own, or another).
async fn dps_probe(dps: &SimulatedHub, protocol: Protocol, key: &str, host: &str) -> Outcome {
    let mut settings = settings(dps);
    settings.dps = Some(DpsIdentity {
        id_scope: SCOPE.into(),
        registration_id: DEVICE.into(),
        key: Some(Secret::new(key)),
        group_enrollment: false,
    });
    settings.credential_hosts = vec![DPS.into()];
    run(settings, Endpoint::Dps, protocol, host, 10).await
}

#[tokio::test]
async fn dps_s_status_lookup_hands_the_assigned_hub_to_the_next_stage() {
    let dps = dps(DpsStatus::Assigned).await;
    let o = dps_probe(&dps, Protocol::Https, KEY, DPS).await;
    assert_eq!(
        (o.status, o.auth),
        (Status::Pass, Some(AuthState::Ok)),
        "{}",
        o.message
    );
    assert!(
        o.learned.contains(&Learned::AssignedHub(HUB.into())),
        "{:?}",
        o.learned
    );
    assert_eq!(o.assigned_device_id(), Some(DEVICE));
    // The registration's key, refused.
    let o = dps_probe(&dps, Protocol::Https, WRONG_KEY, DPS).await;
    assert_eq!(
        (o.status, o.reason, o.auth),
        (
            Status::Fail,
            Reason::AuthRejected,
            Some(AuthState::Rejected)
        ),
        "{}",
        o.message
    );
    assert!(o.learned.is_empty(), "{:?}", o.learned);
    // MQTT and AMQP to DPS prove the path with the registration's token.
    for protocol in [Protocol::Mqtt, Protocol::Amqp, Protocol::AmqpWs] {
        let o = dps_probe(&dps, protocol, KEY, DPS).await;
        assert_eq!(o.status, Status::Pass, "{protocol}: {}", o.message);
    }
}

#[tokio::test]
async fn a_disabled_enrollment_is_named_and_no_hub_is_handed_on() {
    let dps = dps(DpsStatus::Disabled).await;
    let o = dps_probe(&dps, Protocol::Https, KEY, DPS).await;
    assert_eq!(
        (o.status, o.reason),
        (Status::Fail, Reason::DpsDisabled),
        "{}",
        o.message
    );
    assert_eq!(o.assigned_hub(), None);
}

#[tokio::test]
async fn the_registration_s_token_goes_to_dps_only() {
    // A DPS answering under another name than the device's DPS endpoint: the path is
    // proven, and nothing is presented there (the device's DPS is DPS, not this host).
    const OTHER: &str = "dps.example.net";
    let mut options = HubOptions::new(OTHER);
    options.devices = vec![(DEVICE.into(), Secret::new(KEY))];
    options.dps = Some(DpsOptions {
        id_scope: SCOPE.into(),
        assigned_hub: HUB.into(),
        status: DpsStatus::Assigned,
    });
    let other = SimulatedHub::start(options).await.expect("another DPS");
    for protocol in [Protocol::Https, Protocol::Mqtt, Protocol::Amqp] {
        let o = dps_probe(&other, protocol, KEY, OTHER).await;
        assert_eq!(
            (o.status, o.auth),
            (Status::Pass, Some(AuthState::Untested)),
            "{protocol}: {}",
            o.message
        );
    }
    // The same requests at the device's DPS present the token: what the test above rules out.
    let dps = dps(DpsStatus::Assigned).await;
    let o = dps_probe(&dps, Protocol::Https, KEY, DPS).await;
    assert_eq!(o.auth, Some(AuthState::Ok), "{}", o.message);
}

//! `edgeprobe demo`: a real run against the simulated IoT Hub of the `fixtures` crate, on
//! loopback, so a newcomer sees a real report without an Azure account. MQTT's port is
//! closed, as a firewall that rejects 8883 would, and the device is configured for Mqtt:
//! the report shows the failure, why, and that Amqp is the setting to switch to.

use edgeprobe_iotedge::secret::Secret;
use edgeprobe_report::RunContext;
use fixtures::{HubOptions, PortFault, SimulatedHub};

use crate::cli::{CheckArgs, DemoArgs, VantageChoice};
use crate::run::{emit, exit_code};
use crate::stages::check;
use crate::AppError;

/// The simulated hub's name; `--connect-to` keeps every probe on loopback.
pub const DEMO_HUB: &str = "edgeprobe-demo.azure-devices.net";
pub const DEMO_DEVICE: &str = "demo-device";
/// A key made up for the demo device (not a secret of anyone's).
const DEMO_KEY: &str = "ZWRnZXByb2JlLWRlbW8tZGV2aWNlLWtleS0wMDAwMDA=";

pub async fn run(args: &DemoArgs) -> Result<u8, AppError> {
    let mut options = HubOptions::new(DEMO_HUB);
    options.devices = vec![(DEMO_DEVICE.into(), Secret::new(DEMO_KEY))];
    options.faults.mqtt = PortFault::Closed;
    let hub = SimulatedHub::start(options).await.map_err(|e| {
        AppError::Internal(format!("cannot start the simulated hub on loopback: {e}"))
    })?;

    // The hub's CA for the run, removed when the demo ends (also on an error).
    let bundle_file = tempfile::Builder::new()
        .prefix("edgeprobe-demo-")
        .suffix(".pem")
        .tempfile()
        .map_err(|e| AppError::Internal(format!("cannot create a temporary file: {e}")))?;
    let bundle = bundle_file.path().to_owned();
    std::fs::write(&bundle, &hub.ca_pem)
        .map_err(|e| AppError::Internal(format!("cannot write {}: {e}", bundle.display())))?;
    let mut connect_to = Vec::new();
    for pair in hub.connect_to_args().chunks(2) {
        connect_to.push(pair[1].clone());
    }
    let check_args = CheckArgs {
        iothub_hostname: Some(DEMO_HUB.into()),
        device_id: Some(DEMO_DEVICE.into()),
        sas_key: Some(DEMO_KEY.into()),
        trust_bundle: Some(bundle.clone()),
        timeout: args.timeout,
        connect_to,
        output: args.output,
        verbose: args.verbose,
        concurrency: 32,
        upstream_protocol: Some("Mqtt".into()),
        // Hermetic: the machine's own IoT Edge configuration (proxy, registries) stays out.
        no_config: true,
        // The simulated hub listens on loopback, which containers cannot reach.
        vantage: VantageChoice::Host,
        system_root: "/".into(),
        edgehub_container: "edgeHub".into(),
        ..CheckArgs::default()
    };
    let context = RunContext {
        notes: vec![format!(
            "demo: a simulated IoT Hub on {} (MQTT {}, AMQP {}, HTTPS/WebSocket {}); its MQTT port is closed, as a firewall rejecting 8883 would, and the device is configured for Mqtt",
            hub.https.ip(),
            hub.mqtt.port(),
            hub.amqp.port(),
            hub.https.port()
        )],
        ..RunContext::default()
    };
    let report = check(&check_args, context).await;
    drop(bundle_file);
    let report = report?;
    emit(&report, &check_args)?;
    // The blocked path is the point of the demo: it succeeded if the report shows exactly
    // that (MQTT refused, Amqp recommended), whatever the device's exit code would be.
    let expected = report
        .verdict
        .recommendation
        .upstream_protocol
        .is_some_and(|p| p.as_str() == "Amqp")
        && exit_code(&report) == 1;
    Ok(if expected { 0 } else { 1 })
}

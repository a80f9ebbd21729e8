//! `edgeprobe serve-fixture` (hidden): runs the simulated IoT Hub as a process of its own, so
//! tests can place it where a real hub would be — in another network namespace, behind a
//! router, reachable from a Docker network only through the host's FORWARD chain. It prints
//! one JSON line (addresses and the CA to trust) and serves until stdin closes.

use std::io::Write as _;

use edgeprobe_iotedge::secret::Secret;
use fixtures::{DpsOptions, DpsStatus, HubOptions, PortFault, SimulatedHub, WsFault};
use tokio::io::AsyncReadExt as _;

use crate::cli::ServeArgs;
use crate::AppError;

fn port_fault(name: &str) -> Result<PortFault, String> {
    Ok(match name {
        "none" => PortFault::None,
        "closed" => PortFault::Closed,
        "stall-after-accept" => PortFault::StallAfterAccept,
        "stall-after-tls" => PortFault::StallAfterTls,
        "plain-http" => PortFault::PlainHttp,
        "wrong-service" => PortFault::WrongService,
        "untrusted-cert" => PortFault::UntrustedCert,
        "wrong-name" => PortFault::WrongName,
        "expired-cert" => PortFault::ExpiredCert,
        "echo" => PortFault::Echo,
        "self-signed" => PortFault::SelfSigned,
        "endless-body" => PortFault::EndlessBody,
        other => return Err(format!("unknown port fault {other:?}")),
    })
}

fn ws_fault(name: &str) -> Result<WsFault, String> {
    Ok(match name {
        "none" => WsFault::None,
        "refuse-upgrade" => WsFault::RefuseUpgrade,
        "wrong-subprotocol" => WsFault::WrongSubprotocol,
        other => return Err(format!("unknown WebSocket fault {other:?}")),
    })
}

pub async fn run(args: &ServeArgs) -> Result<u8, AppError> {
    let usage = |m: String| AppError::Usage(m);
    let mut options = HubOptions::new(&args.hostname);
    options.bind = args.bind;
    options.real_ports = args.real_ports;
    options.iothub_name = args.iothub_name.clone();
    for d in &args.device {
        let (id, key) = d
            .split_once(':')
            .ok_or_else(|| usage("--device: expected ID:KEY".to_owned()))?;
        options.devices.push((id.to_owned(), Secret::new(key)));
    }
    for f in &args.fault {
        let (what, how) = f
            .split_once('=')
            .ok_or_else(|| usage(format!("--fault {f:?}: expected PORT=FAULT")))?;
        let faults = &mut options.faults;
        match what {
            "mqtt" => faults.mqtt = port_fault(how).map_err(usage)?,
            "amqp" => faults.amqp = port_fault(how).map_err(usage)?,
            "https" => faults.https = port_fault(how).map_err(usage)?,
            "mqtt-ws" => faults.mqtt_ws = ws_fault(how).map_err(usage)?,
            "amqp-ws" => faults.amqp_ws = ws_fault(how).map_err(usage)?,
            "credentials" => faults.reject_credentials = how == "reject",
            other => return Err(usage(format!("--fault {other:?}: unknown target"))),
        }
    }
    if let (Some(scope), Some(hub)) = (&args.dps_id_scope, &args.dps_assigned_hub) {
        options.dps = Some(DpsOptions {
            id_scope: scope.clone(),
            assigned_hub: hub.clone(),
            status: DpsStatus::parse(&args.dps_status).ok_or_else(|| {
                usage(format!(
                    "--dps-status {:?}: expected assigned, disabled, failed[:CODE[:MESSAGE]], unassigned, assigning or not-found",
                    args.dps_status
                ))
            })?,
        });
    }
    let hub = SimulatedHub::start(options)
        .await
        .map_err(|e| AppError::Internal(format!("cannot start the simulated hub: {e}")))?;
    let line = serde_json::json!({
        "hostname": hub.hostname,
        "mqtt": hub.mqtt.to_string(),
        "amqp": hub.amqp.to_string(),
        "https": hub.https.to_string(),
        "ca_pem": hub.ca_pem,
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    // Serve until whoever started us closes our stdin (or kills us).
    let mut sink = [0u8; 64];
    let mut stdin = tokio::io::stdin();
    while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
    drop(hub);
    Ok(0)
}

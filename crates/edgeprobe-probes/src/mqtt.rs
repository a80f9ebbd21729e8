//! MQTT 3.1.1 as IoT Hub and edgeHub speak it: CONNECT with the device's client id,
//! IoT Hub's username and a SAS-token password (or nothing, for X.509 and `--no-auth`),
//! then CONNACK, then DISCONNECT. Nothing is published or subscribed. Packets are encoded
//! and decoded by rumqttc's codec.

use bytes::BytesMut;
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{PhaseName, PhaseStatus, Reason};
use edgeprobe_iotedge::secret::Secret;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::Failure;
use crate::{sniff, Io};

/// Largest packet we accept from a peer: a CONNACK is 4 bytes.
const MAX_PACKET: usize = 4096;
/// IoT Hub allows at most 1177 s; we leave before any keep-alive matters.
const KEEP_ALIVE_SECS: u16 = 60;
/// The first byte of every CONNACK: packet type 2, no flags.
const CONNACK_FIRST_BYTE: u8 = 0x20;

/// What to send in CONNECT.
#[derive(Clone, Debug)]
pub struct MqttParams {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// The CONNACK return code, as a number and in words.
pub fn describe_code(code: ConnectReturnCode) -> (u8, &'static str) {
    match code {
        ConnectReturnCode::Success => (0, "accepted"),
        ConnectReturnCode::RefusedProtocolVersion => (1, "unacceptable protocol version"),
        ConnectReturnCode::BadClientId => (2, "identifier rejected"),
        ConnectReturnCode::ServiceUnavailable => (3, "server unavailable"),
        ConnectReturnCode::BadUserNamePassword => (4, "bad user name or password"),
        ConnectReturnCode::NotAuthorized => (5, "not authorized"),
    }
}

/// Sends CONNECT and waits for CONNACK, recording the `protocol` phase. Returns the
/// CONNACK; any CONNACK proves the MQTT path.
pub async fn connect<S: Io>(
    stream: &mut S,
    params: &MqttParams,
    rec: &PhaseRecorder,
    deadline: Instant,
) -> Result<ConnAck, Failure> {
    rec.start(PhaseName::Protocol);
    let mut connect = Connect::new(params.client_id.clone());
    connect.keep_alive = KEEP_ALIVE_SECS;
    if let Some(user) = &params.username {
        let password = params.password.as_ref().map(|p| p.expose()).unwrap_or("");
        connect.set_login(user.clone(), password);
    }
    let mut out = BytesMut::new();
    if let Err(e) = Packet::Connect(connect).write(&mut out, usize::MAX) {
        rec.end(PhaseStatus::Fail, Vec::new());
        return Err((Reason::ProtocolError, format!("cannot encode CONNECT: {e}")));
    }
    let sent = tokio::time::timeout_at(deadline, async {
        stream.write_all(&out).await?;
        stream.flush().await
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            return Err((
                Reason::ProtocolError,
                format!("the connection broke while sending CONNECT: {e}"),
            ));
        }
        Err(_) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            return Err((
                Reason::ProtocolTimeout,
                "CONNECT could not be sent in time".into(),
            ));
        }
    }

    let mut buf = BytesMut::with_capacity(64);
    let read = tokio::time::timeout_at(deadline, async {
        loop {
            if buf.first().is_some_and(|b| *b != CONNACK_FIRST_BYTE) {
                return Err(not_mqtt(&buf));
            }
            if !buf.is_empty() {
                match Packet::read(&mut buf, MAX_PACKET) {
                    Ok(Packet::ConnAck(ack)) => return Ok(ack),
                    Ok(other) => {
                        return Err((Reason::ProtocolError, format!("expected CONNACK, got {other:?}")))
                    }
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => return Err((Reason::ProtocolError, format!("malformed CONNACK: {e}"))),
                }
            }
            let mut chunk = [0u8; 512];
            match stream.read(&mut chunk).await {
                Ok(0) if buf.is_empty() => {
                    return Err((
                        Reason::ProtocolError,
                        "the peer closed the connection without answering CONNECT (not an MQTT broker, or a middlebox cut it)".into(),
                    ))
                }
                Ok(0) => return Err(not_mqtt(&buf)),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    return Err((Reason::ProtocolError, format!("the connection broke while waiting for CONNACK: {e}")))
                }
            }
        }
    })
    .await;
    match read {
        Ok(Ok(ack)) => {
            let (code, words) = describe_code(ack.code);
            rec.end(
                PhaseStatus::Ok,
                vec![
                    ("connack_code".into(), json!(code)),
                    ("connack".into(), json!(words)),
                    ("session_present".into(), json!(ack.session_present)),
                ],
            );
            // Leave politely; the answer is already in hand, so failures here do not matter.
            let mut bye = BytesMut::new();
            if Packet::Disconnect.write(&mut bye, MAX_PACKET).is_ok() {
                let _ = tokio::time::timeout_at(deadline, async {
                    stream.write_all(&bye).await?;
                    stream.shutdown().await
                })
                .await;
            }
            Ok(ack)
        }
        Ok(Err(failure)) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            Err(failure)
        }
        Err(_) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            Err((
                Reason::ProtocolTimeout,
                "CONNECT was sent but no CONNACK came back: something on the path (a DPI middlebox, an MTU black hole) swallows MQTT".into(),
            ))
        }
    }
}

fn not_mqtt(buf: &[u8]) -> Failure {
    let answer = sniff::classify(buf);
    if answer.is_other_service() {
        (
            Reason::WrongService,
            format!("not an MQTT broker: {}", answer.describe()),
        )
    } else {
        (
            Reason::ProtocolError,
            format!("expected an MQTT CONNACK: {}", answer.describe()),
        )
    }
}

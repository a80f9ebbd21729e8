//! The answer people run edgeprobe for: which `UpstreamProtocol` values will work for
//! edgeAgent and edgeHub, and what to set. A protocol works only when its protocol phase got
//! an answer from the real service (a CONNACK, an AMQP open, IoT Hub's own HTTP error);
//! credentials refused still mean the path works.

/// Which protocols work, and the one to set.
mod judgement;
/// What the verdict says as checks, and the fixes it keeps in line.
mod outcomes;
/// Whether the device can run.
mod readiness;

use std::fmt;

use edgeprobe_core::{AuthState, Protocol, Reason};

pub use judgement::judge;
pub use outcomes::{align_fix, configured_protocol_outcome, downstream_outcome};
pub use readiness::{readiness, Readiness, ReadinessPolicy};

/// The values of the `UpstreamProtocol` env setting, in the order we recommend them:
/// the runtime's default (Amqp) first, then the other direct protocol, then the WebSocket
/// ones that cross proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UpstreamProtocol {
    Amqp,
    Mqtt,
    AmqpWs,
    MqttWs,
}

impl UpstreamProtocol {
    pub const ALL: [UpstreamProtocol; 4] = [
        UpstreamProtocol::Amqp,
        UpstreamProtocol::Mqtt,
        UpstreamProtocol::AmqpWs,
        UpstreamProtocol::MqttWs,
    ];

    /// The value as written in the env setting.
    pub const fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Amqp => "Amqp",
            UpstreamProtocol::Mqtt => "Mqtt",
            UpstreamProtocol::AmqpWs => "AmqpWs",
            UpstreamProtocol::MqttWs => "MqttWs",
        }
    }

    /// The probe protocol that proves it.
    pub const fn protocol(self) -> Protocol {
        match self {
            UpstreamProtocol::Amqp => Protocol::Amqp,
            UpstreamProtocol::Mqtt => Protocol::Mqtt,
            UpstreamProtocol::AmqpWs => Protocol::AmqpWs,
            UpstreamProtocol::MqttWs => Protocol::MqttWs,
        }
    }

    /// Parses a configured value; the runtime compares case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|u| u.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

impl fmt::Display for UpstreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the probes showed about one `UpstreamProtocol`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolVerdict {
    pub protocol: UpstreamProtocol,
    /// Whether a probe ran at all.
    pub tested: bool,
    /// Whether the run's selection (`--only`/`--skip`) included it; a protocol left out is
    /// "not checked", never "does not work".
    pub selected: bool,
    pub works: bool,
    pub auth: AuthState,
    pub via_proxy: bool,
    /// Ids of the checks this verdict rests on.
    pub evidence: Vec<String>,
    /// The port probed.
    pub port: Option<u16>,
    /// The reason of the worst evidence (`ok` when it works).
    pub reason: Reason,
    /// Why, in one line.
    pub why: String,
}

/// The recommendation.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub upstream_protocol: Option<UpstreamProtocol>,
    pub change_needed: bool,
    /// Every protocol that reached the service had the device's credentials refused: the
    /// thing to fix is the credentials, whatever the protocol.
    pub credentials_refused: bool,
    pub why: String,
    /// The exact setting to apply, when a change is needed.
    pub setting: Option<String>,
}

/// The verdict over all upstream protocols.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub protocols: Vec<ProtocolVerdict>,
    pub recommendation: Recommendation,
    pub configured: Option<UpstreamProtocol>,
}

impl Verdict {
    pub fn get(&self, p: UpstreamProtocol) -> &ProtocolVerdict {
        self.protocols
            .iter()
            .find(|v| v.protocol == p)
            .expect("every protocol has a verdict")
    }

    /// Whether any protocol was probed.
    pub fn tested(&self) -> bool {
        self.protocols.iter().any(|v| v.tested)
    }
}

/// The env setting, as it must appear for both system modules.
pub fn setting_for(p: UpstreamProtocol) -> String {
    format!(
        "set env UpstreamProtocol={p} on both $edgeAgent and $edgeHub in the deployment manifest \
         (\"env\": {{\"UpstreamProtocol\": {{\"value\": \"{p}\"}}}}), and UpstreamProtocol = \"{p}\" \
         under [agent.env] in /etc/aziot/config.toml, then run `iotedge config apply`"
    )
}

/// What to check when the service refuses the device's own credentials.
pub const CREDENTIALS_FIX: &str = "the network path is fine; check the device id, its key (regenerated in IoT Hub?) and the hub name in the device configuration, an X.509 certificate's expiry and subject, and the device clock";

#[cfg(test)]
mod tests;

//! The vocabulary shared by every crate. The string forms of these enums are part of the
//! public JSON contract (PRODUCT.md): tools match on them, so they never change meaning.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Declares a closed set of codes: a `Copy` enum with a stable string per variant.
macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $code)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable code used in JSON and on the command line.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// Parses the stable code.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// What kind of thing a check talks to.
    Endpoint {
        Iothub => "iothub",
        Dps => "dps",
        Registry => "registry",
        Parent => "parent",
        Gateway => "gateway",
        Device => "device",
    }
}

codes! {
    /// The protocol a check proves (or the kind of local fact it reads).
    Protocol {
        Mqtt => "mqtt",
        Amqp => "amqp",
        MqttWs => "mqtt-ws",
        AmqpWs => "amqp-ws",
        Https => "https",
        Registry => "registry",
        Tcp => "tcp",
        Tls => "tls",
        Dns => "dns",
        Time => "time",
        Config => "config",
    }
}

impl Protocol {
    /// The port the IoT Edge runtime uses for this protocol, where there is one.
    pub const fn default_port(self) -> Option<u16> {
        match self {
            Protocol::Mqtt => Some(8883),
            Protocol::Amqp => Some(5671),
            Protocol::MqttWs | Protocol::AmqpWs | Protocol::Https | Protocol::Registry => Some(443),
            // A catalog's tcp and tls checks name their port.
            Protocol::Tcp | Protocol::Tls => None,
            Protocol::Dns | Protocol::Time | Protocol::Config => None,
        }
    }

    /// Whether the protocol can cross an HTTP CONNECT proxy the way the runtime uses it.
    pub const fn proxiable(self) -> bool {
        matches!(
            self,
            Protocol::MqttWs | Protocol::AmqpWs | Protocol::Https | Protocol::Registry
        )
    }

    /// A short human name ("MQTT over WebSocket").
    pub const fn title(self) -> &'static str {
        match self {
            Protocol::Mqtt => "MQTT",
            Protocol::Amqp => "AMQP",
            Protocol::MqttWs => "MQTT over WebSocket",
            Protocol::AmqpWs => "AMQP over WebSocket",
            Protocol::Https => "HTTPS",
            Protocol::Registry => "Registry API",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
            Protocol::Dns => "DNS",
            Protocol::Time => "time",
            Protocol::Config => "configuration",
        }
    }
}

codes! {
    /// The verdict of one check.
    Status {
        Pass => "pass",
        Warn => "warn",
        Fail => "fail",
        Skip => "skip",
    }
}

codes! {
    /// Why a check ended the way it did. New codes may be added; existing ones keep their meaning.
    Reason {
        Ok => "ok",
        DnsNxdomain => "dns_nxdomain",
        DnsNoRecords => "dns_no_records",
        DnsTimeout => "dns_timeout",
        DnsError => "dns_error",
        TcpRefused => "tcp_refused",
        TcpTimeout => "tcp_timeout",
        TcpUnreachable => "tcp_unreachable",
        ProxyUnreachable => "proxy_unreachable",
        ProxyAuthRequired => "proxy_auth_required",
        ProxyDenied => "proxy_denied",
        TlsTimeout => "tls_timeout",
        TlsUntrusted => "tls_untrusted",
        TlsNameMismatch => "tls_name_mismatch",
        TlsExpired => "tls_expired",
        TlsNotTls => "tls_not_tls",
        TlsFailed => "tls_failed",
        WsRejected => "ws_rejected",
        WsSubprotocol => "ws_subprotocol",
        ProtocolTimeout => "protocol_timeout",
        ProtocolError => "protocol_error",
        WrongService => "wrong_service",
        AuthRejected => "auth_rejected",
        ClockSkew => "clock_skew",
        NotProxiable => "not_proxiable",
        NotConfigured => "not_configured",
        ProxyMismatch => "proxy_mismatch",
        Ipv6Fallback => "ipv6_fallback",
        Deadline => "deadline",
        CertExpiring => "cert_expiring",
        ExpectationFailed => "expectation_failed",
        TlsRootsDiffer => "tls_roots_differ",
        DpsDisabled => "dps_disabled",
        DpsFailed => "dps_failed",
        DpsNotAssigned => "dps_not_assigned",
        DpsNotFound => "dps_not_found",
    }
}

impl Reason {
    /// The reason in plain words, for the text report.
    pub const fn describe(self) -> &'static str {
        match self {
            Reason::Ok => "works",
            Reason::DnsNxdomain => "the name does not exist in DNS",
            Reason::DnsNoRecords => "DNS has no address for the name",
            Reason::DnsTimeout => "DNS did not answer in time",
            Reason::DnsError => "DNS lookup failed",
            Reason::TcpRefused => "connection refused",
            Reason::TcpTimeout => "no answer to the connection attempt (dropped by a firewall?)",
            Reason::TcpUnreachable => "network or host unreachable",
            Reason::ProxyUnreachable => "the proxy could not be reached, or TLS with it failed",
            Reason::ProxyAuthRequired => "the proxy wants credentials",
            Reason::ProxyDenied => "the proxy refused the tunnel",
            Reason::TlsTimeout => "TLS handshake did not complete in time",
            Reason::TlsUntrusted => "the server certificate is not trusted",
            Reason::TlsNameMismatch => "the server certificate is for another name",
            Reason::TlsExpired => "the server certificate has expired or is not yet valid",
            Reason::TlsNotTls => "the peer does not speak TLS",
            Reason::TlsFailed => "TLS handshake failed",
            Reason::WsRejected => "the WebSocket upgrade was refused",
            Reason::WsSubprotocol => "the WebSocket subprotocol was not accepted",
            Reason::ProtocolTimeout => "the service went silent after the handshake began",
            Reason::ProtocolError => "the peer broke the protocol",
            Reason::WrongService => "something other than the expected service answered",
            Reason::AuthRejected => "the path works but the credentials were refused",
            Reason::ClockSkew => "the device clock is off",
            Reason::NotProxiable => "this protocol cannot use the HTTP proxy",
            Reason::NotConfigured => "not configured",
            Reason::ProxyMismatch => "the runtime's components disagree about the proxy",
            Reason::Ipv6Fallback => "IPv6 addresses do not connect; IPv4 does",
            Reason::CertExpiring => "the server's certificate expires sooner than the check allows",
            Reason::ExpectationFailed => "the answer is not what the check expects",
            Reason::TlsRootsDiffer => {
                "the certificate is trusted here but not by the root set the other side of the device uses"
            }
            Reason::Deadline => {
                "the run's time ran out while the steps were still answering (not a network verdict)"
            }
            Reason::DpsDisabled => "DPS's enrollment for the device is disabled",
            Reason::DpsFailed => "DPS failed to assign the device to a hub",
            Reason::DpsNotAssigned => "DPS has not assigned the device to a hub",
            Reason::DpsNotFound => "DPS knows no such registration in this ID scope",
        }
    }
}

codes! {
    /// The layers a probe walks, in order.
    PhaseName {
        Dns => "dns",
        Tcp => "tcp",
        Proxy => "proxy",
        Tls => "tls",
        Ws => "ws",
        Protocol => "protocol",
        Auth => "auth",
    }
}

codes! {
    /// How one phase ended.
    PhaseStatus {
        Ok => "ok",
        Warn => "warn",
        Fail => "fail",
        Skip => "skip",
    }
}

codes! {
    /// Whether credentials were accepted on a path.
    AuthState {
        Ok => "ok",
        Rejected => "rejected",
        Untested => "untested",
    }
}

/// Details of a phase: ordered key/value pairs, rendered as a JSON object.
pub type Detail = Vec<(String, serde_json::Value)>;

/// One timed layer of a probe.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub name: PhaseName,
    pub status: PhaseStatus,
    /// Offset from the start of the check.
    pub started: Duration,
    pub duration: Duration,
    pub detail: Detail,
}

impl Phase {
    /// Looks a detail value up by key.
    pub fn detail(&self, key: &str) -> Option<&serde_json::Value> {
        self.detail.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Where a check ran from: the host, or a container on a Docker network.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vantage {
    Host,
    Container(String),
}

impl fmt::Display for Vantage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vantage::Host => f.write_str("host"),
            Vantage::Container(network) => write!(f, "container:{network}"),
        }
    }
}

/// The result of running one check against its target. A target that fails is an
/// `Outcome`, never an `Err`.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub reason: Reason,
    /// One line for people; may change between versions.
    pub message: String,
    /// What to change, where a fix is known.
    pub fix: Option<String>,
    pub phases: Vec<Phase>,
    /// Credentials on this path; `None` for checks that have no notion of auth.
    pub auth: Option<AuthState>,
    pub via_proxy: bool,
    /// The service's clock minus ours, in seconds, from an HTTP `Date` header taken the
    /// moment the answer arrived; for the clock check.
    pub clock_offset_secs: Option<f64>,
    /// Further reason codes that also apply (e.g. `not_proxiable` beside `tcp_timeout`).
    pub also: Vec<Reason>,
    /// What the check learned that a later stage uses (the hub DPS assigned, a registry's
    /// data endpoint): the typed hand-off between stages.
    pub learned: Vec<Learned>,
    /// The TLS chain the endpoint presented, as PEM (kept for support bundles, not in JSON).
    pub certificates: Vec<String>,
}

/// A fact one stage hands to the next: what a check's answer told us about where the device
/// goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The IoT Hub DPS assigned the device to (the status lookup's `assignedHub`).
    AssignedHub(String),
    /// The device id DPS registered the device as.
    AssignedDeviceId(String),
    /// Where a registry redirects blob downloads (`host[:port]`): its data endpoint.
    DataEndpoint(String),
}

impl Learned {
    /// The value, whatever the kind, for scrubbing.
    pub fn value_mut(&mut self) -> &mut String {
        match self {
            Learned::AssignedHub(v) | Learned::AssignedDeviceId(v) | Learned::DataEndpoint(v) => v,
        }
    }
}

impl Outcome {
    /// The hub DPS assigned, if this outcome learned one.
    pub fn assigned_hub(&self) -> Option<&str> {
        self.learned.iter().find_map(|l| match l {
            Learned::AssignedHub(h) => Some(h.as_str()),
            _ => None,
        })
    }

    /// The device id DPS registered, if this outcome learned one.
    pub fn assigned_device_id(&self) -> Option<&str> {
        self.learned.iter().find_map(|l| match l {
            Learned::AssignedDeviceId(d) => Some(d.as_str()),
            _ => None,
        })
    }

    /// The data endpoints a registry check learned.
    pub fn data_endpoints(&self) -> impl Iterator<Item = &str> {
        self.learned.iter().filter_map(|l| match l {
            Learned::DataEndpoint(e) => Some(e.as_str()),
            _ => None,
        })
    }

    /// An outcome with no phases yet.
    pub fn new(status: Status, reason: Reason, message: impl Into<String>) -> Self {
        Outcome {
            status,
            reason,
            message: message.into(),
            fix: None,
            phases: Vec::new(),
            auth: None,
            via_proxy: false,
            clock_offset_secs: None,
            also: Vec::new(),
            learned: Vec::new(),
            certificates: Vec::new(),
        }
    }

    /// A check that does not apply here.
    pub fn skip(reason: Reason, message: impl Into<String>) -> Self {
        Outcome::new(Status::Skip, reason, message)
    }

    /// Adds the fix people should apply.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// True when the protocol phase got an answer from the real service: the only thing
    /// that proves a protocol works (PRODUCT.md). A TCP or TLS success alone never does.
    pub fn protocol_proven(&self) -> bool {
        self.phases
            .iter()
            .any(|p| p.name == PhaseName::Protocol && p.status == PhaseStatus::Ok)
    }

    /// The phase of the given name, if the probe reached it.
    pub fn phase(&self, name: PhaseName) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_strings() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r.as_str()), Some(*r));
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_code(p.as_str()), Some(*p));
        }
    }

    #[test]
    fn reason_codes_are_snake_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let code = r.as_str();
            assert!(code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
            assert!(seen.insert(code), "duplicate reason code {code}");
        }
    }

    #[test]
    fn only_websocket_and_https_protocols_cross_a_proxy() {
        assert!(!Protocol::Mqtt.proxiable());
        assert!(!Protocol::Amqp.proxiable());
        assert!(Protocol::MqttWs.proxiable());
        assert!(Protocol::AmqpWs.proxiable());
        assert!(Protocol::Https.proxiable());
    }
}

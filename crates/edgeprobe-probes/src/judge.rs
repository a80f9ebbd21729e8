//! What an answer means, as pure functions: the probes gather facts (a CONNACK code, an
//! HTTP status and header), these say what they prove. No sockets, so every rule has a
//! table test.

use edgeprobe_core::{AuthState, Endpoint, Outcome, Protocol, Reason, Status};
use rumqttc::mqttbytes::v4::ConnectReturnCode;

use crate::mqtt;
use crate::prober::fix_for;

/// Where an answer came from: the service's name for people, its kind, and its address
/// (for the fix).
#[derive(Clone, Copy, Debug)]
pub struct Service<'a> {
    pub title: &'a str,
    pub endpoint: Endpoint,
    pub host: &'a str,
    pub port: u16,
}

/// A CONNACK. Any CONNACK proves the MQTT path; with credentials presented, its code says
/// whether the service took them. DPS accepts any well-formed registration CONNECT (the key
/// is checked only when the device registers, which edgeprobe never does).
pub fn connack(s: Service<'_>, presenting: bool, code: ConnectReturnCode) -> Outcome {
    let (n, words) = mqtt::describe_code(code);
    let title = s.title;
    let refused = matches!(
        code,
        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
    );
    let (status, reason, auth, message) = match (presenting, code) {
        (false, _) => (
            Status::Pass,
            Reason::Ok,
            AuthState::Untested,
            format!("{title} answered CONNECT with CONNACK {n} ({words}): the MQTT path works"),
        ),
        (true, ConnectReturnCode::Success) if s.endpoint == Endpoint::Dps => (
            Status::Pass,
            Reason::Ok,
            AuthState::Untested,
            format!("{title} answered CONNACK 0: the MQTT path works (DPS checks the key only at registration; dps-https tests it)"),
        ),
        (true, ConnectReturnCode::Success) => (
            Status::Pass,
            Reason::Ok,
            AuthState::Ok,
            format!("{title} accepted the device over MQTT (CONNACK 0)"),
        ),
        (true, _) if refused => (
            Status::Fail,
            Reason::AuthRejected,
            AuthState::Rejected,
            format!("the MQTT path works, but {title} refused the credentials (CONNACK {n}: {words})"),
        ),
        (true, _) => (
            Status::Warn,
            Reason::ProtocolError,
            AuthState::Untested,
            format!("the MQTT path works, but {title} answered CONNACK {n} ({words})"),
        ),
    };
    let mut o = Outcome::new(status, reason, message);
    o.auth = Some(auth);
    if reason == Reason::AuthRejected {
        o.fix = fix_for(reason, Protocol::Mqtt, s.host, s.port);
    }
    o
}

/// IoT Hub's (or an edgeHub's) answer to an unauthenticated HTTPS request: 401 with an
/// `iothub-errorcode` header proves the service; anything else is something else answering
/// (`who` describes it: status, server, page title).
pub fn iothub_https(s: Service<'_>, status: u16, errorcode: Option<&str>, who: &str) -> Outcome {
    match (status, errorcode) {
        (401, Some(code)) => {
            let mut o = Outcome::new(
                Status::Pass,
                Reason::Ok,
                format!(
                    "{} answered an unauthenticated request with 401 {code}: the HTTPS path works",
                    s.title
                ),
            );
            o.auth = Some(AuthState::Untested);
            o
        }
        _ => {
            let mut o = Outcome::new(
                Status::Fail,
                Reason::WrongService,
                format!(
                    "expected IoT Hub's 401 with an iothub-errorcode header, got {who}: a proxy, captive portal or another service answered"
                ),
            );
            o.fix = fix_for(Reason::WrongService, Protocol::Https, s.host, s.port);
            o
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(endpoint: Endpoint) -> Service<'static> {
        Service {
            title: "IoT Hub",
            endpoint,
            host: "hub.azure-devices.net",
            port: 8883,
        }
    }

    #[test]
    fn a_connack_proves_the_path_and_says_what_became_of_the_credentials() {
        use ConnectReturnCode::*;
        let table: &[(
            Endpoint,
            bool,
            ConnectReturnCode,
            Status,
            Reason,
            AuthState,
            &str,
        )] = &[
            (
                Endpoint::Iothub,
                false,
                NotAuthorized,
                Status::Pass,
                Reason::Ok,
                AuthState::Untested,
                "the MQTT path works",
            ),
            (
                Endpoint::Iothub,
                true,
                Success,
                Status::Pass,
                Reason::Ok,
                AuthState::Ok,
                "accepted the device",
            ),
            (
                Endpoint::Iothub,
                true,
                NotAuthorized,
                Status::Fail,
                Reason::AuthRejected,
                AuthState::Rejected,
                "refused the credentials (CONNACK 5",
            ),
            (
                Endpoint::Gateway,
                true,
                BadUserNamePassword,
                Status::Fail,
                Reason::AuthRejected,
                AuthState::Rejected,
                "CONNACK 4",
            ),
            (
                Endpoint::Iothub,
                true,
                ServiceUnavailable,
                Status::Warn,
                Reason::ProtocolError,
                AuthState::Untested,
                "CONNACK 3 (server unavailable)",
            ),
            (
                Endpoint::Dps,
                true,
                Success,
                Status::Pass,
                Reason::Ok,
                AuthState::Untested,
                "DPS checks the key only at registration",
            ),
        ];
        for (endpoint, presenting, code, status, reason, auth, words) in table {
            let o = connack(service(*endpoint), *presenting, *code);
            assert_eq!(
                (o.status, o.reason, o.auth),
                (*status, *reason, Some(*auth)),
                "{endpoint} {presenting} {code:?}"
            );
            assert!(o.message.contains(words), "{}", o.message);
            assert_eq!(
                o.fix.is_some(),
                *reason == Reason::AuthRejected,
                "{}",
                o.message
            );
        }
    }

    #[test]
    fn only_iot_hub_s_401_with_its_error_code_proves_the_https_path() {
        let s = service(Endpoint::Iothub);
        let ok = iothub_https(s, 401, Some("IotHubUnauthorizedAccess"), "401");
        assert_eq!((ok.status, ok.reason), (Status::Pass, Reason::Ok));
        for (status, code, who) in [
            (200, None, "200 (captive-portal/1.0, \"Guest Wi-Fi login\")"),
            (401, None, "401 from a proxy"),
            (403, Some("x"), "403"),
        ] {
            let o = iothub_https(s, status, code, who);
            assert_eq!((o.status, o.reason), (Status::Fail, Reason::WrongService));
            assert!(o.message.contains(who), "{}", o.message);
            assert!(o
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("hub.azure-devices.net:8883")));
        }
    }
}

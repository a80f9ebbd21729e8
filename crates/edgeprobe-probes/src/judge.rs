//! What an answer means, as pure functions: the probes gather facts (a CONNACK code, an
//! HTTP status and header), these say what they prove. No sockets, so every rule has a
//! table test.

use edgeprobe_core::{AuthState, Detail, Endpoint, Outcome, PhaseStatus, Protocol, Reason, Status};
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use serde_json::json;

use crate::amqp::{AmqpErrorKind, AmqpTrace, StepOk};
use crate::fix::fix_for;
use crate::mqtt;
use crate::Failure;

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

/// What the device showed an AMQP service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented {
    Nothing,
    /// A SAS token: CBS put-token (IoT Hub, edgeHub) or SASL PLAIN (DPS).
    Token,
    /// Its X.509 certificate, in the TLS handshake: no token at all.
    Certificate,
}

/// An AMQP handshake judged: the protocol phase and the auth phase to record (with what
/// each saw), and the outcome, or the failure that ends the walk.
#[derive(Debug)]
pub struct AmqpJudged {
    pub open: (PhaseStatus, Detail),
    pub auth: Option<(PhaseStatus, Detail)>,
    pub result: Result<Outcome, Failure>,
}

/// What an AMQP handshake proves. An `open` (or a SASL refusal: that is the real service
/// refusing us) proves the path; with credentials presented, SASL PLAIN (DPS) or CBS
/// put-token and the telemetry attach (IoT Hub, edgeHub) say whether the service took them.
pub fn amqp(s: Service<'_>, presented: Presented, trace: &AmqpTrace) -> AmqpJudged {
    let title = s.title;
    let presenting = presented != Presented::Nothing;
    let step_detail = |ok: &StepOk| -> Detail {
        ok.detail
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect()
    };
    let rejected = |message: &str| {
        let mut o = Outcome::new(
            Status::Fail,
            Reason::AuthRejected,
            format!("the AMQP path works, but {title} refused the credentials: {message}"),
        );
        o.auth = Some(AuthState::Rejected);
        o.fix = fix_for(Reason::AuthRejected, Protocol::Amqp, s.host, s.port);
        o
    };
    let with_auth = |mut o: Outcome, auth: AuthState| {
        o.auth = Some(auth);
        o
    };
    let open = match &trace.open.result {
        Ok(ok) => (PhaseStatus::Ok, step_detail(ok)),
        Err(e) if e.kind == AmqpErrorKind::Unauthorized => {
            let o = if presenting {
                rejected(&e.message)
            } else {
                with_auth(
                    Outcome::new(
                        Status::Pass,
                        Reason::Ok,
                        format!("{title} refused an anonymous SASL login: the AMQP path works"),
                    ),
                    AuthState::Untested,
                )
            };
            return AmqpJudged {
                open: (PhaseStatus::Ok, vec![("sasl".into(), json!("rejected"))]),
                auth: None,
                result: Ok(o),
            };
        }
        Err(e) => {
            let reason = match e.kind {
                AmqpErrorKind::Timeout => Reason::ProtocolTimeout,
                AmqpErrorKind::NotAmqp => Reason::WrongService,
                _ => Reason::ProtocolError,
            };
            return AmqpJudged {
                open: (PhaseStatus::Fail, vec![("error".into(), json!(e.message))]),
                auth: None,
                result: Err((reason, format!("AMQP: {}", e.message))),
            };
        }
    };
    let Some(step) = &trace.auth else {
        return AmqpJudged {
            open,
            auth: None,
            result: Ok(with_auth(
                Outcome::new(
                    Status::Pass,
                    Reason::Ok,
                    format!("{title} opened an AMQP connection: the AMQP path works"),
                ),
                AuthState::Untested,
            )),
        };
    };
    let (auth, o) = match &step.result {
        Ok(ok) => {
            let what = match (s.endpoint, presented) {
                (Endpoint::Dps, _) => "SASL PLAIN accepted",
                (_, Presented::Certificate) => "certificate accepted, telemetry link attached",
                _ => "token accepted, telemetry link attached",
            };
            let o = Outcome::new(
                Status::Pass,
                Reason::Ok,
                format!("{title} accepted the device over AMQP ({what})"),
            );
            (
                (PhaseStatus::Ok, step_detail(ok)),
                with_auth(o, AuthState::Ok),
            )
        }
        Err(e) => {
            let o = match e.kind {
                AmqpErrorKind::Unauthorized => rejected(&e.message),
                kind => {
                    let reason = if kind == AmqpErrorKind::Timeout {
                        Reason::ProtocolTimeout
                    } else {
                        Reason::ProtocolError
                    };
                    let o = Outcome::new(
                        Status::Warn,
                        reason,
                        format!(
                            "the AMQP connection opened, but authentication did not complete: {}",
                            e.message
                        ),
                    );
                    with_auth(o, AuthState::Untested)
                }
            };
            (
                (PhaseStatus::Fail, vec![("error".into(), json!(e.message))]),
                o,
            )
        }
    };
    AmqpJudged {
        open,
        auth: Some(auth),
        result: Ok(o),
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

    #[test]
    fn an_amqp_handshake_proves_the_path_and_says_what_became_of_the_credentials() {
        use crate::amqp::{AmqpError, Step};
        use std::time::Duration;
        let step = |r: Result<(), AmqpErrorKind>| Step {
            duration: Duration::from_millis(5),
            result: r.map(|()| StepOk::default()).map_err(|kind| AmqpError {
                kind,
                message: format!("{kind:?} said the peer"),
            }),
        };
        use AmqpErrorKind::*;
        use Presented::*;
        type Row = (
            Endpoint,
            Presented,
            Result<(), AmqpErrorKind>,
            Option<Result<(), AmqpErrorKind>>,
            Result<(Status, Reason, AuthState), Reason>,
            Option<PhaseStatus>,
            &'static str,
        );
        let ok = Ok(());
        let table: &[Row] = &[
            // An open, no credentials: the path works, auth untested.
            (
                Endpoint::Iothub,
                Nothing,
                ok,
                None,
                Ok((Status::Pass, Reason::Ok, AuthState::Untested)),
                None,
                "opened an AMQP connection",
            ),
            // SASL refused an anonymous login: that is the service; the path works.
            (
                Endpoint::Iothub,
                Nothing,
                Err(Unauthorized),
                None,
                Ok((Status::Pass, Reason::Ok, AuthState::Untested)),
                None,
                "refused an anonymous SASL login",
            ),
            // SASL PLAIN refused (DPS): the credentials.
            (
                Endpoint::Dps,
                Token,
                Err(Unauthorized),
                None,
                Ok((Status::Fail, Reason::AuthRejected, AuthState::Rejected)),
                None,
                "refused the credentials",
            ),
            // Not AMQP at all, or silence: the walk fails at the protocol.
            (
                Endpoint::Iothub,
                Token,
                Err(NotAmqp),
                None,
                Err(Reason::WrongService),
                None,
                "AMQP: NotAmqp",
            ),
            (
                Endpoint::Iothub,
                Token,
                Err(Timeout),
                None,
                Err(Reason::ProtocolTimeout),
                None,
                "AMQP: Timeout",
            ),
            (
                Endpoint::Iothub,
                Token,
                Err(Closed),
                None,
                Err(Reason::ProtocolError),
                None,
                "AMQP: Closed",
            ),
            // CBS put-token and the telemetry attach.
            (
                Endpoint::Iothub,
                Token,
                ok,
                Some(ok),
                Ok((Status::Pass, Reason::Ok, AuthState::Ok)),
                Some(PhaseStatus::Ok),
                "token accepted, telemetry link attached",
            ),
            // X.509: no token, the attach alone says whether the certificate is taken.
            (
                Endpoint::Iothub,
                Certificate,
                ok,
                Some(ok),
                Ok((Status::Pass, Reason::Ok, AuthState::Ok)),
                Some(PhaseStatus::Ok),
                "certificate accepted, telemetry link attached",
            ),
            (
                Endpoint::Iothub,
                Certificate,
                ok,
                Some(Err(Unauthorized)),
                Ok((Status::Fail, Reason::AuthRejected, AuthState::Rejected)),
                Some(PhaseStatus::Fail),
                "refused the credentials",
            ),
            (
                Endpoint::Dps,
                Token,
                ok,
                Some(ok),
                Ok((Status::Pass, Reason::Ok, AuthState::Ok)),
                Some(PhaseStatus::Ok),
                "SASL PLAIN accepted",
            ),
            (
                Endpoint::Iothub,
                Token,
                ok,
                Some(Err(Unauthorized)),
                Ok((Status::Fail, Reason::AuthRejected, AuthState::Rejected)),
                Some(PhaseStatus::Fail),
                "refused the credentials",
            ),
            (
                Endpoint::Iothub,
                Token,
                ok,
                Some(Err(Timeout)),
                Ok((Status::Warn, Reason::ProtocolTimeout, AuthState::Untested)),
                Some(PhaseStatus::Fail),
                "did not complete",
            ),
            (
                Endpoint::Iothub,
                Token,
                ok,
                Some(Err(Other)),
                Ok((Status::Warn, Reason::ProtocolError, AuthState::Untested)),
                Some(PhaseStatus::Fail),
                "did not complete",
            ),
        ];
        for (endpoint, presented, open, auth, want, auth_phase, words) in table {
            let trace = AmqpTrace {
                open: step(*open),
                auth: auth.map(step),
            };
            let j = amqp(service(*endpoint), *presented, &trace);
            let row = format!("{endpoint} {presented:?} {open:?} {auth:?}");
            assert_eq!(j.auth.as_ref().map(|(s, _)| *s), *auth_phase, "{row}");
            let opened = j.open.0 == PhaseStatus::Ok;
            match (&j.result, want) {
                (Ok(o), Ok((status, reason, state))) => {
                    assert!(opened, "{row}");
                    assert_eq!(
                        (o.status, o.reason, o.auth),
                        (*status, *reason, Some(*state)),
                        "{row}"
                    );
                    assert!(o.message.contains(words), "{row}: {}", o.message);
                    assert_eq!(o.fix.is_some(), *reason == Reason::AuthRejected, "{row}");
                }
                (Err((reason, message)), Err(want)) => {
                    assert!(!opened, "{row}");
                    assert_eq!(reason, want, "{row}");
                    assert!(message.contains(words), "{row}: {message}");
                }
                (got, _) => panic!("{row}: {got:?}"),
            }
        }
    }
}

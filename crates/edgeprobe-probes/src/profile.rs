//! Service profiles: who answers a check, what the device presents to it, and what its
//! answer means. The prober walks the layers (dns → tcp → [proxy] → tls → [ws] → protocol);
//! at the protocol it asks the check's profile what to send and how to judge the answer.
//!
//! | profile | presents | judged by |
//! |---|---|---|
//! | IoT Hub, a parent's or gateway's edgeHub | SAS token (MQTT password, CBS put-token) or X.509 in TLS | [`judge::connack`], [`judge::amqp`], [`judge::iothub_https`] |
//! | DPS | the registration's token (MQTT password, SASL PLAIN, HTTP `authorization`) | [`judge::connack`], [`judge::amqp`], [`dps::judge`] |
//! | anything else (a registry's data endpoint, a user's check) | nothing | the check's `expect` |
//!
//! Credentials are decided here once, by [`ProbeSettings::may_present`]: a profile built for
//! a host the device's credentials do not belong to holds none.

use edgeprobe_core::catalog::CheckDef;
use edgeprobe_core::{Detail, Endpoint, Learned, Outcome, PhaseStatus, Protocol, Reason, Status};
use edgeprobe_iotedge::identity::{Credentials, DeviceIdentity, DpsIdentity, IOTHUB_API_VERSION};
use edgeprobe_iotedge::secret::Secret;
use http::Method;
use serde_json::{json, Value};

use crate::fix::fix_for;
use crate::https::{HttpAnswer, HttpRequest};
use crate::judge::{self, Presented, Service};
use crate::settings::{ProbeSettings, ANONYMOUS_DEVICE};
use crate::{amqp, dps, mqtt};

/// The service a check talks to, with the credentials it may be shown.
#[derive(Debug)]
pub(crate) enum Profile<'a> {
    /// IoT Hub, or the edgeHub of a parent or gateway: the device's identity.
    Hub {
        /// IoT Hub, Parent or Gateway.
        endpoint: Endpoint,
        identity: Option<&'a DeviceIdentity>,
        /// The SAS token to present, or why the configured credentials cannot make one.
        token: Option<Result<Secret, String>>,
        /// The device's X.509 certificate goes in the TLS handshake.
        x509: bool,
    },
    /// The Device Provisioning Service: the device's registration.
    Dps {
        dps: Option<&'a DpsIdentity>,
        token: Option<Result<Secret, String>>,
    },
    /// Any other service: nothing presented, judged by the check's expectations.
    Other { endpoint: Endpoint },
}

/// What the device offers a service: the protocol's parameters, the credentials they carry,
/// and why configured credentials could not be used.
#[derive(Debug)]
pub(crate) struct Offer<T> {
    pub(crate) params: T,
    pub(crate) presented: Presented,
    pub(crate) unusable: Option<String>,
}

impl<T> Offer<T> {
    /// Whether the offer carries credentials, a token or a certificate.
    pub(crate) fn presenting(&self) -> bool {
        self.presented != Presented::Nothing
    }
}

/// An HTTPS answer judged: the outcome, the protocol phase's status, the auth phase.
#[derive(Debug)]
pub(crate) struct HttpJudged {
    pub(crate) outcome: Outcome,
    pub(crate) phase: PhaseStatus,
    pub(crate) auth_phase: Option<(PhaseStatus, Detail)>,
}

impl<'a> Profile<'a> {
    /// The profile of `check` at `host`, holding only the credentials that may go there.
    pub(crate) fn of(s: &'a ProbeSettings, check: &CheckDef, host: &str) -> Self {
        let may_present = s.may_present(check, host);
        match check.endpoint {
            Endpoint::Iothub | Endpoint::Parent | Endpoint::Gateway => {
                let identity = s.identity.as_ref();
                let token = identity
                    .filter(|_| may_present)
                    .and_then(|i| match &i.credentials {
                        Credentials::SasKey(_) | Credentials::SignedToken(_) => {
                            i.sas_token().map(|r| r.map_err(|e| e.to_string()))
                        }
                        Credentials::Unavailable(why) => Some(Err(why.clone())),
                        _ => None,
                    });
                let x509 = may_present
                    && identity.is_some_and(|i| matches!(i.credentials, Credentials::X509 { .. }));
                Profile::Hub {
                    endpoint: check.endpoint,
                    identity,
                    token,
                    x509,
                }
            }
            Endpoint::Dps => {
                let dps = s.dps.as_ref();
                let token = dps
                    .filter(|_| may_present)
                    .and_then(|d| d.sas_token())
                    .map(|r| r.map_err(|e| e.to_string()));
                Profile::Dps { dps, token }
            }
            endpoint => Profile::Other { endpoint },
        }
    }

    /// The service's name, for people.
    pub(crate) fn title(&self) -> &'static str {
        match self.endpoint() {
            Endpoint::Iothub => "IoT Hub",
            Endpoint::Dps => "DPS",
            Endpoint::Parent => "the parent's edgeHub",
            Endpoint::Gateway => "the gateway's edgeHub",
            Endpoint::Registry => "the registry",
            Endpoint::Device => "the service",
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Profile::Hub { endpoint, .. } | Profile::Other { endpoint } => *endpoint,
            Profile::Dps { .. } => Endpoint::Dps,
        }
    }

    /// Who the device says it is here: the MQTT client id and the AMQP container id.
    fn client_id(&self) -> String {
        match self {
            Profile::Dps { dps, .. } => dps.map(|d| d.registration_id.clone()),
            Profile::Hub { identity, .. } => identity.map(|i| i.client_id()),
            Profile::Other { .. } => None,
        }
        .unwrap_or_else(|| ANONYMOUS_DEVICE.into())
    }

    /// The service at `host:port`, for the judgements.
    pub(crate) fn service<'h>(&self, host: &'h str, port: u16) -> Service<'h> {
        Service {
            title: self.title(),
            endpoint: self.endpoint(),
            host,
            port,
        }
    }

    /// The token this profile may present, or why the configured credentials cannot make
    /// one.
    fn token(&self) -> Option<&Result<Secret, String>> {
        match self {
            Profile::Hub { token, .. } | Profile::Dps { token, .. } => token.as_ref(),
            Profile::Other { .. } => None,
        }
    }

    /// What a request carries: the token when it went in, else the device's certificate in
    /// the TLS handshake (IoT Hub and edgeHub only), else nothing.
    fn presented(&self, token: bool) -> Presented {
        match self {
            _ if token => Presented::Token,
            Profile::Hub { x509: true, .. } => Presented::Certificate,
            _ => Presented::Nothing,
        }
    }

    /// What MQTT CONNECT carries: the token as the password, under the service's username.
    pub(crate) fn mqtt(&self, host: &str) -> Offer<mqtt::MqttParams> {
        let (password, unusable) = split(self.token());
        let anonymous = || format!("{host}/{ANONYMOUS_DEVICE}/?api-version={IOTHUB_API_VERSION}");
        let username = match self {
            Profile::Dps { dps, .. } => dps.map(|d| d.mqtt_username()),
            Profile::Hub { identity, .. } => {
                Some(identity.map_or_else(anonymous, |i| i.mqtt_username()))
            }
            Profile::Other { .. } => Some(anonymous()),
        };
        Offer {
            presented: self.presented(password.is_some()),
            params: mqtt::MqttParams {
                client_id: self.client_id(),
                username,
                password,
            },
            unusable,
        }
    }

    /// What the AMQP handshake presents: DPS takes SASL PLAIN with the registration and a
    /// token; IoT Hub and edgeHub take SASL ANONYMOUS, then the token over CBS.
    pub(crate) fn amqp(&self, host: &str) -> Offer<amqp::AmqpParams> {
        let (token, unusable) = split(self.token());
        let (sasl, cbs) = match (self, token) {
            (Profile::Dps { dps: Some(d), .. }, Some(t)) => (
                amqp::AmqpSasl::Plain {
                    username: d.resource(),
                    password: t.expose().to_owned(),
                },
                None,
            ),
            (
                Profile::Hub {
                    identity: Some(i), ..
                },
                Some(t),
            ) => (
                amqp::AmqpSasl::Anonymous,
                Some(amqp::CbsPutToken {
                    audience: i.resource(),
                    token: t.expose().to_owned(),
                }),
            ),
            _ => (amqp::AmqpSasl::Anonymous, None),
        };
        let presented =
            self.presented(cbs.is_some() || matches!(sasl, amqp::AmqpSasl::Plain { .. }));
        // With credentials, the telemetry link's attach says whether IoT Hub takes them.
        let link_address = match self {
            Profile::Hub { identity, .. } if presented != Presented::Nothing => {
                identity.map(|i| i.events_address())
            }
            _ => None,
        };
        Offer {
            presented,
            params: amqp::AmqpParams {
                hostname: host.to_owned(),
                container_id: self.client_id(),
                sasl,
                cbs,
                link_address,
            },
            unusable,
        }
    }

    /// The HTTPS request, and the line the protocol phase notes: DPS's registration status
    /// lookup (which never re-registers the device); IoT Hub's cloud-to-device endpoint
    /// without credentials (its 401 proves the service); `GET /` for anything else. `None`
    /// when there is nothing to ask: a DPS check without a registration.
    pub(crate) fn https(&self, host: &str) -> Option<(Offer<HttpRequest>, String)> {
        let (request, note, presented, unusable) = match self {
            Profile::Dps { dps: None, .. } => return None,
            Profile::Dps {
                dps: Some(dps),
                token,
            } => {
                let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
                let (token, unusable) = split(token.as_ref());
                let presented = self.presented(token.is_some());
                if let Some(t) = token {
                    headers.push(("authorization".to_owned(), t.expose().to_owned()));
                }
                let path = dps.status_lookup_path();
                let note = format!("POST {path} (registration status lookup)");
                let request = HttpRequest {
                    method: Method::POST,
                    host: host.to_owned(),
                    path_and_query: path,
                    headers,
                    body: Some(json!({ "registrationId": dps.registration_id }).to_string()),
                };
                (request, note, presented, unusable)
            }
            Profile::Hub { identity, .. } => {
                let device = identity.map_or(ANONYMOUS_DEVICE, |i| i.device_id.as_str());
                let path = format!(
                    "/devices/{}/messages/deviceBound?api-version={IOTHUB_API_VERSION}",
                    edgeprobe_iotedge::sas::url_encode(device),
                );
                let nothing = Presented::Nothing;
                (get(host, &path), format!("GET {path}"), nothing, None)
            }
            Profile::Other { .. } => (get(host, "/"), "GET /".to_owned(), Presented::Nothing, None),
        };
        Some((
            Offer {
                params: request,
                presented,
                unusable,
            },
            note,
        ))
    }

    /// What an HTTPS answer means for this service.
    pub(crate) fn judge_https(
        &self,
        check: &CheckDef,
        host: &str,
        port: u16,
        presenting: bool,
        answer: &HttpAnswer,
    ) -> HttpJudged {
        let who = answer.who();
        let mut judged = match self {
            Profile::Dps { dps: Some(dps), .. } => {
                let body: Value = serde_json::from_str(&answer.body).unwrap_or_default();
                let error_code = answer
                    .header("x-ms-error-code")
                    .map(str::to_owned)
                    .or_else(|| body.get("errorCode").map(|c| c.to_string()));
                let j = dps::judge(
                    &dps::Registration {
                        id_scope: &dps.id_scope,
                        registration_id: &dps.registration_id,
                        group: dps.group_enrollment,
                        presenting,
                    },
                    &dps::Answer {
                        http_status: answer.status,
                        error_code: error_code.as_deref(),
                        body: &body,
                        who: &who,
                    },
                );
                if !j.dps_answered {
                    let outcome = Outcome::new(j.status, j.reason, j.message).with_fix(
                        fix_for(j.reason, Protocol::Https, host, port).unwrap_or_default(),
                    );
                    return HttpJudged {
                        outcome,
                        phase: PhaseStatus::Fail,
                        auth_phase: None,
                    };
                }
                let mut o = Outcome::new(j.status, j.reason, j.message);
                o.auth = j.auth;
                o.fix = j.fix;
                o.learned.extend(j.hub.map(Learned::AssignedHub));
                o.learned.extend(j.device_id.map(Learned::AssignedDeviceId));
                HttpJudged {
                    outcome: o,
                    phase: PhaseStatus::Ok,
                    auth_phase: j.auth_phase,
                }
            }
            Profile::Hub { .. } => {
                let o = judge::iothub_https(
                    self.service(host, port),
                    answer.status,
                    answer.header("iothub-errorcode"),
                    &who,
                );
                HttpJudged {
                    phase: if o.status == Status::Pass {
                        PhaseStatus::Ok
                    } else {
                        PhaseStatus::Fail
                    },
                    outcome: o,
                    auth_phase: None,
                }
            }
            Profile::Dps { dps: None, .. } | Profile::Other { .. } => {
                match check
                    .expect
                    .unmet_http(answer.status, |n| answer.header(n), &answer.body)
                {
                    None => HttpJudged {
                        outcome: Outcome::new(Status::Pass, Reason::Ok, format!("{host} answered: {who}")),
                        phase: PhaseStatus::Ok,
                        auth_phase: None,
                    },
                    Some(why) => HttpJudged {
                        outcome: Outcome::new(
                            Status::Fail,
                            Reason::ExpectationFailed,
                            format!("{host} answered {who}, but {why}"),
                        )
                        .with_fix("something other than the service answered (a captive portal, a proxy's block page), or the check's expect is wrong"),
                        phase: PhaseStatus::Fail,
                        auth_phase: None,
                    },
                }
            }
        };
        judged.outcome.clock_offset_secs = answer.clock_offset_secs();
        judged
    }
}

fn get(host: &str, path: &str) -> HttpRequest {
    HttpRequest {
        method: Method::GET,
        host: host.to_owned(),
        path_and_query: path.to_owned(),
        headers: Vec::new(),
        body: None,
    }
}

/// A token, or why there is none.
fn split(token: Option<&Result<Secret, String>>) -> (Option<Secret>, Option<String>) {
    match token {
        Some(Ok(t)) => (Some(t.clone()), None),
        Some(Err(why)) => (None, Some(why.clone())),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use edgeprobe_core::catalog::CheckDef;
    use edgeprobe_iotedge::identity::{Credentials, DeviceIdentity, DpsIdentity};
    use edgeprobe_iotedge::secret::Secret;

    use super::*;
    use crate::dns::{Dns, Overrides};
    use crate::tls::{RootSet, TlsSettings};

    const KEY: &str = "c2VjcmV0LWtleS1vZi10aGUtZGV2aWNlLTAxMjM0NTY3ODk=";
    const HUB: &str = "hub.azure-devices.net";
    const DPS: &str = "global.azure-devices-provisioning.net";

    fn settings() -> ProbeSettings {
        ProbeSettings {
            dns: Arc::new(Dns::system(Overrides::default())),
            tls: TlsSettings::new(&[], "", RootSet::BundleOnly).expect("tls"),
            identity: Some(DeviceIdentity {
                hub: HUB.into(),
                device_id: "dev-1".into(),
                module_id: None,
                credentials: Credentials::SasKey(Secret::new(KEY)),
            }),
            dps: Some(DpsIdentity {
                id_scope: "0ne00000001".into(),
                registration_id: "dev-1".into(),
                key: Some(Secret::new(KEY)),
                group_enrollment: false,
            }),
            proxy: None,
            no_proxy: String::new(),
            no_auth: false,
            registries: Vec::new(),
            credential_hosts: vec![HUB.into(), DPS.into()],
            connector: None,
        }
    }

    fn check(endpoint: Endpoint, credentials: bool) -> CheckDef {
        let mut c = CheckDef::derived("t", "t", endpoint, Protocol::Mqtt);
        c.credentials = credentials;
        c
    }

    #[test]
    fn credentials_go_only_to_the_device_s_own_services() {
        let s = settings();
        // (endpoint, asks for credentials, host, presents on MQTT, AMQP and HTTPS)
        let table = [
            (Endpoint::Iothub, true, HUB, true),
            (Endpoint::Iothub, true, "HUB.azure-devices.net", true),
            (Endpoint::Iothub, true, "hub.example.com", false),
            (Endpoint::Iothub, false, HUB, false),
            (Endpoint::Dps, true, DPS, true),
            (Endpoint::Dps, true, "dps.example.com", false),
            (Endpoint::Device, true, HUB, false),
            (Endpoint::Registry, true, HUB, false),
        ];
        for (endpoint, asks, host, presents) in table {
            let row = format!("{endpoint} {asks} {host}");
            let p = Profile::of(&s, &check(endpoint, asks), host);
            let mqtt = p.mqtt(host);
            assert_eq!(mqtt.presenting(), presents, "{row}");
            assert_eq!(mqtt.params.password.is_some(), presents, "{row}");
            let amqp = p.amqp(host);
            assert_eq!(amqp.presenting(), presents, "{row}");
            let sent = matches!(amqp.params.sasl, amqp::AmqpSasl::Plain { .. })
                || amqp.params.cbs.is_some();
            assert_eq!(sent, presents, "{row}");
            if let Some((https, _)) = p.https(host) {
                let authorization = https
                    .params
                    .headers
                    .iter()
                    .any(|(k, _)| k == "authorization");
                assert_eq!(
                    authorization,
                    presents && endpoint == Endpoint::Dps,
                    "{row}"
                );
            }
        }
    }

    #[test]
    fn each_service_gets_its_own_username_and_request() {
        let s = settings();
        let hub = Profile::of(&s, &check(Endpoint::Iothub, true), HUB);
        let mqtt = hub.mqtt(HUB).params;
        assert_eq!(mqtt.client_id, "dev-1");
        assert!(mqtt
            .username
            .as_deref()
            .is_some_and(|u| u.starts_with("hub.azure-devices.net/dev-1/?api-version=")));
        let (https, note) = hub.https(HUB).expect("a request");
        assert_eq!(https.params.method, Method::GET);
        assert!(
            note.starts_with("GET /devices/dev-1/messages/deviceBound?api-version="),
            "{note}"
        );

        let dps = Profile::of(&s, &check(Endpoint::Dps, true), DPS);
        assert_eq!(dps.title(), "DPS");
        assert!(dps
            .mqtt(DPS)
            .params
            .username
            .as_deref()
            .is_some_and(|u| u.starts_with("0ne00000001/registrations/dev-1/")));
        let (https, note) = dps.https(DPS).expect("a request");
        assert_eq!(https.params.method, Method::POST);
        assert!(note.contains("registration status lookup"), "{note}");
        assert!(https
            .params
            .path_and_query
            .starts_with("/0ne00000001/registrations/dev-1?api-version="));

        let other = Profile::of(&s, &check(Endpoint::Device, true), "example.com");
        let mqtt = other.mqtt("example.com").params;
        assert_eq!(mqtt.client_id, ANONYMOUS_DEVICE);
        assert_eq!(other.https("example.com").expect("a request").1, "GET /");

        let mut without = settings();
        without.dps = None;
        assert!(Profile::of(&without, &check(Endpoint::Dps, true), DPS)
            .https(DPS)
            .is_none());
    }
}

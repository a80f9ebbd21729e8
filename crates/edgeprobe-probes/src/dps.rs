//! DPS's rules: what an answer to the registration status lookup means for the device.
//! The lookup (`POST /{idScope}/registrations/{registrationId}`) is the only DPS request
//! edgeprobe makes; its answer is judged as the device will experience provisioning: only an
//! `assigned` registration will (re)provision, a disabled enrollment never will, and a 404
//! means DPS does not know the registration id in that ID scope. Pure: no I/O, table-tested.

use edgeprobe_core::{AuthState, Detail, PhaseStatus, Reason, Status};
use serde_json::{json, Value};

/// The registration the lookup asked about.
#[derive(Clone, Copy, Debug)]
pub struct Registration<'a> {
    pub id_scope: &'a str,
    pub registration_id: &'a str,
    /// A group enrollment (the device key derived from the group's key, `--dps-group-key`).
    pub group: bool,
    /// Whether the lookup carried the registration's SAS token.
    pub presenting: bool,
}

/// What DPS (or whatever answered) said.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    pub http_status: u16,
    /// `x-ms-error-code`, else the body's `errorCode`.
    pub error_code: Option<&'a str>,
    /// The body as JSON (`Value::Null` when it was not JSON).
    pub body: &'a Value,
    /// How to name the answer when it was not DPS's ("HTTP 502, Server: squid").
    pub who: &'a str,
}

/// The verdict on one lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub status: Status,
    pub reason: Reason,
    /// `None` when something other than DPS answered.
    pub auth: Option<AuthState>,
    /// DPS itself answered: the HTTPS path to DPS works (the protocol phase is proven).
    pub dps_answered: bool,
    /// The auth phase to record, if the answer says anything about the credentials.
    pub auth_phase: Option<(PhaseStatus, Detail)>,
    pub message: String,
    pub fix: Option<String>,
    /// The hub DPS names, and the device id there.
    pub hub: Option<String>,
    pub device_id: Option<String>,
}

impl Judgement {
    fn new(status: Status, reason: Reason, message: String) -> Self {
        Judgement {
            status,
            reason,
            auth: None,
            dps_answered: true,
            auth_phase: None,
            message,
            fix: None,
            hub: None,
            device_id: None,
        }
    }
}

fn text<'v>(body: &'v Value, key: &str) -> Option<&'v str> {
    body.get(key).and_then(Value::as_str)
}

/// Judges the answer to the registration status lookup.
pub fn judge(reg: &Registration<'_>, answer: &Answer<'_>) -> Judgement {
    let rid = reg.registration_id;
    let scope = reg.id_scope;
    let body = answer.body;
    let is_registration = body.get("registrationId").is_some() || body.get("status").is_some();
    match (answer.http_status, answer.error_code) {
        (200, _) if is_registration => judge_state(reg, body),
        (401, Some(code)) if reg.presenting => {
            // The device's own key refused: it cannot be provisioned (issue 12).
            let mut j = Judgement::new(
                Status::Fail,
                Reason::AuthRejected,
                format!("the HTTPS path to DPS works, but DPS refused the registration's key (error {code})"),
            );
            j.auth = Some(AuthState::Rejected);
            j.auth_phase = Some((PhaseStatus::Fail, vec![("error_code".into(), json!(code))]));
            j.fix = Some("check the ID scope, the registration id and the symmetric key (for a group enrollment, the device key derived from the group key)".into());
            j
        }
        (401, Some(code)) => {
            let mut j = Judgement::new(
                Status::Pass,
                Reason::Ok,
                format!("DPS answered an unauthenticated lookup with 401 (error {code}): the HTTPS path works"),
            );
            j.auth = Some(AuthState::Untested);
            j
        }
        (404, Some(code)) => {
            let mut j = Judgement::new(
                Status::Fail,
                Reason::DpsNotFound,
                format!("the HTTPS path to DPS works, but DPS knows no registration {rid} in ID scope {scope} (HTTP 404, error {code}): the device cannot be provisioned"),
            );
            j.auth = Some(AuthState::Untested);
            j.fix = Some(format!(
                "check the registration id ({rid}) and the ID scope ({scope}) against the {} in the Azure portal (DPS → Overview → ID Scope; Manage enrollments)",
                enrollment(reg.group)
            ));
            j
        }
        _ => {
            let mut j = Judgement::new(
                Status::Fail,
                Reason::WrongService,
                format!("expected DPS's JSON answer to the status lookup, got {}: a proxy, captive portal or another service answered", answer.who),
            );
            j.dps_answered = false;
            j
        }
    }
}

fn enrollment(group: bool) -> &'static str {
    if group {
        "enrollment group"
    } else {
        "individual enrollment"
    }
}

/// A 200: DPS accepted the key and says where the registration stands.
fn judge_state(reg: &Registration<'_>, body: &Value) -> Judgement {
    let rid = reg.registration_id;
    let scope = reg.id_scope;
    let state = text(body, "status").unwrap_or("unknown");
    let hub = text(body, "assignedHub").map(str::to_owned);
    let accepted = "DPS accepted the registration's key";
    let (status, reason, message, fix) = match state {
        "assigned" => (
            Status::Pass,
            Reason::Ok,
            match &hub {
                Some(h) => format!("{accepted} and reports it assigned to {h}"),
                None => format!("{accepted} and reports it assigned"),
            },
            None,
        ),
        "disabled" => {
            let what = enrollment(reg.group);
            (
                Status::Fail,
                Reason::DpsDisabled,
                format!("{accepted}, but the {what} of {rid} is disabled: DPS will not provision or reprovision the device"),
                Some(if reg.group {
                    format!("re-enable the enrollment group of {rid} in the DPS instance of ID scope {scope} (Manage enrollments → Enrollment groups), or remove a disabled individual enrollment for {rid} that overrides the group")
                } else {
                    format!("re-enable the individual enrollment {rid} in the DPS instance of ID scope {scope} (Manage enrollments → Individual enrollments → {rid} → Enable entry)")
                }),
            )
        }
        "failed" => {
            let code = body
                .get("errorCode")
                .map(|c| c.as_str().map(str::to_owned).unwrap_or_else(|| c.to_string()));
            let why = text(body, "errorMessage");
            let said = match (code.as_deref(), why) {
                (Some(c), Some(m)) => format!("error {c}: {m}"),
                (Some(c), None) => format!("error {c}"),
                (None, Some(m)) => m.to_owned(),
                (None, None) => "DPS gave no error code".to_owned(),
            };
            (
                Status::Fail,
                Reason::DpsFailed,
                format!("{accepted}, but its last assignment of {rid} failed ({said}): the device cannot be provisioned"),
                Some("fix what DPS's error names (the enrollment's allocation policy, its linked IoT Hubs, a custom allocation function), then reprovision the device (sudo iotedge system reprovision)".into()),
            )
        }
        "unassigned" => (
            Status::Warn,
            Reason::DpsNotAssigned,
            format!("{accepted}, but reports {rid} unassigned: DPS has not assigned the device to a hub (it has not registered yet, or its assignment was removed)"),
            Some("let the runtime register the device (sudo iotedge config apply); if it stays unassigned, check the enrollment's allocation policy and linked IoT Hubs".into()),
        ),
        "assigning" => (
            Status::Warn,
            Reason::DpsNotAssigned,
            format!("{accepted}, but reports {rid} still assigning: the device has no hub until DPS settles, and an assignment that never settles is stuck"),
            Some("if it stays assigning, check the enrollment's allocation policy, its linked IoT Hubs and any custom allocation function (Azure Function)".into()),
        ),
        other => (
            Status::Warn,
            Reason::DpsNotAssigned,
            format!("{accepted}, but reports {rid} in state {other:?}, which is not assigned"),
            None,
        ),
    };
    let mut j = Judgement::new(status, reason, message);
    j.auth = Some(AuthState::Ok);
    j.auth_phase = Some((
        PhaseStatus::Ok,
        vec![("registration_status".into(), json!(state))],
    ));
    j.fix = fix;
    j.hub = hub;
    j.device_id = text(body, "deviceId").map(str::to_owned);
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDIVIDUAL: Registration<'static> = Registration {
        id_scope: "0ne00TEST01",
        registration_id: "dev-1",
        group: false,
        presenting: true,
    };

    fn answer(status: u16, code: Option<&'static str>, body: &'static Value) -> Answer<'static> {
        Answer {
            http_status: status,
            error_code: code,
            body,
            who: "HTTP 502, Server: squid",
        }
    }

    fn leak(v: Value) -> &'static Value {
        Box::leak(Box::new(v))
    }

    #[test]
    fn every_state_is_judged_as_provisioning_will_experience_it() {
        // (registration, http status, error code, body) → (status, reason, auth, words in the message, words in the fix)
        let group = Registration {
            group: true,
            ..INDIVIDUAL
        };
        let anonymous = Registration {
            presenting: false,
            ..INDIVIDUAL
        };
        let state = |s: &str| {
            leak(
                json!({"registrationId": "dev-1", "status": s, "assignedHub": "hub.azure-devices.net", "deviceId": "dev-1"}),
            )
        };
        type Row = (
            Registration<'static>,
            u16,
            Option<&'static str>,
            &'static Value,
            (Status, Reason, Option<AuthState>),
            &'static [&'static str],
            &'static [&'static str],
        );
        let table: Vec<Row> = vec![
            (
                INDIVIDUAL,
                200,
                None,
                state("assigned"),
                (Status::Pass, Reason::Ok, Some(AuthState::Ok)),
                &["assigned to hub.azure-devices.net"],
                &[],
            ),
            (
                INDIVIDUAL,
                200,
                None,
                state("disabled"),
                (Status::Fail, Reason::DpsDisabled, Some(AuthState::Ok)),
                &[
                    "individual enrollment of dev-1 is disabled",
                    "will not provision or reprovision",
                ],
                &["re-enable the individual enrollment dev-1", "0ne00TEST01"],
            ),
            (
                group,
                200,
                None,
                state("disabled"),
                (Status::Fail, Reason::DpsDisabled, Some(AuthState::Ok)),
                &["enrollment group of dev-1 is disabled"],
                &["re-enable the enrollment group", "0ne00TEST01"],
            ),
            (
                INDIVIDUAL,
                200,
                None,
                leak(
                    json!({"registrationId": "dev-1", "status": "failed", "errorCode": 400209, "errorMessage": "Custom allocation failed with status code: 400"}),
                ),
                (Status::Fail, Reason::DpsFailed, Some(AuthState::Ok)),
                &["failed (error 400209: Custom allocation failed with status code: 400)"],
                &["reprovision"],
            ),
            (
                INDIVIDUAL,
                200,
                None,
                leak(json!({"registrationId": "dev-1", "status": "unassigned"})),
                (Status::Warn, Reason::DpsNotAssigned, Some(AuthState::Ok)),
                &["unassigned", "not assigned the device to a hub"],
                &["allocation policy"],
            ),
            (
                INDIVIDUAL,
                200,
                None,
                leak(json!({"registrationId": "dev-1", "status": "assigning"})),
                (Status::Warn, Reason::DpsNotAssigned, Some(AuthState::Ok)),
                &["still assigning", "stuck"],
                &["allocation"],
            ),
            (
                INDIVIDUAL,
                404,
                Some("404201"),
                leak(json!({"errorCode": 404201})),
                (Status::Fail, Reason::DpsNotFound, Some(AuthState::Untested)),
                &["no registration dev-1 in ID scope 0ne00TEST01"],
                &[
                    "registration id (dev-1)",
                    "ID scope (0ne00TEST01)",
                    "individual enrollment",
                ],
            ),
            (
                group,
                404,
                Some("404201"),
                leak(json!({"errorCode": 404201})),
                (Status::Fail, Reason::DpsNotFound, Some(AuthState::Untested)),
                &["dev-1"],
                &["enrollment group"],
            ),
            (
                INDIVIDUAL,
                401,
                Some("401002"),
                leak(json!({"errorCode": 401002})),
                (
                    Status::Fail,
                    Reason::AuthRejected,
                    Some(AuthState::Rejected),
                ),
                &["refused the registration's key (error 401002)"],
                &["symmetric key"],
            ),
            (
                anonymous,
                401,
                Some("401002"),
                leak(json!({"errorCode": 401002})),
                (Status::Pass, Reason::Ok, Some(AuthState::Untested)),
                &["unauthenticated lookup with 401"],
                &[],
            ),
            (
                INDIVIDUAL,
                502,
                None,
                leak(Value::Null),
                (Status::Fail, Reason::WrongService, None),
                &["HTTP 502, Server: squid"],
                &[],
            ),
            (
                INDIVIDUAL,
                200,
                None,
                leak(Value::Null),
                (Status::Fail, Reason::WrongService, None),
                &["another service"],
                &[],
            ),
        ];
        for (reg, http, code, body, want, says, fix_says) in table {
            let j = judge(&reg, &answer(http, code, body));
            assert_eq!(
                (j.status, j.reason, j.auth),
                want,
                "{http} {body}: {}",
                j.message
            );
            for s in says {
                assert!(
                    j.message.contains(s),
                    "{http} {body}: {:?} lacks {s:?}",
                    j.message
                );
            }
            let fix = j.fix.clone().unwrap_or_default();
            for s in fix_says {
                assert!(fix.contains(s), "{http} {body}: fix {fix:?} lacks {s:?}");
            }
            assert_eq!(j.dps_answered, j.reason != Reason::WrongService);
        }
    }

    #[test]
    fn the_hub_is_learned_from_the_answer_whatever_the_state() {
        let body = json!({"registrationId": "dev-1", "status": "disabled", "assignedHub": "h.azure-devices.net", "deviceId": "d"});
        let j = judge(&INDIVIDUAL, &answer(200, None, leak(body)));
        assert_eq!(j.hub.as_deref(), Some("h.azure-devices.net"));
        assert_eq!(j.device_id.as_deref(), Some("d"));
        assert_eq!(
            j.auth_phase,
            Some((
                PhaseStatus::Ok,
                vec![("registration_status".into(), json!("disabled"))]
            ))
        );
    }
}

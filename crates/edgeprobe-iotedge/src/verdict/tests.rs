use super::*;
use edgeprobe_core::catalog::CheckDef;
use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::{Endpoint, Outcome, Phase, PhaseName, PhaseStatus, Status, Vantage};
use std::time::Duration;

fn result(protocol: Protocol, works: bool, auth: Option<AuthState>) -> CheckResult {
    let mut outcome = if works {
        Outcome::new(Status::Pass, Reason::Ok, "ok")
    } else {
        Outcome::new(Status::Fail, Reason::TcpTimeout, "dropped")
    };
    outcome.auth = auth;
    outcome.phases.push(Phase {
        name: PhaseName::Protocol,
        status: if works {
            PhaseStatus::Ok
        } else {
            PhaseStatus::Fail
        },
        started: Duration::ZERO,
        duration: Duration::ZERO,
        detail: Vec::new(),
    });
    CheckResult {
        def: CheckDef {
            id: format!("iothub-{protocol}"),
            title: String::new(),
            endpoint: Endpoint::Iothub,
            protocol,
            host: "h".into(),
            port: protocol.default_port(),
            required: false,
            requires: Vec::new(),
            unless: Vec::new(),
            source: "t".into(),
            expect: Default::default(),
            credentials: false,
            limits: Default::default(),
            send: None,
        },
        target: None,
        vantage: Vantage::Host,
        outcome,
        duration: Duration::ZERO,
    }
}

fn run(works: &[Protocol], configured: Option<UpstreamProtocol>) -> Verdict {
    let results: Vec<CheckResult> = [
        Protocol::Mqtt,
        Protocol::Amqp,
        Protocol::MqttWs,
        Protocol::AmqpWs,
    ]
    .into_iter()
    .map(|p| result(p, works.contains(&p), Some(AuthState::Ok)))
    .collect();
    judge(&results, Endpoint::Iothub, configured, |_| true)
}

#[test]
fn configured_protocol_is_kept_when_it_works() {
    let v = run(
        &[Protocol::Mqtt, Protocol::Amqp],
        Some(UpstreamProtocol::Mqtt),
    );
    assert_eq!(
        v.recommendation.upstream_protocol,
        Some(UpstreamProtocol::Mqtt)
    );
    assert!(!v.recommendation.change_needed);
    assert_eq!(configured_protocol_outcome(&v).status, Status::Pass);
}

#[test]
fn first_working_protocol_in_preference_order_is_recommended() {
    let v = run(
        &[Protocol::MqttWs, Protocol::AmqpWs],
        Some(UpstreamProtocol::Amqp),
    );
    assert_eq!(
        v.recommendation.upstream_protocol,
        Some(UpstreamProtocol::AmqpWs)
    );
    assert!(v.recommendation.change_needed);
    assert!(v
        .recommendation
        .setting
        .as_deref()
        .unwrap()
        .contains("UpstreamProtocol=AmqpWs"));
    let check = configured_protocol_outcome(&v);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.reason, Reason::TcpTimeout);
    assert!(check.fix.unwrap().contains("AmqpWs"));
}

#[test]
fn unset_protocol_needs_a_change_only_when_amqp_fails() {
    assert!(!run(&[Protocol::Amqp], None).recommendation.change_needed);
    let v = run(&[Protocol::Mqtt], None);
    assert!(v.recommendation.change_needed);
    assert_eq!(
        v.recommendation.upstream_protocol,
        Some(UpstreamProtocol::Mqtt)
    );
}

#[test]
fn nothing_works_means_no_recommendation() {
    let v = run(&[], None);
    assert_eq!(v.recommendation.upstream_protocol, None);
    assert!(v.protocols.iter().all(|p| !p.works && p.tested));
}

#[test]
fn rejected_credentials_still_mean_the_path_works() {
    let results = vec![result(Protocol::Amqp, true, Some(AuthState::Rejected))];
    let v = judge(&results, Endpoint::Iothub, None, |_| true);
    let amqp = v.get(UpstreamProtocol::Amqp);
    assert!(amqp.works);
    assert_eq!(amqp.auth, AuthState::Rejected);
    // ...but the device cannot connect: the configured protocol's check fails, and the
    // advice is about the credentials.
    let o = configured_protocol_outcome(&v);
    assert_eq!((o.status, o.reason), (Status::Fail, Reason::AuthRejected));
    assert!(o.fix.unwrap().contains("its key"));
    assert!(!v.recommendation.change_needed);
    assert!(v
        .recommendation
        .why
        .contains("refused the device's credentials"));
}

fn refused(protocol: Protocol) -> CheckResult {
    let mut r = result(protocol, true, Some(AuthState::Rejected));
    r.outcome.status = Status::Fail;
    r.outcome.reason = Reason::AuthRejected;
    r
}

#[test]
fn readiness_table() {
    let plain = ReadinessPolicy::default();
    let only = ReadinessPolicy {
        only: true,
        ..plain
    };
    let strict = ReadinessPolicy {
        warnings_as_errors: true,
        ..plain
    };
    let mut required_https = result(Protocol::Https, false, None);
    required_https.def.required = true;
    let mut warned = result(Protocol::Amqp, true, Some(AuthState::Ok));
    warned.outcome.status = Status::Warn;
    warned.outcome.reason = Reason::ClockSkew;
    /// (results, policy, ready, reason, blocking)
    type Case = (
        Vec<CheckResult>,
        ReadinessPolicy,
        bool,
        Reason,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![result(Protocol::Amqp, true, Some(AuthState::Ok))],
            plain,
            true,
            Reason::Ok,
            vec![],
        ),
        // A protocol that is not required fails: the device still runs on another.
        (
            vec![
                result(Protocol::Mqtt, false, None),
                result(Protocol::Amqp, true, None),
            ],
            plain,
            true,
            Reason::Ok,
            vec![],
        ),
        // ...unless --only named it.
        (
            vec![result(Protocol::Mqtt, false, None)],
            only,
            false,
            Reason::TcpTimeout,
            vec!["iothub-mqtt"],
        ),
        (
            vec![required_https.clone()],
            plain,
            false,
            Reason::TcpTimeout,
            vec!["iothub-https"],
        ),
        (
            vec![refused(Protocol::Amqp), refused(Protocol::Mqtt)],
            plain,
            false,
            Reason::AuthRejected,
            vec!["iothub-amqp", "iothub-mqtt"],
        ),
        (vec![warned.clone()], plain, true, Reason::Ok, vec![]),
        (
            vec![warned],
            strict,
            false,
            Reason::ClockSkew,
            vec!["iothub-amqp"],
        ),
        (vec![], plain, false, Reason::NotConfigured, vec![]),
    ];
    for (i, (results, policy, ready, reason, blocking)) in cases.into_iter().enumerate() {
        let v = judge(&results, Endpoint::Iothub, None, |_| true);
        let r = readiness(&results, &v, policy);
        assert_eq!((r.ready, r.reason), (ready, reason), "case {i}: {r:?}");
        assert_eq!(r.blocking, blocking, "case {i}");
        assert_eq!(
            r.fix.is_some(),
            !ready && !r.blocking.is_empty(),
            "case {i}: {r:?}"
        );
    }
}

#[test]
fn protocols_left_out_by_the_selection_are_not_checked_nor_blamed() {
    let results = vec![result(Protocol::Amqp, false, None)];
    let v = judge(&results, Endpoint::Iothub, None, |p| {
        p == UpstreamProtocol::Amqp
    });
    let mqtt = v.get(UpstreamProtocol::Mqtt);
    assert!(!mqtt.tested && !mqtt.selected && !mqtt.works);
    assert!(mqtt.why.starts_with("not checked"), "{}", mqtt.why);
    let why = &v.recommendation.why;
    assert!(
        why.contains("Amqp (5671)") && !why.contains("8883"),
        "{why}"
    );

    // The configured protocol was left out: nothing is recommended in its place.
    let results = vec![result(Protocol::Amqp, true, Some(AuthState::Ok))];
    let v = judge(
        &results,
        Endpoint::Iothub,
        Some(UpstreamProtocol::Mqtt),
        |p| p == UpstreamProtocol::Amqp,
    );
    assert_eq!(v.recommendation.upstream_protocol, None);
    assert!(!v.recommendation.change_needed);
    assert!(
        v.recommendation
            .why
            .contains("Mqtt was not judged (not checked"),
        "{}",
        v.recommendation.why
    );
    assert_eq!(configured_protocol_outcome(&v).status, Status::Skip);
}

#[test]
fn a_check_the_deadline_cut_short_leaves_its_protocol_unjudged() {
    let mut amqp = result(Protocol::Amqp, false, None);
    amqp.outcome.status = Status::Warn;
    amqp.outcome.reason = Reason::Deadline;
    let results = vec![amqp, result(Protocol::Mqtt, true, Some(AuthState::Ok))];
    let v = judge(&results, Endpoint::Iothub, None, |_| true);
    let a = v.get(UpstreamProtocol::Amqp);
    assert!(!a.tested && !a.works);
    assert_eq!(a.reason, Reason::Deadline);
    // No switch is advised on a protocol that was never judged.
    assert!(!v.recommendation.change_needed, "{:?}", v.recommendation);
    assert!(v.recommendation.why.contains("raise --timeout"));
    assert_eq!(configured_protocol_outcome(&v).status, Status::Skip);
}

#[test]
fn a_failing_protocol_s_fix_names_the_recommended_protocol() {
    let mut results: Vec<CheckResult> = [Protocol::Mqtt, Protocol::Amqp, Protocol::MqttWs]
        .into_iter()
        .map(|p| result(p, p != Protocol::Mqtt && p != Protocol::MqttWs, None))
        .collect();
    for r in &mut results {
        r.outcome.fix = Some("allow outbound TCP".into());
    }
    let v = judge(&results, Endpoint::Iothub, None, |_| true);
    for r in &mut results {
        align_fix(r, &v, Endpoint::Iothub);
    }
    assert_eq!(
        results[0].outcome.fix.as_deref(),
        Some("allow outbound TCP — or use UpstreamProtocol Amqp, which works here")
    );
    assert_eq!(
        results[1].outcome.fix.as_deref(),
        Some("allow outbound TCP"),
        "it works"
    );
}

//! What a catalog check expects of the answer, beyond "the service answered": the options of
//! a Prometheus blackbox_exporter module. Without them any answer of the protocol passes;
//! with them a captive portal's 200, a proxy's block page, an intercepting proxy's
//! certificate or a broker that refuses the client fails the check.
//!
//! Each expectation is checked when its file loads (does it apply to the probe kind, does
//! its pattern compile) and judged by a pure function here when the answer is in, so the
//! probes only gather facts.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use crate::model::Protocol;

/// A TLS protocol version an expectation can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

impl TlsVersion {
    /// Reads the version as the TLS layer names it ("TLS 1.3").
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim_start_matches("TLS").trim() {
            "1.2" => Some(TlsVersion::V1_2),
            "1.3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

/// A catalog check's `[check.expect]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// HTTPS: the status must be one of these.
    #[serde(default)]
    pub status: Vec<u16>,
    /// HTTPS: each named header must be present and match its regular expression.
    #[serde(default)]
    pub header_matches: BTreeMap<String, String>,
    /// HTTPS: no named header may match its regular expression (absent headers pass).
    #[serde(default)]
    pub header_not_matches: BTreeMap<String, String>,
    /// HTTPS: the start of the body; TCP and TLS: what the server sends first (its banner).
    /// Must match this regular expression.
    pub body_matches: Option<String>,
    /// Like `body_matches`, but must not match (a block page's words).
    pub body_not_matches: Option<String>,
    /// MQTT: the CONNACK return code must be one of these (0 accepted, 4 bad user name or
    /// password, 5 not authorized...).
    #[serde(default)]
    pub connack: Vec<u8>,
    /// Any TLS check: the negotiated version must be at least this ("1.2" or "1.3").
    pub tls_min_version: Option<TlsVersion>,
    /// Any TLS check: some certificate of the presented chain must have an issuer matching
    /// this regular expression (an intercepting proxy's own CA does not).
    pub issuer_matches: Option<String>,
    /// Any TLS check: the server certificate must list this DNS name (wildcards honoured).
    pub san: Option<String>,
    /// Any TLS check: the server certificate must stay valid at least this many days.
    pub min_cert_days: Option<u32>,
}

/// What the TLS layer saw, for judging TLS expectations.
#[derive(Clone, Debug, Default)]
pub struct TlsSeen<'a> {
    /// The negotiated version as the TLS layer names it ("TLS 1.3"); `None` if unknown.
    pub version: Option<&'a str>,
    /// The issuer of each certificate of the presented chain, leaf first.
    pub issuers: Vec<&'a str>,
    /// The DNS names of the server certificate.
    pub leaf_names: Vec<&'a str>,
}

impl Expect {
    /// Whether anything is expected at all.
    pub fn is_empty(&self) -> bool {
        *self == Expect::default()
    }

    /// Whether the answer's first bytes must be read (TCP and TLS probes).
    pub fn wants_banner(&self) -> bool {
        self.body_matches.is_some() || self.body_not_matches.is_some()
    }

    /// Checks, at load time, that each expectation applies to `protocol` and that each
    /// pattern compiles. The error names the key (`expect.status`) and says why.
    pub fn validate(&self, protocol: Protocol) -> Result<(), (String, String)> {
        let https = protocol == Protocol::Https;
        let mqtt = matches!(protocol, Protocol::Mqtt | Protocol::MqttWs);
        let banner = matches!(protocol, Protocol::Https | Protocol::Tcp | Protocol::Tls);
        let tls = protocol != Protocol::Tcp;
        let rules: [(&str, bool, bool, &str); 10] = [
            ("status", !self.status.is_empty(), https, "https"),
            (
                "header_matches",
                !self.header_matches.is_empty(),
                https,
                "https",
            ),
            (
                "header_not_matches",
                !self.header_not_matches.is_empty(),
                https,
                "https",
            ),
            (
                "body_matches",
                self.body_matches.is_some(),
                banner,
                "https, tcp and tls",
            ),
            (
                "body_not_matches",
                self.body_not_matches.is_some(),
                banner,
                "https, tcp and tls",
            ),
            (
                "connack",
                !self.connack.is_empty(),
                mqtt,
                "mqtt and mqtt-ws",
            ),
            (
                "tls_min_version",
                self.tls_min_version.is_some(),
                tls,
                "TLS",
            ),
            ("issuer_matches", self.issuer_matches.is_some(), tls, "TLS"),
            ("san", self.san.is_some(), tls, "TLS"),
            ("min_cert_days", self.min_cert_days.is_some(), tls, "TLS"),
        ];
        if let Some((key, _, _, applies)) = rules.iter().find(|(_, set, ok, _)| *set && !ok) {
            return Err((
                format!("expect.{key}"),
                format!("applies to {applies} checks, not to {protocol}"),
            ));
        }
        let mut patterns: Vec<(String, &str)> = Vec::new();
        for (key, p) in [
            ("body_matches", &self.body_matches),
            ("body_not_matches", &self.body_not_matches),
            ("issuer_matches", &self.issuer_matches),
        ] {
            if let Some(p) = p {
                patterns.push((format!("expect.{key}"), p));
            }
        }
        for (table, map) in [
            ("header_matches", &self.header_matches),
            ("header_not_matches", &self.header_not_matches),
        ] {
            for (name, p) in map {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    return Err((
                        format!("expect.{table}"),
                        format!("{name:?} is not an HTTP header name"),
                    ));
                }
                patterns.push((format!("expect.{table}.{name}"), p));
            }
        }
        for (key, p) in patterns {
            if let Err(e) = Regex::new(p) {
                let why = e.to_string().lines().last().unwrap_or_default().to_owned();
                return Err((key, format!("not a regular expression ({why})")));
            }
        }
        if let Some(san) = &self.san {
            if san.is_empty() || san.contains(char::is_whitespace) {
                return Err(("expect.san".into(), format!("{san:?} is not a DNS name")));
            }
        }
        Ok(())
    }

    /// Why an HTTP answer does not meet the expectations, if it does not. `header` looks a
    /// header up by lowercase name.
    pub fn unmet_http<'h>(
        &self,
        status: u16,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &str,
    ) -> Option<String> {
        if !self.status.is_empty() && !self.status.contains(&status) {
            let wanted: Vec<String> = self.status.iter().map(u16::to_string).collect();
            return Some(format!("the check expects HTTP {}", wanted.join(" or ")));
        }
        for (name, p) in &self.header_matches {
            match header(&name.to_ascii_lowercase()) {
                None => return Some(format!("it has no {name} header, which the check expects")),
                Some(v) if !found(p, v) => {
                    return Some(format!("its {name} header {v:?} does not match {p:?}"))
                }
                Some(_) => {}
            }
        }
        for (name, p) in &self.header_not_matches {
            if let Some(v) = header(&name.to_ascii_lowercase()).filter(|v| found(p, v)) {
                return Some(format!(
                    "its {name} header {v:?} matches {p:?}, which the check forbids"
                ));
            }
        }
        self.unmet_body(body, "body")
    }

    /// Why what a TCP or TLS server sent first does not meet the expectations.
    pub fn unmet_banner(&self, banner: &str) -> Option<String> {
        self.unmet_body(banner, "first answer")
    }

    fn unmet_body(&self, body: &str, what: &str) -> Option<String> {
        if let Some(p) = self.body_matches.as_deref().filter(|p| !found(p, body)) {
            return Some(format!("its {what} does not match {p:?}"));
        }
        if let Some(p) = self.body_not_matches.as_deref().filter(|p| found(p, body)) {
            return Some(format!("its {what} matches {p:?}, which the check forbids"));
        }
        None
    }

    /// Why a CONNACK return code is not one the check expects.
    pub fn unmet_connack(&self, code: u8) -> Option<String> {
        if self.connack.is_empty() || self.connack.contains(&code) {
            return None;
        }
        let wanted: Vec<String> = self.connack.iter().map(u8::to_string).collect();
        Some(format!("the check expects CONNACK {}", wanted.join(" or ")))
    }

    /// Why a completed TLS handshake does not meet the expectations (the certificate's
    /// remaining days are judged apart, as `cert_expiring`).
    pub fn unmet_tls(&self, seen: &TlsSeen<'_>) -> Option<String> {
        if let Some(min) = self.tls_min_version {
            let got = seen.version.and_then(TlsVersion::from_name);
            if got.is_none_or(|v| v < min) {
                return Some(format!(
                    "it negotiated {}, below the TLS {} the check requires",
                    seen.version.unwrap_or("an unknown TLS version"),
                    min.as_str()
                ));
            }
        }
        if let Some(p) = &self.issuer_matches {
            if !seen.issuers.iter().any(|i| found(p, i)) {
                return Some(format!(
                    "no certificate of its chain is issued by {p:?} (issuers: {})",
                    seen.issuers.join("; ")
                ));
            }
        }
        if let Some(name) = &self.san {
            if !seen.leaf_names.iter().any(|n| dns_name_covers(n, name)) {
                return Some(format!(
                    "its certificate does not list {name} (it lists {})",
                    if seen.leaf_names.is_empty() {
                        "no DNS name".to_owned()
                    } else {
                        seen.leaf_names.join(", ")
                    }
                ));
            }
        }
        None
    }
}

/// Patterns were compiled when the catalog loaded; one that no longer compiles matches
/// nothing.
fn found(pattern: &str, text: &str) -> bool {
    Regex::new(pattern).is_ok_and(|r| r.is_match(text))
}

/// Whether a certificate's DNS name covers `name` (RFC 6125: a wildcard stands for exactly
/// one leftmost label).
pub fn dns_name_covers(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    let name = name.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => pattern.trim_end_matches('.') == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(toml_text: &str) -> Expect {
        toml::from_str(toml_text).expect("a valid expect table")
    }

    #[test]
    fn each_expectation_applies_to_its_probe_kinds_only() {
        let table: &[(&str, Protocol, Option<&str>)] = &[
            ("status = [200]", Protocol::Https, None),
            ("status = [200]", Protocol::Mqtt, Some("expect.status")),
            (
                "header_matches = { server = \"nginx\" }",
                Protocol::Tls,
                Some("expect.header_matches"),
            ),
            ("body_matches = \"SSH-2.0\"", Protocol::Tcp, None),
            (
                "body_matches = \"x\"",
                Protocol::Amqp,
                Some("expect.body_matches"),
            ),
            ("connack = [0]", Protocol::MqttWs, None),
            ("connack = [0]", Protocol::Https, Some("expect.connack")),
            ("tls_min_version = \"1.3\"", Protocol::Amqp, None),
            (
                "tls_min_version = \"1.3\"",
                Protocol::Tcp,
                Some("expect.tls_min_version"),
            ),
            ("san = \"a.example\"", Protocol::Tcp, Some("expect.san")),
            (
                "min_cert_days = 3",
                Protocol::Tcp,
                Some("expect.min_cert_days"),
            ),
            (
                "body_matches = \"(\"",
                Protocol::Https,
                Some("expect.body_matches"),
            ),
            (
                "header_not_matches = { \"x y\" = \"a\" }",
                Protocol::Https,
                Some("expect.header_not_matches"),
            ),
            (
                "header_not_matches = { via = \"(\" }",
                Protocol::Https,
                Some("expect.header_not_matches.via"),
            ),
            (
                "issuer_matches = \"[\"",
                Protocol::Tls,
                Some("expect.issuer_matches"),
            ),
        ];
        for (text, protocol, bad_key) in table {
            let got = expect(text).validate(*protocol).err().map(|(k, _)| k);
            assert_eq!(got.as_deref(), *bad_key, "{text} for {protocol}");
        }
        assert!(toml::from_str::<Expect>("tls_min_version = \"1.1\"").is_err());
        assert!(toml::from_str::<Expect>("stauts = [200]").is_err());
    }

    #[test]
    fn http_answers_are_judged_by_status_headers_and_body() {
        let e = expect(
            "status = [200, 204]\nheader_matches = { Server = \"^nginx\" }\nheader_not_matches = { via = \"squid\" }\nbody_not_matches = \"(?i)blocked\"",
        );
        let headers = |server: Option<&'static str>, via: Option<&'static str>| {
            move |name: &str| match name {
                "server" => server,
                "via" => via,
                _ => None,
            }
        };
        // status, Server, Via, body, what the judgement must say (None: met)
        type Case = (
            u16,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
            Option<&'static str>,
        );
        let table: &[Case] = &[
            (200, Some("nginx/1.22"), None, "ok", None),
            (
                403,
                Some("nginx/1.22"),
                None,
                "ok",
                Some("expects HTTP 200 or 204"),
            ),
            (200, None, None, "ok", Some("no Server header")),
            (
                200,
                Some("squid"),
                None,
                "ok",
                Some("does not match \"^nginx\""),
            ),
            (
                200,
                Some("nginx"),
                Some("1.1 squid"),
                "ok",
                Some("which the check forbids"),
            ),
            (
                204,
                Some("nginx"),
                None,
                "Access BLOCKED",
                Some("its body matches"),
            ),
        ];
        for (status, server, via, body, want) in table {
            let got = e.unmet_http(*status, headers(*server, *via), body);
            match want {
                None => assert_eq!(got, None),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{got:?} vs {w}"
                ),
            }
        }
    }

    #[test]
    fn connack_banner_and_tls_expectations() {
        let e = expect("connack = [0, 5]");
        assert_eq!(e.unmet_connack(0), None);
        assert_eq!(e.unmet_connack(5), None);
        assert_eq!(
            e.unmet_connack(4).as_deref(),
            Some("the check expects CONNACK 0 or 5")
        );
        assert_eq!(Expect::default().unmet_connack(4), None);

        let e = expect("body_matches = \"^SSH-2\\\\.0\"");
        assert!(e.wants_banner());
        assert_eq!(e.unmet_banner("SSH-2.0-OpenSSH_9.2\r\n"), None);
        assert!(e.unmet_banner("HTTP/1.1 400").is_some());

        let e = expect("tls_min_version = \"1.3\"\nissuer_matches = \"DigiCert\"\nsan = \"hub.azure-devices.net\"");
        let good = TlsSeen {
            version: Some("TLS 1.3"),
            issuers: vec![
                "CN=Microsoft Azure RSA TLS Issuing CA 04",
                "CN=DigiCert Global Root G2",
            ],
            leaf_names: vec!["*.azure-devices.net"],
        };
        assert_eq!(e.unmet_tls(&good), None);
        let old = TlsSeen {
            version: Some("TLS 1.2"),
            ..good.clone()
        };
        assert!(e.unmet_tls(&old).unwrap().contains("below the TLS 1.3"));
        let intercepted = TlsSeen {
            issuers: vec!["CN=Contoso Inspection CA"],
            ..good.clone()
        };
        assert!(e
            .unmet_tls(&intercepted)
            .unwrap()
            .contains("Contoso Inspection CA"));
        let other = TlsSeen {
            leaf_names: vec!["portal.example"],
            ..good
        };
        assert!(e
            .unmet_tls(&other)
            .unwrap()
            .contains("it lists portal.example"));
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(dns_name_covers(
            "*.azure-devices.net",
            "hub.azure-devices.net"
        ));
        assert!(dns_name_covers("HUB.example", "hub.example."));
        assert!(!dns_name_covers(
            "*.azure-devices.net",
            "a.b.azure-devices.net"
        ));
        assert!(!dns_name_covers("*.azure-devices.net", "azure-devices.net"));
    }
}

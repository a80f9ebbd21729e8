//! TLS as the runtime does it — rustls, TLS 1.2+, SNI, no ALPN — but with a verifier that
//! keeps the chain the server presented, because the most useful thing to say about an
//! interception proxy is the name of the issuer we did not trust.
//!
//! Roots, like the runtime's: on the host the OS store (what aziot-identityd and the Docker
//! daemon verify with), in the `azure-iot-edge` network the Mozilla set (what the module
//! images carry), each plus the trust bundle (`trust_bundle_cert`, `--trust-bundle`, a
//! nested parent's or gateway's Edge CA). `--roots` picks another set ([`RootSet`]). The
//! other of the two sets verifies every chain as well, so a chain that one trusts and the
//! other does not is called out: it works on one side of the device and fails on the other.

use std::path::Path;
use std::sync::{Arc, Mutex};

use edgeprobe_core::bounded;
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{PhaseName, PhaseStatus, Reason};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde_json::json;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::sniff;
use crate::tap::Tap;
use crate::BoxIo;
use crate::Failure;

mod roots;

pub use roots::*;

/// A certificate of the presented chain, as people read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
    /// PEM, for support bundles.
    pub pem: String,
}

/// Summarises a DER certificate; unparsable ones are described as such.
pub fn cert_info(der: &[u8]) -> CertInfo {
    let pem = pem_encode(der);
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: cert
                .validity()
                .not_after
                .to_datetime()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            pem,
        },
        Err(_) => CertInfo {
            subject: "(unparsable certificate)".into(),
            issuer: String::new(),
            not_after: String::new(),
            pem,
        },
    }
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// What the verifier saw in one handshake.
#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    /// Whether the other side's root set verified the chain.
    other_verified: Option<bool>,
}

/// Delegates to webpki, keeping the chain the server presented and asking the other side's
/// roots too.
#[derive(Debug)]
struct Capturing {
    inner: Arc<WebPkiServerVerifier>,
    other: Option<Arc<WebPkiServerVerifier>>,
    seen: Arc<Mutex<Seen>>,
}

impl ServerCertVerifier for Capturing {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let other_verified = self.other.as_ref().map(|v| {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .is_ok()
        });
        if let Ok(mut seen) = self.seen.lock() {
            seen.chain.clear();
            seen.chain.push(end_entity.clone().into_owned());
            seen.chain
                .extend(intermediates.iter().map(|c| c.clone().into_owned()));
            seen.other_verified = other_verified;
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// How much of the peer's first bytes a failed handshake quotes from.
const TAP_BYTES: usize = 256;

/// What the TLS layer learned, success or not.
#[derive(Clone, Debug, Default)]
pub struct TlsFacts {
    pub chain: Vec<CertInfo>,
    /// The negotiated version ("TLS 1.3"), once the handshake completed.
    pub version: Option<String>,
    /// The server certificate's DNS names.
    pub leaf_names: Vec<String>,
    /// A chain this side's roots trust and the other side's do not: what that breaks.
    pub roots_differ: Option<String>,
}

impl TlsFacts {
    /// The facts TLS expectations are judged on.
    pub fn seen(&self) -> edgeprobe_core::catalog::TlsSeen<'_> {
        edgeprobe_core::catalog::TlsSeen {
            version: self.version.as_deref(),
            issuers: self.chain.iter().map(|c| c.issuer.as_str()).collect(),
            leaf_names: self.leaf_names.iter().map(String::as_str).collect(),
        }
    }
}

/// The DNS names a certificate lists (its subjectAltName).
fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

/// Performs the TLS handshake, recording the `tls` phase.
pub async fn handshake(
    stream: BoxIo,
    server_name: &str,
    settings: &TlsSettings,
    rec: &PhaseRecorder,
    deadline: Instant,
    facts: &mut TlsFacts,
) -> Result<TlsStream<BoxIo>, Failure> {
    rec.start(PhaseName::Tls);
    rec.note("sni", server_name);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = match settings.config(seen.clone()) {
        Ok(c) => c,
        Err(e) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            return Err((Reason::TlsFailed, format!("TLS setup failed: {e}")));
        }
    };
    let name = match ServerName::try_from(
        server_name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    ) {
        Ok(n) => n,
        Err(_) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            return Err((
                Reason::TlsFailed,
                format!("{server_name:?} is not a valid TLS server name"),
            ));
        }
    };
    let (tap, heard) = Tap::new(stream, TAP_BYTES);
    let connector = TlsConnector::from(Arc::new(config));
    let tapped: BoxIo = Box::new(tap);
    let result = tokio::time::timeout_at(deadline, connector.connect(name, tapped)).await;
    let (chain, leaf_names, other_verified): (Vec<CertInfo>, Vec<String>, Option<bool>) = seen
        .lock()
        .map(|s| {
            (
                s.chain.iter().map(|c| cert_info(c)).collect(),
                s.chain.first().map(|c| dns_names(c)).unwrap_or_default(),
                s.other_verified,
            )
        })
        .unwrap_or_default();
    rec.note("roots", settings.roots.describe());
    let other_set = settings.other.as_ref().map(|(set, _)| *set);
    let root_name = root_of(&chain);
    let chain_json = json!(chain
        .iter()
        .map(|c| json!({"subject": c.subject, "issuer": c.issuer, "not_after": c.not_after}))
        .collect::<Vec<_>>());
    facts.chain = chain.clone();
    facts.leaf_names = leaf_names;
    match result {
        Ok(Ok(tls)) => {
            let (_, conn) = tls.get_ref();
            let version = conn
                .protocol_version()
                .map(|v| format!("{v:?}").replace("TLSv1_", "TLS 1."))
                .unwrap_or_default();
            let cipher = conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default();
            let mut detail = vec![
                ("version".into(), json!(version)),
                ("cipher".into(), json!(cipher)),
                ("verified".into(), json!(true)),
                ("chain".into(), chain_json),
            ];
            if let (Some(other), Some(false)) = (other_set, other_verified) {
                detail.push((
                    "other_roots".into(),
                    json!({"set": other.as_str(), "verified": false}),
                ));
                facts.roots_differ = Some(format!(
                    "the chain verifies with {} but not with {}, because its root \"{root_name}\" is not there: {}, and will refuse it unless the trust bundle (trust_bundle_cert) holds that root",
                    settings.roots.set.describe(),
                    other.describe(),
                    other.users()
                ));
            }
            facts.version = Some(version);
            rec.end(PhaseStatus::Ok, detail);
            Ok(tls)
        }
        Ok(Err(e)) => {
            let peer_bytes = heard.head();
            let mut failure = classify(&e, server_name, &chain, &peer_bytes);
            if failure.0 == Reason::TlsUntrusted {
                failure.1.push_str(&format!(
                    " (roots: {}{})",
                    settings.roots.describe(),
                    match (other_set, other_verified) {
                        (Some(other), Some(true)) => format!(
                            "; {} does trust \"{root_name}\", so this fails on one side of the device only: {}",
                            other.describe(),
                            settings.roots.set.users()
                        ),
                        _ => String::new(),
                    }
                ));
            }
            let leaf_trusted = chain
                .first()
                .is_some_and(|leaf| settings.bundle_pem.contains(&leaf.pem));
            if failure.0 == Reason::TlsUntrusted && leaf_trusted {
                let subject = chain.first().map(|c| c.subject.as_str()).unwrap_or("?");
                failure = (
                    Reason::TlsFailed,
                    format!(
                        "{server_name} presented \"{subject}\", a CA certificate of the trust bundle, as its own \
                         server certificate: edgeprobe's TLS stack refuses a CA as an end entity; give the server \
                         a certificate issued by that CA"
                    ),
                );
            }
            rec.end(
                PhaseStatus::Fail,
                vec![
                    ("chain".into(), chain_json),
                    ("error".into(), json!(e.to_string())),
                ],
            );
            Err(failure)
        }
        Err(_) => {
            rec.end(PhaseStatus::Fail, vec![("chain".into(), chain_json)]);
            Err((
                Reason::TlsTimeout,
                format!("the TLS handshake with {server_name} did not finish in time (the server or a middlebox went silent)"),
            ))
        }
    }
}

/// A server certificate that is its own CA (self-signed, or a CA certificate served as the
/// server's): untrusted unless the trust bundle names it, and named by its subject.
fn self_signed(host: &str, chain: &[CertInfo]) -> Failure {
    let subject = chain.first().map(|c| c.subject.as_str()).unwrap_or("?");
    (
        Reason::TlsUntrusted,
        format!(
            "{host} presented a self-signed (CA) certificate \"{subject}\" that is not trusted: \
             add it to the trust bundle if it is meant to be, or a TLS-inspecting device is answering"
        ),
    )
}

/// The root a presented chain ends in: the issuer of its last certificate.
fn root_of(chain: &[CertInfo]) -> String {
    chain
        .last()
        .map(|c| c.issuer.clone())
        .unwrap_or_else(|| "an unknown issuer".into())
}

fn classify(e: &std::io::Error, host: &str, chain: &[CertInfo], peer_bytes: &[u8]) -> Failure {
    let tls_err = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let top_issuer = root_of(chain);
    match tls_err {
        Some(rustls::Error::InvalidCertificate(ce)) => match ce {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => (
                Reason::TlsUntrusted,
                format!(
                    "the certificate for {host} chains to \"{top_issuer}\", which is not trusted: a TLS-inspecting proxy, \
                     or a CA missing from the trust bundle"
                ),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let subject = chain.first().map(|c| c.subject.as_str()).unwrap_or("?");
                (
                    Reason::TlsNameMismatch,
                    format!("the certificate presented ({subject}) is not valid for {host}"),
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                let not_after = chain.first().map(|c| c.not_after.as_str()).unwrap_or("?");
                (
                    Reason::TlsExpired,
                    format!(
                        "the certificate for {host} is outside its validity period (not after {not_after}); \
                         if it is not expired, the device clock is wrong"
                    ),
                )
            }
            // A self-signed server certificate is usually a CA certificate too (openssl
            // req -x509 marks it CA:TRUE): webpki then says "CA used as end entity", but
            // what the user must hear is that nothing trusts it.
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => self_signed(host, chain),
            other => (Reason::TlsFailed, format!("certificate rejected: {other:?}")),
        },
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            let what = sniff::classify(peer_bytes);
            (Reason::TlsNotTls, format!("{host} does not speak TLS on this port: {}", what.describe()))
        }
        Some(rustls::Error::AlertReceived(alert)) => (
            Reason::TlsFailed,
            format!("{host} aborted the TLS handshake with alert {alert:?}"),
        ),
        Some(other) => (Reason::TlsFailed, format!("TLS handshake with {host} failed: {other}")),
        None => {
            if !peer_bytes.is_empty() && !peer_bytes.starts_with(&[0x15]) && !peer_bytes.starts_with(&[0x16]) {
                let what = sniff::classify(peer_bytes);
                return (Reason::TlsNotTls, format!("{host} does not speak TLS on this port: {}", what.describe()));
            }
            (
                Reason::TlsFailed,
                format!(
                    "the connection to {host} closed during the TLS handshake ({}): a firewall or DPI box resetting TLS?",
                    e.kind()
                ),
            )
        }
    }
}

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

use crate::dns::Failure;
use crate::sniff;
use crate::tap::Tap;
use crate::BoxIo;

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

/// Why TLS settings could not be built from the user's files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: bounded::ReadError,
    },
    #[error("{path}: holds no PEM certificate")]
    NoCertificates { path: String },
    #[error("{path}: not a valid PEM certificate file: {message}")]
    BadPem { path: String, message: String },
    #[error("{path}: certificate {index} is not usable as a trust anchor: {message}")]
    BadAnchor {
        path: String,
        index: usize,
        message: String,
    },
    #[error("{path}: holds no PEM private key")]
    NoKey { path: String },
    #[error("client certificate and key do not fit together: {0}")]
    ClientAuth(String),
    #[error("TLS setup failed: {0}")]
    Other(String),
}

/// Reads every certificate of a PEM file, with errors that name the file.
pub fn load_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let shown = path.display().to_string();
    let bytes = bounded::read(path, bounded::PEM_LIMIT).map_err(|source| TlsSetupError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_pem_certs(&bytes, &shown)
}

/// Every certificate of PEM text; `shown` names its file in errors.
pub fn parse_pem_certs(
    bytes: &[u8],
    shown: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let shown = shown.to_owned();
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(bytes).collect();
    let certs = certs.map_err(|e| TlsSetupError::BadPem {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificates { path: shown });
    }
    for (i, c) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(c).is_err() {
            return Err(TlsSetupError::BadPem {
                path: shown,
                message: format!("certificate {} is not valid X.509", i + 1),
            });
        }
    }
    Ok(certs)
}

/// Reads a PEM private key. The error never contains key material.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let shown = path.display().to_string();
    let bytes = bounded::read(path, bounded::PEM_LIMIT).map_err(|source| TlsSetupError::Read {
        path: shown.clone(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsSetupError::NoKey { path: shown })
}

/// The root certificates that verify servers, besides the trust bundle (`--roots`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootSet {
    /// The operating system's store (SSL_CERT_FILE / SSL_CERT_DIR, else /etc/ssl/certs).
    Os,
    /// The Mozilla set compiled in (webpki-roots), as the module images carry it.
    Mozilla,
    /// Only the trust bundle.
    BundleOnly,
}

impl RootSet {
    pub const ALL: [RootSet; 3] = [RootSet::Os, RootSet::Mozilla, RootSet::BundleOnly];

    pub const fn as_str(self) -> &'static str {
        match self {
            RootSet::Os => "os",
            RootSet::Mozilla => "mozilla",
            RootSet::BundleOnly => "bundle-only",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        RootSet::ALL.into_iter().find(|r| r.as_str() == code)
    }

    /// For people: "the OS store".
    pub const fn describe(self) -> &'static str {
        match self {
            RootSet::Os => "the OS store",
            RootSet::Mozilla => "the Mozilla root set",
            RootSet::BundleOnly => "no public roots",
        }
    }

    /// Who verifies with this set in production.
    const fn users(self) -> &'static str {
        match self {
            RootSet::Os => "the host's IoT Edge services (aziot-identityd, aziot-edged, the Docker daemon pulling images) verify with the OS store",
            RootSet::Mozilla => "the IoT Edge modules (edgeHub, edgeAgent) verify with the Mozilla set their images carry",
            RootSet::BundleOnly => "only the trust bundle is trusted",
        }
    }

    /// The set the other side of the device uses, to compare with.
    const fn other(self) -> Option<RootSet> {
        match self {
            RootSet::Os => Some(RootSet::Mozilla),
            RootSet::Mozilla => Some(RootSet::Os),
            RootSet::BundleOnly => None,
        }
    }
}

/// Where trust comes from, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCounts {
    pub set: RootSet,
    /// Roots of the set.
    pub anchors: usize,
    pub bundle: usize,
}

impl RootCounts {
    /// "os (146 roots) + trust bundle (1)".
    pub fn describe(&self) -> String {
        let mut out = match self.set {
            RootSet::BundleOnly => "bundle-only".to_owned(),
            set => format!("{} ({} roots)", set.as_str(), self.anchors),
        };
        if self.bundle > 0 || self.set == RootSet::BundleOnly {
            out.push_str(&format!(" + trust bundle ({})", self.bundle));
        }
        out
    }
}

/// The anchors of a set; the OS store may be empty or unreadable (a `FROM scratch` image).
fn anchors(set: RootSet) -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    match set {
        RootSet::Mozilla => webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        RootSet::Os => {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            store.roots
        }
        RootSet::BundleOnly => Vec::new(),
    }
}

/// Shared TLS settings for a run.
#[derive(Clone)]
pub struct TlsSettings {
    verifier: Arc<WebPkiServerVerifier>,
    /// The other side's set plus the bundle, when there is one to compare with.
    other: Option<(RootSet, Arc<WebPkiServerVerifier>)>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    pub roots: RootCounts,
    /// The trust bundle's certificates as PEM, to tell a trusted self-signed certificate
    /// (which rustls still refuses as "CA used as end entity") from an untrusted one.
    bundle_pem: Arc<Vec<String>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("roots", &self.roots)
            .field("client_auth", &self.client_auth.is_some())
            .finish()
    }
}

impl TlsSettings {
    /// Trusts `set` plus `bundle` (`bundle_path` names it in errors), and keeps the other
    /// side's set to compare each chain with.
    pub fn new(
        bundle: &[CertificateDer<'static>],
        bundle_path: &str,
        set: RootSet,
    ) -> Result<Self, TlsSetupError> {
        let mut anchors_of_bundle = RootCertStore::empty();
        for (i, cert) in bundle.iter().enumerate() {
            anchors_of_bundle
                .add(cert.clone())
                .map_err(|e| TlsSetupError::BadAnchor {
                    path: bundle_path.to_owned(),
                    index: i + 1,
                    message: e.to_string(),
                })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier_of = |set_anchors: Vec<rustls::pki_types::TrustAnchor<'static>>| {
            let mut store = RootCertStore::empty();
            store.roots = set_anchors;
            store.roots.extend(anchors_of_bundle.roots.iter().cloned());
            if store.is_empty() {
                // rustls refuses an empty store: an anchor no certificate can chain to
                // stands for "trust nothing" (a minimal image without an OS store).
                store.roots.push(rustls::pki_types::TrustAnchor {
                    subject: rustls::pki_types::Der::from_slice(b"\x31\x00"),
                    subject_public_key_info: rustls::pki_types::Der::from_slice(b"\x30\x00"),
                    name_constraints: None,
                });
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| TlsSetupError::Other(e.to_string()))
        };
        let own = anchors(set);
        let roots = RootCounts {
            set,
            anchors: own.len(),
            bundle: anchors_of_bundle.len(),
        };
        let verifier = verifier_of(own)?;
        let other = match set.other() {
            Some(o) => {
                let a = anchors(o);
                // An empty OS store (a minimal image) is not a set anybody verifies with.
                if a.is_empty() {
                    None
                } else {
                    Some((o, verifier_of(a)?))
                }
            }
            None => None,
        };
        Ok(TlsSettings {
            verifier,
            other,
            provider,
            client_auth: None,
            roots,
            bundle_pem: Arc::new(bundle.iter().map(|c| pem_encode(c)).collect()),
        })
    }

    /// Presents an X.509 client certificate in every handshake.
    pub fn with_client_cert(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsSetupError> {
        // Build once to learn early whether the pair is usable.
        ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Other(e.to_string()))?
            .with_root_certificates(RootCertStore::empty())
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsSetupError::ClientAuth(e.to_string()))?;
        self.client_auth = Some((chain, Arc::new(key)));
        Ok(self)
    }

    /// The same settings without the client certificate: for hosts the device's identity
    /// does not belong to.
    pub fn without_client_cert(&self) -> TlsSettings {
        TlsSettings {
            client_auth: None,
            ..self.clone()
        }
    }

    /// Whether a client certificate is configured.
    pub fn has_client_cert(&self) -> bool {
        self.client_auth.is_some()
    }

    fn config(&self, seen: Arc<Mutex<Seen>>) -> Result<ClientConfig, String> {
        let verifier = Arc::new(Capturing {
            inner: self.verifier.clone(),
            other: self.other.as_ref().map(|(_, v)| v.clone()),
            seen,
        });
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match &self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| e.to_string()),
            None => Ok(builder.with_no_client_auth()),
        }
    }
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

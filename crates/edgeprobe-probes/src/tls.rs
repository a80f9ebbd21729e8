//! TLS as the runtime does it — rustls, TLS 1.2+, SNI, no ALPN — but with a verifier that
//! keeps the chain the server presented, because the most useful thing to say about an
//! interception proxy is the name of the issuer we did not trust.
//!
//! Roots: the webpki (Mozilla) roots, the OS store, and `--trust-bundle` (the IoT Edge
//! `trust_bundle_cert`, or a nested parent's / gateway's Edge CA).

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::dns::Failure;
use crate::sniff;
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

/// Where trust comes from, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootCounts {
    pub webpki: usize,
    pub system: usize,
    pub bundle: usize,
}

/// Shared TLS settings for a run.
#[derive(Clone)]
pub struct TlsSettings {
    verifier: Arc<WebPkiServerVerifier>,
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
    /// Trusts the webpki roots, the OS store (when `system` is true) and `bundle`.
    pub fn new(
        bundle: &[CertificateDer<'static>],
        bundle_path: &str,
        system: bool,
    ) -> Result<Self, TlsSetupError> {
        let mut store = RootCertStore::empty();
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut roots = RootCounts {
            webpki: store.len(),
            ..RootCounts::default()
        };
        if system {
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(native.certs);
            roots.system = added;
        }
        for (i, cert) in bundle.iter().enumerate() {
            store
                .add(cert.clone())
                .map_err(|e| TlsSetupError::BadAnchor {
                    path: bundle_path.to_owned(),
                    index: i + 1,
                    message: e.to_string(),
                })?;
            roots.bundle += 1;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| TlsSetupError::Other(e.to_string()))?;
        Ok(TlsSettings {
            verifier,
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

    fn config(
        &self,
        seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    ) -> Result<ClientConfig, String> {
        let verifier = Arc::new(Capturing {
            inner: self.verifier.clone(),
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

/// Delegates to webpki, keeping the chain the server presented.
#[derive(Debug)]
struct Capturing {
    inner: Arc<WebPkiServerVerifier>,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
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
        if let Ok(mut seen) = self.seen.lock() {
            seen.clear();
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
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

/// A stream that keeps a copy of the first bytes the peer sent, so a failed handshake can
/// say what answered instead.
#[derive(Debug)]
pub struct Tap<S> {
    inner: S,
    first: Arc<Mutex<Vec<u8>>>,
}

const TAP_BYTES: usize = 256;

impl<S> Tap<S> {
    pub fn new(inner: S) -> (Self, Arc<Mutex<Vec<u8>>>) {
        let first = Arc::new(Mutex::new(Vec::new()));
        (
            Tap {
                inner,
                first: first.clone(),
            },
            first,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            if let Ok(mut first) = self.first.lock() {
                let room = TAP_BYTES.saturating_sub(first.len());
                let new = &buf.filled()[before..];
                first.extend_from_slice(&new[..new.len().min(room)]);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the TLS layer learned, success or not.
#[derive(Clone, Debug, Default)]
pub struct TlsFacts {
    pub chain: Vec<CertInfo>,
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
    let seen = Arc::new(Mutex::new(Vec::new()));
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
    let (tap, first) = Tap::new(stream);
    let connector = TlsConnector::from(Arc::new(config));
    let tapped: BoxIo = Box::new(tap);
    let result = tokio::time::timeout_at(deadline, connector.connect(name, tapped)).await;
    let chain: Vec<CertInfo> = seen
        .lock()
        .map(|s| s.iter().map(|c| cert_info(c)).collect())
        .unwrap_or_default();
    let chain_json = json!(chain
        .iter()
        .map(|c| json!({"subject": c.subject, "issuer": c.issuer, "not_after": c.not_after}))
        .collect::<Vec<_>>());
    facts.chain = chain.clone();
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
            rec.end(
                PhaseStatus::Ok,
                vec![
                    ("version".into(), json!(version)),
                    ("cipher".into(), json!(cipher)),
                    ("verified".into(), json!(true)),
                    ("chain".into(), chain_json),
                ],
            );
            Ok(tls)
        }
        Ok(Err(e)) => {
            let peer_bytes = first.lock().map(|f| f.clone()).unwrap_or_default();
            let mut failure = classify(&e, server_name, &chain, &peer_bytes);
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

fn classify(e: &std::io::Error, host: &str, chain: &[CertInfo], peer_bytes: &[u8]) -> Failure {
    let tls_err = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let top_issuer = chain
        .last()
        .map(|c| c.issuer.clone())
        .unwrap_or_else(|| "an unknown issuer".into());
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

//! The trust the handshakes start from: the root sets (the OS store like the host's
//! services, the Mozilla set like the modules'), the trust bundle, a client certificate,
//! read from the user's files with bounded reads.

use super::*;

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
    pub(super) const fn users(self) -> &'static str {
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
pub(super) fn anchors(set: RootSet) -> Vec<rustls::pki_types::TrustAnchor<'static>> {
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
    pub(super) other: Option<(RootSet, Arc<WebPkiServerVerifier>)>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    pub roots: RootCounts,
    /// The trust bundle's certificates as PEM, to tell a trusted self-signed certificate
    /// (which rustls still refuses as "CA used as end entity") from an untrusted one.
    pub(super) bundle_pem: Arc<Vec<String>>,
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

    pub(super) fn config(&self, seen: Arc<Mutex<Seen>>) -> Result<ClientConfig, String> {
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

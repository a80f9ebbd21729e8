//! The run's TLS settings from the winners of [`super::precedence`]: the trust bundle's
//! files read, the roots, and an X.509 identity's certificate and key loaded.

use edgeprobe_iotedge::identity::Credentials;
use edgeprobe_probes::tls::{self, TlsSettings};
use rustls::pki_types::CertificateDer;

use super::precedence::{Origin, Resolved, Sourced, TrustPart};
use super::usage;
use crate::AppError;

/// The trust bundle's certificates (every part, in order) and the TLS settings that trust
/// them beside the chosen roots.
pub(super) fn settings(
    chosen: &Resolved,
    config_name: &str,
) -> Result<(Vec<CertificateDer<'static>>, TlsSettings), AppError> {
    let mut bundle = Vec::new();
    for part in &chosen.trust_bundle {
        bundle.extend(match (&part.value, part.from) {
            (TrustPart::File(path), from) => tls::load_pem_certs(path)
                .map_err(|e| usage(format!("{}: {e}", from.describe(config_name))))?,
            (TrustPart::Pem { pem, uri }, _) => {
                tls::parse_pem_certs(pem.as_bytes(), &format!("{uri}: trust bundle"))
                    .map_err(|e| usage(e.to_string()))?
            }
        });
    }
    let bundle_name = chosen
        .trust_bundle
        .last()
        .map(|p| p.value.name())
        .unwrap_or_default();
    let settings = TlsSettings::new(&bundle, &bundle_name, chosen.roots.value)
        .map_err(|e| usage(format!("--trust-bundle: {e}")))?;
    Ok((bundle, settings))
}

/// The winning credentials, an X.509 pair loaded into the TLS settings: the flags' pair must
/// load; the configured one that cannot is [`Credentials::Unavailable`], saying why.
pub(super) fn credentials(
    chosen: Option<&Sourced<Credentials>>,
    tls: TlsSettings,
    config_name: &str,
) -> Result<(Option<Credentials>, TlsSettings), AppError> {
    let Some(Sourced { value, from }) = chosen else {
        return Ok((None, tls));
    };
    let Credentials::X509 { cert, key } = value else {
        return Ok((Some(value.clone()), tls));
    };
    if let Origin::Config(_) = from {
        let loaded = tls::load_pem_certs(cert)
            .and_then(|chain| Ok((chain, tls::load_private_key(key)?)))
            .and_then(|(chain, pk)| tls.clone().with_client_cert(chain, pk));
        return Ok(match loaded {
            Ok(with_cert) => (Some(value.clone()), with_cert),
            Err(e) => (
                Some(Credentials::Unavailable(format!(
                    "the X.509 identity in {config_name} cannot be used: {e}"
                ))),
                tls,
            ),
        });
    }
    let chain = tls::load_pem_certs(cert).map_err(|e| usage(format!("--x509-cert: {e}")))?;
    let pk = tls::load_private_key(key).map_err(|e| usage(format!("--x509-key: {e}")))?;
    let tls = tls
        .with_client_cert(chain, pk)
        .map_err(|e| usage(format!("--x509-cert/--x509-key: {e}")))?;
    Ok((Some(value.clone()), tls))
}

//! The subjects, issuers and validity of the certificates in a PEM file, for support
//! bundles: an expired Edge CA or identity certificate is a common cause of a device that
//! stopped connecting. Only `CERTIFICATE` blocks are parsed; any other block (a private
//! key) is skipped unread, so nothing secret can come out of here.

use x509_parser::pem::Pem;

/// One certificate's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    /// Whole days until it expires (negative once expired).
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after - now_unix).div_euclid(86_400)
    }
}

/// Every certificate of a PEM file, in order. A file without one, or with a block that is
/// not a readable certificate, is an error naming what was wrong.
pub fn read_pem(bytes: &[u8]) -> Result<Vec<CertInfo>, String> {
    let mut out = Vec::new();
    for (i, pem) in Pem::iter_from_buffer(bytes).enumerate() {
        let pem = pem.map_err(|e| format!("PEM block {}: {e}", i + 1))?;
        if pem.label != "CERTIFICATE" && pem.label != "TRUSTED CERTIFICATE" {
            continue;
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("certificate {}: {e}", i + 1))?;
        out.push(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        });
    }
    if out.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(out)
}

/// RFC 3339 (UTC) for Unix seconds.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_certificates_and_skips_keys() {
        let made = rcgen::generate_simple_self_signed(vec!["edge-ca.test".into()]).unwrap();
        let key = made.signing_key.serialize_pem();
        let text = format!("{key}\n{}", made.cert.pem());
        let certs = read_pem(text.as_bytes()).unwrap();
        assert_eq!(certs.len(), 1);
        assert!(certs[0].not_after > certs[0].not_before);
        assert!(
            read_pem(key.as_bytes()).is_err(),
            "a key alone holds no certificate"
        );
        assert!(read_pem(b"not pem").is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        let c = CertInfo {
            subject: String::new(),
            issuer: String::new(),
            not_before: 0,
            not_after: 86_400 * 10,
        };
        assert_eq!(c.days_left(0), 10);
        assert_eq!(c.days_left(86_400 * 11), -1);
    }
}

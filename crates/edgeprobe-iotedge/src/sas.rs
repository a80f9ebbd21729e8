//! Shared Access Signature tokens, exactly as PROTOCOLS.md documents them:
//!
//! `SharedAccessSignature sr={urlenc(resource)}&sig={urlenc(b64(HMAC-SHA256(b64dec(key), urlenc(resource) + "\n" + expiry)))}&se={expiry}[&skn={name}]`
//!
//! The simulated hub verifies tokens with the same module, but the tests check the signer
//! against a value computed independently from the formula, so the two cannot agree on a bug.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

use crate::secret::Secret;

/// The characters JavaScript's `encodeURIComponent` leaves alone, as the Azure SDKs do.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// How long the probes' tokens live: long enough for a run, short enough to be harmless.
pub const TOKEN_LIFETIME_SECS: u64 = 3600;

/// A SAS problem. Messages never contain the key or the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SasError {
    #[error("the shared access key is not valid base64")]
    KeyNotBase64,
    #[error("the shared access key is empty")]
    EmptyKey,
    #[error("the token is not a SharedAccessSignature")]
    NotSas,
    #[error("the token lacks {0}")]
    Missing(&'static str),
    #[error("the token expired")]
    Expired,
    #[error("the token's signature does not match")]
    BadSignature,
}

/// Percent-encodes like `encodeURIComponent`.
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URI_COMPONENT).to_string()
}

/// The resource a device's token is for: `{hub}/devices/{deviceId}`.
pub fn device_resource(hub: &str, device_id: &str) -> String {
    format!("{hub}/devices/{device_id}")
}

/// The resource a module's token is for: `{hub}/devices/{deviceId}/modules/{moduleId}`.
pub fn module_resource(hub: &str, device_id: &str, module_id: &str) -> String {
    format!("{hub}/devices/{device_id}/modules/{module_id}")
}

/// What a SAS token's signature covers: `urlenc(resource) + "\n" + expiry`. The IoT Edge
/// workload API signs exactly this for a module.
pub fn string_to_sign(resource: &str, expiry: u64) -> String {
    format!("{}\n{expiry}", url_encode(resource))
}

/// A token from a signature made elsewhere (base64 HMAC-SHA256 of [`string_to_sign`]).
pub fn token_from_signature(resource: &str, signature_b64: &str, expiry: u64) -> Secret {
    Secret::new(format!(
        "SharedAccessSignature sr={}&sig={}&se={expiry}",
        url_encode(resource),
        url_encode(signature_b64)
    ))
}

/// `b64(HMAC-SHA256(b64dec(key), message))`: what a SAS signature (and the IoT Edge workload
/// API's `sign`) computes.
pub fn sign(key: &Secret, message: &str) -> Result<String, SasError> {
    let raw = B64
        .decode(key.expose().trim())
        .map_err(|_| SasError::KeyNotBase64)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&raw).map_err(|_| SasError::KeyNotBase64)?;
    mac.update(message.as_bytes());
    Ok(B64.encode(mac.finalize().into_bytes()))
}

/// Checks that a key decodes, without signing anything.
pub fn validate_key(key: &Secret) -> Result<(), SasError> {
    if key.expose().trim().is_empty() {
        return Err(SasError::EmptyKey);
    }
    B64.decode(key.expose().trim())
        .map(|_| ())
        .map_err(|_| SasError::KeyNotBase64)
}

/// Signs a token for `resource` that expires at `expiry` (Unix seconds).
pub fn token(
    resource: &str,
    key: &Secret,
    expiry: u64,
    key_name: Option<&str>,
) -> Result<Secret, SasError> {
    let sig = sign(key, &string_to_sign(resource, expiry))?;
    let mut token = token_from_signature(resource, &sig, expiry)
        .expose()
        .to_owned();
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.push_str(&url_encode(name));
    }
    Ok(Secret::new(token))
}

/// Derives a device key from a DPS enrollment-group key: `b64(HMAC-SHA256(b64dec(group), registrationId))`.
pub fn derive_device_key(group_key: &Secret, registration_id: &str) -> Result<Secret, SasError> {
    sign(group_key, registration_id).map(Secret::new)
}

/// What a verified token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The decoded resource (`{hub}/devices/{id}`).
    pub resource: String,
    pub expiry: u64,
}

/// Parses a token without checking the signature.
pub fn parse(token: &str) -> Result<(Claims, String, String), SasError> {
    let body = token
        .strip_prefix("SharedAccessSignature ")
        .ok_or(SasError::NotSas)?;
    let (mut sr, mut sig, mut se) = (None, None, None);
    for pair in body.split('&') {
        match pair.split_once('=') {
            Some(("sr", v)) => sr = Some(v),
            Some(("sig", v)) => sig = Some(v),
            Some(("se", v)) => se = Some(v),
            _ => {}
        }
    }
    let sr = sr.ok_or(SasError::Missing("sr"))?;
    let sig = sig.ok_or(SasError::Missing("sig"))?;
    let expiry: u64 = se
        .ok_or(SasError::Missing("se"))?
        .parse()
        .map_err(|_| SasError::Missing("a numeric se"))?;
    let resource = percent_decode_str(sr).decode_utf8_lossy().into_owned();
    let sig = percent_decode_str(sig).decode_utf8_lossy().into_owned();
    Ok((Claims { resource, expiry }, sr.to_owned(), sig))
}

/// Verifies a token against a key at time `now` (Unix seconds).
pub fn verify(token: &str, key: &Secret, now: u64) -> Result<Claims, SasError> {
    let (claims, sr, sig) = parse(token)?;
    if claims.expiry <= now {
        return Err(SasError::Expired);
    }
    let expected = sign(key, &format!("{sr}\n{}", claims.expiry))?;
    if expected != sig {
        return Err(SasError::BadSignature);
    }
    Ok(claims)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=";

    #[test]
    fn token_matches_the_documented_formula() {
        // Independent computation: the HMAC is done here with the raw crates, not via `sign`.
        let resource = "myhub.azure-devices.net/devices/dev 1";
        let expiry = 1_900_000_000u64;
        let enc_res = "myhub.azure-devices.net%2Fdevices%2Fdev%201";
        let mut mac = Hmac::<Sha256>::new_from_slice(&B64.decode(KEY).unwrap()).unwrap();
        mac.update(format!("{enc_res}\n{expiry}").as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        let sig_enc = sig
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let want = format!("SharedAccessSignature sr={enc_res}&sig={sig_enc}&se={expiry}");
        let got = token(resource, &Secret::new(KEY), expiry, None).unwrap();
        assert_eq!(got.expose(), want);
    }

    #[test]
    fn verify_accepts_own_tokens_and_rejects_tampering() {
        let key = Secret::new(KEY);
        let t = token("hub/devices/d", &key, 2000, Some("registration")).unwrap();
        assert!(t.expose().ends_with("&skn=registration"));
        assert_eq!(
            verify(t.expose(), &key, 1000).unwrap().resource,
            "hub/devices/d"
        );
        assert_eq!(verify(t.expose(), &key, 3000), Err(SasError::Expired));
        let other = Secret::new("b3RoZXJrZXk=");
        assert_eq!(
            verify(t.expose(), &other, 1000),
            Err(SasError::BadSignature)
        );
        assert_eq!(verify("Bearer x", &key, 0), Err(SasError::NotSas));
    }

    #[test]
    fn bad_keys_are_reported_without_echoing_them() {
        let err = token("r", &Secret::new("not base64 !!"), 1, None).unwrap_err();
        assert_eq!(err.to_string(), "the shared access key is not valid base64");
    }
}

//! A secret is a `String` that refuses to be shown: its `Debug` and `Display` print a
//! marker, so a secret cannot leak through a log line or an error message by accident.
//! Code that must send it on the wire asks for it explicitly with [`Secret::expose`].

use std::fmt;

/// The marker printed in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// A device key, SAS token, password or private key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Replaces every occurrence of each secret in `text` with the marker. Used on anything
/// that came from a peer or a file and might echo a secret back.
pub fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if s.0.len() >= 4 {
            out = out.replace(&s.0, REDACTED);
        }
    }
    out
}

/// Replaces secrets recognised by their form, whoever they belong to: what the run did not
/// know but a log line, a container's environment or a command's output may carry. SAS
/// tokens (whole), `sig=` query values, the key parts of connection strings, `Bearer` and
/// `Basic` credentials, JSON Web Tokens, `user:password@` in URLs, password-like settings
/// and PEM private keys. [`scrub`] removes the secrets the run knew; bundles apply both.
pub fn scrub_patterns(text: &str) -> String {
    static PATTERNS: std::sync::OnceLock<Vec<(regex::Regex, &'static str)>> =
        std::sync::OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            // A PEM private key, whole.
            (
                r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
                "-----BEGIN ${1}PRIVATE KEY----- <redacted> -----END ${1}PRIVATE KEY-----",
            ),
            // `SharedAccessSignature sr=...&sig=...&se=...`, whole: the token is the secret.
            (
                r#"SharedAccessSignature\s+[^\s"',;]+"#,
                "<redacted SAS token>",
            ),
            // Connection-string parts: `SharedAccessKey=...;`, `AccountKey=...`, and a
            // `SharedAccessSignature=` part whose token form did not match above.
            (
                r#"(?i)\b(SharedAccessKey|SharedAccessSignature|AccountKey|SasKey|PrimaryKey|SecondaryKey)=[^;\s"',&<]+"#,
                "${1}=<redacted>",
            ),
            // `sig=` of a SAS token or a signed URL's query.
            (r#"(?i)([?&\s"']sig|^sig)=[^&\s"',;<]+"#, "${1}=<redacted>"),
            // HTTP credentials, as headers or anywhere a log prints them: a token has a
            // digit or a base64 symbol, so "Basic connectivity" stays prose.
            (
                r"\b(Bearer|bearer|BEARER|Basic|BASIC)\s+[A-Za-z0-9\-._~+/]*[0-9+/][A-Za-z0-9\-._~+/]*=*",
                "${1} <redacted>",
            ),
            // JSON Web Tokens (registry and AAD tokens): header.payload.signature.
            (
                r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+",
                "<redacted JWT>",
            ),
            // `scheme://user:password@host`: proxies, registries.
            (
                r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\x22']+):[^@/\s\x22']+@",
                "${1}:<redacted>@",
            ),
            // `password=...`, `"password": "..."`, `passwd: ...`, `secret=...`.
            (
                r#"(?i)(\b(?:password|passwd|pwd|client_secret|secret|token|api_key|apikey)\b["']?\s*[:=]\s*["']?)[^\s"',;&}<]+"#,
                "${1}<redacted>",
            ),
        ]
        .into_iter()
        .filter_map(|(re, with)| regex::Regex::new(re).ok().map(|r| (r, with)))
        .collect()
    });
    let mut out = std::borrow::Cow::Borrowed(text);
    for (re, with) in patterns {
        if let std::borrow::Cow::Owned(s) = re.replace_all(&out, *with) {
            out = std::borrow::Cow::Owned(s);
        }
    }
    out.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_by_their_form() {
        let cases = [
            (
                "token: SharedAccessSignature sr=hub.azure-devices.net%2Fdevices%2Fd&sig=AbC%2Bdef123%3D&se=1700000000 ok",
                &["AbC%2Bdef123", "sr=hub"][..],
            ),
            (
                "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=c2VjcmV0LWtleQ==",
                &["c2VjcmV0LWtleQ"],
            ),
            (
                "EdgeHubConnectionString=HostName=h;ModuleId=$edgeHub;SharedAccessSignature=SharedAccessSignature sr=h&sig=zzTop99&se=1",
                &["zzTop99"],
            ),
            ("GET https://blob/x?sv=1&sig=q%2Fsignature9&se=2", &["q%2Fsignature9"]),
            ("Authorization: Bearer abcdefgh1jklmnop.qrs", &["abcdefgh1jklmnop"]),
            ("Proxy-Authorization: Basic YWxpY2U6c2VjcmV0", &["YWxpY2U6c2VjcmV0"]),
            (
                "token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl end",
                &["eyJzdWIiOiJ4In0", "c2lnbmF0dXJl"],
            ),
            ("https_proxy=http://alice:pr0xy-pw@proxy:3128", &["pr0xy-pw"]),
            (r#"{"password": "hunter22", "user": "u"}"#, &["hunter22"]),
            (
                "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----",
                &["MHcCAQEEIB"],
            ),
        ];
        for (text, secrets) in cases {
            let out = scrub_patterns(text);
            for s in secrets {
                assert!(!out.contains(s), "{s:?} survived in {out:?}");
            }
            assert!(
                out.contains(REDACTED) || out.contains("<redacted "),
                "{out}"
            );
        }
        // What is not a secret stays.
        let plain =
            "edgeHub connected to hub.azure-devices.net over Amqp; sig nature; Basic connectivity works";
        assert_eq!(scrub_patterns(plain), plain);
        let kept =
            scrub_patterns("HostName=h.azure-devices.net;DeviceId=dev-1;SharedAccessKey=x1y2z3");
        assert!(
            kept.contains("HostName=h.azure-devices.net;DeviceId=dev-1;"),
            "{kept}"
        );
        assert!(scrub_patterns("http://proxy:3128/x").contains("http://proxy:3128/x"));
    }

    #[test]
    fn secrets_never_format() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(scrub("pw=hunter2-very-secret!", &[&s]), "pw=<redacted>!");
    }
}

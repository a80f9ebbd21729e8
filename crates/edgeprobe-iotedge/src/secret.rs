//! A secret is a `String` that refuses to be shown: its `Debug` and `Display` print a
//! marker, so a secret cannot leak through a log line or an error message by accident.
//! Code that must send it on the wire asks for it explicitly with [`Secret::expose`].
//!
//! Anything that came from a peer or an error may still echo a secret back (a TLS server
//! that answers with what it read, a library error that prints the packet it choked on).
//! Such text passes through one [`Scrubber`], which knows every secret of the run in every
//! form it can travel in, and every shape of credential the probes send (SAS tokens, their
//! `sig=`, `Authorization` values, URL userinfo) even when the token itself was made on the
//! fly and never stored.

use std::fmt;

use base64::Engine as _;
use edgeprobe_core::runner::CheckResult;
use edgeprobe_core::Outcome;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

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

/// Secrets shorter than this are not searched for (they would redact ordinary words).
const MIN_SECRET: usize = 4;
/// A secret cut off at the start or end of a text (a preview of the peer's first bytes) is
/// redacted when at least this much of it shows.
const MIN_PARTIAL: usize = 8;

/// RFC 3986 unreserved characters stay as they are; everything else is `%XX`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Removes every secret of a run from text: the one place peer text and error text pass
/// through before they reach an outcome, a report, a note or a bundle.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Every form of every secret, longest first.
    forms: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} forms)", self.forms.len())
    }
}

impl Scrubber {
    /// A scrubber that still removes every credential shape (tokens, `sig=`,
    /// `Authorization`, URL passwords) but knows no secret by value.
    pub fn new() -> Self {
        Scrubber::default()
    }

    /// A scrubber for these secrets.
    pub fn of<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut s = Scrubber::new();
        for secret in secrets {
            s.add(secret);
        }
        s
    }

    /// Learns a secret in every form: raw, URL-encoded, base64 (standard and URL-safe, with
    /// and without padding), and for a SAS token its `sig=` value, encoded and decoded.
    pub fn add(&mut self, secret: &Secret) {
        self.add_str(secret.expose());
        let trimmed = secret.expose().trim();
        if trimmed != secret.expose() {
            self.add_str(trimmed);
        }
    }

    /// Learns a user and password pair as HTTP Basic credentials (`user:password`, base64).
    pub fn add_basic(&mut self, user: &str, password: &Secret) {
        self.add(password);
        self.add_str(&format!("{user}:{}", password.expose()));
    }

    /// Adds every form of everything another scrubber knows.
    pub fn extend(&mut self, other: &Scrubber) {
        self.forms.extend(other.forms.iter().cloned());
        self.settle();
    }

    fn add_str(&mut self, raw: &str) {
        if raw.len() < MIN_SECRET {
            return;
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let b64_np = base64::engine::general_purpose::STANDARD_NO_PAD;
        let b64_url = base64::engine::general_purpose::URL_SAFE;
        let b64_url_np = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let encoded = utf8_percent_encode(raw, URL_ENCODE).to_string();
        let mut forms = vec![
            raw.to_owned(),
            encoded.clone(),
            encoded.to_ascii_lowercase(),
            utf8_percent_encode(raw, NON_ALPHANUMERIC).to_string(),
            percent_decode_str(raw).decode_utf8_lossy().into_owned(),
            b64.encode(raw),
            b64_np.encode(raw),
            b64_url.encode(raw),
            b64_url_np.encode(raw),
        ];
        for sig in raw
            .split(['&', ' ', '?'])
            .filter_map(|part| part.strip_prefix("sig="))
        {
            forms.push(sig.to_owned());
            forms.push(percent_decode_str(sig).decode_utf8_lossy().into_owned());
        }
        forms.retain(|f| f.len() >= MIN_SECRET);
        self.forms.extend(forms);
        self.settle();
    }

    fn settle(&mut self) {
        self.forms
            .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        self.forms.dedup();
    }

    /// The text with every known secret and every credential shape replaced by the marker.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        out = self.scrub_partial(out);
        out = redact_after(&out, "SharedAccessSignature", true, TOKEN_END);
        out = redact_after(&out, "sig=", false, VALUE_END);
        out = redact_after(&out, "sig%3d", false, VALUE_END);
        out = redact_after(&out, "SharedAccessKey=", false, VALUE_END);
        out = redact_after(&out, "authorization", false, HEADER_END);
        redact_userinfo(&out)
    }

    /// A secret cut off by the end (or start) of the text: a preview of the peer's bytes.
    fn scrub_partial(&self, mut text: String) -> String {
        for form in &self.forms {
            if form.len() <= MIN_PARTIAL {
                continue;
            }
            let longest = (MIN_PARTIAL..form.len())
                .rev()
                .find(|&n| form.is_char_boundary(n) && text.ends_with(&form[..n]));
            if let Some(n) = longest {
                text.truncate(text.len() - n);
                text.push_str(REDACTED);
            }
            let longest = (MIN_PARTIAL..form.len()).rev().find(|&n| {
                let start = form.len() - n;
                form.is_char_boundary(start) && text.starts_with(&form[start..])
            });
            if let Some(n) = longest {
                text.replace_range(..n, REDACTED);
            }
        }
        text
    }

    /// Scrubs a JSON value's strings in place.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.scrub(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }

    /// Scrubs everything in an outcome that people or tools read.
    pub fn scrub_outcome(&self, outcome: &mut Outcome) {
        outcome.message = self.scrub(&outcome.message);
        if let Some(fix) = &mut outcome.fix {
            *fix = self.scrub(fix);
        }
        for phase in &mut outcome.phases {
            for (_, value) in &mut phase.detail {
                self.scrub_json(value);
            }
        }
        for learned in &mut outcome.learned {
            let value = learned.value_mut();
            *value = self.scrub(value);
        }
    }

    /// Scrubs every result of a run.
    pub fn scrub_results(&self, results: &mut [CheckResult]) {
        for r in results {
            self.scrub_outcome(&mut r.outcome);
        }
    }
}

/// Where a token that follows `SharedAccessSignature ` ends.
const TOKEN_END: &[char] = &[
    ' ', '\t', '\r', '\n', '"', '\'', ',', ';', '<', '>', ')', '\\',
];
/// Where a `key=value` value ends.
const VALUE_END: &[char] = &[
    '&', ' ', '\t', '\r', '\n', '"', '\'', ',', ';', '<', '>', ')', '\\',
];
/// Where a header value ends (values such as `Basic xyz` contain spaces).
const HEADER_END: &[char] = &['\r', '\n', '"', '\'', ',', ';', '<', '>', '\\', '}'];

/// Replaces what follows each (ASCII case-insensitive) `marker` up to the first `end`
/// character with the marker. `with_marker` also replaces the marker itself. After
/// `authorization`, a separator (`:`, `=`, quotes, spaces) is skipped first.
fn redact_after(text: &str, marker: &str, with_marker: bool, end: &[char]) -> String {
    let lower = text.to_ascii_lowercase();
    let needle = marker.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(&needle) {
        let start = pos + found;
        let mut value_start = start + needle.len();
        let header = marker == "authorization";
        if header {
            let skipped = text[value_start..]
                .find(|c: char| !matches!(c, ':' | '=' | '"' | '\'' | ' ' | '\t'))
                .unwrap_or(text.len() - value_start);
            // `authorization` as a plain word (no `:` or `=` after it) is not a header.
            if !text[value_start..value_start + skipped].contains([':', '=']) {
                out.push_str(&text[pos..value_start]);
                pos = value_start;
                continue;
            }
            value_start += skipped;
        } else if with_marker {
            value_start += text[value_start..]
                .find(|c: char| c != ' ')
                .unwrap_or(text.len() - value_start);
        }
        let value_end = text[value_start..]
            .find(end)
            .map(|i| value_start + i)
            .unwrap_or(text.len());
        let value = &text[value_start..value_end];
        if with_marker {
            out.push_str(&text[pos..start]);
            out.push_str(REDACTED);
            // A token is `key=value` pairs; prose after the word stays.
            if !value.contains('=') {
                out.push_str(&text[start + needle.len()..value_end]);
            }
        } else {
            out.push_str(&text[pos..value_start]);
            if !value.is_empty() && value != REDACTED {
                out.push_str(REDACTED);
            } else {
                out.push_str(value);
            }
        }
        pos = value_end;
    }
    out.push_str(&text[pos..]);
    out
}

/// `scheme://user:password@host` keeps the user and loses the password.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = text[pos..].find("://") {
        let auth_start = pos + found + 3;
        out.push_str(&text[pos..auth_start]);
        let auth_end = text[auth_start..]
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .map(|i| auth_start + i)
            .unwrap_or(text.len());
        let authority = &text[auth_start..auth_end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, pass)) if pass != REDACTED => {
                    out.push_str(&format!("{user}:{REDACTED}@{host}"));
                }
                _ => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        pos = auth_end;
    }
    out.push_str(&text[pos..]);
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

    const KEY: &str = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3Rz+/==";

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
        assert_eq!(
            Scrubber::of([&s]).scrub("pw=hunter2-very-secret!"),
            "pw=<redacted>!"
        );
    }

    #[test]
    fn every_form_of_a_key_is_scrubbed() {
        let scrubber = Scrubber::of([&Secret::new(KEY)]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        let url = utf8_percent_encode(KEY, NON_ALPHANUMERIC).to_string();
        for text in [
            format!("echo {KEY} back"),
            format!("echo {b64} back"),
            format!("echo {url} back"),
            format!("echo {} back", url.to_ascii_lowercase()),
            format!("preview: ...{}", &KEY[..12]),
            format!("{} (cut)", &KEY[20..]),
        ] {
            let out = scrubber.scrub(&text);
            assert!(
                !out.contains(&KEY[..12]) && !out.contains(&KEY[20..]),
                "{out}"
            );
            assert!(!out.contains(&b64) && !out.contains(&url), "{out}");
            assert!(out.contains(REDACTED), "{text} -> {out}");
        }
    }

    #[test]
    fn credential_shapes_are_scrubbed_without_knowing_them() {
        let scrubber = Scrubber::new();
        let cases = [
            "password: \"SharedAccessSignature sr=h%2Fdevices%2Fd&sig=abc%2Bdef%3D&se=1\" }",
            "GET / HTTP/1.1\r\nAuthorization: SharedAccessSignature sr=x&sig=q&se=1\r\n",
            "Proxy-Authorization: Basic YWxpY2U6UHIweHlQNHNz\r\n",
            "{\"authorization\": \"Basic YWxpY2U6UHIweHlQNHNz\"}",
            "HostName=h;DeviceId=d;SharedAccessKey=YWJjZA==",
            "proxy http://alice:Pr0xyP4ss@proxy.corp:3128 refused",
            "sig=abcdef&se=2",
        ];
        for text in cases {
            let out = scrubber.scrub(text);
            for needle in [
                "sig=abc",
                "sr=h",
                "YWxpY2U6",
                "YWJjZA",
                "Pr0xyP4ss",
                "sig=q",
            ] {
                assert!(!out.contains(needle), "{text:?} -> {out:?}");
            }
            assert!(out.contains(REDACTED), "{text:?} -> {out:?}");
        }
        // Ordinary words stay.
        let plain = "authorization failed: the hub said 401; Basic realm=\"squid\"";
        assert_eq!(scrubber.scrub(plain), plain);
    }

    #[test]
    fn an_outcome_is_scrubbed_everywhere_people_read() {
        use edgeprobe_core::{Phase, PhaseName, PhaseStatus, Reason, Status};
        let scrubber = Scrubber::of([&Secret::new(KEY)]);
        let mut o = Outcome::new(Status::Fail, Reason::ProtocolError, format!("got {KEY}"));
        o.fix = Some(format!("check {KEY}"));
        o.learned
            .push(edgeprobe_core::Learned::DataEndpoint(KEY.into()));
        o.phases.push(Phase {
            name: PhaseName::Protocol,
            status: PhaseStatus::Fail,
            started: std::time::Duration::ZERO,
            duration: std::time::Duration::ZERO,
            detail: vec![(
                "peer".into(),
                serde_json::json!({"said": [KEY, "sig=abc&se=1"]}),
            )],
        });
        scrubber.scrub_outcome(&mut o);
        let all = format!(
            "{} {:?} {:?} {}",
            o.message, o.fix, o.learned, o.phases[0].detail[0].1
        );
        assert!(!all.contains(KEY) && !all.contains("sig=abc"), "{all}");
    }

    #[test]
    fn basic_credentials_are_known_in_base64() {
        let mut scrubber = Scrubber::new();
        scrubber.add_basic("alice", &Secret::new("Pr0xyP4ss"));
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:Pr0xyP4ss");
        let out = scrubber.scrub(&format!("the peer said {b64} and Pr0xyP4ss"));
        assert!(!out.contains(&b64) && !out.contains("Pr0xyP4ss"), "{out}");
    }
}

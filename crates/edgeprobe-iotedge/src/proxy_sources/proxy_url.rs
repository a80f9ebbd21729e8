//! A proxy URL taken apart leniently, compared normalized (scheme and host without case,
//! port 3128 when absent, path ignored) and shown with its password redacted.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::DEFAULT_PROXY_PORT;
use crate::secret::REDACTED;

/// A proxy URL taken apart leniently (people write `host:port`, `http://host/`, ...).
/// No `Debug`: it holds the password.
#[derive(PartialEq, Eq)]
pub(super) struct ProxyUrl {
    scheme: String,
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: String,
}

impl ProxyUrl {
    pub(super) fn parse(raw: &str) -> ProxyUrl {
        let s = raw.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_owned(), s),
        };
        // The password may hold '@' or '/': the host starts after the last '@'.
        let (userinfo, after) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        // The url crate reads the authority under a scheme of ours, which has no default
        // port: `:80` stays what the user wrote (http's own would drop it), and the host is
        // taken as written. One it cannot read is shown as written, without a port.
        let (host, port) = match url::Url::parse(&format!("proxy://{after}")) {
            Ok(u) => (
                u.host_str().unwrap_or_default().to_owned(),
                u.port()
                    .map_or_else(|| DEFAULT_PROXY_PORT.to_owned(), |p| p.to_string()),
            ),
            Err(_) => (
                after
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                String::new(),
            ),
        };
        let (user, password) = userinfo.map(userinfo_parts).unwrap_or_default();
        ProxyUrl {
            scheme,
            user,
            password,
            host: host.to_ascii_lowercase(),
            port,
        }
    }

    /// `scheme://user:<redacted>@host:port`.
    pub(super) fn shown(&self) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(user) = &self.user {
            out.push_str(user);
            if self.password.is_some() {
                out.push(':');
                out.push_str(REDACTED);
            }
            out.push('@');
        }
        out.push_str(&self.host);
        if !self.port.is_empty() {
            out.push(':');
            out.push_str(&self.port);
        }
        out
    }

    pub(super) fn same_but_password(&self, other: &ProxyUrl) -> bool {
        self.password != other.password
            && self.scheme == other.scheme
            && self.user == other.user
            && self.host == other.host
            && self.port == other.port
    }
}

/// A URL's userinfo as user and password, decoded. Escaped first, so that the url crate
/// keeps in it what would otherwise end it (`/`, `?`, `#`, `@`).
fn userinfo_parts(userinfo: &str) -> (Option<String>, Option<String>) {
    const ENDS_USERINFO: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'/')
        .add(b'?')
        .add(b'#')
        .add(b'@')
        .add(b'[')
        .add(b']')
        .add(b'\\');
    let escaped = utf8_percent_encode(userinfo, ENDS_USERINFO);
    let decode = |v: &str| percent_decode_str(v).decode_utf8_lossy().into_owned();
    match url::Url::parse(&format!("proxy://{escaped}@host")) {
        Ok(u) => (Some(decode(u.username())), u.password().map(decode)),
        // Unreadable userinfo is still someone's: keep it secret, as a password.
        Err(_) => (Some(String::new()), Some(decode(userinfo))),
    }
}

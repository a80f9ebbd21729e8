//! HTTP CONNECT tunnels, the only way the WebSocket protocols, HTTPS, DPS and registries
//! cross a corporate proxy. The proxy is its own phase: its address, the TLS version for an
//! `https://` proxy, the CONNECT status and the time it took. Credentials come from the proxy
//! URL and never appear in any output.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{PhaseName, PhaseStatus, Reason};
use edgeprobe_iotedge::secret::Secret;
use http::{Method, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::time::Instant;

use crate::tls::{self, TlsFacts, TlsSettings};
use crate::BoxIo;
use crate::Failure;

/// An HTTP proxy from `--proxy`, the IoT Edge config or `HTTPS_PROXY`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `http` or `https` (TLS to the proxy itself).
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl ProxyConfig {
    /// Parses `http://[user[:pass]@]host[:port][/]`. No error repeats any part of the
    /// URL's userinfo (a password may hold `/`, `:` or `@`), so errors name only the scheme
    /// or what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let with_scheme = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let scheme = with_scheme
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            // Only a well-formed scheme is shown: anything else may be userinfo.
            let plain = scheme.len() <= 10
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
            return Err(if plain {
                format!("proxy scheme {scheme:?} is not supported (use http:// or https://)")
            } else {
                "the proxy URL does not start with http:// or https://".to_owned()
            });
        }
        let parsed =
            url::Url::parse(&with_scheme).map_err(|e| format!("not a usable proxy URL ({e})"))?;
        let host = match parsed.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err("proxy URL has no host".into()),
        };
        if host.is_empty() {
            return Err("proxy URL has no host".into());
        }
        let default_port = if scheme == "https" { 443 } else { 3128 };
        // The url crate drops a port equal to the scheme's default (80, 443): an explicit
        // `:80` is still what the user meant, not our 3128.
        let port = match parsed.port() {
            Some(p) => p,
            None if explicit_port(&with_scheme) => {
                parsed.port_or_known_default().unwrap_or(default_port)
            }
            None => default_port,
        };
        if port == 0 {
            return Err("proxy port 0 is not usable".into());
        }
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let username = Some(decode(parsed.username())).filter(|u| !u.is_empty());
        let password = parsed.password().map(|p| Secret::new(decode(p)));
        let username = username.or_else(|| password.as_ref().map(|_| String::new()));
        Ok(ProxyConfig {
            scheme,
            host,
            port,
            username,
            password,
        })
    }

    /// The URL with the password replaced, for reports.
    pub fn redacted(&self) -> String {
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:{}@", edgeprobe_iotedge::secret::REDACTED),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{user}{host}:{}", self.scheme, self.port)
    }

    /// The URL with its credentials, for handing the proxy on to another process (the
    /// container vantage) through its environment. Never print it.
    pub fn url_with_credentials(&self) -> Secret {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let user = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p.expose())),
            (Some(u), None) => format!("{}@", enc(u)),
            _ => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        Secret::new(format!("{}://{user}{host}:{}", self.scheme, self.port))
    }

    fn basic_auth(&self) -> Option<String> {
        let user = self.username.as_ref()?;
        let pass = self.password.as_ref().map(|p| p.expose()).unwrap_or("");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Some(format!("Basic {token}"))
    }
}

/// Whether the URL's authority names a port (`host:80`), even the scheme's default: read
/// again under a scheme of ours, which has no default port for the url crate to drop.
fn explicit_port(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    url::Url::parse(&format!("proxy://{rest}")).is_ok_and(|u| u.port().is_some())
}

/// Whether `host` is excluded from proxying by a `NO_PROXY` list (comma-separated names,
/// `.suffix` / `*.suffix` domains, `*` for all, IP addresses).
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .any(|entry| {
            if entry.is_empty() {
                return false;
            }
            if entry == "*" {
                return true;
            }
            let entry = entry.split(':').next().unwrap_or_default().to_owned();
            let suffix = entry.trim_start_matches('*').trim_start_matches('.');
            host == suffix || host.ends_with(&format!(".{suffix}"))
        })
}

/// Opens a CONNECT tunnel to `host:port` over `stream` (connected to the proxy), recording
/// the `proxy` phase. For an `https://` proxy the TLS handshake with the proxy (trusting what
/// the endpoints are trusted with: `--trust-bundle`) is part of that phase.
pub async fn connect(
    stream: BoxIo,
    proxy: &ProxyConfig,
    tls_settings: &TlsSettings,
    host: &str,
    port: u16,
    rec: &PhaseRecorder,
    deadline: Instant,
) -> Result<BoxIo, Failure> {
    rec.start(PhaseName::Proxy);
    rec.note("proxy", proxy.redacted());
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    rec.note("connect", authority.clone());
    let run = async {
        let stream = if proxy.scheme == "https" {
            tls_to_proxy(stream, proxy, tls_settings, rec, deadline).await?
        } else {
            stream
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| {
                    (
                        Reason::ProxyUnreachable,
                        format!("proxy {}: {e}", proxy.redacted()),
                    )
                })?;
        tokio::spawn(conn.with_upgrades());
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(authority.as_str())
            .header(http::header::HOST, authority.as_str());
        if let Some(auth) = proxy.basic_auth() {
            req = req.header(http::header::PROXY_AUTHORIZATION, auth);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| (Reason::ProxyDenied, format!("cannot build CONNECT: {e}")))?;
        let resp = sender.send_request(req).await.map_err(|e| {
            (
                Reason::ProxyUnreachable,
                format!("proxy {} did not answer CONNECT: {e}", proxy.redacted()),
            )
        })?;
        let status = resp.status().as_u16();
        rec.note("status", status);
        match status {
            200..=299 => {
                let upgraded = hyper::upgrade::on(resp).await.map_err(|e| {
                    (Reason::ProxyDenied, format!("proxy tunnel broke after {status}: {e}"))
                })?;
                Ok(Box::new(TokioIo::new(upgraded)) as BoxIo)
            }
            // 407 is the standard answer; tinyproxy answers CONNECT with 401 instead.
            401 | 407 => Err((
                Reason::ProxyAuthRequired,
                match proxy.username {
                    Some(_) => format!("proxy {} refused the credentials ({status})", proxy.redacted()),
                    None => format!(
                        "proxy {} wants credentials ({status}): put them in the proxy URL (http://user:password@host:port)",
                        proxy.redacted()
                    ),
                },
            )),
            _ => {
                let server = resp
                    .headers()
                    .get(http::header::SERVER)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| format!(", Server: {s}"))
                    .unwrap_or_default();
                Err((
                    Reason::ProxyDenied,
                    format!(
                        "proxy {} refused CONNECT to {authority} with HTTP {status}{server}: ask for {authority} to be allowed",
                        proxy.redacted()
                    ),
                ))
            }
        }
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok(io)) => {
            rec.end(PhaseStatus::Ok, Vec::new());
            Ok(io)
        }
        Ok(Err(f)) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            Err(f)
        }
        Err(_) => {
            rec.end(PhaseStatus::Fail, Vec::new());
            Err((
                Reason::ProxyUnreachable,
                format!("proxy {} did not answer CONNECT in time", proxy.redacted()),
            ))
        }
    }
}

/// TLS with an `https://` proxy itself. A check's `tls` phase is the endpoint's handshake
/// (its certificate, its version), so this one runs on a scratch recorder and what it
/// learned goes into the proxy phase: `tls` (the version), or `tls_error`.
async fn tls_to_proxy(
    stream: BoxIo,
    proxy: &ProxyConfig,
    settings: &TlsSettings,
    rec: &PhaseRecorder,
    deadline: Instant,
) -> Result<BoxIo, Failure> {
    let scratch = PhaseRecorder::new();
    let result = tls::handshake(
        stream,
        &proxy.host,
        settings,
        &scratch,
        deadline,
        &mut TlsFacts::default(),
    )
    .await;
    let phase = scratch.finish().pop();
    let detail = |key: &str| phase.as_ref().and_then(|p| p.detail(key)).cloned();
    match result {
        Ok(io) => {
            rec.note("tls", detail("version").unwrap_or_default());
            Ok(Box::new(io))
        }
        Err((_, m)) => {
            if let Some(e) = detail("error") {
                rec.note("tls_error", e);
            }
            Err((
                Reason::ProxyUnreachable,
                format!("TLS to the proxy {}: {m}", proxy.redacted()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_show_the_password() {
        let p = ProxyConfig::parse("http://alice:s%40cret@proxy.corp:8080/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 8080));
        assert_eq!(p.username.as_deref(), Some("alice"));
        assert_eq!(p.password.as_ref().unwrap().expose(), "s@cret");
        assert_eq!(p.redacted(), "http://alice:<redacted>@proxy.corp:8080");
        assert!(!format!("{p:?}").contains("cret"));
        assert_eq!(ProxyConfig::parse("proxy:3128").unwrap().port, 3128);
        assert!(ProxyConfig::parse("socks5://x:1").is_err());
        assert!(ProxyConfig::parse("http://x:notaport").is_err());
        assert_eq!(ProxyConfig::parse("http://p:80").unwrap().port, 80);
        assert_eq!(ProxyConfig::parse("https://p").unwrap().port, 443);
        assert_eq!(ProxyConfig::parse("http://[::1]:81").unwrap().host, "::1");
    }

    /// Regression: a password holding `/` made the parser read it as the port, and the
    /// error printed it (`proxy port "Pr0xyP4ss" is not a number`).
    #[test]
    fn no_proxy_url_error_shows_the_userinfo() {
        for url in [
            "http://alice:Pr0xyP4ss/x@proxy.corp:3128",
            "http://alice:Pr0xyP4ss@proxy.corp:99999",
            "http://alice:Pr0xyP4ss@proxy.corp:0",
            "http://alice:Pr0xyP4ss@:3128",
            "socks5://alice:Pr0xyP4ss@proxy.corp:1080",
            "http://alice:Pr0xyP4ss@proxy corp:3128",
        ] {
            let e = ProxyConfig::parse(url).unwrap_err();
            assert!(
                !e.contains("Pr0xyP4ss") && !e.contains("alice"),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn no_proxy_lists_match_names_and_suffixes() {
        assert!(no_proxy_matches(
            "localhost,.corp.example",
            "hub.corp.example"
        ));
        assert!(no_proxy_matches(
            "*.azure-devices.net",
            "h.azure-devices.net"
        ));
        assert!(no_proxy_matches("*", "anything"));
        assert!(!no_proxy_matches("corp.example", "evilcorp.example"));
    }
}

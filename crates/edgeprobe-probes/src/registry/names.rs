//! The registry's names and formats: image references, `WWW-Authenticate` challenges,
//! URLs and `host[:port]` authorities, manifests' platforms and media types.

use serde_json::{json, Value};

use crate::https::HttpAnswer;

/// An image reference split the way Docker splits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]` as written, `None` for Docker Hub (no registry part).
    pub registry: Option<String>,
    /// E.g. `azureiotedge-agent`, `library/alpine`.
    pub repository: String,
    /// A tag or a `sha256:` digest.
    pub reference: String,
}

impl ImageRef {
    /// Parses `[registry/]repository[:tag][@digest]`; the first path component is a registry
    /// when it has a `.` or a `:`, or is `localhost` (Docker's rule). `None` if empty.
    pub fn parse(image: &str) -> Option<ImageRef> {
        let image = image.trim();
        if image.is_empty() {
            return None;
        }
        let (registry, rest) = match image.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('$') =>
            {
                (Some(first.to_owned()), rest)
            }
            _ => (None, image),
        };
        let (name, reference) = match rest.split_once('@') {
            Some((name, digest)) => (name, digest.to_owned()),
            None => {
                let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
                match rest[last_slash..].rfind(':') {
                    Some(i) => (
                        &rest[..last_slash + i],
                        rest[last_slash + i + 1..].to_owned(),
                    ),
                    None => (rest, "latest".to_owned()),
                }
            }
        };
        // A tag and a digest: the digest wins, as in Docker.
        let name = name.split(':').next().unwrap_or(name);
        if name.is_empty() || reference.is_empty() {
            return None;
        }
        let repository = match registry {
            None if !name.contains('/') => format!("library/{name}"),
            _ => name.to_owned(),
        };
        Some(ImageRef {
            registry,
            repository,
            reference,
        })
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic {
        realm: Option<String>,
    },
}

impl Challenge {
    /// Parses `Bearer realm="...",service="..."` or `Basic realm="..."`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        let params = auth_params(params);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            Some(Challenge::Bearer {
                realm: get("realm")?,
                service: get("service"),
            })
        } else if scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic {
                realm: get("realm"),
            })
        } else {
            None
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Challenge::Bearer { realm, service } => match service {
                Some(s) => format!("Bearer, token service {realm} for {s}"),
                None => format!("Bearer, token service {realm}"),
            },
            Challenge::Basic { .. } => "Basic".into(),
        }
    }
}

/// `key="value", key=value` pairs; quoted values may hold commas and escaped quotes.
pub(super) fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

/// An absolute `http(s)://host[:port]/path` URL, split for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
}

impl Url {
    /// Parses with the `url` crate; `None` unless it is an absolute http(s) URL with a host.
    pub fn parse(url: &str) -> Option<Url> {
        let u = url::Url::parse(url.trim()).ok()?;
        let https = match u.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = match u.host()? {
            url::Host::Domain(d) => d.to_owned(),
            url::Host::Ipv4(a) => a.to_string(),
            url::Host::Ipv6(a) => a.to_string(),
        };
        let port = u.port_or_known_default()?;
        let path_and_query = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        };
        Some(Url {
            https,
            host,
            port,
            path_and_query,
        })
    }

    /// `host` on the default port, else `host:port`.
    pub fn authority(&self) -> String {
        host_port(&self.host, self.port, if self.https { 443 } else { 80 })
    }
}

/// Splits `host[:port]` (`[v6]:port` too); `None` when the port is not a number.
pub fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_owned(), port.parse().ok()?)),
        Some(_) => Some((s.to_owned(), default_port)), // a bare IPv6 address
        None => Some((s.to_owned(), default_port)),
    }
    .filter(|(h, _)| !h.is_empty())
}

/// `host` when `port` is the default, else `host:port` (brackets for IPv6).
pub fn host_port(host: &str, port: u16, default_port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// The Docker platform name of this machine's architecture.
pub(super) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        other => other,
    }
}

/// A 200 to `/v2/` counts when it looks like a registry: its API version header, or JSON.
pub(super) fn is_registry_200(a: &HttpAnswer) -> bool {
    a.header("docker-distribution-api-version").is_some() || a.body.trim_start().starts_with('{')
}

pub(super) fn api_detail(a: &HttpAnswer) -> edgeprobe_core::Detail {
    let mut d: edgeprobe_core::Detail = vec![("status".into(), json!(a.status))];
    for h in ["docker-distribution-api-version", "server", "content-type"] {
        if let Some(v) = a.header(h) {
            d.push((h.into(), json!(v)));
        }
    }
    if let Some(t) = a.title() {
        d.push(("title".into(), json!(t)));
    }
    d
}

pub(super) fn media_type(a: &HttpAnswer, manifest: &Value) -> String {
    manifest
        .get("mediaType")
        .and_then(Value::as_str)
        .or_else(|| a.header("content-type"))
        .unwrap_or("unknown")
        .to_owned()
}

/// The registry's error code (`{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`), if any.
pub(super) fn registry_error(a: &HttpAnswer) -> Option<String> {
    let body: Value = serde_json::from_str(&a.body).ok()?;
    body.get("errors")?
        .as_array()?
        .first()?
        .get("code")?
        .as_str()
        .map(str::to_owned)
}

/// The manifest to follow in an index: linux on this machine's architecture, else
/// linux/amd64, else the first. Returns its digest and `os/arch`.
pub(super) fn choose_platform(list: &[Value]) -> Option<(String, String)> {
    let platform = |m: &Value| -> (String, String) {
        let p = m.get("platform");
        let get = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        (get("os"), get("architecture"))
    };
    let pick = |arch: &str| {
        list.iter()
            .find(|m| platform(m) == ("linux".to_owned(), arch.to_owned()))
    };
    let chosen = pick(host_arch())
        .or_else(|| pick("amd64"))
        .or_else(|| list.first())?;
    let digest = chosen.get("digest")?.as_str()?.to_owned();
    let (os, arch) = platform(chosen);
    let plat = if os.is_empty() {
        "unknown platform".to_owned()
    } else {
        format!("{os}/{arch}")
    };
    Some((digest, plat))
}

//! A container registry, as the Moby engine uses it to pull module images (Docker Registry
//! HTTP API v2), read-only:
//!
//! 1. protocol: `GET /v2/` answers 200, or 401 with a `WWW-Authenticate` challenge
//!    (`Bearer realm=...,service=...` or `Basic realm=...`): that is the Registry API.
//! 2. auth, for the repository of the configured image on this registry: a pull token from
//!    the challenge's realm (anonymous, or Basic with the configured credentials), or Basic
//!    auth directly; the manifest (an index or list is followed to one platform's manifest);
//!    `HEAD` of its first layer without following redirects, whose `Location` names the
//!    data endpoint the blob downloads come from. Nothing is pushed, no blob body is read.
//!
//! Each further request opens its own connection through the same layers (DNS, TCP, the
//! proxy when configured, TLS) under the run's deadline; their timings go into the auth
//! phase's detail. The data endpoint goes into [`Outcome::learned`] as a
//! [`Learned::DataEndpoint`] for the binary's second stage to check.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{AuthState, Learned, Outcome, PhaseName, PhaseStatus, Reason, Status};
use edgeprobe_iotedge::secret::{Scrubber, Secret};
use http::Method;
use serde_json::{json, Value};

use crate::dns::Failure;
use crate::fix::fix_for;
use crate::https::{self, HttpAnswer, HttpRequest};
use crate::path::Path;
use crate::BoxIo;

/// What the Moby engine accepts for a manifest, newest formats first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// What the run knows about one registry: the image to try a pull of, and the credentials
/// configured for it (`[agent.config.auth]`).
#[derive(Clone, Debug, Default)]
pub struct RegistryAccess {
    pub host: String,
    pub port: u16,
    pub image: Option<ImageRef>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

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

    fn describe(&self) -> String {
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
fn auth_params(s: &str) -> Vec<(String, String)> {
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

/// An absolute `http(s)://host[:port]/path` URL, split. `None` for anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
}

impl Url {
    pub fn parse(url: &str) -> Option<Url> {
        let lower = url.to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("https://") {
            (true, &url[8..])
        } else if lower.starts_with("http://") {
            (false, &url[7..])
        } else {
            return None;
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let default_port = if https { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port)?;
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
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
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        other => other,
    }
}

/// The probe after TLS: `/v2/`, then the pull walk.
pub(crate) async fn probe(ctx: &Path<'_>, io: BoxIo) -> Result<Outcome, Failure> {
    let access = ctx
        .s
        .registries
        .iter()
        .find(|r| r.host.eq_ignore_ascii_case(ctx.host) && r.port == ctx.port);
    let mut walk = Walk {
        ctx,
        access,
        requests: Vec::new(),
        scrub: Vec::new(),
    };
    walk.run(io).await
}

struct Walk<'a> {
    ctx: &'a Path<'a>,
    access: Option<&'a RegistryAccess>,
    /// One entry per further request, for the auth phase's detail.
    requests: Vec<Value>,
    /// Tokens and Basic headers to scrub from anything a peer says.
    scrub: Vec<Secret>,
}

/// How the walk ended after the Registry API was proven.
struct Stop {
    status: Status,
    reason: Reason,
    auth: AuthState,
    message: String,
    fix: Option<String>,
}

impl Walk<'_> {
    fn authority(&self) -> String {
        host_port(self.ctx.host, self.ctx.port, 443)
    }

    fn credentials(&self) -> Option<(&str, &Secret)> {
        if self.ctx.s.no_auth {
            return None;
        }
        let a = self.access?;
        Some((a.username.as_deref().unwrap_or(""), a.password.as_ref()?))
    }

    fn basic(&mut self) -> Option<String> {
        let (user, pass) = self.credentials()?;
        let encoded = B64.encode(format!("{user}:{}", pass.expose()));
        self.scrub.push(Secret::new(encoded.clone()));
        Some(format!("Basic {encoded}"))
    }

    fn clean(&self, text: &str) -> String {
        let mut scrubber = Scrubber::of(&self.scrub);
        if let Some(a) = self.access {
            if let Some(password) = &a.password {
                scrubber.add_basic(a.username.as_deref().unwrap_or_default(), password);
            }
        }
        scrubber.scrub(text)
    }

    async fn run(&mut self, io: BoxIo) -> Result<Outcome, Failure> {
        let ctx = self.ctx;
        let req = HttpRequest {
            method: Method::GET,
            host: self.authority(),
            path_and_query: "/v2/".into(),
            headers: Vec::new(),
            body: None,
        };
        ctx.rec.start(PhaseName::Protocol);
        ctx.rec.note("request", "GET /v2/");
        let answer = match https::exchange(io, &req, ctx.deadline).await {
            Ok(a) => a,
            Err(f) => {
                ctx.rec.end(PhaseStatus::Fail, Vec::new());
                return Err(f);
            }
        };
        let mut detail = api_detail(&answer);
        let challenge = answer.header("www-authenticate").and_then(Challenge::parse);
        let api = match (answer.status, &challenge) {
            (200, _) if is_registry_200(&answer) => "200".to_owned(),
            (401, Some(c)) => format!("401, {}", c.describe()),
            _ => {
                ctx.rec.end(PhaseStatus::Fail, detail);
                let mut o = Outcome::new(
                    Status::Fail,
                    Reason::WrongService,
                    format!(
                        "expected the Registry API's answer to GET /v2/ (200, or 401 with a Bearer or Basic challenge), got {}: a proxy, captive portal or another service answered",
                        answer.who()
                    ),
                );
                o.fix = fix_for(Reason::WrongService, ctx.check.protocol, ctx.host, ctx.port);
                o.clock_offset_secs = answer.clock_offset_secs();
                return Ok(o);
            }
        };
        if let Some(c) = &challenge {
            detail.push(("challenge".into(), json!(c.describe())));
        }
        ctx.rec.end(PhaseStatus::Ok, detail);
        let clock = answer.clock_offset_secs();

        let Some(image) = self.access.and_then(|a| a.image.clone()) else {
            ctx.rec.instant(
                PhaseName::Auth,
                PhaseStatus::Skip,
                vec![(
                    "why".into(),
                    json!("no configured image names this registry"),
                )],
            );
            let mut o = Outcome::new(
                Status::Pass,
                Reason::Ok,
                format!(
                    "the Registry API answered GET /v2/ ({api}); no configured image names this registry, so no pull was tried and its data endpoint is unknown"
                ),
            );
            o.auth = Some(AuthState::Untested);
            o.clock_offset_secs = clock;
            return Ok(o);
        };

        ctx.rec.start(PhaseName::Auth);
        ctx.rec
            .note("image", format!("{}:{}", image.repository, image.reference));
        ctx.rec.note(
            "credentials",
            if self.credentials().is_some() {
                "configured ([agent.config.auth])"
            } else {
                "none (anonymous)"
            },
        );
        let result = self.pull(&image, challenge).await;
        let requests = json!(std::mem::take(&mut self.requests));
        let mut o = match result {
            Ok((o, more)) => {
                let status = if o.status == Status::Pass {
                    PhaseStatus::Ok
                } else {
                    PhaseStatus::Fail
                };
                let mut d: edgeprobe_core::Detail = vec![("requests".into(), requests)];
                d.extend(more);
                ctx.rec.end(status, d);
                o
            }
            Err((reason, message)) => {
                ctx.rec.end(
                    PhaseStatus::Fail,
                    vec![
                        ("requests".into(), requests),
                        ("error".into(), json!(self.clean(&message))),
                    ],
                );
                let mut o = Outcome::new(
                    Status::Fail,
                    reason,
                    format!("the Registry API answered GET /v2/ ({api}), but pulling {}:{} failed: {message}", image.repository, image.reference),
                );
                o.auth = Some(AuthState::Untested);
                o
            }
        };
        o.message = self.clean(&o.message);
        o.clock_offset_secs = clock;
        Ok(o)
    }

    /// Token, manifest (and the platform's manifest), blob HEAD.
    async fn pull(
        &mut self,
        image: &ImageRef,
        challenge: Option<Challenge>,
    ) -> Result<(Outcome, edgeprobe_core::Detail), Failure> {
        let presenting = self.credentials().is_some();
        let mut tried_auth = false;
        let mut authorization = None;
        if let Some(c) = &challenge {
            tried_auth = true;
            match self.authorize(c, &image.repository).await? {
                Ok(a) => authorization = a,
                Err(stop) => return Ok((self.stopped(stop), Vec::new())),
            }
        }
        let manifest_path = format!("/v2/{}/manifests/{}", image.repository, image.reference);
        let mut answer = self
            .get_manifest(&manifest_path, authorization.as_deref())
            .await?;
        // A registry that answered /v2/ anonymously may still want a token for the repository.
        if answer.status == 401 && !tried_auth {
            if let Some(c) = answer.header("www-authenticate").and_then(Challenge::parse) {
                match self.authorize(&c, &image.repository).await? {
                    Ok(a) => authorization = a,
                    Err(stop) => return Ok((self.stopped(stop), Vec::new())),
                }
                answer = self
                    .get_manifest(&manifest_path, authorization.as_deref())
                    .await?;
            }
        }
        let what = format!("{}:{}", image.repository, image.reference);
        if let Some(stop) = self.refused(&answer, &what, presenting) {
            return Ok((self.stopped(stop), Vec::new()));
        }
        let mut manifest: Value = serde_json::from_str(&answer.body).map_err(|_| {
            (
                Reason::ProtocolError,
                format!(
                    "the manifest of {what} is not JSON ({}, {} bytes read)",
                    answer.header("content-type").unwrap_or("no content type"),
                    answer.body.len()
                ),
            )
        })?;
        let mut more: edgeprobe_core::Detail = vec![(
            "manifest_type".into(),
            json!(media_type(&answer, &manifest)),
        )];
        let mut platform = None;
        if let Some(list) = manifest.get("manifests").and_then(Value::as_array) {
            let (digest, plat) = choose_platform(list).ok_or_else(|| {
                (
                    Reason::ProtocolError,
                    format!("the manifest list of {what} names no manifest"),
                )
            })?;
            more.push(("platform".into(), json!(plat)));
            let path = format!("/v2/{}/manifests/{digest}", image.repository);
            let answer = self.get_manifest(&path, authorization.as_deref()).await?;
            if let Some(stop) = self.refused(&answer, &format!("{what} ({plat})"), presenting) {
                return Ok((self.stopped(stop), more));
            }
            manifest = serde_json::from_str(&answer.body).map_err(|_| {
                (
                    Reason::ProtocolError,
                    format!("the {plat} manifest of {what} is not JSON"),
                )
            })?;
            platform = Some(plat);
        }
        let blob = manifest
            .get("layers")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .or_else(|| manifest.get("config"))
            .and_then(|b| b.get("digest"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                (
                    Reason::ProtocolError,
                    format!("the manifest of {what} names no layer or config blob"),
                )
            })?;
        more.push(("blob".into(), json!(blob)));
        let mut headers = Vec::new();
        if let Some(a) = &authorization {
            headers.push(("authorization".to_owned(), a.clone()));
        }
        let blob_path = format!("/v2/{}/blobs/{blob}", image.repository);
        let (host, port) = (self.ctx.host.to_owned(), self.ctx.port);
        let answer = self
            .request(&host, port, Method::HEAD, &blob_path, headers)
            .await?;
        let what = match &platform {
            Some(p) => format!("{what} ({p})"),
            None => what,
        };
        let credentials = if presenting {
            "with the configured credentials"
        } else {
            "anonymously"
        };
        let short = blob.get(..19).unwrap_or(&blob);
        let mut o = match answer.status {
            301 | 302 | 303 | 307 | 308 => {
                let location = answer.header("location").unwrap_or_default();
                match Url::parse(location) {
                    Some(url) if url.https => {
                        // Its check runs after this one: start resolving the name now
                        // (unless a proxy will resolve it).
                        let s = self.ctx.s;
                        if s.proxy.is_none()
                            || crate::proxy::no_proxy_matches(&s.no_proxy, &url.host)
                        {
                            s.dns.prefetch(&url.host, self.ctx.deadline);
                        }
                        let data = url.authority();
                        more.push(("data_endpoint".into(), json!(data)));
                        let mut o = Outcome::new(
                            Status::Pass,
                            Reason::Ok,
                            format!("pulled the manifest of {what} {credentials}; its blobs redirect (HTTP {}) to the data endpoint {data}", answer.status),
                        );
                        o.learned.push(Learned::DataEndpoint(data));
                        o
                    }
                    Some(url) => Outcome::new(
                        Status::Warn,
                        Reason::ProtocolError,
                        format!("pulled the manifest of {what} {credentials}, but its blobs redirect to plain HTTP ({}), which the engine may refuse", url.authority()),
                    ),
                    None => Outcome::new(
                        Status::Pass,
                        Reason::Ok,
                        format!("pulled the manifest of {what} {credentials}; its blobs redirect within the registry (HTTP {})", answer.status),
                    ),
                }
            }
            200 => Outcome::new(
                Status::Pass,
                Reason::Ok,
                format!("pulled the manifest of {what} {credentials}; the registry serves its blobs itself (HEAD {short}… answered 200)"),
            ),
            401 | 403 if presenting => {
                let mut o = Outcome::new(
                    Status::Warn,
                    Reason::AuthRejected,
                    format!("pulled the manifest of {what}, but the registry refused its blob (HTTP {})", answer.status),
                );
                o.auth = Some(AuthState::Rejected);
                o
            }
            _ => Outcome::new(
                Status::Warn,
                Reason::ProtocolError,
                format!(
                    "pulled the manifest of {what} {credentials}, but HEAD of its blob {short}… answered {}",
                    answer.who()
                ),
            ),
        };
        if o.auth.is_none() {
            o.auth = Some(if presenting {
                AuthState::Ok
            } else {
                AuthState::Untested
            });
        }
        o.message = format!("the Registry API answered GET /v2/; {}", o.message);
        Ok((o, more))
    }

    fn stopped(&self, stop: Stop) -> Outcome {
        let mut o = Outcome::new(stop.status, stop.reason, stop.message);
        o.auth = Some(stop.auth);
        o.fix = stop.fix;
        o
    }

    /// A manifest answer that ends the walk: refused, unknown, or not a manifest.
    fn refused(&self, answer: &HttpAnswer, what: &str, presenting: bool) -> Option<Stop> {
        match answer.status {
            200 => None,
            401 | 403 => Some(self.denied(answer.status, what, presenting)),
            404 => Some(Stop {
                status: Status::Warn,
                reason: Reason::ProtocolError,
                auth: AuthState::Untested,
                message: format!(
                    "the Registry API works, but the registry has no manifest for {what} (HTTP 404{})",
                    registry_error(answer).map(|e| format!(" {e}")).unwrap_or_default()
                ),
                fix: Some("check the image name in [agent.config] image (and the deployment's module images)".into()),
            }),
            _ => Some(Stop {
                status: Status::Warn,
                reason: Reason::ProtocolError,
                auth: AuthState::Untested,
                message: format!(
                    "the Registry API works, but the manifest request for {what} answered {}",
                    answer.who()
                ),
                fix: None,
            }),
        }
    }

    fn denied(&self, status: u16, what: &str, presenting: bool) -> Stop {
        if presenting {
            Stop {
                status: Status::Warn,
                reason: Reason::AuthRejected,
                auth: AuthState::Rejected,
                message: format!(
                    "the registry path works, but the registry refused the configured credentials for {what} (HTTP {status})"
                ),
                fix: Some("check username and password in [agent.config.auth] (an ACR token or service principal may have expired)".into()),
            }
        } else if self.ctx.s.no_auth {
            Stop {
                status: Status::Pass,
                reason: Reason::Ok,
                auth: AuthState::Untested,
                message: format!(
                    "the registry path works; {what} needs credentials, not presented (--no-auth)"
                ),
                fix: None,
            }
        } else {
            Stop {
                status: Status::Warn,
                reason: Reason::AuthRejected,
                auth: AuthState::Rejected,
                message: format!(
                    "the registry path works, but the registry refused an anonymous pull of {what} (HTTP {status}) and no credentials are configured for it"
                ),
                fix: Some("add the registry's credentials to [agent.config.auth] (serveraddress, username, password)".into()),
            }
        }
    }

    /// The `Authorization` header for a challenge: a pull token from the realm, or Basic.
    /// `Ok(Err(stop))` when the token service refused.
    async fn authorize(
        &mut self,
        challenge: &Challenge,
        repository: &str,
    ) -> Result<Result<Option<String>, Stop>, Failure> {
        match challenge {
            Challenge::Basic { .. } => Ok(Ok(self.basic())),
            Challenge::Bearer { realm, service } => {
                let url = Url::parse(realm).filter(|u| u.https).ok_or_else(|| {
                    (
                        Reason::ProtocolError,
                        format!("the token service {realm:?} is not an https:// URL"),
                    )
                })?;
                let mut query = Vec::new();
                if let Some(s) = service {
                    query.push(format!("service={}", edgeprobe_iotedge::sas::url_encode(s)));
                }
                query.push(format!(
                    "scope={}",
                    edgeprobe_iotedge::sas::url_encode(&format!("repository:{repository}:pull"))
                ));
                let sep = if url.path_and_query.contains('?') {
                    '&'
                } else {
                    '?'
                };
                let path = format!("{}{sep}{}", url.path_and_query, query.join("&"));
                let mut headers = Vec::new();
                let presenting = match self.basic() {
                    Some(b) => {
                        headers.push(("authorization".to_owned(), b));
                        true
                    }
                    None => false,
                };
                let answer = self
                    .request(&url.host, url.port, Method::GET, &path, headers)
                    .await?;
                if matches!(answer.status, 401 | 403) {
                    return Ok(Err(self.denied(
                        answer.status,
                        &format!("repository:{repository}:pull"),
                        presenting,
                    )));
                }
                let body: Value = serde_json::from_str(&answer.body).unwrap_or_default();
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty() && answer.status == 200);
                match token {
                    Some(t) => {
                        self.scrub.push(Secret::new(t));
                        Ok(Ok(Some(format!("Bearer {t}"))))
                    }
                    None => Err((
                        Reason::ProtocolError,
                        format!(
                            "the token service {} answered {} without a token",
                            url.authority(),
                            answer.who()
                        ),
                    )),
                }
            }
        }
    }

    async fn get_manifest(
        &mut self,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<HttpAnswer, Failure> {
        let mut headers = vec![("accept".to_owned(), MANIFEST_ACCEPT.to_owned())];
        if let Some(a) = authorization {
            headers.push(("authorization".to_owned(), a.to_owned()));
        }
        let (host, port) = (self.ctx.host.to_owned(), self.ctx.port);
        self.request(&host, port, Method::GET, path, headers).await
    }

    /// One request on a new connection through the run's layers; its timings are kept for
    /// the auth phase's detail.
    async fn request(
        &mut self,
        host: &str,
        port: u16,
        method: Method,
        path: &str,
        headers: Vec<(String, String)>,
    ) -> Result<HttpAnswer, Failure> {
        let ctx = self.ctx;
        let origin = tokio::time::Instant::now();
        let rec = PhaseRecorder::new();
        let shown_path = path.split('?').next().unwrap_or(path);
        let mut entry = serde_json::Map::new();
        entry.insert(
            "request".into(),
            json!(format!(
                "{method} https://{}{shown_path}",
                host_port(host, port, 443)
            )),
        );
        let opened = Path {
            host,
            port,
            rec: &rec,
            ..*ctx
        }
        .open_tls()
        .await;
        let result = match opened {
            Ok(io) => {
                let req = HttpRequest {
                    method,
                    host: host_port(host, port, 443),
                    path_and_query: path.to_owned(),
                    headers,
                    body: None,
                };
                rec.start(PhaseName::Protocol);
                let r = https::exchange(io, &req, ctx.deadline).await;
                rec.end(
                    if r.is_ok() {
                        PhaseStatus::Ok
                    } else {
                        PhaseStatus::Fail
                    },
                    Vec::new(),
                );
                r
            }
            Err(f) => Err(f),
        };
        let steps = rec.finish();
        // A request that timed out: its failed step joins the check's phases, so the runner
        // judges that step's wait (the deadline's, or the network's), not the whole pull's.
        if let Err((reason, _)) = &result {
            let timed_out = matches!(
                reason,
                Reason::DnsTimeout
                    | Reason::TcpTimeout
                    | Reason::TlsTimeout
                    | Reason::ProtocolTimeout
                    | Reason::ProxyUnreachable
            );
            if let Some(p) = steps
                .iter()
                .rev()
                .find(|p| timed_out && p.status == PhaseStatus::Fail)
            {
                let mut detail = p.detail.clone();
                detail.push(("request".into(), entry["request"].clone()));
                ctx.rec.push(
                    p.name,
                    origin + p.started,
                    p.duration,
                    PhaseStatus::Fail,
                    detail,
                );
            }
        }
        for p in steps {
            let name = if p.name == PhaseName::Protocol {
                "http"
            } else {
                p.name.as_str()
            };
            let ms = (p.duration.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
            // Several TCP attempts add up.
            let key = format!("{name}_ms");
            let prev = entry.get(&key).and_then(Value::as_f64).unwrap_or(0.0);
            entry.insert(key, json!(prev + ms));
            if p.status == PhaseStatus::Fail {
                entry.insert("failed_at".into(), json!(name));
            }
        }
        match &result {
            Ok(a) => {
                entry.insert("status".into(), json!(a.status));
            }
            Err((reason, message)) => {
                entry.insert("reason".into(), json!(reason.as_str()));
                entry.insert("error".into(), json!(self.clean(message)));
            }
        }
        self.requests.push(Value::Object(entry));
        result.map_err(|(r, m)| {
            (
                r,
                format!("{} {}: {m}", host_port(host, port, 443), shown_path),
            )
        })
    }
}

/// A 200 to `/v2/` counts when it looks like a registry: its API version header, or JSON.
fn is_registry_200(a: &HttpAnswer) -> bool {
    a.header("docker-distribution-api-version").is_some() || a.body.trim_start().starts_with('{')
}

fn api_detail(a: &HttpAnswer) -> edgeprobe_core::Detail {
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

fn media_type(a: &HttpAnswer, manifest: &Value) -> String {
    manifest
        .get("mediaType")
        .and_then(Value::as_str)
        .or_else(|| a.header("content-type"))
        .unwrap_or("unknown")
        .to_owned()
}

/// The registry's error code (`{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`), if any.
fn registry_error(a: &HttpAnswer) -> Option<String> {
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
fn choose_platform(list: &[Value]) -> Option<(String, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_like_docker() {
        let i = ImageRef::parse("mcr.microsoft.com/azureiotedge-agent:1.5").unwrap();
        assert_eq!(i.registry.as_deref(), Some("mcr.microsoft.com"));
        assert_eq!(i.repository, "azureiotedge-agent");
        assert_eq!(i.reference, "1.5");
        let i = ImageRef::parse("myacr.azurecr.io:5000/team/agent").unwrap();
        assert_eq!(i.registry.as_deref(), Some("myacr.azurecr.io:5000"));
        assert_eq!(
            (i.repository.as_str(), i.reference.as_str()),
            ("team/agent", "latest")
        );
        let i = ImageRef::parse("$upstream:443/azureiotedge-agent:1.5").unwrap();
        assert_eq!(i.registry.as_deref(), Some("$upstream:443"));
        let i = ImageRef::parse("alpine:3").unwrap();
        assert_eq!(i.registry, None);
        assert_eq!(i.repository, "library/alpine");
        let i = ImageRef::parse("localhost/x@sha256:abc").unwrap();
        assert_eq!(i.registry.as_deref(), Some("localhost"));
        assert_eq!(
            (i.repository.as_str(), i.reference.as_str()),
            ("x", "sha256:abc")
        );
        assert_eq!(ImageRef::parse("  "), None);
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example/token?a=1,b",service="reg.example",scope="x""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token?a=1,b".into(),
                service: Some("reg.example".into())
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic {
                realm: Some("Registry Realm".into())
            })
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn urls_and_authorities() {
        let u = Url::parse("https://eastus.data.mcr.microsoft.com/abc/data?sig=x").unwrap();
        assert_eq!(u.authority(), "eastus.data.mcr.microsoft.com");
        assert_eq!(u.path_and_query, "/abc/data?sig=x");
        let u = Url::parse("https://data.lab:8443").unwrap();
        assert_eq!(
            (u.authority().as_str(), u.path_and_query.as_str()),
            ("data.lab:8443", "/")
        );
        assert_eq!(Url::parse("/v2/x/blobs/y"), None);
        assert_eq!(
            split_host_port("[::1]:5000", 443),
            Some(("::1".into(), 5000))
        );
        assert_eq!(split_host_port("reg:x", 443), None);
        assert_eq!(host_port("::1", 5000, 443), "[::1]:5000");
    }

    #[test]
    fn the_platform_of_this_machine_wins() {
        let list: Vec<Value> = serde_json::from_value(json!([
            {"digest": "sha256:s390", "platform": {"os": "linux", "architecture": "s390x"}},
            {"digest": "sha256:win", "platform": {"os": "windows", "architecture": host_arch()}},
            {"digest": "sha256:here", "platform": {"os": "linux", "architecture": host_arch()}},
        ]))
        .unwrap();
        assert_eq!(
            choose_platform(&list),
            Some(("sha256:here".into(), format!("linux/{}", host_arch())))
        );
        assert_eq!(choose_platform(&list[..1]).unwrap().0, "sha256:s390");
    }
}

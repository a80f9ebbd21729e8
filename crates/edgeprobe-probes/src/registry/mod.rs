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
use edgeprobe_core::{AuthState, Learned, Outcome, PhaseName, PhaseStatus, Reason, Status};
use edgeprobe_iotedge::secret::{Scrubber, Secret};
use http::Method;
use serde_json::{json, Value};

use crate::fix::fix_for;
use crate::https::{HttpConnection, HttpRequest};
use crate::path::Path;
use crate::BoxIo;
use crate::Failure;

mod names;
mod requests;
#[cfg(test)]
mod tests;

use names::{api_detail, choose_platform, is_registry_200, media_type};
pub use names::{host_port, split_host_port, Challenge, ImageRef, Url};

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
        kept: Vec::new(),
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
    /// Connections kept alive per `host:port` for the next request there: `/v2/`'s for
    /// the manifests (and a token service on the same host), one per other host.
    kept: Vec<(String, u16, HttpConnection)>,
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
        let mut conn = HttpConnection::open(io, ctx.deadline).await?;
        let answer = match conn.send(&req, ctx.deadline).await {
            Ok(a) => a,
            Err(f) => {
                ctx.rec.end(PhaseStatus::Fail, Vec::new());
                return Err(f);
            }
        };
        self.kept.push((ctx.host.to_owned(), ctx.port, conn));
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
}

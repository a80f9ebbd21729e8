//! The walk's requests after `/v2/`: the token service, the manifest, the blob `HEAD`, each
//! on its own connection; and how a refusal ends the walk.

use edgeprobe_core::recorder::PhaseRecorder;
use edgeprobe_core::{AuthState, Outcome, PhaseName, PhaseStatus, Reason, Status};
use edgeprobe_iotedge::secret::Secret;
use http::Method;
use serde_json::{json, Value};

use super::names::{host_port, registry_error, Challenge, Url};
use super::{Stop, Walk, MANIFEST_ACCEPT};
use crate::https::{HttpAnswer, HttpConnection, HttpRequest};
use crate::path::Path;
use crate::Failure;

impl Walk<'_> {
    pub(super) fn stopped(&self, stop: Stop) -> Outcome {
        let mut o = Outcome::new(stop.status, stop.reason, stop.message);
        o.auth = Some(stop.auth);
        o.fix = stop.fix;
        o
    }

    /// A manifest answer that ends the walk: refused, unknown, or not a manifest.
    pub(super) fn refused(
        &self,
        answer: &HttpAnswer,
        what: &str,
        presenting: bool,
    ) -> Option<Stop> {
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

    pub(super) fn denied(&self, status: u16, what: &str, presenting: bool) -> Stop {
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
    pub(super) async fn authorize(
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

    pub(super) async fn get_manifest(
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
    pub(super) async fn request(
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
        let req = HttpRequest {
            method,
            host: host_port(host, port, 443),
            path_and_query: path.to_owned(),
            headers,
            body: None,
        };
        // The connection kept from the last request to this host, if it can carry another
        // (its answer was read to the end): no new TCP, proxy or TLS handshake.
        let kept = match self
            .kept
            .iter()
            .position(|(h, p, _)| h.eq_ignore_ascii_case(host) && *p == port)
        {
            Some(i) => {
                let mut c = self.kept.swap_remove(i).2;
                c.reusable(ctx.deadline).await.then_some(c)
            }
            None => None,
        };
        let opened = match kept {
            Some(conn) => {
                entry.insert("reused".into(), json!(true));
                Ok(conn)
            }
            None => match (Path {
                host,
                port,
                rec: &rec,
                ..*ctx
            })
            .open_tls()
            .await
            {
                Ok(io) => HttpConnection::open(io, ctx.deadline).await,
                Err(f) => Err(f),
            },
        };
        let result = match opened {
            Ok(mut conn) => {
                rec.start(PhaseName::Protocol);
                let r = conn.send(&req, ctx.deadline).await;
                rec.end(
                    if r.is_ok() {
                        PhaseStatus::Ok
                    } else {
                        PhaseStatus::Fail
                    },
                    Vec::new(),
                );
                if r.is_ok() {
                    self.kept.push((host.to_owned(), port, conn));
                }
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

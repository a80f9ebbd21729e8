//! A module's own identity, the way IoT Edge gives it: no key on the device's disk and none in
//! the deployment manifest. IoT Edge tells a module who it is in its environment
//! (`IOTEDGE_IOTHUBHOSTNAME`, `IOTEDGE_DEVICEID`, `IOTEDGE_MODULEID`,
//! `IOTEDGE_MODULEGENERATIONID`, `IOTEDGE_WORKLOADURI`, `IOTEDGE_APIVERSION`,
//! `IOTEDGE_AUTHSCHEME`), and signs its SAS tokens through the workload API (HTTP over
//! aziot-edged's unix socket: `POST /modules/{module}/genid/{genid}/sign`), which also hands
//! out the Edge CA (`GET /trust-bundle`). The probes then authenticate as
//! `{device}/modules/{module}`, over the same paths edgeHub uses.

use std::path::PathBuf;

use base64::Engine as _;
use bytes::Bytes;
use edgeprobe_iotedge::sas;
use edgeprobe_iotedge::secret::Secret;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::cli::CheckArgs;
use crate::AppError;

/// The workload API's answers are small; more is not the workload API.
const MAX_ANSWER: usize = 1 << 20;
/// The API version when IoT Edge does not say (`IOTEDGE_APIVERSION`).
const DEFAULT_API_VERSION: &str = "2019-01-30";

/// Who the module is, with a token the workload API signed and the Edge CA.
#[derive(Debug, Clone)]
pub struct ModuleIdentity {
    pub hub: String,
    pub device_id: String,
    pub module_id: String,
    /// The module's edgeHub (`IOTEDGE_GATEWAYHOSTNAME`): its local upstream.
    pub gateway: Option<String>,
    pub token: Secret,
    /// The Edge CA (PEM), from `/trust-bundle`.
    pub trust_pem: String,
    /// The socket, for messages.
    pub uri: String,
}

/// IoT Edge's environment for a module, when this process is one.
struct Env {
    uri: String,
    socket: PathBuf,
    api_version: String,
    hub: String,
    device_id: String,
    module_id: String,
    generation_id: String,
    gateway: Option<String>,
}

fn env() -> Result<Option<Env>, AppError> {
    let Ok(uri) = std::env::var("IOTEDGE_WORKLOADURI") else {
        return Ok(None);
    };
    let var = |name: &'static str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                AppError::Usage(format!(
                    "IOTEDGE_WORKLOADURI is set, but {name} is not: not an IoT Edge module's environment"
                ))
            })
    };
    if let Ok(scheme) = std::env::var("IOTEDGE_AUTHSCHEME") {
        if !scheme.eq_ignore_ascii_case("sasToken") {
            return Err(AppError::Usage(format!(
                "IOTEDGE_AUTHSCHEME {scheme:?}: only sasToken modules are supported"
            )));
        }
    }
    let socket = uri
        .strip_prefix("unix://")
        .map(PathBuf::from)
        .ok_or_else(|| {
            AppError::Usage(format!(
                "IOTEDGE_WORKLOADURI {uri:?}: expected unix:///path/to/workload.sock"
            ))
        })?;
    Ok(Some(Env {
        socket,
        api_version: std::env::var("IOTEDGE_APIVERSION")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_VERSION.into()),
        hub: var("IOTEDGE_IOTHUBHOSTNAME")?,
        device_id: var("IOTEDGE_DEVICEID")?,
        module_id: var("IOTEDGE_MODULEID")?,
        generation_id: var("IOTEDGE_MODULEGENERATIONID")?,
        gateway: std::env::var("IOTEDGE_GATEWAYHOSTNAME")
            .ok()
            .filter(|v| !v.trim().is_empty()),
        uri,
    }))
}

/// The module identity, when this process is an IoT Edge module and no flag or
/// configuration names another identity.
pub async fn module_identity(
    args: &CheckArgs,
    deadline: Instant,
) -> Result<Option<ModuleIdentity>, AppError> {
    let named = args.connection_string.is_some()
        || args.sas_key.is_some()
        || args.x509_cert.is_some()
        || args.config.is_some()
        || args.iothub_hostname.is_some()
        || args.id_scope.is_some();
    if named || args.no_auth {
        return Ok(None);
    }
    let Some(env) = env()? else {
        return Ok(None);
    };
    let fail = |what: &str, why: String| {
        AppError::Usage(format!(
            "the IoT Edge workload API at {}: {what}: {why}",
            env.uri
        ))
    };
    let resource = sas::module_resource(&env.hub, &env.device_id, &env.module_id);
    let expiry = sas::unix_now() + sas::TOKEN_LIFETIME_SECS;
    let data = sas::string_to_sign(&resource, expiry);
    let body = serde_json::json!({
        "keyId": "primary",
        "algo": "HMACSHA256",
        "data": base64::engine::general_purpose::STANDARD.encode(data),
    });
    let path = format!(
        "/modules/{}/genid/{}/sign?api-version={}",
        sas::url_encode(&env.module_id),
        sas::url_encode(&env.generation_id),
        sas::url_encode(&env.api_version)
    );
    let signed = call(&env, Method::POST, &path, Some(body.to_string()), deadline)
        .await
        .map_err(|why| fail("signing the module's token", why))?;
    let digest = signed["digest"]
        .as_str()
        .filter(|d| base64::engine::general_purpose::STANDARD.decode(d).is_ok())
        .ok_or_else(|| {
            fail(
                "signing the module's token",
                "the answer has no base64 digest".into(),
            )
        })?;
    let token = sas::token_from_signature(&resource, digest, expiry);
    let path = format!(
        "/trust-bundle?api-version={}",
        sas::url_encode(&env.api_version)
    );
    let bundle = call(&env, Method::GET, &path, None, deadline)
        .await
        .map_err(|why| fail("reading the trust bundle", why))?;
    let trust_pem = bundle["certificate"]
        .as_str()
        .ok_or_else(|| {
            fail(
                "reading the trust bundle",
                "the answer has no certificate".into(),
            )
        })?
        .to_owned();
    Ok(Some(ModuleIdentity {
        hub: env.hub,
        device_id: env.device_id,
        module_id: env.module_id,
        gateway: env.gateway,
        token,
        trust_pem,
        uri: env.uri,
    }))
}

/// One request over the socket; the JSON answer of a 2xx, else why not (status and message).
async fn call(
    env: &Env,
    method: Method,
    path: &str,
    body: Option<String>,
    deadline: Instant,
) -> Result<serde_json::Value, String> {
    let work = async {
        let stream = tokio::net::UnixStream::connect(&env.socket)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "workload.sock");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if !status.is_success() {
            let message = answer["message"].as_str().unwrap_or_default();
            let message: String = message.chars().take(200).collect();
            return Err(format!("HTTP {} {message}", status.as_u16())
                .trim_end()
                .to_owned());
        }
        Ok(answer)
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err("no answer before the deadline".into()),
    }
}

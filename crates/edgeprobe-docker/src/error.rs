//! The one error type of this crate.

/// What went wrong while talking to the Docker engine. `Display` is one line naming what
/// failed; [`DockerError::code`] is a stable machine-readable code.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine is not reachable: socket missing, permission denied, connection refused,
    /// unsupported URI. The message names the URI.
    #[error("{0}")]
    Unavailable(String),
    /// The deadline passed while doing the named thing.
    #[error("deadline reached while {0}")]
    Timeout(&'static str),
    /// The engine answered with an error (or an answer we could not read).
    #[error("Docker engine error {0}")]
    Api(String),
    /// The probe image could not be built (reading the binary, `ldd`, importing).
    #[error("cannot build the probe image: {0}")]
    Image(String),
}

impl DockerError {
    /// A stable code for reports and exit-code decisions.
    pub fn code(&self) -> &'static str {
        match self {
            DockerError::Unavailable(_) => "docker_unavailable",
            DockerError::Timeout(_) => "docker_timeout",
            DockerError::Api(_) => "docker_api_error",
            DockerError::Image(_) => "docker_image_error",
        }
    }
}

/// One line: the engine's messages sometimes end with or contain newlines.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Converts a bollard error into `Api("{what}: {detail}")`, or `Unavailable` when the
/// transport itself failed.
pub(crate) fn api(what: &str, uri: &str, e: bollard::errors::Error) -> DockerError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Api(format!(
            "{what}: {} (HTTP {status_code})",
            one_line(&message)
        )),
        E::SocketNotFoundError(path) => DockerError::Unavailable(format!(
            "cannot reach the Docker engine at {uri}: socket {path} does not exist"
        )),
        E::IOError { err } => DockerError::Unavailable(format!(
            "cannot reach the Docker engine at {uri}: {}",
            io_reason(&err)
        )),
        E::HyperLegacyError { err } => DockerError::Unavailable(format!(
            "cannot reach the Docker engine at {uri}: {}",
            legacy_reason(&err)
        )),
        E::RequestTimeoutError => DockerError::Api(format!("{what}: the engine did not answer")),
        other => DockerError::Api(format!("{what}: {}", one_line(&other.to_string()))),
    }
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `No such file or directory` rather than `No such file or directory (os error 2)`.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn legacy_reason(e: &(dyn std::error::Error + 'static)) -> String {
    // hyper-util's legacy client wraps the connector's io::Error; report the innermost cause.
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        return io_reason(io);
    }
    one_line(&cur.to_string())
}

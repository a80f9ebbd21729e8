//! `edgeprobe image`: the probe image built from this binary, tagged for deployment as the
//! module image.

use std::time::Duration;

use tokio::time::Instant;

use crate::cli::ImageArgs;
use crate::AppError;

/// `edgeprobe image`: the probe image built from this binary, tagged for deployment.
pub async fn image(args: &ImageArgs) -> Result<u8, AppError> {
    let (repo, tag) = match args.tag.rsplit_once(':') {
        Some((r, t)) if !r.is_empty() && !t.is_empty() && !t.contains('/') => (r, t),
        _ => (args.tag.as_str(), "latest"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let engine = edgeprobe_docker::Engine::connect(args.docker_uri.as_deref(), deadline)
        .await
        .map_err(|e| AppError::Usage(format!("--docker-uri: {e}")))?;
    let binary = std::env::current_exe()
        .map_err(|e| AppError::Internal(format!("cannot find this binary: {e}")))?;
    let image = engine
        .ensure_probe_image(&binary, env!("CARGO_PKG_VERSION"), deadline)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    engine
        .tag_image(&image.reference, repo, tag, deadline)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let line = format!(
        "{repo}:{tag} ({}, {}; entrypoint {}; run it as `{repo}:{tag} serve ...`)\n",
        image.reference,
        image.id,
        edgeprobe_docker::PROBE_ENTRYPOINT
    );
    crate::run::write_atomically("-", line.as_bytes())?;
    Ok(0)
}

//! Single values from the user, checked before anything runs.

use super::usage;
use crate::AppError;

/// `--var NAME=VALUE`: the user's own template variables; run variables keep their meaning.
pub fn user_vars(raw: &[String]) -> Result<Vec<(String, String)>, AppError> {
    raw.iter()
        .map(|r| {
            let shown: String = r.chars().take(64).collect();
            let (name, value) = r
                .split_once('=')
                .ok_or_else(|| usage(format!("--var {shown:?}: expected NAME=VALUE")))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(usage(format!(
                    "--var {shown:?}: NAME is lowercase letters, digits and _"
                )));
            }
            if edgeprobe_core::catalog::RUN_VARS.contains(&name) {
                return Err(usage(format!(
                    "--var {name}: the run sets {name} itself (use its own flag)"
                )));
            }
            let value = value.trim();
            if value.is_empty()
                || value.len() > 253
                || value.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(usage(format!(
                    "--var {name}: VALUE must be a non-empty name without spaces"
                )));
            }
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// A DNS name or address: at most 253 printable ASCII characters, none that a URL or a
/// terminal would read as something else.
pub(crate) fn is_host_name(h: &str) -> bool {
    !h.trim().is_empty()
        && h.len() <= 253
        && h.bytes().all(|b| b.is_ascii_graphic())
        && !h.contains(['/', '@', '?', '#'])
}

/// IoT Hub device ids: at most 128 printable ASCII characters, no spaces (IoT Hub's rule).
pub(crate) fn device_id_problem(d: &str) -> Option<&'static str> {
    if d.is_empty() {
        Some("is empty")
    } else if d.len() > 128 {
        Some("is longer than 128 characters")
    } else if !d.bytes().all(|b| b.is_ascii_graphic()) {
        Some("holds spaces, control characters or non-ASCII characters")
    } else {
        None
    }
}

/// A value short enough to echo in an error.
pub(crate) fn cut(v: &str) -> String {
    match v.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &v[..i]),
        None => v.to_owned(),
    }
}

pub(crate) fn hint(var: &str) -> &'static str {
    match var {
        "iothub_hostname" => "no IoT Hub host name (--iothub-hostname, --connection-string or the device configuration)",
        "device_id" => "no device id (--device-id)",
        "dps_endpoint" | "id_scope" | "registration_id" => "the device is not provisioned by DPS",
        "parent_hostname" => "the device is not nested (no parent_hostname)",
        "gateway_hostname" => "no gateway to check (--gateway-hostname)",
        "edgehub_hostname" => "not an IoT Edge module (no IOTEDGE_GATEWAYHOSTNAME)",
        _ => "a value it needs is unknown",
    }
}

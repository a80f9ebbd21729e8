//! The bundle as a file: its default name and the .tar.gz of the manifest and every file
//! that was collected.

use std::io::Read as _;

use super::Entry;

/// `edgeprobe-bundle-<host>-<UTC time>.tar.gz`, in the working directory.
pub(super) fn default_name(host: &str, now: std::time::SystemTime) -> String {
    let stamp = time::OffsetDateTime::from(now)
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "unknown-time".into());
    format!("edgeprobe-bundle-{host}-{stamp}.tar.gz")
}

/// This machine's host name, kept to characters safe in a file name.
pub(super) fn host_name() -> String {
    let raw = std::fs::File::open("/proc/sys/kernel/hostname")
        .and_then(|f| {
            let mut s = String::new();
            std::io::Read::take(f, 256).read_to_string(&mut s)?;
            Ok(s)
        })
        .unwrap_or_default();
    let safe: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        "device".into()
    } else {
        safe
    }
}

pub(super) fn archive(entries: &[Entry], manifest: &str) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut put = |path: &str, data: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, format!("edgeprobe-bundle/{path}"), data)
    };
    put("manifest.json", manifest.as_bytes())?;
    for e in entries {
        if let Ok(text) = &e.content {
            put(&e.path, text.as_bytes())?;
        }
    }
    tar.into_inner()?.finish()
}

//! Files read from the host, bounded: the IoT Edge configuration, /etc/hosts, and the
//! subject, issuer and expiry of the certificates the configuration names.

use std::io::Read as _;
use std::path::Path;

use super::{entry, Entry};

pub(super) fn read(path: &Path) -> Result<String, String> {
    edgeprobe_core::bounded::read_to_string(path, edgeprobe_core::bounded::CONFIG_LIMIT)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub(super) fn hosts_entry(root: &Path) -> Entry {
    entry("host/hosts", "/etc/hosts", read(&root.join("etc/hosts")))
}

/// Subject, issuer and expiry of every certificate file the configuration names: the
/// certificates only, never a key.
pub(super) fn certificates_entry(facts: &crate::stages::RunFacts) -> Entry {
    use edgeprobe_iotedge::certs;
    let path = "iotedge/certificates.tsv";
    let Some(cfg) = &facts.config else {
        return entry(
            path,
            "the certificate files the IoT Edge configuration names",
            Err("no IoT Edge configuration was read".into()),
        );
    };
    let how = format!(
        "the certificate files {} names: subject, issuer, validity (never a key)",
        cfg.source
    );
    let text = match read(Path::new(&cfg.source)) {
        Ok(t) => t,
        Err(e) => return entry(path, how, Err(e)),
    };
    let settings = edgeprobe_iotedge::config::certificate_settings(&text, cfg.format);
    if settings.is_empty() {
        return entry(
            path,
            how,
            Err("the configuration names no certificate file".into()),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut out =
        String::from("setting\tfile\tsubject\tissuer\tnot_before\tnot_after\tdays_left\n");
    for (setting, file) in settings {
        let bytes = std::fs::File::open(&file).and_then(|f| {
            let mut bytes = Vec::new();
            std::io::Read::take(f, 1024 * 1024).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        let shown = file.display();
        match bytes
            .map_err(|e| e.to_string())
            .and_then(|b| certs::read_pem(&b))
        {
            Ok(list) => {
                for c in list {
                    let left = c.days_left(now);
                    out.push_str(&format!(
                        "{setting}\t{shown}\t{}\t{}\t{}\t{}\t{left}{}\n",
                        c.subject,
                        c.issuer,
                        certs::rfc3339(c.not_before),
                        certs::rfc3339(c.not_after),
                        if left < 0 { " (expired)" } else { "" }
                    ));
                }
            }
            Err(e) => out.push_str(&format!("{setting}\t{shown}\tunreadable: {e}\n")),
        }
    }
    entry(path, how, Ok(out))
}

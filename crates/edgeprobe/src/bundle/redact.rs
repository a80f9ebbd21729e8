//! Configuration text with the values of secret-bearing settings replaced with a marker:
//! keys, passwords, connection-string keys and credentials inside URLs.

use edgeprobe_iotedge::secret::REDACTED;

/// Replaces the values of secret-bearing settings in a configuration file's text: keys,
/// passwords, connection-string keys, and credentials inside URLs.
pub fn redact_config(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut l = line.to_owned();
            // SharedAccessKey=...; in connection strings.
            while let Some(i) = l.find("SharedAccessKey=") {
                let start = i + "SharedAccessKey=".len();
                if l[start..].starts_with(REDACTED) {
                    break;
                }
                let end = l[start..]
                    .find([';', '"', '\'', ' '])
                    .map(|e| start + e)
                    .unwrap_or(l.len());
                l.replace_range(start..end, REDACTED);
            }
            // user:password@ in URLs.
            if let Some(scheme) = l.find("://") {
                let rest = scheme + 3;
                if let Some(at) = l[rest..].find('@').map(|a| rest + a) {
                    if let Some(colon) = l[rest..at].find(':').map(|c| rest + c) {
                        l.replace_range(colon + 1..at, REDACTED);
                    }
                }
            }
            // key = "value" / key: value for secret-named keys.
            let lowered = l.to_ascii_lowercase();
            for key in ["password", "value", "symmetric_key", "pin-value"] {
                for sep in [" = ", "=", ": "] {
                    let needle = format!("{key}{sep}");
                    if let Some(i) = lowered.find(&needle) {
                        let boundary = i == 0 || !lowered.as_bytes()[i - 1].is_ascii_alphanumeric();
                        if !boundary {
                            continue;
                        }
                        let start = i + needle.len();
                        let quoted = l[start..].starts_with('"');
                        let vstart = if quoted { start + 1 } else { start };
                        let vend = if quoted {
                            l[vstart..].find('"').map(|e| vstart + e).unwrap_or(l.len())
                        } else {
                            l[vstart..]
                                .find([' ', ',', '}'])
                                .map(|e| vstart + e)
                                .unwrap_or(l.len())
                        };
                        if vend > vstart && &l[vstart..vend] != REDACTED {
                            l.replace_range(vstart..vend, REDACTED);
                        }
                        return l;
                    }
                }
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

//! The files under the root that set a component's proxy: a systemd unit with its
//! drop-ins, as systemd would read their `Environment=` lines, and Docker's daemon.json.
//! A file that exists but cannot be read records nothing.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use edgeprobe_core::bounded;

use super::{ProxySource, DOCKER};
use crate::secret::Secret;

/// Where systemd looks for units and drop-ins, highest priority first.
const UNIT_DIRS: [&str; 4] = [
    "etc/systemd/system",
    "run/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

enum Read {
    Missing,
    Unreadable,
    Text(String),
}

fn read(path: &Path) -> Read {
    match bounded::read_to_string(path, bounded::CONFIG_LIMIT) {
        Ok(t) => Read::Text(t),
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => Read::Missing,
        Err(_) => Read::Unreadable,
    }
}

/// What systemd would put in a unit's environment, as far as the proxy goes.
pub(super) struct UnitEnv {
    pub(super) https_proxy: Option<Secret>,
    pub(super) origin: PathBuf,
}

/// `None` when the unit is not there or one of its files cannot be read.
pub(super) fn systemd_env(root: &Path, unit: &str) -> Option<UnitEnv> {
    let service = format!("{unit}.service");
    let mut unit_file = None;
    for dir in UNIT_DIRS {
        let path = root.join(dir).join(&service);
        match read(&path) {
            Read::Missing => continue,
            Read::Unreadable => return None,
            Read::Text(t) => {
                unit_file = Some((path, t));
                break;
            }
        }
    }
    // Drop-ins of the same name: the higher-priority directory wins; applied in name order.
    let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in UNIT_DIRS {
        let d = root.join(dir).join(format!("{service}.d"));
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                dropins.entry(name).or_insert_with(|| entry.path());
            }
        }
    }

    let mut files = Vec::new();
    files.extend(unit_file);
    for path in dropins.into_values() {
        match read(&path) {
            Read::Text(t) => files.push((path, t)),
            Read::Missing => {} // a dangling symlink: systemd ignores it too
            Read::Unreadable => return None,
        }
    }
    let main = files.first()?.0.clone();

    let mut env: HashMap<String, (String, PathBuf)> = HashMap::new();
    for (path, text) in &files {
        for assignment in environment_assignments(text) {
            match assignment {
                None => env.clear(),
                Some((k, v)) => {
                    env.insert(k, (v, path.clone()));
                }
            }
        }
    }
    // Like Go and curl: the upper-case name first.
    let found = ["HTTPS_PROXY", "https_proxy"]
        .iter()
        .find_map(|k| env.get(*k).filter(|(v, _)| !v.trim().is_empty()));
    Some(match found {
        Some((value, path)) => UnitEnv {
            https_proxy: Some(Secret::new(value.trim())),
            origin: path.clone(),
        },
        None => UnitEnv {
            https_proxy: None,
            origin: main,
        },
    })
}

/// The `Environment=` assignments of a unit file's `[Service]` section, in order; `None`
/// for an empty `Environment=`, which resets the list.
pub(super) fn environment_assignments(text: &str) -> Vec<Option<(String, String)>> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        // Continuation lines end with a backslash.
        if let Some(head) = raw.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line.to_owned();
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "Environment" {
            continue;
        }
        let value = value.trim();
        if value.is_empty() {
            out.push(None);
            continue;
        }
        for word in split_words(value) {
            if let Some((k, v)) = word.split_once('=') {
                out.push(Some((k.to_owned(), v.replace("%%", "%"))));
            }
        }
    }
    out
}

/// Splits on whitespace, honoring single and double quotes and backslash escapes.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) if c == '\\' => current.extend(chars.next()),
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == '\\' => {
                current.extend(chars.next());
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            None => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// The Docker daemon: `daemon.json` `proxies.https-proxy` wins over its environment.
pub(super) fn docker(root: &Path) -> Option<ProxySource> {
    let json_path = root.join("etc/docker/daemon.json");
    let from_json = match read(&json_path) {
        Read::Missing => None,
        Read::Unreadable => return None,
        Read::Text(text) => {
            // Docker refuses to start with a broken daemon.json; record nothing from it.
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(
                value
                    .get("proxies")
                    .and_then(|p| p.get("https-proxy"))
                    .and_then(|v| v.as_str())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(Secret::new),
            )
        }
    };
    let unit = systemd_env(root, "docker");
    match (from_json, unit) {
        (Some(Some(proxy)), _) => Some(ProxySource {
            component: DOCKER,
            origin: json_path.display().to_string(),
            https_proxy: Some(proxy),
        }),
        (_, Some(env)) => Some(ProxySource {
            component: DOCKER,
            origin: env.origin.display().to_string(),
            https_proxy: env.https_proxy,
        }),
        (Some(None), None) => Some(ProxySource {
            component: DOCKER,
            origin: json_path.display().to_string(),
            https_proxy: None,
        }),
        (None, None) => None,
    }
}

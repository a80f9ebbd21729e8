//! IoT Edge configuration files, read into one [`EdgeConfig`]: `/etc/aziot/config.toml`
//! (IoT Edge 1.2 and later) and `/etc/iotedge/config.yaml` (1.1).
//!
//! Only what edgeprobe needs is read: the device's identity and how it authenticates, the
//! parent and trust bundle of a nested device, edgeAgent's image, registry credentials,
//! `UpstreamProtocol` and proxy, and the Moby network. Unknown keys are ignored. Errors are
//! one line naming the file, the line (when known) and the key, and never show key material.
//!
//! A device key given by `file://` URI is read while loading; a key that cannot be read
//! (permission, missing file, key service) becomes [`KeyMaterial::Unreadable`] instead of
//! failing the load, so everything else in the file can still be checked.

use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use edgeprobe_core::bounded;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use percent_encoding::percent_decode_str;

use crate::identity::{ConnectionString, Credentials};
use crate::sas;
use crate::secret::Secret;
use crate::verdict::UpstreamProtocol;

/// Where IoT Edge keeps its configuration: 1.2+ first, then 1.1.
pub const DEFAULT_PATHS: [&str; 2] = ["/etc/aziot/config.toml", "/etc/iotedge/config.yaml"];

/// The Moby network IoT Edge creates when the file names none.
pub const DEFAULT_NETWORK: &str = "azure-iot-edge";

/// The DPS endpoint when the file names none.
pub const DEFAULT_DPS_ENDPOINT: &str = "https://global.azure-devices-provisioning.net";

/// The first of [`DEFAULT_PATHS`] that exists (one we may not read counts: loading it then
/// says "permission denied", which is more useful than "no configuration").
pub fn find_default() -> Option<PathBuf> {
    find_default_in(Path::new("/"))
}

/// [`find_default`] under another root directory (for tests and images mounted elsewhere).
pub fn find_default_in(root: &Path) -> Option<PathBuf> {
    DEFAULT_PATHS.iter().find_map(|p| {
        let path = root.join(p.trim_start_matches('/'));
        match fs::metadata(&path) {
            Ok(_) => Some(path),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Some(path),
            Err(_) => None,
        }
    })
}

/// Reads and parses a configuration file. The format follows the extension (`.toml`,
/// `.yaml` / `.yml`); any other name is read as TOML.
pub fn load(path: &Path) -> Result<EdgeConfig, ConfigError> {
    let shown = path.display().to_string();
    let text =
        bounded::read_to_string(path, bounded::CONFIG_LIMIT).map_err(|e| match e.io_kind() {
            Some(io::ErrorKind::NotFound) => ConfigError::NotFound {
                path: shown.clone(),
            },
            Some(io::ErrorKind::PermissionDenied) => ConfigError::PermissionDenied {
                path: shown.clone(),
            },
            _ => ConfigError::Unreadable {
                path: shown.clone(),
                reason: e.to_string(),
            },
        })?;
    // An empty file is a mistake (a truncated copy), not a device with nothing configured.
    let content = text
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#') && l != "---");
    if !content {
        return Err(ConfigError::Unreadable {
            path: shown,
            reason: "the file is empty".into(),
        });
    }
    parse_str(&text, &shown, ConfigFormat::from_path(path))
}

/// Parses configuration text. `origin` names the file in errors and in [`EdgeConfig::source`].
/// Key files named by `file://` URIs are read (absolute paths only).
pub fn parse_str(
    text: &str,
    origin: &str,
    format: ConfigFormat,
) -> Result<EdgeConfig, ConfigError> {
    bounded::check_depth(text).map_err(|e| ConfigError::Unreadable {
        path: origin.to_owned(),
        reason: e.to_string(),
    })?;
    let lines = LineIndex::new(text);
    let root = match format {
        ConfigFormat::Toml => parse_toml(text, origin, &lines)?,
        ConfigFormat::Yaml => parse_yaml(text, origin)?,
    };
    Reader { origin }.config(&root, format)
}

/// The syntax of a configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `/etc/aziot/config.toml` (IoT Edge 1.2+).
    Toml,
    /// `/etc/iotedge/config.yaml` (IoT Edge 1.1).
    Yaml,
}

impl ConfigFormat {
    /// By extension: `.yaml` / `.yml` is YAML, anything else TOML.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                ConfigFormat::Yaml
            }
            _ => ConfigFormat::Toml,
        }
    }
}

impl fmt::Display for ConfigFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigFormat::Toml => "TOML",
            ConfigFormat::Yaml => "YAML",
        })
    }
}

/// The certificate files a configuration names, as (setting, path): `trust_bundle_cert`,
/// `edge_ca.cert`, identity certificates, 1.1's `certificates.*_cert(s)`. Only settings
/// whose name says certificate and whose value is a `file://` URI or an absolute path;
/// private keys (`*_pk`, `*key*`) never. The file's own syntax errors give an empty list:
/// [`load`] reports them.
pub fn certificate_settings(text: &str, format: ConfigFormat) -> Vec<(String, PathBuf)> {
    let lines = LineIndex::new(text);
    let root = match format {
        ConfigFormat::Toml => parse_toml(text, "", &lines),
        ConfigFormat::Yaml => parse_yaml(text, ""),
    };
    let mut out = Vec::new();
    if let Ok(root) = root {
        walk_certs(&root, "", false, &mut out);
    }
    out
}

fn walk_certs(node: &Node, path: &str, cert_key: bool, out: &mut Vec<(String, PathBuf)>) {
    match &node.val {
        Val::Map(entries) => {
            for (k, v) in entries {
                let lower = k.to_ascii_lowercase();
                let is_cert =
                    lower.contains("cert") && !lower.contains("key") && !lower.ends_with("pk");
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk_certs(v, &child, is_cert, out);
            }
        }
        Val::Seq(items) => {
            for v in items {
                walk_certs(v, path, cert_key, out);
            }
        }
        Val::Str(s) if cert_key => {
            let file = s.strip_prefix("file://").unwrap_or(s);
            if file.starts_with('/') {
                out.push((path.to_owned(), PathBuf::from(file)));
            }
        }
        _ => {}
    }
}

/// What edgeprobe takes from an IoT Edge configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The file it came from (the `origin` given to [`parse_str`]).
    pub source: String,
    pub format: ConfigFormat,
    pub hostname: Option<String>,
    /// The parent device of a nested (child) edge device.
    pub parent_hostname: Option<String>,
    /// 1.2+: `trust_bundle_cert`; 1.1: `certificates.trusted_ca_certs`.
    pub trust_bundle_cert: Option<PathBuf>,
    pub provisioning: Provisioning,
    /// `agent.config.image`.
    pub agent_image: Option<String>,
    /// `agent.config.auth`.
    pub registry_credentials: Vec<RegistryCredential>,
    /// `agent.env` `UpstreamProtocol`, as written (see [`EdgeConfig::upstream_protocol_parsed`]).
    pub upstream_protocol: Option<String>,
    /// `agent.env` `https_proxy` / `HTTPS_PROXY`; may hold a password.
    pub https_proxy: Option<Secret>,
    pub moby_runtime: MobyRuntime,
    /// 1.1: iotedged's `homedir` (its provisioning backup lives under it).
    pub homedir: Option<PathBuf>,
}

impl EdgeConfig {
    /// The configured `UpstreamProtocol`, if it is one the runtime knows.
    pub fn upstream_protocol_parsed(&self) -> Option<UpstreamProtocol> {
        self.upstream_protocol
            .as_deref()
            .and_then(UpstreamProtocol::parse)
    }

    /// Hub, device id and credentials of a manually provisioned device. DPS devices learn
    /// their hub at run time, so they give `None`, as does a file without provisioning.
    pub fn device_credentials(&self) -> Option<(String, String, Credentials)> {
        let Provisioning::Manual {
            iothub_hostname,
            device_id,
            auth,
        } = &self.provisioning
        else {
            return None;
        };
        let credentials = match auth {
            ManualAuth::Sas(KeyMaterial::Available(key)) => Credentials::SasKey(key.clone()),
            ManualAuth::Sas(KeyMaterial::Unreadable { what, why }) => {
                Credentials::Unavailable(format!("device key {what}: {why}"))
            }
            ManualAuth::X509 { cert, key } => Credentials::X509 {
                cert: cert.clone(),
                key: key.clone(),
            },
            ManualAuth::Unavailable { what, why } => {
                Credentials::Unavailable(format!("{what}: {why}"))
            }
        };
        Some((iothub_hostname.clone(), device_id.clone(), credentials))
    }

    /// Every secret the file held, for scrubbing text that came from elsewhere.
    pub fn secrets(&self) -> Vec<&Secret> {
        let mut out = Vec::new();
        match &self.provisioning {
            Provisioning::Manual {
                auth: ManualAuth::Sas(KeyMaterial::Available(k)),
                ..
            }
            | Provisioning::Dps {
                attestation:
                    DpsAttestation::SymmetricKey {
                        key: KeyMaterial::Available(k),
                    },
                ..
            } => out.push(k),
            _ => {}
        }
        out.extend(
            self.registry_credentials
                .iter()
                .filter_map(|c| c.password.as_ref()),
        );
        out.extend(self.https_proxy.as_ref());
        out
    }
}

/// How the device gets its identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Provisioning {
    /// The file has no `provisioning` section.
    #[default]
    None,
    /// A fixed hub and device: a connection string, or hub + device id + key or certificate.
    Manual {
        iothub_hostname: String,
        device_id: String,
        auth: ManualAuth,
    },
    /// The Device Provisioning Service assigns the hub at run time.
    Dps {
        global_endpoint: String,
        /// 1.2+: `id_scope`; 1.1: `scope_id`.
        id_scope: String,
        registration_id: Option<String>,
        attestation: DpsAttestation,
    },
}

/// How a manually provisioned device authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManualAuth {
    /// A symmetric device key (from a connection string or `device_id_pk`).
    Sas(KeyMaterial),
    /// A client certificate and its private key, from `file://` URIs.
    X509 { cert: PathBuf, key: PathBuf },
    /// X.509, but the certificate or key is not a file edgeprobe can use (a `pkcs11:` key,
    /// a certificate issued at run time by EST or a local CA). `what` names the setting.
    Unavailable { what: String, why: String },
}

/// A symmetric key, or why it could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// The key, base64.
    Available(Secret),
    /// `what` is the key file (or the setting, for a key service URI); `why` the reason,
    /// e.g. "permission denied: run with sudo". Never holds key material.
    Unreadable { what: String, why: String },
}

/// How a DPS-provisioned device proves itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpsAttestation {
    SymmetricKey {
        key: KeyMaterial,
    },
    /// Paths when given as `file://` URIs; `None` when missing, issued at run time or held
    /// by a key service.
    X509 {
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    },
    Tpm,
}

/// Credentials edgeAgent's image is pulled with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryCredential {
    pub server: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// `[moby_runtime]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MobyRuntime {
    /// 1.2+: `uri`; 1.1: `docker_uri`.
    pub uri: Option<String>,
    pub network: NetworkConfig,
}

/// `moby_runtime.network`: a name, or a table with name, IPv6 and IPAM settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    pub name: String,
    pub ipv6: Option<bool>,
    pub ipam: Vec<IpamConfig>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            name: DEFAULT_NETWORK.into(),
            ipv6: None,
            ipam: Vec::new(),
        }
    }
}

/// One entry of `moby_runtime.network.ipam.config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpamConfig {
    pub gateway: Option<String>,
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
}

/// A configuration file that could not be used. One line; never holds key material.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: not found")]
    NotFound { path: String },
    #[error("cannot read {path}: permission denied (run with sudo)")]
    PermissionDenied { path: String },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// The file is not valid TOML / YAML.
    #[error("{origin}: {}invalid {format}: {message}", at_line(.line))]
    Syntax {
        origin: String,
        line: Option<usize>,
        format: ConfigFormat,
        message: String,
    },
    /// Valid syntax, but a setting IoT Edge would refuse (or edgeprobe cannot use).
    #[error("{origin}: {}{key}: {message}", at_line(.line))]
    Invalid {
        origin: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line the error is on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => *line,
            _ => None,
        }
    }
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// A format-neutral tree with line numbers.

struct Node {
    line: Option<usize>,
    val: Val,
}

enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match &self.val {
            Val::Map(entries) => entries
                .iter()
                .find(|(k, v)| k == key && !matches!(v.val, Val::Null))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A key compared without case (environment variable names).
    fn get_nocase(&self, key: &str) -> Option<&Node> {
        match &self.val {
            Val::Map(entries) => entries
                .iter()
                .find(|(k, v)| k.eq_ignore_ascii_case(key) && !matches!(v.val, Val::Null))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn is_map(&self) -> bool {
        matches!(self.val, Val::Map(_))
    }

    fn kind(&self) -> &'static str {
        match self.val {
            Val::Null => "nothing",
            Val::Bool(_) => "a boolean",
            Val::Int(_) | Val::Float(_) => "a number",
            Val::Str(_) => "a string",
            Val::Seq(_) => "a list",
            Val::Map(_) => "a table",
        }
    }
}

/// Byte offsets to 1-based line numbers.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }

    fn line(&self, offset: usize) -> usize {
        match self.0.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

// TOML: parsed with toml_edit, whose items keep their spans, so every value knows its line.

fn parse_toml(text: &str, origin: &str, lines: &LineIndex) -> Result<Node, ConfigError> {
    let doc = toml_edit::ImDocument::parse(text).map_err(|e| ConfigError::Syntax {
        origin: origin.to_owned(),
        line: e.span().map(|s| lines.line(s.start)),
        format: ConfigFormat::Toml,
        // `message()` alone: the full Display quotes the offending line, which may hold a key.
        message: e.message().trim().replace('\n', " "),
    })?;
    Ok(toml_table(doc.as_table(), None, lines))
}

fn toml_line(
    span: Option<Range<usize>>,
    lines: &LineIndex,
    parent: Option<usize>,
) -> Option<usize> {
    span.map(|s| lines.line(s.start)).or(parent)
}

fn toml_table(table: &toml_edit::Table, parent: Option<usize>, lines: &LineIndex) -> Node {
    let line = toml_line(table.span(), lines, parent);
    let entries = table
        .iter()
        .map(|(k, item)| (k.to_owned(), toml_item(item, line, lines)))
        .collect();
    Node {
        line,
        val: Val::Map(entries),
    }
}

fn toml_item(item: &toml_edit::Item, parent: Option<usize>, lines: &LineIndex) -> Node {
    match item {
        toml_edit::Item::None => Node {
            line: parent,
            val: Val::Null,
        },
        toml_edit::Item::Value(v) => toml_value(v, parent, lines),
        toml_edit::Item::Table(t) => toml_table(t, parent, lines),
        toml_edit::Item::ArrayOfTables(a) => {
            let line = toml_line(a.span(), lines, parent);
            Node {
                line,
                val: Val::Seq(a.iter().map(|t| toml_table(t, line, lines)).collect()),
            }
        }
    }
}

fn toml_value(value: &toml_edit::Value, parent: Option<usize>, lines: &LineIndex) -> Node {
    use toml_edit::Value as T;
    let line = toml_line(value.span(), lines, parent);
    let val = match value {
        T::String(s) => Val::Str(s.value().clone()),
        T::Integer(i) => Val::Int(*i.value()),
        T::Float(f) => Val::Float(*f.value()),
        T::Boolean(b) => Val::Bool(*b.value()),
        T::Datetime(d) => Val::Str(d.value().to_string()),
        T::Array(a) => Val::Seq(a.iter().map(|v| toml_value(v, line, lines)).collect()),
        T::InlineTable(t) => Val::Map(
            t.iter()
                .map(|(k, v)| (k.to_owned(), toml_value(v, line, lines)))
                .collect(),
        ),
    };
    Node { line, val }
}

// YAML: serde_yaml_ng has no spans, so lines are found by walking the text's indentation.

fn parse_yaml(text: &str, origin: &str) -> Result<Node, ConfigError> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        let mut message = e.to_string();
        if let Some(l) = &loc {
            message = message.replacen(
                &format!(" at line {} column {}", l.line(), l.column()),
                "",
                1,
            );
        }
        ConfigError::Syntax {
            origin: origin.to_owned(),
            line: loc.map(|l| l.line()),
            format: ConfigFormat::Yaml,
            message: message.replace('\n', " "),
        }
    })?;
    let lines: Vec<&str> = text.lines().collect();
    let mut path = Vec::new();
    Ok(yaml_to_node(value, &lines, &mut path, None))
}

fn yaml_to_node(
    value: serde_yaml_ng::Value,
    lines: &[&str],
    path: &mut Vec<String>,
    line: Option<usize>,
) -> Node {
    use serde_yaml_ng::Value as Y;
    let val = match value {
        Y::Null => Val::Null,
        Y::Bool(b) => Val::Bool(b),
        Y::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Y::String(s) => Val::Str(s),
        Y::Sequence(items) => Val::Seq(
            items
                .into_iter()
                .map(|v| yaml_to_node(v, lines, path, line))
                .collect(),
        ),
        Y::Mapping(map) => {
            let mut entries = Vec::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    _ => continue,
                };
                path.push(key.clone());
                let child_line = yaml_line(lines, path).or(line);
                let node = yaml_to_node(v, lines, path, child_line);
                path.pop();
                entries.push((key, node));
            }
            Val::Map(entries)
        }
        Y::Tagged(t) => return yaml_to_node(t.value, lines, path, line),
    };
    Node { line, val }
}

/// The 1-based line of the block-style key at `path` (first match), by indentation.
fn yaml_line(lines: &[&str], path: &[String]) -> Option<usize> {
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for key in path {
        found = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                continue;
            }
            let indent = line.len() - trimmed.len();
            match parent_indent {
                Some(p) if indent <= p => break,
                None if indent > 0 => continue,
                _ => {}
            }
            let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            if yaml_key_is(item, key) {
                found = Some((i, indent));
                break;
            }
        }
        let (i, indent) = found?;
        from = i + 1;
        parent_indent = Some(indent);
    }
    found.map(|(i, _)| i + 1)
}

fn yaml_key_is(text: &str, key: &str) -> bool {
    [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            text.strip_prefix(k.as_str())
                .and_then(|rest| rest.trim_start().strip_prefix(':'))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        })
}

// ---------------------------------------------------------------------------------------
// From the tree to an EdgeConfig.

struct Reader<'a> {
    origin: &'a str,
}

/// A `file://` URI (or a bare absolute path), or something else.
enum Uri {
    File(PathBuf),
    Other { scheme: String },
}

fn classify_uri(value: &str) -> Uri {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix("file://") {
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if rest.starts_with('/') {
            return Uri::File(PathBuf::from(
                percent_decode_str(rest).decode_utf8_lossy().into_owned(),
            ));
        }
        return Uri::Other {
            scheme: "relative file".into(),
        };
    }
    if value.starts_with('/') {
        return Uri::File(PathBuf::from(value));
    }
    let scheme = value
        .split_once(':')
        .map(|(s, _)| s)
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .unwrap_or("non-URI");
    Uri::Other {
        scheme: scheme.to_owned(),
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "not found".into(),
        io::ErrorKind::PermissionDenied => "permission denied: run with sudo".into(),
        _ => e.to_string(),
    }
}

/// Reads a key file: base64 text is used as is (trimmed); raw bytes, as aziot-keyd stores
/// them, are base64-encoded.
fn read_key_file(path: &Path) -> KeyMaterial {
    let unreadable = |why: String| KeyMaterial::Unreadable {
        what: path.display().to_string(),
        why,
    };
    let bytes = match bounded::read(path, bounded::STATE_LIMIT) {
        Ok(b) => b,
        Err(bounded::ReadError::Io(e)) => return unreadable(io_reason(&e)),
        Err(e) => return unreadable(e.to_string()),
    };
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let text = text.trim();
        if text.is_empty() {
            return unreadable("the file is empty".into());
        }
        let key = Secret::new(text);
        if sas::validate_key(&key).is_ok() {
            return KeyMaterial::Available(key);
        }
    }
    KeyMaterial::Available(Secret::new(B64.encode(&bytes)))
}

impl Reader<'_> {
    fn invalid(&self, line: Option<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A string setting; scalars of other types are taken as their text.
    fn string(&self, parent: &Node, path: &str, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(node) = parent.get(key) else {
            return Ok(None);
        };
        self.string_of(node, &join(path, key)).map(Some)
    }

    fn string_of(&self, node: &Node, full: &str) -> Result<String, ConfigError> {
        match &node.val {
            Val::Str(s) => Ok(s.clone()),
            Val::Int(i) => Ok(i.to_string()),
            Val::Float(f) => Ok(f.to_string()),
            Val::Bool(b) => Ok(b.to_string()),
            _ => Err(self.invalid(
                node.line,
                full,
                format!("expected a string, found {}", node.kind()),
            )),
        }
    }

    fn required_string(&self, parent: &Node, path: &str, key: &str) -> Result<String, ConfigError> {
        let value = self
            .string(parent, path, key)?
            .ok_or_else(|| self.invalid(parent.line, &join(path, key), "missing"))?;
        if value.trim().is_empty() {
            let line = parent.get(key).and_then(|n| n.line);
            return Err(self.invalid(line, &join(path, key), "is empty"));
        }
        Ok(value)
    }

    fn bool(&self, parent: &Node, path: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        match parent.get(key) {
            None => Ok(None),
            Some(Node {
                val: Val::Bool(b), ..
            }) => Ok(Some(*b)),
            Some(n) => Err(self.invalid(
                n.line,
                &join(path, key),
                format!("expected true or false, found {}", n.kind()),
            )),
        }
    }

    fn table<'n>(
        &self,
        parent: &'n Node,
        path: &str,
        key: &str,
    ) -> Result<Option<&'n Node>, ConfigError> {
        match parent.get(key) {
            None => Ok(None),
            Some(n) if n.is_map() => Ok(Some(n)),
            Some(n) => Err(self.invalid(
                n.line,
                &join(path, key),
                format!("expected a table, found {}", n.kind()),
            )),
        }
    }

    fn config(&self, root: &Node, format: ConfigFormat) -> Result<EdgeConfig, ConfigError> {
        if !root.is_map() && !matches!(root.val, Val::Null) {
            return Err(self.invalid(
                root.line,
                "(top level)",
                format!("expected a table of settings, found {}", root.kind()),
            ));
        }
        let trust_bundle_cert = match root.get("trust_bundle_cert") {
            Some(n) => Some(self.cert_path(n, "trust_bundle_cert")?),
            None => match self.table(root, "", "certificates")? {
                Some(certs) => match certs.get("trusted_ca_certs") {
                    Some(n) => Some(self.cert_path(n, "certificates.trusted_ca_certs")?),
                    None => None,
                },
                None => None,
            },
        };

        let mut agent_image = None;
        let mut registry_credentials = Vec::new();
        let mut upstream_protocol = None;
        let mut https_proxy = None;
        if let Some(agent) = self.table(root, "", "agent")? {
            if let Some(config) = self.table(agent, "agent", "config")? {
                agent_image = self.string(config, "agent.config", "image")?;
                if let Some(auth) = self.table(config, "agent.config", "auth")? {
                    registry_credentials.extend(self.registry_auth(auth)?);
                }
            }
            if let Some(env) = self.table(agent, "agent", "env")? {
                if let Some(n) = env.get_nocase("UpstreamProtocol") {
                    upstream_protocol = Some(self.string_of(n, "agent.env.UpstreamProtocol")?);
                }
                if let Some(n) = env.get_nocase("https_proxy") {
                    let v = self.string_of(n, "agent.env.https_proxy")?;
                    if !v.trim().is_empty() {
                        https_proxy = Some(Secret::new(v.trim()));
                    }
                }
            }
        }

        Ok(EdgeConfig {
            source: self.origin.to_owned(),
            format,
            hostname: self.string(root, "", "hostname")?,
            parent_hostname: self.string(root, "", "parent_hostname")?,
            trust_bundle_cert,
            provisioning: self.provisioning(root)?,
            agent_image,
            registry_credentials,
            upstream_protocol,
            https_proxy,
            moby_runtime: self.moby_runtime(root)?,
            homedir: match format {
                ConfigFormat::Yaml => self.string(root, "", "homedir")?.map(PathBuf::from),
                ConfigFormat::Toml => None,
            },
        })
    }

    fn cert_path(&self, node: &Node, key: &str) -> Result<PathBuf, ConfigError> {
        let value = self.string_of(node, key)?;
        match classify_uri(&value) {
            Uri::File(p) => Ok(p),
            Uri::Other { scheme } => Err(self.invalid(
                node.line,
                key,
                format!("expected a file:// URI with an absolute path, found a {scheme} URI"),
            )),
        }
    }

    fn registry_auth(&self, auth: &Node) -> Result<Option<RegistryCredential>, ConfigError> {
        let path = "agent.config.auth";
        let server = self.string(auth, path, "serveraddress")?;
        let username = self.string(auth, path, "username")?;
        let password = self.string(auth, path, "password")?.map(Secret::new);
        match server {
            Some(server) => Ok(Some(RegistryCredential {
                server,
                username,
                password,
            })),
            None if username.is_none() && password.is_none() => Ok(None), // `auth: {}`
            None => Err(self.invalid(auth.line, &join(path, "serveraddress"), "missing")),
        }
    }

    fn moby_runtime(&self, root: &Node) -> Result<MobyRuntime, ConfigError> {
        let Some(moby) = self.table(root, "", "moby_runtime")? else {
            return Ok(MobyRuntime::default());
        };
        let p = "moby_runtime";
        let uri = match self.string(moby, p, "uri")? {
            Some(u) => Some(u),
            None => self.string(moby, p, "docker_uri")?,
        };
        let network = match moby.get("network") {
            None => NetworkConfig::default(),
            Some(
                n @ Node {
                    val: Val::Str(_), ..
                },
            ) => NetworkConfig {
                name: self.string_of(n, "moby_runtime.network")?,
                ..NetworkConfig::default()
            },
            Some(n) if n.is_map() => self.network_table(n)?,
            Some(n) => {
                return Err(self.invalid(
                    n.line,
                    "moby_runtime.network",
                    format!("expected a name or a table, found {}", n.kind()),
                ))
            }
        };
        Ok(MobyRuntime { uri, network })
    }

    fn network_table(&self, net: &Node) -> Result<NetworkConfig, ConfigError> {
        let p = "moby_runtime.network";
        let mut ipam = Vec::new();
        if let Some(ipam_node) = self.table(net, p, "ipam")? {
            let cp = "moby_runtime.network.ipam.config";
            match ipam_node.get("config") {
                None => {}
                Some(Node {
                    val: Val::Seq(items),
                    ..
                }) => {
                    for item in items {
                        if !item.is_map() {
                            return Err(self.invalid(
                                item.line,
                                cp,
                                format!("expected a list of tables, found {} in it", item.kind()),
                            ));
                        }
                        ipam.push(IpamConfig {
                            gateway: self.string(item, cp, "gateway")?,
                            subnet: self.string(item, cp, "subnet")?,
                            ip_range: self.string(item, cp, "ip_range")?,
                        });
                    }
                }
                Some(n) => {
                    return Err(self.invalid(
                        n.line,
                        cp,
                        format!("expected a list, found {}", n.kind()),
                    ))
                }
            }
        }
        Ok(NetworkConfig {
            name: self
                .string(net, p, "name")?
                .unwrap_or_else(|| DEFAULT_NETWORK.into()),
            ipv6: self.bool(net, p, "ipv6")?,
            ipam,
        })
    }

    fn provisioning(&self, root: &Node) -> Result<Provisioning, ConfigError> {
        let Some(prov) = self.table(root, "", "provisioning")? else {
            return Ok(Provisioning::None);
        };
        let p = "provisioning";
        let source_node = prov.get("source");
        let source = self.required_string(prov, p, "source")?;
        match source.as_str() {
            "manual" => self.manual(prov),
            "dps" => self.dps(prov),
            other => Err(self.invalid(
                source_node.and_then(|n| n.line),
                "provisioning.source",
                format!("unknown provisioning source {other:?} (expected manual or dps)"),
            )),
        }
    }

    fn manual(&self, prov: &Node) -> Result<Provisioning, ConfigError> {
        let p = "provisioning";
        let auth = self.table(prov, p, "authentication")?;
        let ap = "provisioning.authentication";

        // 1.2: connection_string; 1.1: device_connection_string, at either level.
        let cs = [
            (Some(prov), p, "connection_string"),
            (Some(prov), p, "device_connection_string"),
            (auth, ap, "device_connection_string"),
        ]
        .into_iter()
        .find_map(|(parent, path, key)| parent?.get(key).map(|n| (n, join(path, key))));
        if let Some((node, key)) = cs {
            return self.connection_string(node, &key);
        }

        let Some(auth) = auth else {
            return Err(self.invalid(
                prov.line,
                p,
                "manual provisioning needs connection_string, or iothub_hostname, device_id and [provisioning.authentication]",
            ));
        };
        // 1.2 keeps hub and device beside `authentication`; 1.1 inside it.
        let (hub_parent, hub_path) = if prov.get("iothub_hostname").is_some() {
            (prov, p)
        } else if auth.get("iothub_hostname").is_some() {
            (auth, ap)
        } else {
            (prov, p)
        };
        let iothub_hostname = self.required_string(hub_parent, hub_path, "iothub_hostname")?;
        let (dev_parent, dev_path) =
            if auth.get("device_id").is_some() && prov.get("device_id").is_none() {
                (auth, ap)
            } else {
                (prov, p)
            };
        let device_id = self.required_string(dev_parent, dev_path, "device_id")?;

        let method_node = auth.get("method");
        let method = self.required_string(auth, ap, "method")?;
        let auth = match method.as_str() {
            "sas" => {
                let node = auth
                    .get("device_id_pk")
                    .ok_or_else(|| self.invalid(auth.line, &join(ap, "device_id_pk"), "missing"))?;
                ManualAuth::Sas(self.key_material(node, &join(ap, "device_id_pk"))?)
            }
            "x509" => self.manual_x509(auth)?,
            other => {
                return Err(self.invalid(
                    method_node.and_then(|n| n.line),
                    &join(ap, "method"),
                    format!("unknown authentication method {other:?} (expected sas or x509)"),
                ))
            }
        };
        Ok(Provisioning::Manual {
            iothub_hostname,
            device_id,
            auth,
        })
    }

    fn connection_string(&self, node: &Node, key: &str) -> Result<Provisioning, ConfigError> {
        let text = self.string_of(node, key)?;
        if text.trim().starts_with('<') && text.trim().ends_with('>') {
            return Err(self.invalid(node.line, key, "still holds the template's placeholder"));
        }
        let cs: ConnectionString =
            text.parse()
                .map_err(|e: crate::identity::ConnectionStringError| {
                    self.invalid(node.line, key, e.to_string())
                })?;
        let Some(k) = cs.key else {
            return Err(self.invalid(
                node.line,
                key,
                "x509=true connection strings are not used by IoT Edge: set method = \"x509\" with identity_cert and identity_pk",
            ));
        };
        Ok(Provisioning::Manual {
            iothub_hostname: cs.host_name,
            device_id: cs.device_id,
            auth: ManualAuth::Sas(KeyMaterial::Available(k)),
        })
    }

    fn manual_x509(&self, auth: &Node) -> Result<ManualAuth, ConfigError> {
        let ap = "provisioning.authentication";
        let mut paths = Vec::new();
        for key in ["identity_cert", "identity_pk"] {
            let full = join(ap, key);
            let node = auth
                .get(key)
                .ok_or_else(|| self.invalid(auth.line, &full, "missing"))?;
            match self.file_or_why(node, &full)? {
                Ok(path) => paths.push(path),
                Err(why) => return Ok(ManualAuth::Unavailable { what: full, why }),
            }
        }
        let key = paths.pop().unwrap_or_default();
        let cert = paths.pop().unwrap_or_default();
        Ok(ManualAuth::X509 { cert, key })
    }

    /// A certificate or key setting: the file's path, or why there is no file to use.
    fn file_or_why(&self, node: &Node, full: &str) -> Result<Result<PathBuf, String>, ConfigError> {
        match &node.val {
            Val::Map(_) => {
                let method = self
                    .string(node, full, "method")?
                    .unwrap_or_else(|| "?".into());
                Ok(Err(format!(
                    "issued at run time (method = {method:?}), not a file edgeprobe can use"
                )))
            }
            _ => {
                let value = self.string_of(node, full)?;
                Ok(match classify_uri(&value) {
                    Uri::File(p) => Ok(p),
                    Uri::Other { scheme } => Err(format!(
                        "held by a key service ({scheme} URI), not a file edgeprobe can use"
                    )),
                })
            }
        }
    }

    /// `{ value = "<base64>" }`, `{ uri = "file:///..." }` or (1.1) a bare base64 string.
    fn key_material(&self, node: &Node, full: &str) -> Result<KeyMaterial, ConfigError> {
        let (value_node, value_key) = match &node.val {
            Val::Str(_) => (node, full.to_owned()),
            Val::Map(_) => {
                if let Some(v) = node.get("value") {
                    (v, join(full, "value"))
                } else if let Some(u) = node.get("uri") {
                    let uri = self.string_of(u, &join(full, "uri"))?;
                    return Ok(match classify_uri(&uri) {
                        Uri::File(path) => read_key_file(&path),
                        Uri::Other { scheme } => KeyMaterial::Unreadable {
                            what: full.to_owned(),
                            why: format!(
                                "held by a key service ({scheme} URI), which edgeprobe cannot read"
                            ),
                        },
                    });
                } else {
                    return Err(self.invalid(node.line, full, "expected value or uri"));
                }
            }
            _ => {
                return Err(self.invalid(
                    node.line,
                    full,
                    format!("expected a key, found {}", node.kind()),
                ))
            }
        };
        let Val::Str(text) = &value_node.val else {
            return Err(self.invalid(
                value_node.line,
                &value_key,
                format!("expected a base64 string, found {}", value_node.kind()),
            ));
        };
        let key = Secret::new(text.trim());
        if key.is_empty() {
            return Err(self.invalid(value_node.line, &value_key, "the key is empty"));
        }
        sas::validate_key(&key)
            .map_err(|e| self.invalid(value_node.line, &value_key, e.to_string()))?;
        Ok(KeyMaterial::Available(key))
    }

    fn dps(&self, prov: &Node) -> Result<Provisioning, ConfigError> {
        let p = "provisioning";
        let global_endpoint = self
            .string(prov, p, "global_endpoint")?
            .unwrap_or_else(|| DEFAULT_DPS_ENDPOINT.into());
        let id_scope = if prov.get("id_scope").is_none() && prov.get("scope_id").is_some() {
            self.required_string(prov, p, "scope_id")?
        } else {
            self.required_string(prov, p, "id_scope")?
        };
        let ap = "provisioning.attestation";
        let att = self
            .table(prov, p, "attestation")?
            .ok_or_else(|| self.invalid(prov.line, ap, "missing"))?;
        let registration_id = match self.string(att, ap, "registration_id")? {
            Some(r) => Some(r),
            None => self.string(prov, p, "registration_id")?,
        };
        let method_node = att.get("method");
        let method = self.required_string(att, ap, "method")?;
        let attestation = match method.as_str() {
            "symmetric_key" => {
                let full = join(ap, "symmetric_key");
                let node = att
                    .get("symmetric_key")
                    .ok_or_else(|| self.invalid(att.line, &full, "missing"))?;
                DpsAttestation::SymmetricKey {
                    key: self.key_material(node, &full)?,
                }
            }
            "x509" => {
                let file = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
                    match att.get(key) {
                        None => Ok(None),
                        Some(n) => Ok(self.file_or_why(n, &join(ap, key))?.ok()),
                    }
                };
                DpsAttestation::X509 {
                    cert: file("identity_cert")?,
                    key: file("identity_pk")?,
                }
            }
            "tpm" => DpsAttestation::Tpm,
            other => {
                return Err(self.invalid(
                    method_node.and_then(|n| n.line),
                    &join(ap, "method"),
                    format!(
                    "unknown attestation method {other:?} (expected symmetric_key, x509 or tpm)"
                ),
                ))
            }
        };
        Ok(Provisioning::Dps {
            global_endpoint,
            id_scope,
            registration_id,
            attestation,
        })
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/configs");

    /// Every key and password in the sample files.
    const SECRETS: [&str; 8] = [
        "ZmFrZS1kZXZpY2Uta2V5LWZvci1lZGdlcHJvYmUtdGVzdHM=",
        "ZmFrZS1rZXktZnJvbS1hLWZpbGUtbm90LXJlYWw=",
        "ZmFrZS1kcHMtZW5yb2xsbWVudC1rZXktbm90LXJlYWw=",
        "ZmFrZS12MTEtZGV2aWNlLWtleS1ub3QtcmVhbA==",
        "ZmFrZS12MTEtZHBzLWdyb3VwLWtleS1ub3QtcmVhbA==",
        "fake-registry-password-123",
        "fake-proxy-pass-456",
        "fake-acr-password-789",
    ];

    fn fixture_text(name: &str) -> String {
        let text = fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
        text.replace("/EDGEPROBE_FIXTURES", FIXTURES)
    }

    fn fixture(name: &str) -> EdgeConfig {
        let path = PathBuf::from(format!("{FIXTURES}/{name}"));
        parse_str(
            &fixture_text(name),
            &path.display().to_string(),
            ConfigFormat::from_path(&path),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn sas(key: &str) -> ManualAuth {
        ManualAuth::Sas(KeyMaterial::Available(Secret::new(key)))
    }

    fn manual(hub: &str, device: &str, auth: ManualAuth) -> Provisioning {
        Provisioning::Manual {
            iothub_hostname: hub.into(),
            device_id: device.into(),
            auth,
        }
    }

    const HUB: &str = "contoso-hub.azure-devices.net";

    #[test]
    fn sample_files_parse_to_the_expected_settings() {
        let s = |v: &str| Some(v.to_owned());
        let p = |v: &str| Some(PathBuf::from(v));
        let default_moby = MobyRuntime {
            uri: s("unix:///var/run/docker.sock"),
            network: NetworkConfig::default(),
        };
        let cases: Vec<(&str, EdgeConfig)> = vec![
            (
                "v1.2-manual-connection-string.toml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Toml,
                    hostname: s("edge-device-01"),
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: manual(HUB, "edge-device-01", sas(SECRETS[0])),
                    agent_image: s("mcr.microsoft.com/azureiotedge-agent:1.5"),
                    registry_credentials: vec![],
                    upstream_protocol: None,
                    https_proxy: None,
                    moby_runtime: default_moby.clone(),
                    homedir: None,
                },
            ),
            (
                "v1.2-manual-sas-inline.toml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Toml,
                    hostname: s("edge-sas-inline"),
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: manual(HUB, "edge-sas-inline", sas(SECRETS[0])),
                    agent_image: None,
                    registry_credentials: vec![],
                    upstream_protocol: s("mqttws"),
                    https_proxy: None,
                    moby_runtime: MobyRuntime::default(),
                    homedir: None,
                },
            ),
            (
                "v1.2-manual-sas-file.toml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Toml,
                    hostname: s("edge-sas-file"),
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: manual(HUB, "edge-sas-file", sas(SECRETS[1])),
                    agent_image: None,
                    registry_credentials: vec![],
                    upstream_protocol: None,
                    https_proxy: None,
                    moby_runtime: MobyRuntime::default(),
                    homedir: None,
                },
            ),
            (
                "v1.2-manual-x509.toml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Toml,
                    hostname: s("edge-x509"),
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: manual(
                        HUB,
                        "edge-x509",
                        ManualAuth::X509 {
                            cert: "/var/aziot/certs/device-id.pem".into(),
                            key: "/var/aziot/secrets/device-id.key.pem".into(),
                        },
                    ),
                    agent_image: None,
                    registry_credentials: vec![],
                    upstream_protocol: None,
                    https_proxy: None,
                    moby_runtime: MobyRuntime::default(),
                    homedir: None,
                },
            ),
            (
                "v1.2-dps-symmetric-key.toml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Toml,
                    hostname: None,
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: Provisioning::Dps {
                        global_endpoint: DEFAULT_DPS_ENDPOINT.into(),
                        id_scope: "0ne00FAKE00".into(),
                        registration_id: s("edge-dps-sym"),
                        attestation: DpsAttestation::SymmetricKey {
                            key: KeyMaterial::Available(Secret::new(SECRETS[2])),
                        },
                    },
                    agent_image: None,
                    registry_credentials: vec![],
                    upstream_protocol: None,
                    https_proxy: None,
                    moby_runtime: MobyRuntime::default(),
                    homedir: None,
                },
            ),
            (
                "v1.2-dps-x509.toml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Toml,
                    hostname: None,
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: Provisioning::Dps {
                        global_endpoint: DEFAULT_DPS_ENDPOINT.into(),
                        id_scope: "0ne00FAKE01".into(),
                        registration_id: s("edge-dps-x509"),
                        attestation: DpsAttestation::X509 {
                            cert: p("/var/aziot/certs/dps-identity.pem"),
                            key: None,
                        },
                    },
                    agent_image: None,
                    registry_credentials: vec![],
                    upstream_protocol: None,
                    https_proxy: None,
                    moby_runtime: MobyRuntime::default(),
                    homedir: None,
                },
            ),
            (
                "v1.2-dps-tpm.toml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Toml,
                    hostname: None,
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: Provisioning::Dps {
                        global_endpoint: DEFAULT_DPS_ENDPOINT.into(),
                        id_scope: "0ne00FAKE02".into(),
                        registration_id: s("edge-dps-tpm"),
                        attestation: DpsAttestation::Tpm,
                    },
                    agent_image: None,
                    registry_credentials: vec![],
                    upstream_protocol: None,
                    https_proxy: None,
                    moby_runtime: MobyRuntime::default(),
                    homedir: None,
                },
            ),
            (
                "v1.2-nested.toml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Toml,
                    hostname: s("child-edge.contoso.local"),
                    parent_hostname: s("parent-edge.contoso.local"),
                    trust_bundle_cert: p("/etc/aziot/certificates/root ca.pem"),
                    provisioning: manual(HUB, "child-edge", sas(SECRETS[0])),
                    agent_image: s("$upstream:443/azureiotedge-agent:1.5"),
                    registry_credentials: vec![RegistryCredential {
                        server: "parent-edge.contoso.local:443".into(),
                        username: s("registry-user"),
                        password: Some(Secret::new("fake-registry-password-123")),
                    }],
                    upstream_protocol: s("AmqpWs"),
                    https_proxy: Some(Secret::new(
                        "http://proxyuser:fake-proxy-pass-456@Proxy.Contoso.local:3128",
                    )),
                    moby_runtime: MobyRuntime {
                        uri: s("unix:///var/run/docker.sock"),
                        network: NetworkConfig {
                            name: "azure-iot-edge".into(),
                            ipv6: Some(true),
                            ipam: vec![
                                IpamConfig {
                                    gateway: s("172.18.0.1"),
                                    subnet: s("172.18.0.0/16"),
                                    ip_range: s("172.18.0.0/24"),
                                },
                                IpamConfig {
                                    gateway: s("fd00:1:2::1"),
                                    subnet: s("fd00:1:2::/64"),
                                    ip_range: None,
                                },
                            ],
                        },
                    },
                    homedir: None,
                },
            ),
            (
                "v1.1-manual.yaml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Yaml,
                    hostname: s("edge-v11"),
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: manual(HUB, "edge-v11", sas(SECRETS[3])),
                    agent_image: s("mcr.microsoft.com/azureiotedge-agent:1.1"),
                    registry_credentials: vec![],
                    upstream_protocol: s("Mqtt"),
                    https_proxy: None,
                    moby_runtime: default_moby.clone(),
                    homedir: p("/var/lib/iotedge"),
                },
            ),
            (
                "v1.1-dps.yaml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Yaml,
                    hostname: s("edge-v11-dps"),
                    parent_hostname: None,
                    trust_bundle_cert: None,
                    provisioning: Provisioning::Dps {
                        global_endpoint: DEFAULT_DPS_ENDPOINT.into(),
                        id_scope: "0ne00FAKE11".into(),
                        registration_id: s("edge-v11-dps"),
                        attestation: DpsAttestation::SymmetricKey {
                            key: KeyMaterial::Available(Secret::new(SECRETS[4])),
                        },
                    },
                    agent_image: s("mcr.microsoft.com/azureiotedge-agent:1.1"),
                    registry_credentials: vec![RegistryCredential {
                        server: "contosoregistry.azurecr.io".into(),
                        username: s("contosoregistry"),
                        password: Some(Secret::new("fake-acr-password-789")),
                    }],
                    upstream_protocol: None,
                    https_proxy: None,
                    moby_runtime: MobyRuntime::default(),
                    homedir: None,
                },
            ),
            (
                "v1.1-network.yaml",
                EdgeConfig {
                    source: String::new(),
                    format: ConfigFormat::Yaml,
                    hostname: s("edge-v11-net"),
                    parent_hostname: None,
                    trust_bundle_cert: p("/etc/iotedge/certs/root-ca.pem"),
                    provisioning: manual(
                        HUB,
                        "edge-v11-net",
                        ManualAuth::X509 {
                            cert: "/etc/iotedge/certs/device.pem".into(),
                            key: "/etc/iotedge/private/device.key.pem".into(),
                        },
                    ),
                    agent_image: s("mcr.microsoft.com/azureiotedge-agent:1.1"),
                    registry_credentials: vec![],
                    upstream_protocol: None,
                    https_proxy: Some(Secret::new("http://proxy.contoso.local:8080/")),
                    moby_runtime: MobyRuntime {
                        uri: s("unix:///var/run/docker.sock"),
                        network: NetworkConfig {
                            name: "custom-edge-net".into(),
                            ipv6: Some(true),
                            ipam: vec![
                                IpamConfig {
                                    gateway: s("172.20.0.1"),
                                    subnet: s("172.20.0.0/16"),
                                    ip_range: s("172.20.10.0/24"),
                                },
                                IpamConfig {
                                    gateway: s("fd00:1::1"),
                                    subnet: s("fd00:1::/64"),
                                    ip_range: None,
                                },
                            ],
                        },
                    },
                    homedir: None,
                },
            ),
        ];
        for (name, mut want) in cases {
            let got = fixture(name);
            want.source = format!("{FIXTURES}/{name}");
            // Secret's Debug hides keys, so compare the secrets themselves first.
            assert_eq!(
                got.secrets().iter().map(|s| s.expose()).collect::<Vec<_>>(),
                want.secrets()
                    .iter()
                    .map(|s| s.expose())
                    .collect::<Vec<_>>(),
                "{name}: secrets"
            );
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn load_picks_the_format_from_the_extension_and_reads_real_files() {
        let cfg = load(Path::new(&format!("{FIXTURES}/v1.1-manual.yaml"))).unwrap();
        assert_eq!(cfg.format, ConfigFormat::Yaml);
        assert_eq!(cfg.upstream_protocol_parsed(), Some(UpstreamProtocol::Mqtt));
        let cfg = load(Path::new(&format!("{FIXTURES}/v1.2-nested.toml"))).unwrap();
        assert_eq!(cfg.format, ConfigFormat::Toml);
        assert_eq!(
            cfg.upstream_protocol_parsed(),
            Some(UpstreamProtocol::AmqpWs)
        );
        assert!(cfg.source.ends_with("fixtures/configs/v1.2-nested.toml"));

        // Loaded as is, the key file URI points nowhere: the key is unreadable, the load is not.
        let cfg = load(Path::new(&format!("{FIXTURES}/v1.2-manual-sas-file.toml"))).unwrap();
        assert_eq!(
            cfg.provisioning,
            manual(
                HUB,
                "edge-sas-file",
                ManualAuth::Sas(KeyMaterial::Unreadable {
                    what: "/EDGEPROBE_FIXTURES/keys/device.key".into(),
                    why: "not found".into(),
                })
            )
        );
        let (_, _, creds) = cfg.device_credentials().unwrap();
        assert_eq!(
            creds,
            Credentials::Unavailable(
                "device key /EDGEPROBE_FIXTURES/keys/device.key: not found".into()
            )
        );

        let missing = format!("{FIXTURES}/nope.toml");
        assert_eq!(
            load(Path::new(&missing)).unwrap_err().to_string(),
            format!("cannot read {missing}: not found")
        );
        assert_eq!(
            ConfigError::PermissionDenied {
                path: "/etc/aziot/config.toml".into()
            }
            .to_string(),
            "cannot read /etc/aziot/config.toml: permission denied (run with sudo)"
        );
    }

    #[test]
    fn malformed_files_give_one_line_errors_with_line_and_key() {
        let cases = [
            (
                "bad-toml-syntax.toml",
                "/etc/aziot/config.toml",
                "/etc/aziot/config.toml: line 5: invalid TOML: invalid basic string",
            ),
            (
                "bad-unknown-source.toml",
                "/etc/aziot/config.toml",
                "/etc/aziot/config.toml: line 7: provisioning.source: unknown provisioning source \"manul\" (expected manual or dps)",
            ),
            (
                "bad-invalid-key.toml",
                "/etc/aziot/config.toml",
                "/etc/aziot/config.toml: line 9: provisioning.authentication.device_id_pk.value: the shared access key is not valid base64",
            ),
            (
                "bad-yaml.yaml",
                "/etc/iotedge/config.yaml",
                "/etc/iotedge/config.yaml: line 4: invalid YAML: did not find expected key, while parsing a block mapping at line 3 column 3",
            ),
        ];
        for (name, origin, want) in cases {
            let format = ConfigFormat::from_path(Path::new(name));
            let err = parse_str(&fixture_text(name), origin, format).unwrap_err();
            assert_eq!(err.to_string(), want, "{name}");
            for s in SECRETS {
                assert!(!err.to_string().contains(s), "{name} leaks a key");
            }
            assert!(!format!("{err:?}").contains("fake-secret-value"), "{name}");
        }
    }

    #[test]
    fn semantic_errors_name_the_key_and_line() {
        let toml = ConfigFormat::Toml;
        let yaml = ConfigFormat::Yaml;
        let cases = [
            (
                toml,
                "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n[provisioning.attestation]\nmethod = \"x5O9\"\n",
                "c: line 5: provisioning.attestation.method: unknown attestation method \"x5O9\" (expected symmetric_key, x509 or tpm)",
            ),
            (
                toml,
                "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n",
                "c: line 1: provisioning.attestation: missing",
            ),
            (
                toml,
                "[provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n[provisioning.authentication]\nmethod = \"sas\"\n",
                "c: line 5: provisioning.authentication.device_id_pk: missing",
            ),
            (
                toml,
                "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;SharedAccessKey=YWJjZA==\"\n",
                "c: line 3: provisioning.connection_string: connection string lacks DeviceId",
            ),
            (
                toml,
                "trust_bundle_cert = \"https://example.com/ca.pem\"\n",
                "c: line 1: trust_bundle_cert: expected a file:// URI with an absolute path, found a https URI",
            ),
            (
                toml,
                "[moby_runtime]\nnetwork = 5\n",
                "c: line 2: moby_runtime.network: expected a name or a table, found a number",
            ),
            (
                toml,
                "[moby_runtime.network]\nipv6 = \"yes\"\n",
                "c: line 2: moby_runtime.network.ipv6: expected true or false, found a string",
            ),
            (
                yaml,
                "hostname: h\nprovisioning:\n  # comment\n  source: \"Manual\"\n",
                "c: line 4: provisioning.source: unknown provisioning source \"Manual\" (expected manual or dps)",
            ),
            (
                yaml,
                "provisioning:\n  source: manual\n  device_connection_string: \"<ADD DEVICE CONNECTION STRING HERE>\"\n",
                "c: line 3: provisioning.device_connection_string: still holds the template's placeholder",
            ),
            (
                yaml,
                "provisioning:\n  source: dps\n  scope_id: s\n  attestation:\n    method: symmetric_key\n    symmetric_key: \"%%%\"\n",
                "c: line 6: provisioning.attestation.symmetric_key: the shared access key is not valid base64",
            ),
            (yaml, "- a\n- b\n", "c: (top level): expected a table of settings, found a list"),
        ];
        for (format, text, want) in cases {
            assert_eq!(
                parse_str(text, "c", format).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn key_files_hold_base64_or_raw_bytes_and_key_services_are_unreadable() {
        let dir = std::env::temp_dir().join(format!("edgeprobe-config-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("raw.key");
        fs::write(&raw, [0u8, 159, 146, 150, 10, 32, 255]).unwrap();
        let text = dir.join("text.key");
        fs::write(&text, "  YWJjZA==\n\n").unwrap();
        let empty = dir.join("empty.key");
        fs::write(&empty, "\n").unwrap();

        let with_uri = |uri: &str| {
            let cfg = format!(
                "[provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n\
                 [provisioning.authentication]\nmethod = \"sas\"\ndevice_id_pk = {{ uri = \"{uri}\" }}\n"
            );
            match parse_str(&cfg, "c", ConfigFormat::Toml)
                .unwrap()
                .provisioning
            {
                Provisioning::Manual {
                    auth: ManualAuth::Sas(k),
                    ..
                } => k,
                other => panic!("{other:?}"),
            }
        };
        let available = |k: KeyMaterial| match k {
            KeyMaterial::Available(s) => s.expose().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            available(with_uri(&format!("file://{}", raw.display()))),
            B64.encode([0u8, 159, 146, 150, 10, 32, 255])
        );
        assert_eq!(
            available(with_uri(&format!("file://{}", text.display()))),
            "YWJjZA=="
        );
        assert_eq!(
            with_uri(&format!("file://{}", empty.display())),
            KeyMaterial::Unreadable {
                what: empty.display().to_string(),
                why: "the file is empty".into()
            }
        );
        assert_eq!(
            with_uri("pkcs11:token=edge;object=device-id?pin-value=1234"),
            KeyMaterial::Unreadable {
                what: "provisioning.authentication.device_id_pk".into(),
                why: "held by a key service (pkcs11 URI), which edgeprobe cannot read".into()
            }
        );
        fs::remove_dir_all(&dir).unwrap();

        // A manual X.509 key held by a key service: unavailable, with the reason.
        let cfg = parse_str(
            "[provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n\
             [provisioning.authentication]\nmethod = \"x509\"\nidentity_cert = \"file:///c.pem\"\n\
             identity_pk = \"pkcs11:object=k?pin-value=1234\"\n",
            "c",
            ConfigFormat::Toml,
        )
        .unwrap();
        let (hub, device, creds) = cfg.device_credentials().unwrap();
        assert_eq!((hub.as_str(), device.as_str()), ("h", "d"));
        assert_eq!(
            creds,
            Credentials::Unavailable(
                "provisioning.authentication.identity_pk: held by a key service (pkcs11 URI), not a file edgeprobe can use".into()
            )
        );
        assert!(!format!("{cfg:?}").contains("1234"));
    }

    #[test]
    fn device_credentials_map_manual_provisioning_only() {
        let (hub, device, creds) = fixture("v1.2-manual-sas-inline.toml")
            .device_credentials()
            .unwrap();
        assert_eq!((hub.as_str(), device.as_str()), (HUB, "edge-sas-inline"));
        assert_eq!(creds, Credentials::SasKey(Secret::new(SECRETS[0])));
        let (_, _, creds) = fixture("v1.2-manual-x509.toml")
            .device_credentials()
            .unwrap();
        assert_eq!(
            creds,
            Credentials::X509 {
                cert: "/var/aziot/certs/device-id.pem".into(),
                key: "/var/aziot/secrets/device-id.key.pem".into()
            }
        );
        assert!(fixture("v1.2-dps-tpm.toml").device_credentials().is_none());
        let empty = parse_str("", "c", ConfigFormat::Toml).unwrap();
        assert_eq!(empty.provisioning, Provisioning::None);
        assert!(empty.device_credentials().is_none());
        assert_eq!(empty.moby_runtime.network.name, "azure-iot-edge");
    }

    #[test]
    fn debug_output_never_shows_keys_or_passwords() {
        let names = fs::read_dir(FIXTURES)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('v'))
            .collect::<Vec<_>>();
        assert!(names.len() >= 11);
        for name in names {
            let cfg = fixture(&name);
            let shown = format!("{cfg:?} {cfg:#?} {:?}", cfg.device_credentials());
            for s in SECRETS {
                assert!(!shown.contains(s), "{name} shows a secret");
            }
            assert!(!shown.contains("1234"), "{name} shows a PIN");
        }
    }

    #[test]
    fn find_default_prefers_the_1_2_file() {
        let root = std::env::temp_dir().join(format!("edgeprobe-find-{}", std::process::id()));
        assert_eq!(find_default_in(&root), None);
        fs::create_dir_all(root.join("etc/iotedge")).unwrap();
        fs::write(root.join("etc/iotedge/config.yaml"), "").unwrap();
        assert_eq!(
            find_default_in(&root),
            Some(root.join("etc/iotedge/config.yaml"))
        );
        fs::create_dir_all(root.join("etc/aziot")).unwrap();
        fs::write(root.join("etc/aziot/config.toml"), "").unwrap();
        assert_eq!(
            find_default_in(&root),
            Some(root.join("etc/aziot/config.toml"))
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn certificate_settings_name_certificates_and_never_keys() {
        let toml = "trust_bundle_cert = \"file:///etc/aziot/trust.pem\"\n\
                    [provisioning]\nsource = \"manual\"\niothub_hostname = \"h\"\ndevice_id = \"d\"\n\
                    [provisioning.authentication]\nmethod = \"x509\"\n\
                    identity_cert = \"file:///var/aziot/certs/id.pem\"\n\
                    identity_pk = \"file:///var/aziot/secrets/id.key.pem\"\n\
                    [edge_ca]\ncert = \"file:///var/aziot/certs/ca.pem\"\npk = \"file:///var/aziot/secrets/ca.key.pem\"\n";
        let got = certificate_settings(toml, ConfigFormat::Toml);
        assert_eq!(
            got,
            vec![
                (
                    "trust_bundle_cert".into(),
                    PathBuf::from("/etc/aziot/trust.pem")
                ),
                (
                    "provisioning.authentication.identity_cert".into(),
                    PathBuf::from("/var/aziot/certs/id.pem")
                ),
                (
                    "edge_ca.cert".into(),
                    PathBuf::from("/var/aziot/certs/ca.pem")
                ),
            ]
        );
        let yaml = "certificates:\n  device_ca_cert: \"/etc/iotedge/ca.pem\"\n  device_ca_pk: \"/etc/iotedge/ca.key\"\n  trusted_ca_certs: \"file:///etc/iotedge/root.pem\"\n";
        let got = certificate_settings(yaml, ConfigFormat::Yaml);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|(k, _)| !k.ends_with("pk")));
        assert!(certificate_settings("[", ConfigFormat::Toml).is_empty());
    }
}

//! Reading the files users name (`--config`, `--trust-bundle`, `--x509-key`, check files,
//! the identity service's state, systemd units) without trusting them: a FIFO must not
//! block the run, `/dev/zero` must not fill memory, and a deeply nested document must not
//! take the parser's time. Every such read goes through [`read_to_string`] or [`read`].

use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Configuration files (config.toml, config.yaml, check files, systemd units).
pub const CONFIG_LIMIT: u64 = 4 * 1024 * 1024;
/// PEM certificate bundles and keys.
pub const PEM_LIMIT: u64 = 4 * 1024 * 1024;
/// Small state files (the identity service's device state).
pub const STATE_LIMIT: u64 = 1024 * 1024;
/// The deepest nesting of `[`/`{` (and YAML indentation levels) a document may have.
pub const MAX_DEPTH: usize = 64;

/// A file that was not read. Messages name what is wrong, not the path (callers name the
/// flag or file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is larger than {} MB", .0 / (1024 * 1024))]
    TooLarge(u64),
    #[error("is not UTF-8 text")]
    NotUtf8,
    #[error("nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl ReadError {
    /// The I/O error kind, for callers that tell "missing" from "unreadable".
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ReadError::Io(e) => Some(e.kind()),
            _ => None,
        }
    }
}

/// Reads at most `limit` bytes of a regular file (a symlink to one is fine). The open
/// does not block on a FIFO, and nothing but a regular file is read.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotRegular(if kind.is_dir() {
            "directory"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_block_device() {
            "block device"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        }));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read(path, limit)?).map_err(|_| ReadError::NotUtf8)
}

/// `O_NONBLOCK` (Linux): the open of a FIFO returns at once instead of waiting for a writer.
const O_NONBLOCK: i32 = 0o4000;

/// Refuses a document that nests deeper than [`MAX_DEPTH`]: brackets and braces outside
/// quoted strings and comments, and YAML block indentation levels. A cheap scan, so a
/// hostile file costs nothing before the real parser sees it.
pub fn check_depth(text: &str) -> Result<(), ReadError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    for c in text.chars() {
        if comment {
            comment = c != '\n';
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q || c == '\n' {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '#' => comment = true,
            '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ReadError::TooDeep);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // YAML block nesting: the number of distinct, increasing indentations in force.
    let mut indents: Vec<usize> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start_matches([' ', '-']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        while indents.last().is_some_and(|&i| i >= indent) {
            indents.pop();
        }
        indents.push(indent);
        if indents.len() > MAX_DEPTH {
            return Err(ReadError::TooDeep);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_only_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "hello").unwrap();
        assert_eq!(read_to_string(&file, 10).unwrap(), "hello");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_to_string(&link, 10).unwrap(), "hello");
        assert!(matches!(read(&file, 4), Err(ReadError::TooLarge(4))));
        assert!(matches!(
            read(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular("character device"))
        ));
        assert!(matches!(
            read(dir.path(), 10),
            Err(ReadError::NotRegular("directory"))
        ));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let started = std::time::Instant::now();
            assert!(matches!(
                read(&fifo, 10),
                Err(ReadError::NotRegular("FIFO"))
            ));
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
        assert!(matches!(
            read(&dir.path().join("missing"), 10).unwrap_err().io_kind(),
            Some(std::io::ErrorKind::NotFound)
        ));
    }

    #[test]
    fn deep_documents_are_refused_before_parsing() {
        assert!(check_depth("a = [[1, 2], {b = \"[[[[\"}] # [[[[").is_ok());
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(check_depth(&deep), Err(ReadError::TooDeep)));
        let yaml: String = (0..200)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(matches!(check_depth(&yaml), Err(ReadError::TooDeep)));
        let flat: String = (0..200).map(|i| format!("k{i}: v\n  - x\n")).collect();
        assert!(check_depth(&flat).is_ok());
    }
}

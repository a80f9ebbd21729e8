//! Writing the files users name (`--output-file`, `bundle -o`) so that nothing planted in
//! the destination directory can redirect the write, nothing special at the destination is
//! replaced, and a reader never sees half a file: the bytes go to a temporary file that is
//! created exclusively (`O_EXCL`, so an existing name or symlink there makes the creation
//! fail instead of being followed) under a random name, mode 0600, then are renamed over
//! the destination. An existing report keeps its mode, a bundle is always 0600; a device
//! node, FIFO, socket or directory at the destination is refused.

use std::fs::Permissions;
use std::io::{self, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// How to write one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// The mode of a file that did not exist.
    pub new_mode: u32,
    /// An existing file keeps its mode (else it gets `new_mode` too).
    pub keep_mode: bool,
    /// Refuse when the destination exists (`O_CREAT|O_EXCL` semantics, atomically).
    pub create_new: bool,
}

impl WriteOptions {
    /// Reports: readable by others, like any file a command writes.
    pub const REPORT: WriteOptions = WriteOptions {
        new_mode: 0o644,
        keep_mode: true,
        create_new: false,
    };
    /// Support bundles: the owner only, whatever the destination had.
    pub const BUNDLE: WriteOptions = WriteOptions {
        new_mode: 0o600,
        keep_mode: false,
        create_new: false,
    };

    /// State kept between runs (`serve`'s history): the owner only.
    pub const STATE: WriteOptions = WriteOptions {
        new_mode: 0o600,
        keep_mode: false,
        create_new: false,
    };

    /// The same, refusing an existing destination (bundles never replace a file).
    pub fn create_new(self) -> Self {
        WriteOptions {
            create_new: true,
            ..self
        }
    }
}

/// Why a file was not written. Messages name what is wrong; the caller names the flag.
#[derive(Debug)]
pub enum WriteError {
    /// The destination is a directory, FIFO, device node or socket.
    NotRegular(&'static str),
    /// The destination exists and the caller asked for a new file.
    Exists,
    Io(io::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::NotRegular(kind) => {
                write!(f, "is a {kind}, not a regular file; refusing to replace it")
            }
            WriteError::Exists => f.write_str("already exists"),
            WriteError::Io(e) => write!(f, "cannot write: {e}"),
        }
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// What kind of thing a non-regular file is, for the error.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Writes `bytes` to `path` through an exclusive temporary file and a rename.
pub fn write(path: &Path, bytes: &[u8], opts: WriteOptions) -> Result<(), WriteError> {
    // What the destination is now (a symlink is judged by what it points at; the rename
    // replaces the link itself, never its target).
    let existing = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(meta) = &existing {
        if !meta.is_file() {
            return Err(WriteError::NotRegular(kind_of(meta)));
        }
        if opts.create_new {
            return Err(WriteError::Exists);
        }
    }
    let mode = existing
        .as_ref()
        .filter(|_| opts.keep_mode)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(opts.new_mode);
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    // tempfile opens with O_CREAT|O_EXCL under a random name: a symlink or file planted at
    // that name makes it pick another, never write through it.
    let mut tmp = tempfile::Builder::new()
        .prefix(".edgeprobe-")
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    let persisted = if opts.create_new {
        tmp.persist_noclobber(path)
    } else {
        tmp.persist(path)
    };
    match persisted {
        Ok(_) => Ok(()),
        Err(e) if opts.create_new && e.error.kind() == io::ErrorKind::AlreadyExists => {
            Err(WriteError::Exists)
        }
        // The temporary file is removed when `e.file` drops.
        Err(e) => Err(WriteError::Io(e.error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_files_get_the_mode_asked_and_existing_ones_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.json");
        write(&report, b"{}", WriteOptions::REPORT).unwrap();
        assert_eq!(mode(&report), 0o644);
        std::fs::set_permissions(&report, Permissions::from_mode(0o600)).unwrap();
        write(&report, b"{1}", WriteOptions::REPORT).unwrap();
        assert_eq!(mode(&report), 0o600, "an existing 0600 file stays 0600");
        assert_eq!(std::fs::read(&report).unwrap(), b"{1}");
        let bundle = dir.path().join("b.tar.gz");
        write(&bundle, b"x", WriteOptions::BUNDLE).unwrap();
        assert_eq!(mode(&bundle), 0o600);
        std::fs::set_permissions(&bundle, Permissions::from_mode(0o644)).unwrap();
        write(&bundle, b"y", WriteOptions::BUNDLE).unwrap();
        assert_eq!(
            mode(&bundle),
            0o600,
            "a bundle is for its owner only, always"
        );
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn special_files_and_existing_files_on_request_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write(dir.path(), b"x", WriteOptions::REPORT),
            Err(WriteError::NotRegular("directory"))
        ));
        let fifo = dir.path().join("fifo");
        if std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(matches!(
                write(&fifo, b"x", WriteOptions::REPORT),
                Err(WriteError::NotRegular("FIFO"))
            ));
            assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        }
        let file = dir.path().join("f");
        write(&file, b"one", WriteOptions::BUNDLE.create_new()).unwrap();
        assert!(matches!(
            write(&file, b"two", WriteOptions::BUNDLE.create_new()),
            Err(WriteError::Exists)
        ));
        assert_eq!(std::fs::read(&file).unwrap(), b"one");
    }

    /// Regression: the temporary name was predictable (`.NAME.PID.tmp`) and a symlink
    /// planted there was followed. Plant symlinks at every name the old scheme and likely
    /// prefixes would use: each target stays untouched.
    #[test]
    fn symlinks_planted_in_the_directory_are_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let out = dir.path().join("x.tar.gz");
        let pid = std::process::id();
        for name in [
            format!(".x.tar.gz.{pid}.tmp"),
            ".edgeprobe-.tmp".to_owned(),
            "x.tar.gz.tmp".to_owned(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        for _ in 0..20 {
            write(&out, b"bundle", WriteOptions::BUNDLE).unwrap();
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&out).unwrap(), b"bundle");
        // A symlink at the destination is replaced, its target untouched.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write(&link, b"report", WriteOptions::REPORT).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

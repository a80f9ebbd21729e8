//! The probe image: a root filesystem made in memory from a host binary and the shared
//! libraries it needs, imported through the engine API (`POST /images/create?fromSrc=-`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{io_reason, one_line, DockerError};

/// Repository of every probe image.
pub const PROBE_REPOSITORY: &str = "edgeprobe-probe";

/// Where the binary lives inside the probe image (its entrypoint).
pub const PROBE_ENTRYPOINT: &str = "/edgeprobe";

/// A locally built probe image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeImage {
    /// `edgeprobe-probe:{version}-{first 12 hex of sha256(binary)}`: what to pass as
    /// [`crate::RunSpec::image`].
    pub reference: String,
    /// The engine's image id (`sha256:...`).
    pub id: String,
    /// `true` when this call imported the image, `false` when the tag already existed.
    pub built: bool,
    /// Size of the image as the engine reports it, in bytes.
    pub size: Option<i64>,
}

/// The tag for a binary with this content and version.
pub fn probe_reference(binary_sha256_hex: &str, version: &str) -> String {
    let version: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let version = if version.is_empty() || version.starts_with(['.', '-']) {
        format!("v{version}")
    } else {
        version
    };
    let short = &binary_sha256_hex[..12.min(binary_sha256_hex.len())];
    format!("{PROBE_REPOSITORY}:{version}-{short}")
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One file of the root filesystem.
#[derive(Debug, Clone)]
pub(crate) struct RootfsFile {
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// Parses `ldd` output into the absolute paths of the libraries and the loader.
/// `not found` entries are returned as errors naming the library.
pub(crate) fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    let mut missing = Vec::new();
    for line in output.lines() {
        let line = line.trim();
        if line.is_empty()
            || line.contains("statically linked")
            || line.contains("not a dynamic executable")
        {
            continue;
        }
        if let Some((name, rest)) = line.split_once("=>") {
            let rest = rest.trim();
            if rest.starts_with("not found") {
                missing.push(name.trim().to_string());
                continue;
            }
            let path = rest.split_whitespace().next().unwrap_or("");
            if path.starts_with('/') {
                paths.push(PathBuf::from(path));
            }
        } else {
            // `/lib64/ld-linux-x86-64.so.2 (0x...)` or `linux-vdso.so.1 (0x...)`
            let path = line.split_whitespace().next().unwrap_or("");
            if path.starts_with('/') {
                paths.push(PathBuf::from(path));
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!("missing shared libraries: {}", missing.join(", ")));
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

fn read(path: &Path) -> Result<Vec<u8>, DockerError> {
    std::fs::read(path).map_err(|e| {
        DockerError::Image(format!("cannot read {}: {}", path.display(), io_reason(&e)))
    })
}

/// glibc's NSS modules for `files` and `dns` live next to libc and are loaded with
/// `dlopen`, so `ldd` does not list them. Since glibc 2.34 they are built into libc and the
/// files are stubs, but shipping them is harmless and keeps older hosts working.
fn nss_modules(libs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in libs {
        let is_libc = lib
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libc.so"));
        if !is_libc {
            continue;
        }
        if let Some(dir) = lib.parent() {
            for name in ["libnss_files.so.2", "libnss_dns.so.2", "libresolv.so.2"] {
                let p = dir.join(name);
                if p.is_file() && !libs.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Everything that goes into the image, given the binary's bytes and the library paths.
pub(crate) fn rootfs_files(
    binary: &[u8],
    libs: &[PathBuf],
    ca_bundle: Option<Vec<u8>>,
) -> Result<Vec<RootfsFile>, DockerError> {
    let mut files = vec![RootfsFile {
        path: PROBE_ENTRYPOINT.to_string(),
        mode: 0o755,
        contents: binary.to_vec(),
    }];
    let mut all_libs = libs.to_vec();
    all_libs.extend(nss_modules(libs));
    for lib in &all_libs {
        // Stored as a regular file at the path the loader asks for (symlinks followed):
        // `/lib64/ld-linux-x86-64.so.2` is the ELF interpreter path.
        files.push(RootfsFile {
            path: lib.to_string_lossy().into_owned(),
            mode: 0o755,
            contents: read(lib)?,
        });
    }
    if let Some(ca) = ca_bundle {
        files.push(RootfsFile {
            path: "/etc/ssl/certs/ca-certificates.crt".into(),
            mode: 0o644,
            contents: ca,
        });
    }
    let text = |path: &str, s: &str| RootfsFile {
        path: path.into(),
        mode: 0o644,
        contents: s.as_bytes().to_vec(),
    };
    files.push(text(
        "/etc/passwd",
        "root:x:0:0:root:/:/edgeprobe\nnobody:x:65534:65534:nobody:/nonexistent:/edgeprobe\n",
    ));
    files.push(text("/etc/group", "root:x:0:\nnogroup:x:65534:\n"));
    files.push(text("/etc/nsswitch.conf", "hosts: files dns\n"));
    // Mount targets the engine bind-mounts over; present so no runtime has to create them.
    files.push(text("/etc/hosts", ""));
    files.push(text("/etc/hostname", ""));
    files.push(text("/etc/resolv.conf", ""));
    Ok(files)
}

/// A deterministic tar of the root filesystem: parent directories first, fixed mtime and
/// owner, so the same inputs give the same bytes.
pub(crate) fn rootfs_tar(files: &[RootfsFile]) -> Result<Vec<u8>, DockerError> {
    let mut dirs: BTreeMap<String, u32> = BTreeMap::new();
    for d in ["/tmp", "/etc", "/proc", "/sys", "/dev"] {
        dirs.insert(d.to_string(), if d == "/tmp" { 0o1777 } else { 0o755 });
    }
    for f in files {
        let mut p = Path::new(&f.path).parent();
        while let Some(dir) = p {
            let s = dir.to_string_lossy();
            if s == "/" || s.is_empty() {
                break;
            }
            dirs.entry(s.into_owned()).or_insert(0o755);
            p = dir.parent();
        }
    }
    let err = |e: std::io::Error| DockerError::Image(format!("cannot write the rootfs tar: {e}"));
    let mut builder = tar::Builder::new(Vec::new());
    // BTreeMap order puts every parent before its children.
    for (dir, mode) in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        builder
            .append_data(
                &mut h,
                format!("{}/", dir.trim_start_matches('/')),
                std::io::empty(),
            )
            .map_err(err)?;
    }
    let mut sorted: Vec<&RootfsFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for f in sorted {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(f.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(f.contents.len() as u64);
        builder
            .append_data(
                &mut h,
                f.path.trim_start_matches('/'),
                f.contents.as_slice(),
            )
            .map_err(err)?;
    }
    builder.into_inner().map_err(err)
}

/// Runs `ldd` on the binary (bounded by the deadline) and returns the library paths.
pub(crate) async fn ldd(
    binary: &Path,
    deadline: tokio::time::Instant,
) -> Result<Vec<PathBuf>, DockerError> {
    let mut cmd = tokio::process::Command::new("ldd");
    cmd.arg(binary)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout_at(deadline, cmd.output())
        .await
        .map_err(|_| DockerError::Timeout("listing the binary's shared libraries (ldd)"))?
        .map_err(|e| DockerError::Image(format!("cannot run ldd: {}", io_reason(&e))))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // ldd exits 1 for a static binary ("not a dynamic executable"): nothing to add.
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
            || stdout.contains("statically linked")
        {
            return Ok(Vec::new());
        }
        return Err(DockerError::Image(format!(
            "ldd {} failed: {}",
            binary.display(),
            one_line(&stderr)
        )));
    }
    parse_ldd(&stdout).map_err(|e| DockerError::Image(format!("{}: {e}", binary.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)\n\
                   \tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f03)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f02204a6000)\n";
        let libs = parse_ldd(out).unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libm.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        let err = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(err.contains("libfoo.so.1"), "{err}");
    }

    #[test]
    fn reference_is_a_valid_tag() {
        let hex = sha256_hex(b"x");
        assert_eq!(
            probe_reference(&hex, "0.1.0"),
            format!("edgeprobe-probe:0.1.0-{}", &hex[..12])
        );
        assert_eq!(
            probe_reference(&hex, "1.0.0+build/7"),
            format!("edgeprobe-probe:1.0.0-build-7-{}", &hex[..12])
        );
        assert!(probe_reference(&hex, "").starts_with("edgeprobe-probe:v-"));
    }

    #[test]
    fn tar_is_deterministic_and_has_parents() {
        let files = rootfs_files(b"\x7fELF", &[], Some(b"CA".to_vec())).unwrap();
        let a = rootfs_tar(&files).unwrap();
        let b = rootfs_tar(&files).unwrap();
        assert_eq!(a, b);
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(a.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            names.push(e.path().unwrap().to_string_lossy().into_owned());
        }
        for want in [
            "edgeprobe",
            "etc/",
            "etc/ssl/",
            "etc/ssl/certs/",
            "etc/ssl/certs/ca-certificates.crt",
            "etc/nsswitch.conf",
            "etc/passwd",
            "tmp/",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        let etc = names.iter().position(|n| n == "etc/").unwrap();
        let passwd = names.iter().position(|n| n == "etc/passwd").unwrap();
        assert!(etc < passwd);
    }
}

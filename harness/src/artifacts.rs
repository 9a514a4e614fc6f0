//! The workload artifacts embedded in `vmct` at build time (see `harness/build.rs`): the static Linux
//! workload binary and the bare guest ELF. The binary is written once to a cache directory keyed by its
//! content hash so containers and processes can exec it; `VMCT_WORKLOAD` / `VMCT_GUEST` override them.
use std::path::PathBuf;
use std::sync::OnceLock;

/// The static Linux workload (`vmct-workload`).
pub static WORKLOAD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vmct-workload"));
/// The static VMM launcher (`vmct-vmm`, one microVM per process).
pub static VMM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vmct-vmm"));
/// /init of the crash experiment's guest (`vmct-crash-init`, crate container, static).
pub static CRASH_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vmct-crash-init"));
/// The bare microVM guest ELF (empty if it was not built).
pub static GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vmct-guest"));
/// The git commit `vmct` was built from (empty outside a git checkout).
pub const GIT_COMMIT: &str = env!("VMCT_GIT_COMMIT");

/// Errors locating artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The cache directory could not be written.
    #[error("artifacts: cannot write {path}: {source}; set XDG_CACHE_HOME to a writable directory")]
    Write {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An override path does not exist.
    #[error("artifacts: {var}={path} does not exist")]
    Override {
        /// Variable.
        var: &'static str,
        /// Path.
        path: PathBuf,
    },
    /// The guest was not built into this binary.
    #[error(
        "artifacts: this vmct was built without the bare guest image; rebuild from a full checkout or set VMCT_GUEST"
    )]
    NoGuest,
}

/// FNV-1a 64 of the bytes (a cache key, not a security hash).
pub fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// vmct's cache directory: `$XDG_CACHE_HOME/vmct`, `$HOME/.cache/vmct`, or `/var/tmp/vmct`.
pub fn cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("vmct");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(h).join(".cache/vmct");
    }
    PathBuf::from("/var/tmp/vmct")
}

/// Path of an executable copy of the workload binary (written on first use).
pub fn workload_path() -> Result<PathBuf, ArtifactError> {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    if let Some(p) = PATH.get() {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("VMCT_WORKLOAD") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(ArtifactError::Override { var: "VMCT_WORKLOAD", path: p });
        }
        return Ok(PATH.get_or_init(|| p).clone());
    }
    let dir = cache_dir().join(format!("artifacts/{:016x}", content_hash(WORKLOAD)));
    let path = dir.join("vmct-workload");
    if !path.is_file() {
        write_executable(&dir, &path, WORKLOAD)?;
    }
    Ok(PATH.get_or_init(|| path).clone())
}

fn write_executable(dir: &std::path::Path, path: &std::path::Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| ArtifactError::Write { path: path.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    // Unique per process and call: tests extract the same artifact from several threads at once.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{seq}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Path of an executable copy of the static VMM (`VMCT_VMM` overrides it).
pub fn vmm_path() -> Result<PathBuf, ArtifactError> {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    extracted(&PATH, "VMCT_VMM", "vmct-vmm", VMM)
}

/// Path of a file holding the bare guest ELF, for the VMM process: `VMCT_GUEST` if set, else the
/// embedded image written to the cache.
pub fn guest_path() -> Result<PathBuf, ArtifactError> {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    if GUEST.is_empty() && std::env::var_os("VMCT_GUEST").is_none() {
        return Err(ArtifactError::NoGuest);
    }
    extracted(&PATH, "VMCT_GUEST", "vmct-guest", GUEST)
}

/// `var` if set (must exist), else `bytes` written once to the cache as `name` (keyed by content).
fn extracted(
    cell: &'static OnceLock<PathBuf>,
    var: &'static str,
    name: &str,
    bytes: &[u8],
) -> Result<PathBuf, ArtifactError> {
    if let Some(p) = cell.get() {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(ArtifactError::Override { var, path: p });
        }
        return Ok(cell.get_or_init(|| p).clone());
    }
    let dir = cache_dir().join(format!("artifacts/{:016x}", content_hash(bytes)));
    let path = dir.join(name);
    if !path.is_file() {
        write_executable(&dir, &path, bytes)?;
    }
    Ok(cell.get_or_init(|| path).clone())
}

/// The bare guest ELF: `VMCT_GUEST` if set, else the embedded one.
pub fn guest_image() -> Result<std::borrow::Cow<'static, [u8]>, ArtifactError> {
    if let Some(p) = std::env::var_os("VMCT_GUEST") {
        let p = PathBuf::from(p);
        return std::fs::read(&p)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| ArtifactError::Override { var: "VMCT_GUEST", path: p });
    }
    if GUEST.is_empty() {
        return Err(ArtifactError::NoGuest);
    }
    Ok(std::borrow::Cow::Borrowed(GUEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_workload_is_a_static_elf_and_extracts() {
        assert_eq!(&WORKLOAD[..4], b"\x7fELF");
        let p = workload_path().unwrap();
        let out = std::process::Command::new(&p).arg("ready").output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "@vmct ready\n@vmct done 0\n");
        assert_eq!(content_hash(b""), 0xcbf2_9ce4_8422_2325);
    }
}

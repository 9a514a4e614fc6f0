//! The optional busybox layer: Debian's `busybox-static` as `/bin/busybox` plus a link per applet
//! (`/bin/sh`, `/bin/ls`, ...), built once per busybox binary and stacked on an image by `vmct shell`
//! and by image specs with `busybox = true`.
use std::path::{Path, PathBuf};

/// Where a static busybox is looked for, in order.
pub const CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// Errors finding or packing busybox.
#[derive(Debug, thiserror::Error)]
pub enum BusyboxError {
    /// No busybox binary.
    #[error("busybox: not installed (looked for {CANDIDATES:?}); install Debian's busybox-static: apt-get install -y busybox-static")]
    Missing,
    /// A dynamically linked busybox cannot run inside an image without its libraries.
    #[error("busybox: {0} is dynamically linked and would not run inside an image; install busybox-static instead")]
    Dynamic(PathBuf),
    /// Reading it or building the layer failed.
    #[error("busybox: {0}")]
    Build(String),
}

/// The first static busybox of [`CANDIDATES`].
pub fn find() -> Result<PathBuf, BusyboxError> {
    let mut dynamic = None;
    for c in CANDIDATES.iter().map(Path::new) {
        let Ok(bytes) = std::fs::read(c) else { continue };
        if is_static_elf(&bytes) {
            return Ok(c.to_path_buf());
        }
        dynamic.get_or_insert_with(|| c.to_path_buf());
    }
    Err(dynamic.map_or(BusyboxError::Missing, BusyboxError::Dynamic))
}

/// The busybox layer (built under the image root on first use, keyed by the binary's content).
pub fn layer() -> Result<PathBuf, BusyboxError> {
    let bin = find()?;
    let bytes = std::fs::read(&bin).map_err(|e| BusyboxError::Build(format!("cannot read {}: {e}", bin.display())))?;
    let dest = crate::backend::container::image_root()
        .join(format!("busybox-{:016x}", crate::artifacts::content_hash(&bytes)));
    if dest.join(".complete").is_file() {
        return Ok(dest);
    }
    let out = std::process::Command::new(&bin)
        .arg("--list")
        .output()
        .map_err(|e| BusyboxError::Build(format!("cannot run {} --list: {e}", bin.display())))?;
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let applets = applets(&list);
    let paths: Vec<String> = applets.iter().map(|a| format!("/bin/{a}")).collect();
    let links: Vec<(&str, &str)> = paths.iter().map(|p| (p.as_str(), "busybox")).collect();
    let owner = Some((container::USERNS_BASE, container::USERNS_BASE));
    container::image::build_layer_with(&dest, &[(&bin, "/bin/busybox")], &links, owner)
        .map_err(|e| BusyboxError::Build(e.to_string()))
}

/// Applet names from `busybox --list` (one per line; names with '/' or leading '.' dropped).
fn applets(list: &str) -> Vec<&str> {
    list.lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/') && !a.starts_with('.') && *a != "busybox")
        .collect()
}

/// Whether `bytes` is an ELF executable without a program interpreter (PT_INTERP), i.e. static.
/// Hand-written (a dozen lines) rather than pulling an ELF crate into the harness for one flag.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let Ok(phoff) = usize::try_from(u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes"))) else {
        return false;
    };
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        bytes.get(o..o + 4).is_none_or(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are dynamically linked (crt-static is only used for the workload and the VMM).
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        if let Ok(p) = find() {
            assert!(is_static_elf(&std::fs::read(p).unwrap()));
        }
    }

    #[test]
    fn parses_applet_lists() {
        assert_eq!(applets("sh\nls\n\nbusybox\n../x\n"), vec!["sh", "ls"]);
    }
}

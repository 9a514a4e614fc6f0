//! An image's root disk for linux guests, the way Firecracker and Kata users give a microVM a
//! container image: the layers flattened (whiteouts and opaque directories applied) into a read-only
//! ext4 file system the guest gets on virtio-blk; its /init puts a tmpfs overlay on top for changes.
//!
//! ext4 rather than erofs: the guest kernel already has ext4 for the io scenario's disk and the host
//! already has `mkfs.ext4 -d` (e2fsprogs) for it, so no new kernel option and no new Debian package;
//! erofs (erofs-utils) would make smaller, compressed images, which matters for large images pulled
//! over a network, not for a local comparison. The journal is left out (`-O ^has_journal`): the disk
//! is mounted read-only.
//!
//! Steps ([`build`]), timed together as the VM side's image-build cost (a container needs nothing
//! beyond the layers):
//! 1. flatten: the layers are mounted as one read-only overlayfs in a private mount namespace of a
//!    `cp -a` child (the host kernel applies whiteouts and opaque dirs exactly as a container sees
//!    them; the mount ends with the child) and copied into a staging dir;
//! 2. owners shifted back: layers store owners shifted by `container::USERNS_BASE`, the guest
//!    sees the image's own ids;
//! 3. `mkfs.ext4 -d staging` into a sparse file sized from the content.
//!
//! Cached by the image's digest (or, for images without one, a hash of its layer list and creation
//! time) as `<image root>/rootdisks/<key>.ext4` with the build figures beside it in `<key>.json`;
//! `vmct images --rm` removes an image's disk ([`remove_for`]), `vmct gc` the disks of images that
//! are gone ([`orphans`]).
use super::ImageRecord;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian package with `mkfs.ext4`.
pub const MKFS_PACKAGE: &str = "e2fsprogs";
/// The file system of root disks.
pub const FS: &str = "ext4";

/// Errors building a root disk; each names the image and the step.
#[derive(Debug, thiserror::Error)]
pub enum RootDiskError {
    /// A step failed.
    #[error("root disk of image '{image}': {step}: {why}")]
    Step {
        /// The image.
        image: String,
        /// The step (flatten, mkfs.ext4, ...).
        step: &'static str,
        /// What went wrong.
        why: String,
    },
}

/// A root disk and what building it cost.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RootDisk {
    /// The disk image.
    pub path: PathBuf,
    /// File system ([`FS`]).
    pub fs: String,
    /// Host seconds to flatten the layers and make the file system (when it was built).
    pub build_s: f64,
    /// Bytes the disk image occupies on the host (allocated blocks).
    pub bytes: u64,
    /// Its apparent size, bytes (the guest's block device size).
    pub size_bytes: u64,
    /// Bytes of the flattened files copied into it.
    pub content_bytes: u64,
    /// Found in the cache (built by an earlier run): `build_s` is that build's.
    #[serde(default)]
    pub cached: bool,
}

/// `<image root>/rootdisks`.
pub fn dir() -> PathBuf {
    crate::backend::container::image_root().join("rootdisks")
}

/// The cache key of `rec`'s disk.
pub fn key(rec: &ImageRecord) -> String {
    match &rec.digest {
        Some(d) => format!("sha256-{}", d.trim_start_matches("sha256:")),
        None => {
            let mut s = format!("{}\n", rec.created_unix_s);
            for l in &rec.layers {
                s.push_str(&l.to_string_lossy());
                s.push('\n');
            }
            format!("layers-{:016x}", crate::artifacts::content_hash(s.as_bytes()))
        }
    }
}

/// Build `rec`'s root disk, or return the cached one.
pub fn build(rec: &ImageRecord) -> Result<RootDisk, RootDiskError> {
    build_in(rec, &dir())
}

/// [`build`] with the disk, its record and the build's temporaries in `dir` instead of the shared cache
/// (a run's own image, whose disk `vmct gc` must not take for an orphan while the run uses it).
pub fn build_in(rec: &ImageRecord, dir: &Path) -> Result<RootDisk, RootDiskError> {
    let fail = |step: &'static str| {
        let image = rec.name.clone();
        move |why: String| RootDiskError::Step { image, step, why }
    };
    let dir = || dir.to_path_buf();
    let k = key(rec);
    let (disk, meta) = (dir().join(format!("{k}.ext4")), dir().join(format!("{k}.json")));
    if let Some(mut d) = std::fs::read(&meta).ok().and_then(|b| serde_json::from_slice::<RootDisk>(&b).ok()) {
        if disk.is_file() {
            d.cached = true;
            d.path = disk;
            return Ok(d);
        }
    }
    std::fs::create_dir_all(dir()).map_err(|e| fail("create the cache dir")(format!("{}: {e}", dir().display())))?;
    let t0 = std::time::Instant::now();
    let staging = container::image::temp_sibling(&dir().join(format!("{k}.d")));
    let mnt = container::image::temp_sibling(&dir().join(format!("{k}.mnt")));
    let tmp_disk = container::image::temp_sibling(&disk);
    let r = (|| {
        flatten(&rec.layers, &staging, &mnt).map_err(fail("flatten the layers"))?;
        let (content_bytes, entries) =
            unshift_owners(&staging).map_err(|e| fail("shift owners back")(e.to_string()))?;
        // Content, one block per entry for inodes and directories, ext4 metadata; at least 16 MiB.
        let size_mib = (content_bytes + content_bytes / 5 + entries * 4096) / (1 << 20) + 16;
        mkfs(&staging, &tmp_disk, size_mib).map_err(fail("mkfs.ext4"))?;
        std::fs::rename(&tmp_disk, &disk).map_err(|e| fail("publish")(format!("{}: {e}", disk.display())))?;
        let m = disk.metadata().map_err(|e| fail("publish")(e.to_string()))?;
        let d = RootDisk {
            path: disk.clone(),
            fs: FS.into(),
            build_s: t0.elapsed().as_secs_f64(),
            bytes: m.blocks() * 512,
            size_bytes: m.len(),
            content_bytes,
            cached: false,
        };
        let json = serde_json::to_vec_pretty(&d).expect("serializable");
        super::store::write_atomic(&meta, &json).map_err(|e| fail("record the build")(e.to_string()))?;
        Ok(d)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir(&mnt);
    let _ = std::fs::remove_file(&tmp_disk);
    r
}

/// Copy the merged view of `layers` (bottom first) into `staging`.
fn flatten(layers: &[PathBuf], staging: &Path, mnt: &Path) -> Result<(), String> {
    std::fs::create_dir(staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    let src = match layers {
        [] => return Err("the image has no layers".into()),
        [one] => one.clone(),
        _ => {
            std::fs::create_dir(mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
            mnt.to_path_buf()
        }
    };
    let mut cp = Command::new("cp");
    cp.arg("-a").arg("--").arg(src.join(".")).arg(staging);
    if layers.len() > 1 {
        let lower: Vec<String> = layers.iter().rev().map(|l| l.to_string_lossy().into_owned()).collect();
        let data = std::ffi::CString::new(format!("lowerdir={}", lower.join(":"))).map_err(|e| e.to_string())?;
        let target = std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: the closure only makes async-signal-safe system calls on strings prepared before the
        // fork (container::sys::private_mount_ns allocates nothing).
        unsafe {
            cp.pre_exec(move || container::sys::private_mount_ns(Some((&target, &data)), None));
        }
    }
    let out = cp.output().map_err(|e| format!("cannot run cp: {e}"))?;
    if !out.status.success() {
        return Err(format!("cp -a failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// Shift owners stored as `USERNS_BASE + id` back to `id`; returns (bytes of files, entries).
fn unshift_owners(root: &Path) -> std::io::Result<(u64, u64)> {
    let base = container::USERNS_BASE;
    let back = |id: u32| if (base..base + container::USERNS_SIZE).contains(&id) { id - base } else { id };
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = p.symlink_metadata()?;
        entries += 1;
        if m.is_file() {
            bytes += m.len();
        }
        if back(m.uid()) != m.uid() || back(m.gid()) != m.gid() {
            std::os::unix::fs::lchown(&p, Some(back(m.uid())), Some(back(m.gid())))?;
            // chown clears setuid/setgid bits: put them back.
            if m.is_file() && m.mode() & 0o6000 != 0 {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            }
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p)? {
                todo.push(e?.path());
            }
        }
    }
    Ok((bytes, entries))
}

fn mkfs(staging: &Path, image: &Path, size_mib: u64) -> Result<(), String> {
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vmct-root", "-m", "0", "-O", "^has_journal", "-E", "root_owner=0:0", "-d"])
        .arg(staging)
        .arg(image)
        .arg(format!("{size_mib}M"))
        .output()
        .map_err(|e| format!("cannot run mkfs.ext4 (install Debian's {MKFS_PACKAGE}): {e}"))?;
    if !out.status.success() {
        return Err(format!("{} ({size_mib} MiB): {}", image.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// Remove `rec`'s cached disk; returns the bytes freed.
pub fn remove_for(rec: &ImageRecord) -> u64 {
    let k = key(rec);
    let mut freed = 0;
    for ext in ["ext4", "json"] {
        let p = dir().join(format!("{k}.{ext}"));
        if let Ok(m) = p.metadata() {
            if std::fs::remove_file(&p).is_ok() {
                freed += m.blocks() * 512;
            }
        }
    }
    freed
}

/// Cached disks (and their records) no image in `images` has: what `vmct gc` removes.
pub fn orphans(images: &[ImageRecord]) -> Vec<PathBuf> {
    let keys: Vec<String> = images.iter().map(key).collect();
    std::fs::read_dir(dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let stem = name.strip_suffix(".ext4").or_else(|| name.strip_suffix(".json"));
            // Temporaries of a build whose process is gone, too.
            let dead_tmp =
                container::image::temp_owner(&name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            dead_tmp || stem.is_some_and(|s| !keys.iter().any(|k| k == s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_digest_or_the_layers() {
        let mut r: ImageRecord = serde_json::from_value(serde_json::json!({
            "name": "a", "layers": ["/l/1", "/l/2"], "layer_tar_bytes": 0, "whiteouts": 0, "created_unix_s": 1.0
        }))
        .unwrap();
        let by_layers = key(&r);
        assert!(by_layers.starts_with("layers-"));
        r.layers.push("/l/3".into());
        assert_ne!(key(&r), by_layers);
        r.digest = Some("sha256:abc".into());
        assert_eq!(key(&r), "sha256-abc");
        assert!(orphans(&[r.clone()]).iter().all(|p| !p.ends_with("sha256-abc.ext4")));
    }
}

//! `commit`: turn a container's overlay upper dir into a new read-only layer.
//!
//! The layer is written twice: as a tar in the OCI convention (`layer.tar`; an overlayfs whiteout, a
//! 0/0 character device, becomes an empty `.wh.<name>` file, an opaque directory gets a `.wh..wh..opq`
//! entry) and unpacked into a directory (`layer/`) in overlayfs form (whiteouts as 0/0 character
//! devices, opaque directories marked with the `trusted.overlay.opaque` xattr) that can be stacked as a
//! lower dir on top of the image's layers. The tree walk that converts whiteouts is hand-written (about
//! 60 lines): the `tar` crate writes and reads the archive, but knows nothing of either whiteout form.
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// OCI whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Errors committing or unpacking a layer; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// File system error.
    #[error("commit: {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CommitError + '_ {
    move |source| CommitError::Io { path: path.to_path_buf(), source }
}

/// A committed layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The OCI-style tar.
    pub tar: PathBuf,
    /// The unpacked overlay lower dir.
    pub dir: PathBuf,
    /// Size of the tar, bytes.
    pub tar_bytes: u64,
    /// Whiteouts (deletions) carried by the layer.
    pub whiteouts: usize,
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { return false };
    let mut v = [0u8; 2];
    // SAFETY: c is a valid C string; the name is a static C string; v is a writable buffer of v.len().
    let n = unsafe { libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    n == 1 && v[0] == b'y'
}

/// Write `upper` as an OCI layer tar at `tar_path`; returns the number of whiteouts.
pub fn write_tar(upper: &Path, tar_path: &Path) -> Result<usize, CommitError> {
    let f = fs::File::create(tar_path).map_err(io(tar_path))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    b.follow_symlinks(false);
    let mut whiteouts = 0;
    let mut stack = vec![upper.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> =
            fs::read_dir(&dir).map_err(io(&dir))?.collect::<Result<Vec<_>, _>>().map_err(io(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(upper).expect("under upper");
            let m = fs::symlink_metadata(&p).map_err(io(&p))?;
            if is_whiteout(&m) {
                let name = format!("{WHITEOUT_PREFIX}{}", e.file_name().to_string_lossy());
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_mode(0o600);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, rel.with_file_name(name), std::io::empty()).map_err(io(&p))?;
                whiteouts += 1;
                continue;
            }
            b.append_path_with_name(&p, rel).map_err(io(&p))?;
            if m.is_dir() {
                if is_opaque(&p) {
                    let mut h = tar::Header::new_gnu();
                    h.set_size(0);
                    h.set_mode(0o600);
                    b.append_data(&mut h, rel.join(OPAQUE_MARKER), std::io::empty()).map_err(io(&p))?;
                }
                stack.push(p);
            }
        }
    }
    b.into_inner().map_err(io(tar_path))?;
    Ok(whiteouts)
}

/// Unpack an OCI layer tar into `dir` in overlayfs form (whiteouts become 0/0 character devices).
pub fn unpack_for_overlay(tar_path: &Path, dir: &Path) -> Result<(), CommitError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let f = fs::File::open(tar_path).map_err(io(tar_path))?;
    let mut a = tar::Archive::new(f);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    for e in a.entries().map_err(io(tar_path))? {
        let mut e = e.map_err(io(tar_path))?;
        let rel = e.path().map_err(io(tar_path))?.into_owned();
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == OPAQUE_MARKER {
            let target = dir.join(rel.parent().unwrap_or(Path::new("")));
            let c = CString::new(target.as_os_str().as_bytes()).expect("no NUL in path");
            // SAFETY: valid C strings and a 1-byte value buffer.
            let r =
                unsafe { libc::lsetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), c"y".as_ptr().cast(), 1, 0) };
            if r != 0 {
                return Err(CommitError::Io { path: target, source: std::io::Error::last_os_error() });
            }
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let target = dir.join(rel.with_file_name(hidden));
            let c = CString::new(target.as_os_str().as_bytes()).expect("no NUL in path");
            // SAFETY: valid C string; a 0/0 character device is overlayfs' whiteout.
            if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) } != 0 {
                return Err(CommitError::Io { path: target, source: std::io::Error::last_os_error() });
            }
        } else {
            e.unpack_in(dir).map_err(io(dir))?;
        }
    }
    Ok(())
}

/// Commit `upper` into `dest` (`dest/layer.tar` and `dest/layer/`).
pub fn commit(upper: &Path, dest: &Path) -> Result<Layer, CommitError> {
    fs::create_dir_all(dest).map_err(io(dest))?;
    let tar = dest.join("layer.tar");
    let whiteouts = write_tar(upper, &tar)?;
    let dir = dest.join("layer");
    unpack_for_overlay(&tar, &dir)?;
    let tar_bytes = fs::metadata(&tar).map_err(io(&tar))?.len();
    Ok(Layer { tar, dir, tar_bytes, whiteouts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_roundtrip_through_the_oci_tar() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped whiteouts_roundtrip_through_the_oci_tar: needs root for mknod");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/new.txt"), "hello").unwrap();
        let wh = CString::new(upper.join("etc/gone").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR, 0) }, 0);
        let layer = commit(&upper, &t.path().join("out")).unwrap();
        assert_eq!(layer.whiteouts, 1);
        let names: Vec<String> = tar::Archive::new(fs::File::open(&layer.tar).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "etc/.wh.gone"), "{names:?}");
        assert!(names.iter().any(|n| n == "etc/new.txt"), "{names:?}");
        assert_eq!(fs::read_to_string(layer.dir.join("etc/new.txt")).unwrap(), "hello");
        let m = fs::symlink_metadata(layer.dir.join("etc/gone")).unwrap();
        assert!(is_whiteout(&m));
    }
}

//! `commit`: turn a container's overlay upper dir into a new read-only layer.
//!
//! The layer is written twice: as a tar in the OCI convention (`layer.tar`; an overlayfs whiteout, a
//! 0/0 character device, becomes an empty `.wh.<name>` file, an opaque directory gets a `.wh..wh..opq`
//! entry) and unpacked into a directory (`layer/`) in overlayfs form (whiteouts as 0/0 character
//! devices, opaque directories marked with the `trusted.overlay.opaque` xattr) that can be stacked as a
//! lower dir on top of the image's layers.
//!
//! Every file keeps its full mode (setuid, setgid, sticky), owner, mtime and extended attributes
//! (as PAX `SCHILY.xattr.*` records; overlayfs' own `*.overlay.*` attributes excepted); hard links stay
//! links (tar link entries); fifos and device nodes are stored as such. Sockets belong to a running
//! process and are skipped (listed in [`Layer::skipped`]). A user file whose name starts with `.wh.`
//! cannot be represented (the layer would read it as a deletion of another file) and is refused.
//!
//! The tree walk and the whiteout conversion are hand-written: the `tar` crate writes and reads the
//! archive but knows neither whiteout form, unpacks fifos and devices as regular files, and builds
//! special-file headers from the source path instead of the archive name.
use crate::fsmeta::{self, Kind};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

pub use crate::fsmeta::WHITEOUT_PREFIX;
/// OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

mod pack;

pub use pack::write_tar;

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
    /// A user file's name reads as an OCI whiteout.
    #[error(
        "commit: {path}: a name starting with '.wh.' marks a deletion in an OCI layer and cannot be committed; \
         rename or remove it in the container, then commit again"
    )]
    ReservedName {
        /// The path inside the container.
        path: String,
    },
    /// A file changed size while it was being archived.
    #[error("commit: {path} changed while it was being committed (expected {expected} bytes); commit again")]
    Changed {
        /// The path inside the container.
        path: String,
        /// Its size when the walk saw it, bytes.
        expected: u64,
    },
    /// A layer tar entry cannot be unpacked safely.
    #[error("commit: layer {tar}: entry '{entry}': {why}")]
    BadEntry {
        /// The tar.
        tar: PathBuf,
        /// The entry's path.
        entry: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The destination exists.
    #[error("commit: {0} exists already")]
    Exists(PathBuf),
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
    /// Whiteout entries (deleted files or directories) and opaque directories in the layer.
    pub whiteouts: usize,
    /// Paths of the parent layers the layer hides (a deleted directory counts with everything in it);
    /// 0 when no parent layers were given.
    pub deleted_paths: usize,
    /// Paths (inside the container) that were not stored: sockets.
    pub skipped: Vec<String>,
}

/// What [`write_tar`] saw.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TarSummary {
    /// Whiteouts, relative to the upper dir.
    pub whiteouts: Vec<PathBuf>,
    /// Opaque directories, relative to the upper dir.
    pub opaque: Vec<PathBuf>,
    /// Skipped paths (sockets), relative to the upper dir.
    pub skipped: Vec<PathBuf>,
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    Kind::of(m) == Kind::CharDevice && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| xattr::get(p, n).ok().flatten().is_some_and(|v| v.first() == Some(&b'y')))
}

fn inside(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// A relative tar path that stays below the unpack dir (no root, no `..`).
fn safe_rel(tar_path: &Path, rel: &Path) -> Result<(), CommitError> {
    if rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        Ok(())
    } else {
        let entry = rel.display().to_string();
        Err(CommitError::BadEntry { tar: tar_path.into(), entry, why: "absolute or leaves the layer with '..'" })
    }
}

/// Unpack an OCI layer tar into `dir` in overlayfs form (whiteouts become 0/0 character devices,
/// opaque markers the `trusted.overlay.opaque` xattr); special files, owners, modes, hard links and
/// xattrs are recreated as stored.
pub fn unpack_for_overlay(tar_path: &Path, dir: &Path) -> Result<(), CommitError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let f = fs::File::open(tar_path).map_err(io(tar_path))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(f));
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    a.set_unpack_xattrs(false);
    for e in a.entries().map_err(io(tar_path))? {
        let mut e = e.map_err(io(tar_path))?;
        let rel = e.path().map_err(io(tar_path))?.into_owned();
        safe_rel(tar_path, &rel)?;
        let name = rel.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        if name == OPAQUE_MARKER {
            let target = dir.join(rel.parent().unwrap_or(Path::new("")));
            xattr::set(&target, "trusted.overlay.opaque", b"y").map_err(io(&target))?;
            continue;
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let target = dir.join(rel.with_file_name(std::ffi::OsStr::from_bytes(hidden)));
            // A 0/0 character device is overlayfs' whiteout.
            fsmeta::make_special(&target, Kind::CharDevice, 0).map_err(io(&target))?;
            continue;
        }
        let attrs: Vec<(OsString, Vec<u8>)> = match e.pax_extensions().map_err(io(tar_path))? {
            Some(exts) => exts
                .flatten()
                .filter_map(|x| {
                    let k = x.key_bytes().strip_prefix(b"SCHILY.xattr.")?;
                    Some((std::ffi::OsStr::from_bytes(k).to_os_string(), x.value_bytes().to_vec()))
                })
                .collect(),
            None => Vec::new(),
        };
        let target = dir.join(&rel);
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Fifo => Some(Kind::Fifo),
            tar::EntryType::Char => Some(Kind::CharDevice),
            tar::EntryType::Block => Some(Kind::BlockDevice),
            _ => None,
        };
        if let Some(kind) = kind {
            let field = |r: std::io::Result<Option<u32>>| r.map(Option::unwrap_or_default).map_err(io(tar_path));
            let rdev = fsmeta::makedev(field(h.device_major())?, field(h.device_minor())?);
            let id32 = |v: u64, why| {
                let entry = rel.display().to_string();
                u32::try_from(v).map_err(|_| CommitError::BadEntry { tar: tar_path.into(), entry, why })
            };
            let (uid, gid, mode) = (
                id32(h.uid().map_err(io(tar_path))?, "uid above 4294967295")?,
                id32(h.gid().map_err(io(tar_path))?, "gid above 4294967295")?,
                h.mode().map_err(io(tar_path))?,
            );
            if let Some(d) = target.parent() {
                fs::create_dir_all(d).map_err(io(d))?;
            }
            fsmeta::make_special(&target, kind, rdev).map_err(io(&target))?;
            fsmeta::set_owner_mode(&target, uid, gid, mode, kind).map_err(io(&target))?;
        } else {
            e.unpack_in(dir).map_err(io(&target))?;
        }
        fsmeta::set_xattrs(&target, &attrs).map_err(io(&target))?;
    }
    Ok(())
}

/// Paths of `parents` (overlay lower dirs, bottom first) that the layer described by `sum` hides:
/// each whiteout's path with everything below it, and what an opaque directory hides below it,
/// counted once however many parents hold it.
pub fn hidden_paths(parents: &[PathBuf], upper: &Path, sum: &TarSummary) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let mut walk = |root: &Path, rel: &Path, include_self: bool, skip_in_upper: bool| {
        let mut stack = vec![(rel.to_path_buf(), include_self)];
        while let Some((r, count)) = stack.pop() {
            let p = root.join(&r);
            let Ok(m) = p.symlink_metadata() else { continue };
            if is_whiteout(&m) || (skip_in_upper && r != rel && upper.join(&r).symlink_metadata().is_ok()) {
                continue;
            }
            if count {
                seen.insert(r.clone());
            }
            if m.is_dir() {
                for e in fs::read_dir(&p).into_iter().flatten().flatten() {
                    stack.push((r.join(e.file_name()), true));
                }
            }
        }
    };
    for parent in parents {
        for w in &sum.whiteouts {
            walk(parent, w, true, false);
        }
        for o in &sum.opaque {
            walk(parent, o, false, true);
        }
    }
    seen.len()
}

/// Commit `upper` into the existing, empty directory `into` (`into/layer.tar` and `into/layer/`);
/// `parents` (the container's layers, bottom first) are only read to count deletions. On error the
/// caller removes `into` (see [`commit`] for a version that does).
pub fn commit_into(upper: &Path, into: &Path, parents: &[PathBuf]) -> Result<Layer, CommitError> {
    let tar = into.join("layer.tar");
    let sum = write_tar(upper, &tar)?;
    let dir = into.join("layer");
    unpack_for_overlay(&tar, &dir)?;
    let tar_bytes = fs::metadata(&tar).map_err(io(&tar))?.len();
    Ok(Layer {
        tar,
        dir,
        tar_bytes,
        whiteouts: sum.whiteouts.len() + sum.opaque.len(),
        deleted_paths: hidden_paths(parents, upper, &sum),
        skipped: sum.skipped.iter().map(|r| inside(r)).collect(),
    })
}

/// Commit `upper` into `dest` (`dest/layer.tar` and `dest/layer/`), which must not exist: written in
/// a temporary sibling and renamed into place, so a failed or interrupted commit leaves no `dest`.
pub fn commit(upper: &Path, dest: &Path) -> Result<Layer, CommitError> {
    let parent = dest.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent).map_err(io(parent))?;
    if dest.symlink_metadata().is_ok() {
        return Err(CommitError::Exists(dest.into()));
    }
    let tmp = crate::image::temp_sibling(dest);
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    let r = commit_into(upper, &tmp, &[]).and_then(|l| {
        // rename(2) replaces an empty directory: create_dir claims `dest` first, so a racing commit fails.
        fs::create_dir(dest).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CommitError::Exists(dest.into()),
            _ => CommitError::Io { path: dest.into(), source: e },
        })?;
        fs::rename(&tmp, dest).map_err(io(dest))?;
        Ok(Layer { tar: dest.join("layer.tar"), dir: dest.join("layer"), ..l })
    });
    if r.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    r
}

/// Whether `path` is a whiteout (for tests and checks of unpacked layers).
pub fn is_whiteout_path(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| is_whiteout(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions.
        let r = unsafe { libc::geteuid() } == 0;
        if !r {
            eprintln!("skipped {test}: needs root for mknod and chown");
        }
        r
    }

    fn names(tar: &Path) -> Vec<String> {
        tar::Archive::new(fs::File::open(tar).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn whiteouts_roundtrip_through_the_oci_tar() {
        if !root("whiteouts_roundtrip_through_the_oci_tar") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/new.txt"), "hello").unwrap();
        fsmeta::make_special(&upper.join("etc/gone"), Kind::CharDevice, 0).unwrap();
        let layer = commit(&upper, &t.path().join("out")).unwrap();
        assert_eq!(layer.whiteouts, 1);
        let names = names(&layer.tar);
        assert!(names.iter().any(|n| n == "etc/.wh.gone"), "{names:?}");
        assert!(names.iter().any(|n| n == "etc/new.txt"), "{names:?}");
        assert_eq!(fs::read_to_string(layer.dir.join("etc/new.txt")).unwrap(), "hello");
        assert!(is_whiteout_path(&layer.dir.join("etc/gone")));
    }

    #[test]
    fn special_files_links_modes_and_xattrs_roundtrip() {
        if !root("special_files_links_modes_and_xattrs_roundtrip") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        let d = upper.join("data");
        fs::create_dir_all(&d).unwrap();
        fsmeta::make_special(&d.join("p"), Kind::Fifo, 0).unwrap();
        fsmeta::make_special(&d.join("null"), Kind::CharDevice, fsmeta::makedev(1, 3)).unwrap();
        fsmeta::make_special(&d.join("loop"), Kind::BlockDevice, fsmeta::makedev(7, 200)).unwrap();
        fs::write(d.join("a"), "linked").unwrap();
        fs::hard_link(d.join("a"), d.join("b")).unwrap();
        std::os::unix::fs::symlink("a", d.join("s")).unwrap();
        fs::write(d.join("suid"), "x").unwrap();
        fsmeta::set_owner_mode(&d.join("suid"), 1000, 1001, 0o4755, Kind::File).unwrap();
        fs::write(d.join("sgid"), "x").unwrap();
        fsmeta::set_owner_mode(&d.join("sgid"), 0, 50, 0o2755, Kind::File).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o1777)).unwrap();
        xattr::set(d.join("a"), "user.vmct", b"kept").unwrap();
        xattr::set(d.join("a"), "trusted.overlay.origin", b"dropped").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        let layer = commit(&upper, &t.path().join("out")).unwrap();
        assert_eq!(layer.skipped, vec!["/data/sock".to_string()]);
        let out = layer.dir.join("data");
        let m = |n: &str| out.join(n).symlink_metadata().unwrap();
        assert_eq!(Kind::of(&m("p")), Kind::Fifo);
        assert_eq!((Kind::of(&m("null")), fsmeta::dev_major_minor(m("null").rdev())), (Kind::CharDevice, (1, 3)));
        assert_eq!((Kind::of(&m("loop")), fsmeta::dev_major_minor(m("loop").rdev())), (Kind::BlockDevice, (7, 200)));
        assert_eq!(m("a").ino(), m("b").ino(), "a hard link stays one inode");
        assert_eq!(fs::read_link(out.join("s")).unwrap(), Path::new("a"));
        assert_eq!((m("suid").mode() & 0o7777, m("suid").uid(), m("suid").gid()), (0o4755, 1000, 1001));
        assert_eq!((m("sgid").mode() & 0o7777, m("sgid").gid()), (0o2755, 50));
        assert_eq!(m("").mode() & 0o7777, 0o1777);
        assert_eq!(fsmeta::xattrs(&out.join("a")).unwrap(), vec![("user.vmct".into(), b"kept".to_vec())]);
        assert!(!out.join("sock").exists());
    }

    #[test]
    fn user_whiteout_names_are_refused_and_a_failed_commit_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        fs::create_dir_all(upper.join("data")).unwrap();
        fs::write(upper.join("data/.wh.keep"), "").unwrap();
        let dest = t.path().join("out");
        let e = commit(&upper, &dest).unwrap_err();
        assert!(matches!(&e, CommitError::ReservedName { path } if path == "/data/.wh.keep"), "{e}");
        assert!(!dest.exists());
        let left: Vec<_> = fs::read_dir(t.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![OsString::from("upper")], "no temporary dir stays");
        fs::remove_file(upper.join("data/.wh.keep")).unwrap();
        commit(&upper, &dest).unwrap();
        assert!(matches!(commit(&upper, &dest), Err(CommitError::Exists(_))));
    }

    #[test]
    fn deletions_count_hidden_paths() {
        if !root("deletions_count_hidden_paths") {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        fs::create_dir_all(lower.join("data/sub")).unwrap();
        for f in ["data/keep", "data/k2", "data/sub/x", "data/sub/y"] {
            fs::write(lower.join(f), "").unwrap();
        }
        fs::create_dir_all(lower.join("opq/old")).unwrap();
        fs::write(lower.join("opq/old/f"), "").unwrap();
        let upper = t.path().join("upper");
        fs::create_dir_all(upper.join("data")).unwrap();
        fs::create_dir_all(upper.join("opq")).unwrap();
        xattr::set(upper.join("opq"), "trusted.overlay.opaque", b"y").unwrap();
        fs::write(upper.join("opq/new"), "").unwrap();
        // Two deleted files (overlayfs shares one whiteout inode between them) and a deleted directory.
        fsmeta::make_special(&upper.join("data/keep"), Kind::CharDevice, 0).unwrap();
        fs::hard_link(upper.join("data/keep"), upper.join("data/k2")).unwrap();
        fsmeta::make_special(&upper.join("data/sub"), Kind::CharDevice, 0).unwrap();
        let into = t.path().join("into");
        fs::create_dir(&into).unwrap();
        let l = commit_into(&upper, &into, &[lower]).unwrap();
        assert_eq!(l.whiteouts, 4, "3 whiteouts and 1 opaque dir");
        // keep, k2, sub, sub/x, sub/y, opq/old, opq/old/f
        assert_eq!(l.deleted_paths, 7);
        assert!(names(&l.tar).contains(&"opq/.wh..wh..opq".to_string()));
        assert!(is_opaque(&l.dir.join("opq")) && is_whiteout_path(&l.dir.join("data/k2")));
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let tar_path = t.path().join("bad.tar");
        let mut b = tar::Builder::new(fs::File::create(&tar_path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Fifo);
        // Header::set_path refuses '..', so write the name bytes directly like a hostile tar would.
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
        b.finish().unwrap();
        drop(b);
        let e = unpack_for_overlay(&tar_path, &t.path().join("out")).unwrap_err();
        assert!(matches!(e, CommitError::BadEntry { .. }), "{e}");
        assert!(!t.path().join("escape").exists());
    }
}

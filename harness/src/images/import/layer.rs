//! Unpacking one image layer (an OCI/docker layer tar stream, already decompressed) into an overlay
//! lower dir, the form every layer of the store has (see [`container::commit`]):
//!
//! 1. `.wh.NAME` (an OCI whiteout) becomes a 0/0 character device `NAME`, overlayfs' whiteout;
//!    `.wh..wh..opq` marks its directory opaque with the `trusted.overlay.opaque` xattr.
//! 2. Every entry is written below parents checked to be real directories of the layer (never a
//!    symlink, wherever it points: a layer made by a diff of a file system has no entry below a
//!    symlink); regular files, directories and symlinks by the tar crate's `unpack`, fifos and
//!    devices (which the crate would write as regular files), hard links and whiteouts here. (The
//!    crate's `unpack_in` checks the same by resolving every parent, two `realpath`s per entry.)
//! 3. An entry whose path climbs out with `..` is refused (the crate would skip it silently).
//! 4. Owners are shifted by [`container::USERNS_BASE`] when running as root, like every layer of the
//!    store (uid 0 in the image is the container's root); then the mode (setuid kept), then the
//!    PAX `SCHILY.xattr.*` attributes except overlayfs' own.
//!
//! The conversion is written here rather than with [`container::commit::unpack_for_overlay`], which
//! reads a tar file of the store's own making: a layer from an image archive arrives as a stream (it
//! is hashed and decompressed on the way), carries container-relative owners, and is untrusted input.
use container::fsmeta::{self, Kind};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Extended attributes an image layer may not set: overlayfs' own (they would turn into opaque
/// markers or redirects) and host labels.
const REFUSED_XATTRS: [&str; 3] = ["trusted.overlay.", "user.overlay.", "security.selinux"];

/// What is wrong with one layer entry, or the I/O error unpacking it.
#[derive(Debug)]
pub enum EntryError {
    /// The entry cannot be unpacked safely or is malformed.
    Bad {
        /// The entry's path.
        entry: String,
        /// What is wrong.
        why: String,
    },
    /// A file system error.
    Io {
        /// The entry's path.
        entry: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A signal asked to stop.
    Interrupted,
}

/// What an unpacked layer holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries written.
    pub entries: u64,
    /// Whiteouts (`.wh.NAME`).
    pub whiteouts: usize,
    /// Opaque directories (`.wh..wh..opq`).
    pub opaque: usize,
}

/// The relative path of an entry, or a refusal when it leaves the layer.
fn entry_rel(raw: &[u8]) -> Result<PathBuf, EntryError> {
    let p = Path::new(OsStr::from_bytes(raw));
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(EntryError::Bad {
                    entry: p.display().to_string(),
                    why: "its path leaves the layer with '..'".into(),
                })
            }
        }
    }
    Ok(rel)
}

/// The parent directories of entries, created under the layer dir as needed and checked to be real
/// directories: a symlink (or file) where a parent should be is refused, so no entry is written
/// through a symlink, wherever it points. The last parent checked is remembered (entries come
/// directory by directory); [`Parents::forget`] after anything that removes paths.
struct Parents<'a> {
    dir: &'a Path,
    owner: Option<u32>,
    last: Option<PathBuf>,
}

impl Parents<'_> {
    /// The parent of `rel` (under the layer dir), created if missing.
    fn ensure(&mut self, rel: &Path) -> Result<PathBuf, EntryError> {
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if self.last.as_deref() == Some(parent_rel) {
            return Ok(self.dir.join(parent_rel));
        }
        let mut p = self.dir.to_path_buf();
        let entry = || rel.display().to_string();
        for c in parent_rel.components() {
            p.push(c);
            match p.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                Ok(m) => {
                    let what = if m.file_type().is_symlink() { "a symlink" } else { "not a directory" };
                    return Err(EntryError::Bad {
                        entry: entry(),
                        why: format!(
                            "its parent {} is {what} in the layer (an entry is never written through a symlink, which \
                             could lead outside the layer)",
                            c.as_os_str().to_string_lossy()
                        ),
                    });
                }
                Err(_) => {
                    std::fs::create_dir(&p).map_err(|source| EntryError::Io { entry: entry(), source })?;
                    if let Some(o) = self.owner {
                        std::os::unix::fs::lchown(&p, Some(o), Some(o))
                            .map_err(|source| EntryError::Io { entry: entry(), source })?;
                    }
                }
            }
        }
        self.last = Some(parent_rel.to_path_buf());
        Ok(p)
    }

    fn forget(&mut self) {
        self.last = None;
    }
}

/// Remove whatever is at `p` (a whiteout or special file replacing an earlier entry of the layer).
fn clear(p: &Path) -> std::io::Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => Ok(()),
    }
}

/// The store owner of an image owner `id` (see the module doc), or None when not shifting.
fn shifted(id: u64, entry: &Path) -> Result<u32, EntryError> {
    u32::try_from(id).ok().filter(|i| *i < container::USERNS_SIZE).map(|i| container::USERNS_BASE + i).ok_or_else(
        || EntryError::Bad {
            entry: entry.display().to_string(),
            why: format!("owner id {id} is outside the container's id range 0-{}", container::USERNS_SIZE - 1),
        },
    )
}

/// Count the entries, whiteouts and opaque markers of the layer tar read from `r` without writing
/// anything (a layer the store holds already: its record still says what it deletes).
pub fn scan(r: impl Read) -> Result<Unpacked, EntryError> {
    let mut sum = Unpacked::default();
    let mut a = tar::Archive::new(r);
    let io = |source| EntryError::Io { entry: "(next entry)".into(), source };
    for e in a.entries().map_err(io)? {
        if crate::interrupt::requested() {
            return Err(EntryError::Interrupted);
        }
        let e = e.map_err(io)?;
        let path = e.path_bytes();
        let name = path.rsplit(|b| *b == b'/').find(|n| !n.is_empty()).unwrap_or_default();
        if name == container::commit::OPAQUE_MARKER.as_bytes() {
            sum.opaque += 1;
        } else if name.starts_with(fsmeta::WHITEOUT_PREFIX.as_bytes()) {
            sum.whiteouts += 1;
        } else {
            sum.entries += 1;
        }
    }
    Ok(sum)
}

/// Unpack the layer tar read from `r` into the existing directory `dir`. `shift`: store owners
/// shifted into the user-namespace range (root only). Checks for a stop request between entries.
pub fn unpack(r: impl Read, dir: &Path, shift: bool) -> Result<Unpacked, EntryError> {
    let mut a = tar::Archive::new(r);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(false);
    a.set_preserve_mtime(true);
    a.set_unpack_xattrs(false);
    a.set_overwrite(true);
    let base = shift.then_some(container::USERNS_BASE);
    let mut sum = Unpacked::default();
    let io = |entry: &Path| {
        let entry = entry.display().to_string();
        move |source| EntryError::Io { entry, source }
    };
    let mut parents = Parents { dir, owner: base, last: None };
    let entries = a.entries().map_err(io(Path::new("(archive)")))?;
    for e in entries {
        if crate::interrupt::requested() {
            return Err(EntryError::Interrupted);
        }
        let mut e = e.map_err(io(Path::new("(next entry)")))?;
        let rel = entry_rel(&e.path_bytes())?;
        let h = e.header().clone();
        let kind = h.entry_type();
        if rel.as_os_str().is_empty() || kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        let name = rel.file_name().unwrap_or_default().as_bytes().to_vec();
        if name == container::commit::OPAQUE_MARKER.as_bytes() {
            let parent = parents.ensure(&rel)?;
            xattr::set(&parent, "trusted.overlay.opaque", b"y").map_err(io(&rel))?;
            sum.opaque += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(fsmeta::WHITEOUT_PREFIX.as_bytes()) {
            let parent = parents.ensure(&rel)?;
            let target = parent.join(OsStr::from_bytes(hidden));
            clear(&target).map_err(io(&rel))?;
            parents.forget();
            fsmeta::make_special(&target, Kind::CharDevice, 0).map_err(io(&rel))?;
            sum.whiteouts += 1;
            continue;
        }
        let special = match kind {
            tar::EntryType::Fifo => Some(Kind::Fifo),
            tar::EntryType::Char => Some(Kind::CharDevice),
            tar::EntryType::Block => Some(Kind::BlockDevice),
            _ => None,
        };
        let attrs: Vec<(OsString, Vec<u8>)> = match e.pax_extensions().map_err(io(&rel))? {
            Some(exts) => exts
                .flatten()
                .filter_map(|x| {
                    let k = x.key_bytes().strip_prefix(b"SCHILY.xattr.")?;
                    let ks = String::from_utf8_lossy(k);
                    if REFUSED_XATTRS.iter().any(|p| ks.starts_with(p)) {
                        return None;
                    }
                    Some((OsStr::from_bytes(k).to_os_string(), x.value_bytes().to_vec()))
                })
                .collect(),
            None => Vec::new(),
        };
        let target = parents.ensure(&rel)?.join(rel.file_name().unwrap_or_default());
        let kind = if let Some(k) = special {
            let field = |r: std::io::Result<Option<u32>>| r.map(Option::unwrap_or_default).map_err(io(&rel));
            let rdev = fsmeta::makedev(field(h.device_major())?, field(h.device_minor())?);
            clear(&target).map_err(io(&rel))?;
            parents.forget();
            fsmeta::make_special(&target, k, rdev).map_err(io(&rel))?;
            k
        } else if kind == tar::EntryType::Link {
            // A hard link to another entry of the layer, reached through real directories only.
            let src_bytes = e.link_name_bytes().ok_or_else(|| EntryError::Bad {
                entry: rel.display().to_string(),
                why: "a hard link without a target".into(),
            })?;
            let src_rel = entry_rel(&src_bytes)?;
            let src = parents.ensure(&src_rel)?.join(src_rel.file_name().unwrap_or_default());
            parents.ensure(&rel)?;
            if target.symlink_metadata().is_ok() {
                clear(&target).map_err(io(&rel))?;
                parents.forget();
            }
            std::fs::hard_link(&src, &target).map_err(io(&rel))?;
            // It shares the inode of its first name, whose owner and mode are set.
            sum.entries += 1;
            continue;
        } else {
            // The path is checked (no '..', every parent a real directory): the tar crate writes the
            // entry there (files replace what was there, never writing through it).
            e.unpack(&target).map_err(io(&rel))?;
            match kind {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Symlink => Kind::Symlink,
                _ => Kind::File,
            }
        };
        if shift {
            let uid = shifted(h.uid().map_err(io(&rel))?, &rel)?;
            let gid = shifted(h.gid().map_err(io(&rel))?, &rel)?;
            fsmeta::set_owner_mode(&target, uid, gid, h.mode().map_err(io(&rel))?, kind).map_err(io(&rel))?;
        } else if special.is_some() {
            std::fs::set_permissions(
                &target,
                std::os::unix::fs::PermissionsExt::from_mode(h.mode().map_err(io(&rel))? & fsmeta::MODE_BITS),
            )
            .map_err(io(&rel))?;
        }
        fsmeta::set_xattrs(&target, &attrs).map_err(io(&rel))?;
        sum.entries += 1;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                h.set_size(0);
                b.append_link(&mut h, path, data).unwrap();
            } else {
                h.set_size(data.len() as u64);
                // Write the name bytes directly: Header::set_path refuses '..' like a careful writer,
                // and a hostile archive is not careful.
                let name = path.as_bytes();
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_overlay_form() {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("l");
        std::fs::create_dir(&d).unwrap();
        let tar = layer(&[
            ("etc/", tar::EntryType::Directory, ""),
            ("etc/.wh.motd", tar::EntryType::Regular, ""),
            ("var/.wh..wh..opq", tar::EntryType::Regular, ""),
            ("var/new", tar::EntryType::Regular, "n"),
            ("bin/sh", tar::EntryType::Symlink, "/bin/busybox"),
            ("etc/hosts", tar::EntryType::Regular, "127.0.0.1 x\n"),
            ("etc/hosts2", tar::EntryType::Link, "etc/hosts"),
        ]);
        let sum = unpack(&tar[..], &d, root).unwrap();
        assert_eq!((sum.whiteouts, sum.opaque), (1, 1));
        let m = d.join("etc/motd").symlink_metadata().unwrap();
        assert_eq!((Kind::of(&m), m.rdev()), (Kind::CharDevice, 0), "a whiteout is a 0/0 char device");
        if root {
            assert_eq!(xattr::get(d.join("var"), "trusted.overlay.opaque").unwrap(), Some(b"y".to_vec()));
            assert_eq!(d.join("etc/hosts").metadata().unwrap().uid(), container::USERNS_BASE);
        }
        assert_eq!(std::fs::read_link(d.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
        assert_eq!(d.join("etc/hosts").metadata().unwrap().ino(), d.join("etc/hosts2").metadata().unwrap().ino());
    }

    #[test]
    fn entries_leaving_the_layer_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("l");
        std::fs::create_dir(&d).unwrap();
        let e = unpack(&layer(&[("../escape", tar::EntryType::Regular, "x")])[..], &d, false).unwrap_err();
        assert!(matches!(&e, EntryError::Bad { why, .. } if why.contains("'..'")), "{e:?}");
        assert!(!t.path().join("escape").exists());
        // A symlink to an absolute path outside, then a file written through it.
        let out = t.path().join("outside");
        std::fs::create_dir(&out).unwrap();
        let via = layer(&[
            ("evil", tar::EntryType::Symlink, out.to_str().unwrap()),
            ("evil/planted", tar::EntryType::Regular, "x"),
        ]);
        let e = unpack(&via[..], &d, false).unwrap_err();
        assert!(matches!(&e, EntryError::Bad { why, .. } if why.contains("outside the layer")), "{e:?}");
        // A whiteout through the same symlink.
        let d2 = t.path().join("l2");
        std::fs::create_dir(&d2).unwrap();
        let wh = layer(&[
            ("evil", tar::EntryType::Symlink, out.to_str().unwrap()),
            ("evil/.wh.x", tar::EntryType::Regular, ""),
        ]);
        let e = unpack(&wh[..], &d2, false).unwrap_err();
        assert!(matches!(&e, EntryError::Bad { why, .. } if why.contains("symlink")), "{e:?}");
        // A hard link to a file outside, by '..' or through the symlink.
        for (n, target) in [("l3", "../outside/x"), ("l4", "evil/x")] {
            std::fs::write(out.join("x"), "host file").unwrap();
            let d = t.path().join(n);
            std::fs::create_dir(&d).unwrap();
            let hl = layer(&[
                ("evil", tar::EntryType::Symlink, out.to_str().unwrap()),
                ("link", tar::EntryType::Link, target),
            ]);
            let e = unpack(&hl[..], &d, false).unwrap_err();
            assert!(matches!(&e, EntryError::Bad { .. }), "{n}: {e:?}");
            std::fs::remove_file(out.join("x")).unwrap();
        }
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing written outside the layer");
    }
}

//! What a layer must carry of each file besides its bytes, in one place for `commit` (via the OCI tar)
//! and image builds (via a copy): the full mode (setuid, setgid and sticky bits included), the owner,
//! extended attributes, hard links, and special files (fifos, character and block devices).
//!
//! Order matters when a file is recreated: create, then `lchown`, then `chmod`, then xattrs, because
//! the kernel clears setuid/setgid on `chown` and drops `security.capability` on `chown` too.
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The OCI whiteout prefix: a layer entry `.wh.NAME` deletes `NAME` of the layers below.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Mode bits a layer keeps (permissions plus setuid, setgid, sticky).
pub const MODE_BITS: u32 = 0o7777;

/// Extended attributes that belong to overlayfs itself (opaque markers, redirects, origins): never
/// copied as file content. Both namespaces: `trusted.` (the default) and `user.` (`userxattr` mounts).
const OVERLAY_PRIVATE: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// Attributes a host path may carry that describe the host, not the file (SELinux labels).
const HOST_ONLY: [&str; 1] = ["security.selinux"];

/// The kinds of file a layer can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device (a 0/0 one in an overlay upper dir is a whiteout).
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Unix socket: belongs to a running process, cannot be stored in a layer.
    Socket,
}

impl Kind {
    /// The kind of `m` (from `symlink_metadata`).
    pub fn of(m: &std::fs::Metadata) -> Kind {
        let t = m.file_type();
        if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_char_device() {
            Kind::CharDevice
        } else if t.is_block_device() {
            Kind::BlockDevice
        } else if t.is_socket() {
            Kind::Socket
        } else {
            Kind::File
        }
    }

    /// The `S_IF*` type bits for `mknod` of a special file.
    fn sflag(self) -> Option<nix::sys::stat::SFlag> {
        use nix::sys::stat::SFlag;
        match self {
            Kind::Fifo => Some(SFlag::S_IFIFO),
            Kind::CharDevice => Some(SFlag::S_IFCHR),
            Kind::BlockDevice => Some(SFlag::S_IFBLK),
            _ => None,
        }
    }
}

/// Whether a name of a file would read as an OCI whiteout or opaque marker in a layer (such names
/// cannot be stored: the layer would delete another file instead).
pub fn is_reserved_name(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().starts_with(WHITEOUT_PREFIX.as_bytes())
}

/// The extended attributes of `path` (not following a symlink) that a layer carries, sorted by name.
pub fn xattrs(path: &Path) -> std::io::Result<Vec<(OsString, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        // A file system without xattr support has none to carry.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        let s = name.to_string_lossy();
        if OVERLAY_PRIVATE.iter().chain(&HOST_ONLY).any(|p| s.starts_with(p)) {
            continue;
        }
        if let Some(v) = xattr::get(path, &name)? {
            out.push((name, v));
        }
    }
    out.sort();
    Ok(out)
}

/// Set `attrs` on `path` (not following a symlink).
pub fn set_xattrs(path: &Path, attrs: &[(OsString, Vec<u8>)]) -> std::io::Result<()> {
    attrs.iter().try_for_each(|(k, v)| xattr::set(path, k, v))
}

/// Create the special file `path` of `kind` with device number `rdev` (fifos ignore it).
pub fn make_special(path: &Path, kind: Kind, rdev: u64) -> std::io::Result<()> {
    let flag = kind.sflag().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    nix::sys::stat::mknod(path, flag, nix::sys::stat::Mode::from_bits_truncate(0o600), rdev as libc::dev_t)
        .map_err(std::io::Error::from)
}

/// Give `path` its owner and then its mode (in that order, so setuid/setgid survive); symlinks get
/// only the owner (their mode is meaningless).
pub fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32, kind: Kind) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if kind != Kind::Symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & MODE_BITS))?;
    }
    Ok(())
}

/// Device major and minor of `rdev` (for tar headers).
pub fn dev_major_minor(rdev: u64) -> (u32, u32) {
    // glibc's major() and minor() return unsigned int: Linux device numbers are 32-bit each.
    let part = |v: u64| u32::try_from(v).expect("a Linux major or minor number fits in 32 bits");
    (part(nix::sys::stat::major(rdev)), part(nix::sys::stat::minor(rdev)))
}

/// The device number of `major`/`minor`.
pub fn makedev(major: u32, minor: u32) -> u64 {
    nix::sys::stat::makedev(major.into(), minor.into())
}

/// Hard links seen during a tree walk: the first path of every multiply-linked inode.
#[derive(Debug, Default)]
pub struct HardLinks(HashMap<(u64, u64), PathBuf>);

impl HardLinks {
    /// For a non-directory with more than one link: the first path seen of the same inode, or None
    /// (and `path` is remembered) when this is the first.
    pub fn first_of(&mut self, m: &std::fs::Metadata, path: &Path) -> Option<PathBuf> {
        if m.is_dir() || m.nlink() < 2 {
            return None;
        }
        match self.0.entry((m.dev(), m.ino())) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.get().clone()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(path.to_path_buf());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_names_and_links() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::hard_link(&f, t.path().join("g")).unwrap();
        std::os::unix::fs::symlink("f", t.path().join("l")).unwrap();
        let m = |p: &str| t.path().join(p).symlink_metadata().unwrap();
        assert_eq!(
            (Kind::of(&m("f")), Kind::of(&m("l")), Kind::of(&t.path().metadata().unwrap())),
            (Kind::File, Kind::Symlink, Kind::Dir)
        );
        let mut links = HardLinks::default();
        assert_eq!(links.first_of(&m("f"), Path::new("f")), None);
        assert_eq!(links.first_of(&m("g"), Path::new("g")), Some(PathBuf::from("f")));
        assert_eq!(links.first_of(&m("l"), Path::new("l")), None, "a single-link file is not tracked");
        assert!(is_reserved_name(".wh.keep".as_ref()) && is_reserved_name(".wh..wh..opq".as_ref()));
        assert!(!is_reserved_name("keep.wh.".as_ref()) && !is_reserved_name(".whx".as_ref()));
        let fifo = t.path().join("p");
        make_special(&fifo, Kind::Fifo, 0).unwrap();
        assert_eq!(Kind::of(&fifo.symlink_metadata().unwrap()), Kind::Fifo);
        assert_eq!(dev_major_minor(makedev(1, 3)), (1, 3));
        assert_eq!(dev_major_minor(makedev(259, 70000)), (259, 70000));
    }

    #[test]
    fn owner_then_mode_keeps_setuid() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped owner_then_mode_keeps_setuid: needs root for chown");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "x").unwrap();
        set_owner_mode(&f, 1000, 1000, 0o6755, Kind::File).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!((m.mode() & MODE_BITS, m.uid(), m.gid()), (0o6755, 1000, 1000));
        xattr::set(&f, "user.vmct", b"v").unwrap();
        xattr::set(&f, "trusted.overlay.origin", b"o").unwrap();
        assert_eq!(xattrs(&f).unwrap(), vec![(OsString::from("user.vmct"), b"v".to_vec())]);
    }
}

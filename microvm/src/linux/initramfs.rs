//! The guest image: an uncompressed initramfs (cpio "newc") packed from image layer directories, whose
//! /init is the static `vmct-workload` binary, with /dev/console and the mount points /init uses.
//!
//! The newc writer is hand-written (about 40 lines, [`Initramfs::to_cpio`]) rather than the `cpio`
//! crate: the format is a fixed ASCII header per entry, we need device nodes and exact modes, and a
//! reader for the tests ([`parse`]); one more dependency would buy nothing.
//!
//! Layers are plain directories applied in order, the way overlayfs stacks lower dirs: a later layer
//! replaces a path of an earlier one, and an OCI whiteout `.wh.NAME` removes `NAME` (and below).
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Errors building or reading an initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// A layer or file could not be read.
    #[error("initramfs: cannot read {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A path is not valid UTF-8 (cpio names are written as is, but we keep names printable).
    #[error("initramfs: path {0:?} is not UTF-8")]
    NonUtf8(PathBuf),
    /// An entry does not fit the newc format's 32-bit fields (a file of 4 GiB or more).
    #[error("initramfs: {name}: {what} does not fit a cpio newc header (32 bits)")]
    TooLarge {
        /// The entry's path in the archive.
        name: String,
        /// Which field.
        what: &'static str,
    },
    /// Malformed archive (in [`parse`]).
    #[error("initramfs: malformed cpio at byte {offset}: {what}")]
    Malformed {
        /// Byte offset.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

/// Where an entry's content comes from.
#[derive(Debug, Clone)]
enum Content {
    None,
    Bytes(Vec<u8>),
    File(PathBuf),
}

#[derive(Debug, Clone)]
struct Node {
    mode: u32,
    rdev: (u32, u32),
    content: Content,
}

/// An initramfs being assembled; paths are relative to `/`, without a leading slash.
#[derive(Debug, Clone)]
pub struct Initramfs {
    nodes: BTreeMap<String, Node>,
}

impl Default for Initramfs {
    fn default() -> Self {
        Initramfs::new()
    }
}

impl Initramfs {
    /// The skeleton every guest gets: /dev with /dev/console (char 5:1, which the kernel opens as
    /// /init's stdin/stdout/stderr), and empty /proc, /sys, /tmp mount points.
    pub fn new() -> Initramfs {
        let mut nodes = BTreeMap::new();
        for d in ["dev", "proc", "sys", "tmp"] {
            nodes.insert(d.into(), Node { mode: S_IFDIR | 0o755, rdev: (0, 0), content: Content::None });
        }
        nodes.insert("dev/console".into(), Node { mode: S_IFCHR | 0o600, rdev: (5, 1), content: Content::None });
        Initramfs { nodes }
    }

    /// Apply one layer directory on top of what is there.
    pub fn add_layer(&mut self, dir: &Path) -> Result<(), InitramfsError> {
        self.walk(dir, dir)
    }

    fn walk(&mut self, root: &Path, dir: &Path) -> Result<(), InitramfsError> {
        let read = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InitramfsError::Read { path, source }
        };
        let mut entries =
            std::fs::read_dir(dir).map_err(read(dir))?.collect::<Result<Vec<_>, _>>().map_err(read(dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel = rel.to_str().ok_or_else(|| InitramfsError::NonUtf8(path.clone()))?.to_string();
            let name = e.file_name();
            if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(".wh.")) {
                let parent = rel.rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or_default();
                self.remove(&format!("{parent}{hidden}"));
                continue;
            }
            let md = std::fs::symlink_metadata(&path).map_err(read(&path))?;
            let ft = md.file_type();
            let perm = md.mode() & 0o7777;
            let node = if ft.is_dir() {
                Node { mode: S_IFDIR | perm, rdev: (0, 0), content: Content::None }
            } else if ft.is_file() {
                Node { mode: S_IFREG | perm, rdev: (0, 0), content: Content::File(path.clone()) }
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).map_err(read(&path))?;
                let target = target.to_str().ok_or_else(|| InitramfsError::NonUtf8(target.clone()))?;
                Node { mode: S_IFLNK | 0o777, rdev: (0, 0), content: Content::Bytes(target.as_bytes().to_vec()) }
            } else {
                let kind = if ft.is_char_device() {
                    S_IFCHR
                } else if ft.is_block_device() {
                    S_IFBLK
                } else if ft.is_fifo() {
                    S_IFIFO
                } else {
                    continue; // sockets do not belong in an image
                };
                let rdev = md.rdev();
                Node { mode: kind | perm, rdev: (libc::major(rdev), libc::minor(rdev)), content: Content::None }
            };
            let is_dir = ft.is_dir();
            if !is_dir {
                self.remove(&rel); // a file replacing a directory hides what was below it
            }
            self.nodes.insert(rel, node);
            if is_dir {
                self.walk(root, &path)?;
            }
        }
        Ok(())
    }

    fn remove(&mut self, rel: &str) {
        let below = format!("{rel}/");
        self.nodes.retain(|k, _| k != rel && !k.starts_with(&below));
    }

    /// Add (or replace) a regular file; missing parent directories are created (mode 0755).
    pub fn add_file(&mut self, path: &str, perm: u32, data: Vec<u8>) {
        self.add(path, Node { mode: S_IFREG | (perm & 0o7777), rdev: (0, 0), content: Content::Bytes(data) });
    }

    /// Make `binary` the guest's /init (mode 0755).
    pub fn set_init(&mut self, binary: &Path) {
        self.add("init", Node { mode: S_IFREG | 0o755, rdev: (0, 0), content: Content::File(binary.into()) });
    }

    fn add(&mut self, path: &str, node: Node) {
        let path = path.trim_start_matches('/');
        let mut parent = String::new();
        for part in path.split('/').collect::<Vec<_>>().split_last().map(|(_, p)| p.to_vec()).unwrap_or_default() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.nodes.entry(parent.clone()).or_insert(Node {
                mode: S_IFDIR | 0o755,
                rdev: (0, 0),
                content: Content::None,
            });
        }
        self.remove(path);
        self.nodes.insert(path.to_string(), node);
    }

    /// Number of entries (without the trailer).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The archive: cpio newc, parents before children, ending with `TRAILER!!!`.
    pub fn to_cpio(&self) -> Result<Vec<u8>, InitramfsError> {
        let mut out = Vec::new();
        for (ino, (name, node)) in self.nodes.iter().enumerate() {
            let data = match &node.content {
                Content::None => Vec::new(),
                Content::Bytes(b) => b.clone(),
                Content::File(p) => {
                    std::fs::read(p).map_err(|source| InitramfsError::Read { path: p.clone(), source })?
                }
            };
            let nlink = if node.mode & 0o170000 == S_IFDIR { 2 } else { 1 };
            let too_large = |what| InitramfsError::TooLarge { name: name.clone(), what };
            let ino = u32::try_from(ino + 1).map_err(|_| too_large("inode count"))?;
            let size = u32::try_from(data.len()).map_err(|_| too_large("file size"))?;
            let name_size = u32::try_from(name.len() + 1).map_err(|_| too_large("name length"))?;
            write_entry(&mut out, [ino, node.mode, nlink, size, name_size], node.rdev, name, &data);
        }
        const TRAILER: &str = "TRAILER!!!";
        let trailer_size = u32::try_from(TRAILER.len() + 1).expect("11 bytes");
        write_entry(&mut out, [0, 0, 1, 0, trailer_size], (0, 0), TRAILER, &[]);
        Ok(out)
    }
}

/// One newc entry: "070701", 13 eight-digit hex fields, the NUL-terminated name, padding to 4,
/// the data, padding to 4. `[ino, mode, nlink, filesize, namesize]` are the caller's checked fields
/// (newc fields are 32-bit).
fn write_entry(out: &mut Vec<u8>, ids: [u32; 5], rdev: (u32, u32), name: &str, data: &[u8]) {
    let [ino, mode, nlink, filesize, namesize] = ids;
    let fields = [ino, mode, 0, 0, nlink, 0, filesize, 0, 0, rdev.0, rdev.1, namesize, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Pack `layers` (in order) into an initramfs whose /init is `init`.
pub fn build(layers: &[PathBuf], init: &Path) -> Result<Vec<u8>, InitramfsError> {
    let mut fs = Initramfs::new();
    for l in layers {
        fs.add_layer(l)?;
    }
    fs.set_init(init);
    fs.to_cpio()
}

/// One entry read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    /// Path (no leading slash).
    pub name: String,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Device number for device nodes (major, minor).
    pub rdev: (u32, u32),
    /// Content (file data, symlink target).
    pub data: Vec<u8>,
}

impl CpioEntry {
    /// Regular file with an execute bit.
    pub fn is_executable_file(&self) -> bool {
        self.mode & 0o170000 == S_IFREG && self.mode & 0o111 != 0
    }
    /// Character device.
    pub fn is_char_device(&self) -> bool {
        self.mode & 0o170000 == S_IFCHR
    }
}

/// Read a newc archive back (up to the trailer).
pub fn parse(bytes: &[u8]) -> Result<Vec<CpioEntry>, InitramfsError> {
    let bad = |offset, what| InitramfsError::Malformed { offset, what };
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        let hdr = bytes.get(at..at + 110).ok_or(bad(at, "truncated header"))?;
        if &hdr[..6] != b"070701" {
            return Err(bad(at, "bad magic (want 070701)"));
        }
        let field = |i: usize| {
            std::str::from_utf8(&hdr[6 + i * 8..14 + i * 8])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or(bad(at, "bad hex field"))
        };
        let (mode, size, rmaj, rmin, namesize) =
            (field(1)?, field(6)? as usize, field(9)?, field(10)?, field(11)? as usize);
        let name_at = at + 110;
        let name = bytes.get(name_at..name_at + namesize.saturating_sub(1)).ok_or(bad(name_at, "truncated name"))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad(name_at, "name is not UTF-8"))?;
        let data_at = (name_at + namesize).next_multiple_of(4);
        let data = bytes.get(data_at..data_at + size).ok_or(bad(data_at, "truncated data"))?.to_vec();
        at = (data_at + size).next_multiple_of(4);
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(CpioEntry { name, mode, rdev: (rmaj, rmin), data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmct-initramfs-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn skeleton_has_console_and_init_is_executable() {
        let d = tempdir("skel");
        let init = d.join("vmct-workload");
        std::fs::write(&init, b"\x7fELF fake").unwrap();
        let cpio = build(&[], &init).unwrap();
        let entries = parse(&cpio).unwrap();
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap_or_else(|| panic!("{n} missing"));
        let console = get("dev/console");
        assert!(console.is_char_device() && console.rdev == (5, 1));
        let init = get("init");
        assert!(init.is_executable_file() && init.data == b"\x7fELF fake");
        for d in ["dev", "proc", "sys", "tmp"] {
            assert_eq!(get(d).mode & 0o170000, S_IFDIR);
        }
        // Parents come before children, as the kernel's unpacker needs.
        let pos = |n: &str| entries.iter().position(|e| e.name == n).unwrap();
        assert!(pos("dev") < pos("dev/console"));
        assert_eq!(cpio.len() % 4, 0);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn layers_stack_like_overlayfs_with_whiteouts() {
        let d = tempdir("layers");
        let (l1, l2) = (d.join("l1"), d.join("l2"));
        std::fs::create_dir_all(l1.join("etc/sub")).unwrap();
        std::fs::write(l1.join("etc/hostname"), "one").unwrap();
        std::fs::write(l1.join("etc/sub/gone"), "x").unwrap();
        std::fs::write(l1.join("keep"), "k").unwrap();
        std::os::unix::fs::symlink("keep", l1.join("link")).unwrap();
        std::fs::create_dir_all(l2.join("etc")).unwrap();
        std::fs::write(l2.join("etc/hostname"), "two").unwrap();
        std::fs::write(l2.join("etc/.wh.sub"), "").unwrap();
        std::fs::write(l2.join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(l2.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let init = d.join("init-bin");
        std::fs::write(&init, "bin").unwrap();
        let entries = parse(&build(&[l1, l2], &init).unwrap()).unwrap();
        let get = |n: &str| entries.iter().find(|e| e.name == n);
        assert_eq!(get("etc/hostname").unwrap().data, b"two");
        assert!(get("etc/sub").is_none() && get("etc/sub/gone").is_none());
        assert_eq!(get("keep").unwrap().data, b"k");
        let link = get("link").unwrap();
        assert_eq!((link.mode & 0o170000, link.data.as_slice()), (S_IFLNK, b"keep".as_slice()));
        assert_eq!(get("run.sh").unwrap().mode, S_IFREG | 0o750);
        assert!(entries.iter().all(|e| !e.name.contains(".wh.")));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn add_file_creates_parents() {
        let mut fs = Initramfs::new();
        fs.add_file("/etc/vmct/scenario", 0o644, b"cpu".to_vec());
        let entries = parse(&fs.to_cpio().unwrap()).unwrap();
        assert!(entries.iter().any(|e| e.name == "etc" && e.mode == S_IFDIR | 0o755));
        assert!(entries.iter().any(|e| e.name == "etc/vmct/scenario" && e.data == b"cpu"));
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse(b"hello").is_err());
        assert!(parse(&[b'0'; 200]).is_err());
    }
}

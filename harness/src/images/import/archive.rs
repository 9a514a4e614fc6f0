//! Reading the members of an image archive: a directory (an OCI layout as `skopeo copy ... oci:DIR`
//! writes it) or a tar file (`docker save`, `podman save --format oci-archive`), without unpacking
//! the tar: one pass over its headers records where each member's bytes start, and a member is then
//! read in place (a seek and a bounded read), so a 100 MB layer is read once, not copied first.
//!
//! The tar crate reads the headers (PAX and GNU long names included); the offset index and the
//! resolution of symbolic and hard links between members (older `docker save` links a layer that
//! two images share) are hand-written because the crate has no random access to members.
use super::ImportError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Gzip's magic bytes (RFC 1952).
pub const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// Zstandard's frame magic (RFC 8878).
pub const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Bzip2's magic ("BZh").
pub const BZIP2_MAGIC: &[u8] = b"BZh";
/// Xz's magic.
pub const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];

/// One member of a tar archive.
#[derive(Debug, Clone)]
pub enum Member {
    /// A regular file.
    File {
        /// Where its bytes start in the tar.
        offset: u64,
        /// How many.
        size: u64,
    },
    /// A link to another member (symbolic: resolved relative to the link's directory; hard: the name).
    Link(String),
}

/// An opened archive.
#[derive(Debug)]
pub enum Archive {
    /// A directory.
    Dir(PathBuf),
    /// A tar file and its member index.
    Tar {
        /// The file.
        path: PathBuf,
        /// Members by normalized name.
        members: HashMap<String, Member>,
    },
}

/// A member name as written in the archive or a JSON file of it, normalized (no leading `./` or `/`),
/// or None when it leaves the archive (`..`).
pub fn normalize(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// The compression a blob's first bytes show.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    [(GZIP_MAGIC, "gzip"), (ZSTD_MAGIC, "zstd"), (BZIP2_MAGIC, "bzip2"), (XZ_MAGIC, "xz")]
        .into_iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|(_, n)| n)
}

impl Archive {
    /// Open `path`: a directory, or a plain tar file (a compressed file is refused with its kind).
    pub fn open(path: &Path) -> Result<Archive, ImportError> {
        let m = path.metadata().map_err(|source| ImportError::Open { path: path.into(), source })?;
        if m.is_dir() {
            return Ok(Archive::Dir(path.into()));
        }
        let mut f = std::fs::File::open(path).map_err(|source| ImportError::Open { path: path.into(), source })?;
        let mut head = [0u8; 8];
        let n = read_up_to(&mut f, &mut head).map_err(|source| ImportError::Open { path: path.into(), source })?;
        if let Some(kind) = sniff(&head[..n]) {
            return Err(ImportError::CompressedArchive { path: path.into(), kind });
        }
        f.seek(SeekFrom::Start(0)).map_err(|source| ImportError::Open { path: path.into(), source })?;
        let not_tar = |why: String| ImportError::NotArchive { path: path.into(), why };
        // Headers only: member bytes are skipped with a seek, not read.
        let mut a = tar::Archive::new(f);
        let mut members = HashMap::new();
        for e in a.entries_with_seek().map_err(|e| not_tar(e.to_string()))? {
            let e = e.map_err(|e| not_tar(e.to_string()))?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let Some(name) = normalize(&name) else { continue };
            let kind = e.header().entry_type();
            let link = || e.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned());
            let member = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    Member::File { offset: e.raw_file_position(), size: e.size() }
                }
                tar::EntryType::Symlink => match link() {
                    Some(l) => {
                        let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                        let joined = if l.starts_with('/') { l } else { dir.join(l).to_string_lossy().into_owned() };
                        match normalize_dots(&joined) {
                            Some(t) => Member::Link(t),
                            None => continue,
                        }
                    }
                    None => continue,
                },
                tar::EntryType::Link => match link().and_then(|l| normalize(&l)) {
                    Some(t) => Member::Link(t),
                    None => continue,
                },
                _ => continue,
            };
            members.insert(name, member);
        }
        if members.is_empty() {
            return Err(not_tar("no files in it".into()));
        }
        Ok(Archive::Tar { path: path.into(), members })
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        match self {
            Archive::Dir(p) | Archive::Tar { path: p, .. } => p,
        }
    }

    /// Where a member's bytes are: (file, offset, size).
    fn locate(&self, name: &str) -> Option<(PathBuf, u64, u64)> {
        match self {
            Archive::Dir(d) => {
                let p = d.join(normalize(name)?);
                let m = p.metadata().ok().filter(|m| m.is_file())?;
                Some((p, 0, m.len()))
            }
            Archive::Tar { path, members } => {
                let mut n = normalize(name)?;
                // Links between members: a few hops at most (a loop is a missing member).
                for _ in 0..8 {
                    match members.get(&n)? {
                        Member::File { offset, size } => return Some((path.clone(), *offset, *size)),
                        Member::Link(t) => n = t.clone(),
                    }
                }
                None
            }
        }
    }

    /// Whether the archive holds member `name`.
    pub fn has(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    /// A reader of member `name` and its size in bytes.
    pub fn open_member(&self, name: &str) -> Result<(std::io::Take<std::fs::File>, u64), ImportError> {
        let missing = || ImportError::Missing { archive: self.path().into(), member: name.into() };
        let (file, offset, size) = self.locate(name).ok_or_else(missing)?;
        let io = |source| ImportError::Read { archive: self.path().into(), member: name.into(), source };
        let mut f = std::fs::File::open(&file).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        Ok((f.take(size), size))
    }

    /// The bytes of a small member (a JSON file), at most `limit` bytes.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, ImportError> {
        let (mut r, size) = self.open_member(name)?;
        if size > limit {
            return Err(ImportError::Invalid {
                archive: self.path().into(),
                member: name.into(),
                why: format!("{size} bytes, more than the {limit} a metadata file may have"),
            });
        }
        let mut v = Vec::with_capacity(usize::try_from(size).expect("at most `limit` bytes, checked above"));
        r.read_to_end(&mut v).map_err(|source| ImportError::Read {
            archive: self.path().into(),
            member: name.into(),
            source,
        })?;
        Ok(v)
    }
}

/// Resolve `.` and `..` in a member path (a symlink target joined to its directory); None if it
/// climbs above the archive's root.
fn normalize_dots(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A reader that hashes (SHA-256) and counts what passes through it.
#[derive(Debug)]
pub struct Hashing<R> {
    inner: R,
    /// None: only counting (the same bytes are hashed further along the stream).
    hash: Option<Sha256>,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    /// Hash what is read from `inner`.
    pub fn new(inner: R) -> Self {
        Hashing { inner, hash: Some(Sha256::new()), bytes: 0 }
    }

    /// Count what is read from `inner` without hashing it.
    pub fn counting(inner: R) -> Self {
        Hashing { inner, hash: None, bytes: 0 }
    }

    /// Read the rest (so the digest covers the whole stream), then return the hex digest (empty when
    /// only counting), the byte count and the inner reader.
    pub fn finish(mut self) -> std::io::Result<(String, u64, R)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((self.hash.map(|h| hex(&h.finalize())).unwrap_or_default(), self.bytes, self.inner))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_archive() {
        assert_eq!(normalize("./blobs/sha256/ab").as_deref(), Some("blobs/sha256/ab"));
        assert_eq!(normalize("/manifest.json").as_deref(), Some("manifest.json"));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("a/../../x"), None);
        assert_eq!(normalize_dots("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize_dots("a/../../c"), None);
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Some("gzip"));
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some("zstd"));
        assert_eq!(sniff(b"BZh91AY"), Some("bzip2"));
        assert_eq!(sniff(b"ustar\0"), None);
    }

    #[test]
    fn tar_members_are_read_in_place_through_links() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "one/layer.tar", &b"hello"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "two/layer.tar", "../one/layer.tar").unwrap();
        b.finish().unwrap();
        drop(b);
        let a = Archive::open(&p).unwrap();
        assert_eq!(a.read_small("two/layer.tar", 100).unwrap(), b"hello");
        assert_eq!(a.read_small("./one/layer.tar", 100).unwrap(), b"hello");
        assert!(!a.has("three"));
        assert!(a.read_small("one/layer.tar", 2).unwrap_err().to_string().contains("more than"));
        let (digest, n, _) = Hashing::new(&b"hello"[..]).finish().unwrap();
        assert_eq!((digest.as_str(), n), ("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", 5));
    }
}

//! `vmct build SPEC`: an image from a small TOML spec, cached by content hash.
//!
//! ```toml
//! name = "hello"                      # the image's name (see `vmct images`)
//! from = "base"                       # "base" (the workload image, default) or another image
//! busybox = true                      # stack the busybox layer (a shell and the usual tools)
//! entry = ["/bin/sh", "-c", "cat /etc/greeting"]   # what `vmct shell --image hello` runs
//! env = ["GREETING=hello"]            # added to the parent image's environment
//! cwd = "/srv"                        # working directory (default: the parent image's, else /)
//!
//! [[add]]
//! src = "greeting.txt"                # a file or directory, relative to the spec's directory
//! dest = "/etc/greeting"
//! ```
//!
//! The new layer holds the `add` entries and is stored content-addressed under
//! `<image root>/layers/sha256-<digest>`, where the digest covers the parent layers, the busybox
//! choice, every added path's name, full mode (setuid, setgid, sticky), owner, extended attributes,
//! hard-link identity, device number and bytes, and the entry point: building the same inputs again
//! reuses the layer (and reports "cached"), changing one byte or one bit builds a new one.
//!
//! Added files keep their mode, hard links (a linked pair stays one inode), symlinks, xattrs, fifos
//! and device nodes. Owners are stored shifted by [`container::USERNS_BASE`] like every layer of the
//! store (a source file of uid 0 belongs to the container's root, uid 1000 to its uid 1000), so a
//! user-namespaced container sees the source's owners and can copy files up; owners at or above
//! [`container::USERNS_SIZE`] cannot be mapped and are refused. Names starting with `.wh.` (OCI
//! whiteouts) and sockets are refused. Builds hold the store's lock, so concurrent builds of one
//! name end with one complete image.
use super::{store, ImageRecord, ImagesError};
use container::fsmeta::{self, Kind};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Errors reading or building a spec; each names the spec file.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec cannot be read.
    #[error("build: cannot read spec {path}: {source}")]
    Read {
        /// Spec path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The spec is not valid TOML of the expected shape.
    #[error("build: {path}: {message}\n  valid keys: name, from, busybox, entry, env, cwd, [[add]] src/dest")]
    Parse {
        /// Spec path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("build: {path}: {message}")]
    Invalid {
        /// Spec path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Building the layer failed.
    #[error("build: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The parent image or busybox layer is unavailable.
    #[error("build: {0}")]
    Parent(String),
    /// The image store failed.
    #[error(transparent)]
    Store(#[from] ImagesError),
}

/// A parsed spec file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Image name.
    pub name: String,
    /// Parent image: "base" or an image from the store.
    #[serde(default = "base")]
    pub from: String,
    /// Add the busybox layer.
    #[serde(default)]
    pub busybox: bool,
    /// Entry point (absolute path first).
    #[serde(default)]
    pub entry: Option<Vec<String>>,
    /// Environment (`KEY=value`), added to the parent image's.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory (absolute).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Files and directories to add.
    #[serde(default)]
    pub add: Vec<Add>,
}

fn base() -> String {
    "base".into()
}

/// One `[[add]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add {
    /// Host path, relative to the spec's directory.
    pub src: PathBuf,
    /// Absolute path in the image.
    pub dest: String,
}

/// What `build` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Built {
    /// The image.
    pub image: ImageRecord,
    /// The layer was reused from the cache.
    pub cached: bool,
    /// Content digest (hex).
    pub digest: String,
}

/// Read and check a spec file.
pub fn parse(path: &Path) -> Result<Spec, BuildError> {
    let text = std::fs::read_to_string(path).map_err(|source| BuildError::Read { path: path.into(), source })?;
    let spec: Spec =
        toml::from_str(&text).map_err(|e| BuildError::Parse { path: path.into(), message: e.to_string() })?;
    let bad = |message: String| Err(BuildError::Invalid { path: path.into(), message });
    if !super::valid(&spec.name) {
        return bad(format!("name '{}': use letters, digits, '-', '_' and '.' (at most 64)", spec.name));
    }
    if let Some(e) = &spec.entry {
        if e.first().is_none_or(|p| !p.starts_with('/')) {
            return bad(format!("entry {e:?}: the first element must be an absolute path in the image"));
        }
    }
    if let Some(kv) =
        spec.env.iter().find(|kv| kv.split_once('=').is_none_or(|(k, _)| k.is_empty() || k.contains('\0')))
    {
        return bad(format!("env '{kv}': use KEY=value"));
    }
    if let Some(c) = spec.cwd.as_ref().filter(|c| !c.starts_with('/')) {
        return bad(format!("cwd '{c}': must be an absolute path in the image"));
    }
    for a in &spec.add {
        if !a.dest.starts_with('/') || a.dest == "/" || a.dest.split('/').any(|c| c == ".." || c == ".") {
            return bad(format!("add dest '{}': must be an absolute path below / without '.' or '..'", a.dest));
        }
    }
    Ok(spec)
}

/// Build the image described by the spec at `path` on top of `base_layers` (the base image).
pub fn build(path: &Path, base_layers: Vec<PathBuf>) -> Result<Built, BuildError> {
    let spec = parse(path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // One build at a time: parents cannot vanish under it and one name ends with one image.
    let _lock = super::store::lock(super::store::LockMode::Exclusive)?;
    let image_dir = store().join(&spec.name);
    let old = super::load(&spec.name).ok();
    match &old {
        // A committed or imported image is not a build's to replace.
        Some(o) if o.digest.is_none() || o.imported_from.is_some() => return Err(ImagesError::Exists(spec.name).into()),
        None if image_dir.symlink_metadata().is_ok() => return Err(ImagesError::Incomplete(spec.name).into()),
        _ => {}
    }
    let parent = if spec.from == "base" {
        None
    } else {
        Some(super::load(&spec.from).map_err(|e| BuildError::Parent(format!("from = \"{}\": {e}", spec.from)))?)
    };
    let mut parents = parent.as_ref().map_or(base_layers, |p| p.layers.clone());
    if spec.busybox {
        parents.push(super::busybox::layer().map_err(|e| BuildError::Parent(e.to_string()))?);
    }
    let sources: Vec<(PathBuf, &str)> = spec.add.iter().map(|a| (dir.join(&a.src), a.dest.as_str())).collect();
    let digest = digest(&parents, &sources, spec.entry.as_deref())?;
    let layer = crate::backend::container::image_root().join("layers").join(format!("sha256-{}", &digest[..32]));
    let cached = layer.join(".complete").is_file();
    if !cached {
        build_layer(&layer, &sources)?;
    }
    // Entry point, environment and working directory: the spec's over the parent image's.
    let (entry, mut env, cwd) = match &parent {
        Some(p) => (spec.entry.clone().or_else(|| p.entry.clone()), p.env.clone(), spec.cwd.clone().or(p.cwd.clone())),
        None => (spec.entry.clone(), Vec::new(), spec.cwd.clone()),
    };
    for kv in &spec.env {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.clone());
    }
    let mut history = match &parent {
        Some(p) => super::parent_history(&p.name, &p.layers),
        None => super::history::for_layers(&parents[..parents.len() - usize::from(spec.busybox)]),
    };
    if spec.busybox {
        history.extend(super::history::for_layers(&parents[parents.len() - 1..]));
    }
    let created_unix_s = crate::logs::unix_now();
    history.push(super::history::HistoryEntry {
        origin: super::history::Origin::Built,
        created_by: format!("built from spec {}", std::path::absolute(path).unwrap_or_else(|_| path.into()).display()),
        created_unix_s: Some(created_unix_s),
        layer: Some(layer.clone()),
        size_bytes: super::dir_bytes(&layer),
        comment: None,
    });
    let mut layers = parents;
    layers.push(layer.clone());
    let record = ImageRecord {
        name: spec.name.clone(),
        layers,
        from_container: String::new(),
        layer_tar_bytes: super::dir_bytes(&layer),
        whiteouts: 0,
        deleted_paths: 0,
        created_unix_s,
        entry,
        env,
        cwd,
        spec: Some(std::path::absolute(path).unwrap_or_else(|_| path.into())),
        digest: Some(digest.clone()),
        // An imported parent's Cmd (reset by a new entry point, as a Dockerfile's ENTRYPOINT does),
        // User and ExposedPorts carry over.
        cmd: parent.as_ref().and_then(|p| p.cmd.clone()).filter(|_| spec.entry.is_none()),
        user: parent.as_ref().and_then(|p| p.user.clone()),
        exposed_ports: parent.as_ref().map(|p| p.exposed_ports.clone()).unwrap_or_default(),
        history,
        imported_from: None,
    };
    if let Some(old) = old.filter(|old| {
        old.digest.as_deref() == Some(digest.as_str())
            && old.layers == record.layers
            && (&old.entry, &old.env, &old.cwd) == (&record.entry, &record.env, &record.cwd)
    }) {
        return Ok(Built { image: old, cached, digest });
    }
    super::write_record(&image_dir, &record)?;
    Ok(Built { image: record, cached, digest })
}

/// SHA-256 over everything that determines the layer and the image.
fn digest(parents: &[PathBuf], sources: &[(PathBuf, &str)], entry: Option<&[String]>) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    // v2: owners, xattrs, hard links and device numbers count (v1 layers lost setuid bits and links).
    h.update(b"vmct image spec v2\0");
    for p in parents {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update(b"\0");
    }
    h.update(serde_json::to_vec(&entry).expect("serializable"));
    let mut links = fsmeta::HardLinks::default();
    for (src, dest) in sources {
        h.update(dest.as_bytes());
        h.update(b"\0");
        hash_tree(&mut h, src, Path::new(dest), &mut links)?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn hash_tree(h: &mut Sha256, path: &Path, inside: &Path, links: &mut fsmeta::HardLinks) -> Result<(), BuildError> {
    let io = |what| move |source| BuildError::Io { what, path: path.into(), source };
    let m = path.symlink_metadata().map_err(io("cannot read"))?;
    let kind = check_source(path, &m)?;
    for v in [m.mode(), m.uid(), m.gid()] {
        h.update(v.to_le_bytes());
    }
    for (k, v) in fsmeta::xattrs(path).map_err(io("cannot read extended attributes of"))? {
        h.update(b"X");
        h.update(k.as_encoded_bytes());
        h.update(b"\0");
        h.update((v.len() as u64).to_le_bytes());
        h.update(&v);
    }
    if let Some(first) = links.first_of(&m, inside) {
        h.update(b"H");
        h.update(first.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        return Ok(());
    }
    match kind {
        Kind::Dir => {
            let mut names: Vec<_> =
                std::fs::read_dir(path).map_err(io("cannot list"))?.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for n in names {
                h.update(b"D");
                h.update(n.as_encoded_bytes());
                h.update(b"\0");
                hash_tree(h, &path.join(&n), &inside.join(&n), links)?;
            }
        }
        Kind::Symlink => {
            h.update(b"L");
            h.update(std::fs::read_link(path).map_err(io("cannot read link"))?.as_os_str().as_encoded_bytes());
        }
        Kind::File => {
            let bytes = std::fs::read(path).map_err(io("cannot read"))?;
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
            h.update(b"N");
            h.update(m.rdev().to_le_bytes());
        }
        Kind::Socket => unreachable!("refused by check_source"),
    }
    Ok(())
}

/// The kind of a source path, refusing what a layer cannot hold.
fn check_source(path: &Path, m: &std::fs::Metadata) -> Result<Kind, BuildError> {
    let bad = |what: &'static str| {
        Err(BuildError::Io { what, path: path.into(), source: std::io::Error::from(std::io::ErrorKind::InvalidInput) })
    };
    if path.file_name().is_some_and(fsmeta::is_reserved_name) {
        return bad("a name starting with '.wh.' marks a deletion in an OCI layer and cannot be added:");
    }
    match Kind::of(m) {
        Kind::Socket => bad("sockets belong to a running process and cannot be added:"),
        k => Ok(k),
    }
}

/// The layer owner of a source owner `id`: shifted into the user-namespace range when building as
/// root (see the module doc), unchanged otherwise (no chown is possible then).
fn layer_id(path: &Path, id: u32, root: bool) -> Result<Option<u32>, BuildError> {
    if !root {
        return Ok(None);
    }
    if id >= container::USERNS_SIZE {
        return Err(BuildError::Io {
            what: "owner outside the container's id range (0-65535) of",
            path: path.into(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    }
    Ok(Some(container::USERNS_BASE + id))
}

/// Copy `sources` into a new layer at `dest`, built in a temporary sibling and renamed into place.
fn build_layer(dest: &Path, sources: &[(PathBuf, &str)]) -> Result<(), BuildError> {
    let parent = dest.parent().expect("layer has a parent");
    let io = |what, p: &Path| {
        let path = p.to_path_buf();
        move |source| BuildError::Io { what, path, source }
    };
    std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    let tmp = container::image::temp_sibling(dest);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let result = (|| {
        std::fs::create_dir(&tmp).map_err(io("cannot create", &tmp))?;
        if root {
            // The layer's root dir: the container's root owns it, like the base layer's.
            let base = Some(container::USERNS_BASE);
            std::os::unix::fs::lchown(&tmp, base, base).map_err(io("cannot chown", &tmp))?;
        }
        let mut links = fsmeta::HardLinks::default();
        for (src, inside) in sources {
            let to = tmp.join(inside.trim_start_matches('/'));
            if let Some(d) = to.parent() {
                create_parents(&tmp, d, root)?;
            }
            copy_tree(src, &to, root, &mut links)?;
        }
        std::fs::write(tmp.join(".complete"), "").map_err(io("cannot write", &tmp))?;
        match std::fs::rename(&tmp, dest) {
            Err(_) if dest.join(".complete").is_file() => Ok(()),
            r => r.map_err(io("cannot move layer into", dest)),
        }
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Create the directories leading to an added path (0755, owned by the container's root).
fn create_parents(tmp: &Path, d: &Path, root: bool) -> Result<(), BuildError> {
    let missing: Vec<&Path> = d.ancestors().take_while(|a| *a != tmp && !a.exists()).collect();
    std::fs::create_dir_all(d).map_err(|source| BuildError::Io { what: "cannot create", path: d.into(), source })?;
    if root {
        for m in missing {
            let base = Some(container::USERNS_BASE);
            std::os::unix::fs::lchown(m, base, base).map_err(|source| BuildError::Io {
                what: "cannot chown",
                path: m.into(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Copy `from` to `to` with its kind, bytes, owner (see [`layer_id`]), full mode, xattrs and hard links.
fn copy_tree(from: &Path, to: &Path, root: bool, links: &mut fsmeta::HardLinks) -> Result<(), BuildError> {
    let io = |what, p: &Path| {
        let path = p.to_path_buf();
        move |source| BuildError::Io { what, path, source }
    };
    let m = from.symlink_metadata().map_err(io("cannot read", from))?;
    let kind = check_source(from, &m)?;
    if let Some(first) = links.first_of(&m, to) {
        return std::fs::hard_link(&first, to).map_err(io("cannot link", to));
    }
    match kind {
        Kind::Dir => std::fs::create_dir_all(to).map_err(io("cannot create", to))?,
        Kind::Symlink => {
            let target = std::fs::read_link(from).map_err(io("cannot read link", from))?;
            std::os::unix::fs::symlink(target, to).map_err(io("cannot create link", to))?;
        }
        Kind::File => {
            std::fs::copy(from, to).map_err(io("cannot copy to", to))?;
        }
        Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
            fsmeta::make_special(to, kind, m.rdev()).map_err(io("cannot create", to))?
        }
        Kind::Socket => unreachable!("refused by check_source"),
    }
    match (layer_id(from, m.uid(), root)?, layer_id(from, m.gid(), root)?) {
        (Some(uid), Some(gid)) => fsmeta::set_owner_mode(to, uid, gid, m.mode(), kind),
        _ if kind == Kind::Symlink => Ok(()),
        _ => std::fs::set_permissions(to, std::fs::Permissions::from_mode(m.mode() & fsmeta::MODE_BITS)),
    }
    .map_err(io("cannot set owner and mode of", to))?;
    let attrs = fsmeta::xattrs(from).map_err(io("cannot read extended attributes of", from))?;
    fsmeta::set_xattrs(to, &attrs).map_err(io("cannot set extended attributes of", to))?;
    if kind == Kind::Dir {
        let mut names: Vec<_> =
            std::fs::read_dir(from).map_err(io("cannot list", from))?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            copy_tree(&from.join(&n), &to.join(&n), root, links)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("vmct-image.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn parses_and_checks_specs() {
        let t = tempfile::tempdir().unwrap();
        let s =
            parse(&spec(t.path(), "name = \"a\"\nentry = [\"/bin/sh\"]\n[[add]]\nsrc = \"x\"\ndest = \"/etc/x\"\n"))
                .unwrap();
        assert_eq!((s.from.as_str(), s.busybox, s.add.len()), ("base", false, 1));
        let err = |text: &str| parse(&spec(t.path(), text)).unwrap_err().to_string();
        assert!(err("name = \"a\"\ncolour = 1\n").contains("valid keys"), "unknown keys are refused");
        assert!(err("name = \"../x\"\n").contains("name '../x'"));
        assert!(err("name = \"a\"\nentry = [\"sh\"]\n").contains("absolute path"));
        assert!(err("name = \"a\"\nenv = [\"NOVALUE\"]\n").contains("KEY=value"));
        assert!(err("name = \"a\"\ncwd = \"srv\"\n").contains("absolute path"));
        assert!(err("name = \"a\"\n[[add]]\nsrc = \"x\"\ndest = \"/etc/../x\"\n").contains("'.' or '..'"));
        assert!(parse(&t.path().join("missing.toml")).unwrap_err().to_string().contains("missing.toml"));
    }

    #[test]
    fn digest_follows_content() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "one").unwrap();
        let parents = vec![PathBuf::from("/l/base")];
        let d1 = digest(&parents, &[(f.clone(), "/f")], None).unwrap();
        assert_eq!(d1, digest(&parents, &[(f.clone(), "/f")], None).unwrap(), "stable");
        assert_ne!(d1, digest(&parents, &[(f.clone(), "/g")], None).unwrap(), "dest counts");
        assert_ne!(d1, digest(&parents, &[(f.clone(), "/f")], Some(&["/bin/sh".into()])).unwrap(), "entry counts");
        std::fs::write(&f, "two").unwrap();
        assert_ne!(d1, digest(&parents, &[(f.clone(), "/f")], None).unwrap(), "bytes count");
        assert!(digest(&parents, &[(t.path().join("nope"), "/f")], None).unwrap_err().to_string().contains("nope"));
        // Mode bits (setuid included) and hard-link identity count too.
        let d2 = digest(&parents, &[(f.clone(), "/f")], None).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert_ne!(d2, digest(&parents, &[(f.clone(), "/f")], None).unwrap(), "setuid counts");
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a"), "x").unwrap();
        std::fs::write(dir.join("b"), "x").unwrap();
        let two_files = digest(&parents, &[(dir.clone(), "/d")], None).unwrap();
        std::fs::remove_file(dir.join("b")).unwrap();
        std::fs::hard_link(dir.join("a"), dir.join("b")).unwrap();
        assert_ne!(two_files, digest(&parents, &[(dir.clone(), "/d")], None).unwrap(), "links count");
        std::fs::write(dir.join(".wh.x"), "").unwrap();
        assert!(digest(&parents, &[(dir, "/d")], None).unwrap_err().to_string().contains(".wh.x"));
    }
}

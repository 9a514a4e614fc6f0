//! `vmct build SPEC`: an image from a small TOML spec, cached by content hash.
//!
//! ```toml
//! name = "hello"                      # the image's name (see `vmct images`)
//! from = "base"                       # "base" (the workload image, default) or another image
//! busybox = true                      # stack the busybox layer (a shell and the usual tools)
//! entry = ["/bin/sh", "-c", "cat /etc/greeting"]   # what `vmct shell --image hello` runs
//!
//! [[add]]
//! src = "greeting.txt"                # a file or directory, relative to the spec's directory
//! dest = "/etc/greeting"
//! ```
//!
//! The new layer holds the `add` entries and is stored content-addressed under
//! `<image root>/layers/sha256-<digest>`, where the digest covers the parent layers, the busybox
//! choice, every added path's name, mode and bytes, and the entry point: building the same inputs
//! again reuses the layer (and reports "cached"), changing one byte builds a new one.
use super::{store, ImageRecord, ImagesError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
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
    #[error("build: {path}: {message}\n  valid keys: name, from, busybox, entry, [[add]] src/dest")]
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
    let mut parents = if spec.from == "base" {
        base_layers
    } else {
        super::load(&spec.from).map_err(|e| BuildError::Parent(format!("from = \"{}\": {e}", spec.from)))?.layers
    };
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
    let mut layers = parents;
    layers.push(layer.clone());
    let record = ImageRecord {
        name: spec.name.clone(),
        layers,
        from_container: String::new(),
        layer_tar_bytes: super::dir_bytes(&layer),
        whiteouts: 0,
        created_unix_s: crate::logs::unix_now(),
        entry: spec.entry.clone(),
        spec: Some(std::path::absolute(path).unwrap_or_else(|_| path.into())),
        digest: Some(digest.clone()),
    };
    let image_dir = store().join(&spec.name);
    if let Ok(old) = super::load(&spec.name) {
        if old.digest.as_deref() == Some(digest.as_str()) && old.layers == record.layers {
            return Ok(Built { image: old, cached, digest });
        }
        if old.digest.is_none() {
            // A committed image holds its own layer: do not replace it by a build.
            return Err(ImagesError::Exists(spec.name).into());
        }
    }
    super::write_record(&image_dir, &record)?;
    Ok(Built { image: record, cached, digest })
}

/// SHA-256 over everything that determines the layer and the image.
fn digest(parents: &[PathBuf], sources: &[(PathBuf, &str)], entry: Option<&[String]>) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    h.update(b"vmct image spec v1\0");
    for p in parents {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update(b"\0");
    }
    h.update(serde_json::to_vec(&entry).expect("serializable"));
    for (src, dest) in sources {
        h.update(dest.as_bytes());
        h.update(b"\0");
        hash_tree(&mut h, src)?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn hash_tree(h: &mut Sha256, path: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what| move |source| BuildError::Io { what, path: path.into(), source };
    let m = path.symlink_metadata().map_err(io("cannot read"))?;
    h.update(m.permissions().mode().to_le_bytes());
    if m.is_dir() {
        let mut names: Vec<_> =
            std::fs::read_dir(path).map_err(io("cannot list"))?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            h.update(b"D");
            h.update(n.as_encoded_bytes());
            h.update(b"\0");
            hash_tree(h, &path.join(n))?;
        }
    } else if m.file_type().is_symlink() {
        h.update(b"L");
        h.update(std::fs::read_link(path).map_err(io("cannot read link"))?.as_os_str().as_encoded_bytes());
    } else if m.is_file() {
        let bytes = std::fs::read(path).map_err(io("cannot read"))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    } else {
        return Err(io("unsupported file type (devices, sockets and fifos cannot be added):")(std::io::Error::from(
            std::io::ErrorKind::InvalidInput,
        )));
    }
    Ok(())
}

/// Copy `sources` into a new layer at `dest`, built in a temporary sibling and renamed into place.
fn build_layer(dest: &Path, sources: &[(PathBuf, &str)]) -> Result<(), BuildError> {
    let parent = dest.parent().expect("layer has a parent");
    let io = |what, p: &Path| {
        let path = p.to_path_buf();
        move |source| BuildError::Io { what, path, source }
    };
    std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    let tmp = parent.join(format!(".build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir(&tmp).map_err(io("cannot create", &tmp))?;
        for (src, inside) in sources {
            let to = tmp.join(inside.trim_start_matches('/'));
            if let Some(d) = to.parent() {
                std::fs::create_dir_all(d).map_err(io("cannot create", d))?;
            }
            copy_tree(src, &to)?;
        }
        // A user-namespaced container root (host uid USERNS_BASE) must be able to copy files up.
        if nix::unistd::geteuid().is_root() {
            chown_tree(&tmp, container::USERNS_BASE)?;
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

fn copy_tree(from: &Path, to: &Path) -> Result<(), BuildError> {
    let io = |what, p: &Path| {
        let path = p.to_path_buf();
        move |source| BuildError::Io { what, path, source }
    };
    let m = from.symlink_metadata().map_err(io("cannot read", from))?;
    if m.is_dir() {
        std::fs::create_dir_all(to).map_err(io("cannot create", to))?;
        std::fs::set_permissions(to, m.permissions()).map_err(io("cannot chmod", to))?;
        for e in std::fs::read_dir(from).map_err(io("cannot list", from))?.flatten() {
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
    } else if m.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(io("cannot read link", from))?;
        std::os::unix::fs::symlink(target, to).map_err(io("cannot create link", to))?;
    } else {
        std::fs::copy(from, to).map_err(io("cannot copy to", to))?;
    }
    Ok(())
}

fn chown_tree(root: &Path, id: u32) -> Result<(), BuildError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(id), Some(id)).map_err(|source| BuildError::Io {
            what: "cannot chown",
            path: p.clone(),
            source,
        })?;
        if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            stack.extend(std::fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
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
    }
}

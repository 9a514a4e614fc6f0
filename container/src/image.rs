//! Images: an ordered list of read-only layer directories plus an entry point.
//!
//! Layers are listed bottom first. A container mounts them as overlayfs lower dirs (top first in
//! `lowerdir=`) under its private upper dir, so N containers share one base on disk.
use std::path::{Path, PathBuf};

/// Errors opening an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No layers.
    #[error("image: no layers given")]
    NoLayers,
    /// A layer directory is missing.
    #[error("image: layer {0} does not exist or is not a directory (missing rootfs?)")]
    MissingLayer(PathBuf),
    /// The same layer twice (overlayfs refuses it with ELOOP).
    #[error("image: layer {0} is listed twice; overlayfs cannot stack a directory on itself")]
    DuplicateLayer(PathBuf),
    /// A layer path cannot go into overlayfs options.
    #[error("image: layer path {0} contains ',', ':' or a NUL byte, which overlayfs options cannot carry")]
    BadLayerPath(PathBuf),
    /// The entry point is not in any layer.
    #[error("image: entry point {entry} is not an executable file in any layer of {layers:?}")]
    MissingEntry {
        /// Entry point.
        entry: String,
        /// Layers searched.
        layers: Vec<PathBuf>,
    },
    /// Building a layer failed.
    #[error("image: cannot build layer {path}: {source}")]
    Build {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A mount point the runtime needs is missing from every layer.
    #[error("image: mount point /{dir} is missing from every layer (add an empty directory to the base layer)")]
    MissingMountPoint {
        /// Directory.
        dir: &'static str,
    },
}

/// Directories every image must contain (the runtime mounts over them).
pub const MOUNT_POINTS: &[&str] = &["proc", "sys", "dev", "tmp"];

/// A validated image.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Layers, bottom first (absolute paths).
    pub layers: Vec<PathBuf>,
    /// Entry point argv prefix (`entry[0]` is an absolute path inside the image).
    pub entry: Vec<String>,
    /// Environment every container of the image gets.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub cwd: String,
}

impl Image {
    /// Validate layers, entry point and mount points.
    pub fn open(layers: Vec<PathBuf>, entry: Vec<String>) -> Result<Image, ImageError> {
        if layers.is_empty() {
            return Err(ImageError::NoLayers);
        }
        let mut abs = Vec::new();
        for l in layers {
            let l = if l.is_absolute() { l } else { std::env::current_dir().unwrap_or_default().join(l) };
            if !l.is_dir() {
                return Err(ImageError::MissingLayer(l));
            }
            let s = l.to_string_lossy();
            if s.contains([',', ':', '\0']) {
                return Err(ImageError::BadLayerPath(l));
            }
            if abs.contains(&l) {
                return Err(ImageError::DuplicateLayer(l));
            }
            abs.push(l);
        }
        let e0 = entry.first().cloned().unwrap_or_default();
        let found = abs.iter().rev().any(|l| {
            use std::os::unix::fs::PermissionsExt;
            let p = l.join(e0.trim_start_matches('/'));
            p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
        if e0.is_empty() || !found {
            return Err(ImageError::MissingEntry { entry: e0, layers: abs });
        }
        for dir in MOUNT_POINTS {
            if !abs.iter().any(|l| l.join(dir).is_dir()) {
                return Err(ImageError::MissingMountPoint { dir });
            }
        }
        Ok(Image { layers: abs, entry, env: vec![("PATH".into(), "/bin:/usr/bin".into())], cwd: "/".into() })
    }

    /// The overlayfs `lowerdir=` value (top layer first).
    pub fn lowerdir(&self) -> String {
        self.layers.iter().rev().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>().join(":")
    }

    /// The full overlay mount data for a container whose private dirs are `upper` and `work`.
    pub fn overlay_data(&self, upper: &Path, work: &Path) -> String {
        format!("lowerdir={},upperdir={},workdir={}", self.lowerdir(), upper.display(), work.display())
    }
}

/// Prefix of every temporary file or directory written next to a layer or image before it is renamed
/// into place: `.tmp-<pid>-<seq>-<name>`; `vmct gc` removes those whose writer pid is gone.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A fresh temporary path next to `dest` (same directory, so a rename publishes it atomically),
/// unique per process and call.
pub fn temp_sibling(dest: &Path) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!("{TEMP_PREFIX}{}-{seq}-{name}", std::process::id()))
}

/// The writer pid of a temporary name made by [`temp_sibling`].
pub fn temp_owner(name: &str) -> Option<u32> {
    name.strip_prefix(TEMP_PREFIX)?.split('-').next()?.parse().ok()
}

/// Directories a base layer gets besides [`MOUNT_POINTS`].
pub const BASE_DIRS: &[&str] = &["bin", "etc", "work", "run", "var/tmp"];

/// Build (once) a single base layer at `dest` holding `files` as (host source, path in the image) and
/// the mount points, owned by `owner` (uid, gid) if given (a user-namespaced root must own the layer
/// to copy files up). Built in a temporary sibling and renamed into place, so concurrent builders and
/// crashes never leave a half-built layer at `dest`. Returns `dest`.
pub fn build_layer(dest: &Path, files: &[(&Path, &str)], owner: Option<(u32, u32)>) -> Result<PathBuf, ImageError> {
    build_layer_with(dest, files, &[], owner)
}

/// [`build_layer`] plus symbolic links given as (path in the image, link target), e.g.
/// `("/bin/sh", "busybox")`. Links whose path is also a file of `files` are skipped.
pub fn build_layer_with(
    dest: &Path,
    files: &[(&Path, &str)],
    links: &[(&str, &str)],
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, ImageError> {
    if dest.join(".complete").is_file() {
        return Ok(dest.to_path_buf());
    }
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Build { path, source }
    };
    let parent = dest.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(err(parent))?;
    let tmp = temp_sibling(dest);
    // Everything is written into `tmp`; it is removed on every error.
    let filled = (|| -> Result<(), ImageError> {
        let mut dirs: Vec<PathBuf> = vec![tmp.clone()];
        for d in MOUNT_POINTS.iter().chain(BASE_DIRS) {
            let p = tmp.join(d);
            std::fs::create_dir_all(&p).map_err(err(&p))?;
            dirs.extend(p.ancestors().take_while(|a| *a != tmp).map(Path::to_path_buf));
        }
        let mut all = dirs.clone();
        for (src, inside) in files {
            let p = tmp.join(inside.trim_start_matches('/'));
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(err(d))?;
            }
            std::fs::copy(src, &p).map_err(err(&p))?;
            all.push(p);
        }
        for (inside, target) in links {
            let p = tmp.join(inside.trim_start_matches('/'));
            if files.iter().any(|(_, f)| f.trim_start_matches('/') == inside.trim_start_matches('/')) {
                continue;
            }
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(err(d))?;
            }
            std::os::unix::fs::symlink(target, &p).map_err(err(&p))?;
            all.push(p);
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.join("tmp"), std::fs::Permissions::from_mode(0o1777)).map_err(err(&tmp))?;
            for d in &dirs {
                if !d.ends_with("tmp") {
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).map_err(err(d))?;
                }
            }
        }
        std::fs::write(tmp.join("etc/hostname"), "vmct\n").map_err(err(&tmp))?;
        all.push(tmp.join("etc/hostname"));
        if let Some((uid, gid)) = owner {
            for p in &all {
                std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(err(p))?;
            }
        }
        std::fs::write(tmp.join(".complete"), "").map_err(err(&tmp))
    })();
    if let Err(e) = filled {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, dest) {
        Ok(()) => Ok(dest.to_path_buf()),
        // Another builder won the race: use theirs.
        Err(_) if dest.join(".complete").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest.to_path_buf())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(err(dest)(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn layer(dir: &Path, exe: bool) {
        for d in MOUNT_POINTS {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        if exe {
            std::fs::create_dir_all(dir.join("bin")).unwrap();
            std::fs::write(dir.join("bin/w"), b"x").unwrap();
            std::fs::set_permissions(dir.join("bin/w"), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn opens_and_orders_layers() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        layer(&a, true);
        std::fs::create_dir_all(&b).unwrap();
        let img = Image::open(vec![a.clone(), b.clone()], vec!["/bin/w".into()]).unwrap();
        assert_eq!(img.lowerdir(), format!("{}:{}", b.display(), a.display()));
        assert!(img.overlay_data(Path::new("/u"), Path::new("/w")).ends_with(",upperdir=/u,workdir=/w"));
    }

    #[test]
    fn builds_a_base_layer_once() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("exe");
        std::fs::write(&exe, b"#!").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dest = t.path().join("images/base");
        let l = build_layer(&dest, &[(&exe, "/bin/w")], None).unwrap();
        let img = Image::open(vec![l.clone()], vec!["/bin/w".into()]).unwrap();
        assert_eq!(img.layers, vec![dest.clone()]);
        std::fs::write(dest.join("marker"), b"").unwrap();
        build_layer(&dest, &[(&exe, "/bin/w")], None).unwrap();
        assert!(dest.join("marker").exists(), "second build must reuse the layer");
    }

    #[test]
    fn builds_links() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("exe");
        std::fs::write(&exe, b"#!").unwrap();
        let dest = t.path().join("bb");
        build_layer_with(&dest, &[(&exe, "/bin/busybox")], &[("/bin/sh", "busybox"), ("/bin/busybox", "x")], None)
            .unwrap();
        assert_eq!(std::fs::read_link(dest.join("bin/sh")).unwrap(), Path::new("busybox"));
        assert!(dest.join("bin/busybox").symlink_metadata().unwrap().is_file(), "a file wins over a link");
    }

    #[test]
    fn temp_names_carry_their_writer() {
        let a = temp_sibling(Path::new("/s/committed/img"));
        assert_ne!(a, temp_sibling(Path::new("/s/committed/img")), "unique per call");
        assert_eq!(a.parent(), Some(Path::new("/s/committed")));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(temp_owner(&name), Some(std::process::id()));
        assert!(name.ends_with("-img"));
        assert_eq!(temp_owner("img"), None);
    }

    #[test]
    fn clear_errors() {
        let t = tempfile::tempdir().unwrap();
        let e = Image::open(vec![t.path().join("nope")], vec!["/bin/w".into()]).unwrap_err();
        assert!(e.to_string().contains("nope") && e.to_string().contains("missing rootfs"), "{e}");
        layer(t.path(), false);
        let e = Image::open(vec![t.path().into()], vec!["/bin/w".into()]).unwrap_err();
        assert!(matches!(e, ImageError::MissingEntry { .. }), "{e}");
        assert!(matches!(Image::open(vec![], vec![]), Err(ImageError::NoLayers)));
        let good = t.path().join("good");
        layer(&good, true);
        let twice = Image::open(vec![good.clone(), good], vec!["/bin/w".into()]).unwrap_err();
        assert!(matches!(twice, ImageError::DuplicateLayer(_)), "{twice}");
        let bad = t.path().join("a:b");
        layer(&bad, true);
        assert!(matches!(Image::open(vec![bad], vec!["/bin/w".into()]), Err(ImageError::BadLayerPath(_))));
        let nomp = t.path().join("c");
        std::fs::create_dir_all(nomp.join("bin")).unwrap();
        std::fs::write(nomp.join("bin/w"), b"x").unwrap();
        std::fs::set_permissions(nomp.join("bin/w"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            Image::open(vec![nomp], vec!["/bin/w".into()]),
            Err(ImageError::MissingMountPoint { dir: "proc" })
        ));
    }
}

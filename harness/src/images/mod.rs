//! The image store for `vmct commit`, `vmct build`, `vmct images`, `vmct run --image` and
//! `vmct shell --image`: each image is a directory `<image root>/committed/<name>/` holding
//! `image.json` (its layers, bottom first). A committed image also holds its layer there (`layer.tar`
//! in OCI form, `layer/` unpacked for overlayfs); a built image points at a content-addressed layer
//! (see [`build`]). [`busybox`] packs the optional shell layer.
pub mod build;
pub mod busybox;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors of the image store; each names the image or path.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// No such running container.
    #[error("images: no running container '{0}' (its state dir is missing); `vmct logs` lists instances")]
    NoContainer(String),
    /// No such image.
    #[error("images: no image '{0}'; `vmct images` lists them")]
    NoImage(String),
    /// Bad image name.
    #[error("images: invalid image name '{0}': use letters, digits, '-', '_' and '.' (at most 64)")]
    BadName(String),
    /// The image exists.
    #[error("images: image '{0}' exists already; pick another name")]
    Exists(String),
    /// Another image is built on this one's layer.
    #[error("images: image '{image}' holds a layer image '{user}' uses; remove '{user}' first")]
    InUse {
        /// The image to remove.
        image: String,
        /// An image using its layer.
        user: String,
    },
    /// Commit failed.
    #[error(transparent)]
    Commit(#[from] container::commit::CommitError),
    /// File system error.
    #[error("images: {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// `image.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image name.
    pub name: String,
    /// Layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// The container it was committed from (empty for built images).
    #[serde(default)]
    pub from_container: String,
    /// Size of the committed layer's tar, bytes.
    pub layer_tar_bytes: u64,
    /// Whiteouts (deletions) in the committed layer.
    pub whiteouts: usize,
    /// Creation time, seconds since the epoch.
    pub created_unix_s: f64,
    /// Entry point (built images that set one); `vmct shell --image` runs it by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Vec<String>>,
    /// The spec file a built image came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PathBuf>,
    /// Content digest of a built image (SHA-256, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Where committed images live.
pub fn store() -> PathBuf {
    crate::backend::container::image_root().join("committed")
}

pub(crate) fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.')
}

/// Commit the running container `id` (its upper dir) on top of `layers` as image `name`.
pub fn commit(id: &str, name: &str, layers: Vec<PathBuf>) -> Result<ImageRecord, ImagesError> {
    if !valid(name) {
        return Err(ImagesError::BadName(name.into()));
    }
    let upper = Path::new(container::runtime::DEFAULT_STATE_ROOT).join(id).join("upper");
    if !upper.is_dir() {
        return Err(ImagesError::NoContainer(id.into()));
    }
    let dir = store().join(name);
    if dir.exists() {
        return Err(ImagesError::Exists(name.into()));
    }
    let layer = container::commit::commit(&upper, &dir)?;
    let mut all = layers;
    all.push(layer.dir.clone());
    let rec = ImageRecord {
        name: name.into(),
        layers: all,
        from_container: id.into(),
        layer_tar_bytes: layer.tar_bytes,
        whiteouts: layer.whiteouts,
        created_unix_s: crate::logs::unix_now(),
        entry: None,
        spec: None,
        digest: None,
    };
    write_record(&dir, &rec)?;
    Ok(rec)
}

/// Write `dir/image.json` (atomically: a temporary file renamed over the old one).
pub(crate) fn write_record(dir: &Path, rec: &ImageRecord) -> Result<(), ImagesError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImagesError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(".image.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(rec).expect("serializable")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join("image.json")).map_err(io(dir))
}

/// Remove image `name`, then every content-addressed build layer no remaining image uses.
/// Returns the bytes freed.
pub fn remove(name: &str) -> Result<u64, ImagesError> {
    if !valid(name) {
        return Err(ImagesError::BadName(name.into()));
    }
    load(name)?;
    let dir = store().join(name);
    if let Some(user) = list().into_iter().find(|i| i.name != name && i.layers.iter().any(|l| l.starts_with(&dir))) {
        return Err(ImagesError::InUse { image: name.into(), user: user.name });
    }
    let mut freed = dir_bytes(&dir);
    std::fs::remove_dir_all(&dir).map_err(|source| ImagesError::Io { path: dir.clone(), source })?;
    let used: std::collections::BTreeSet<PathBuf> = list().into_iter().flat_map(|i| i.layers).collect();
    let layers = crate::backend::container::image_root().join("layers");
    for e in std::fs::read_dir(&layers).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("sha256-") && !used.contains(&e.path()) {
            freed += dir_bytes(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(freed)
}

/// Load image `name`.
pub fn load(name: &str) -> Result<ImageRecord, ImagesError> {
    let path = store().join(name).join("image.json");
    let text = std::fs::read(&path).map_err(|_| ImagesError::NoImage(name.into()))?;
    serde_json::from_slice(&text).map_err(|_| ImagesError::NoImage(name.into()))
}

/// All images, oldest first.
pub fn list() -> Vec<ImageRecord> {
    let mut v: Vec<ImageRecord> = std::fs::read_dir(store())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| load(&e.file_name().to_string_lossy()).ok())
        .collect();
    v.sort_by(|a, b| a.created_unix_s.total_cmp(&b.created_unix_s));
    v
}

/// Bytes of regular files under `dir` (allocated blocks).
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid("web-1.2_x"));
        assert!(!valid("") && !valid("../etc") && !valid(".hidden") && !valid("a/b"));
        assert!(commit("vmct-none", "bad/name", vec![]).unwrap_err().to_string().contains("invalid image name"));
        assert!(commit("vmct-no-such-container", "ok", vec![])
            .unwrap_err()
            .to_string()
            .contains("no running container"));
        assert!(load("vmct-no-such-image").unwrap_err().to_string().contains("no image"));
    }
}

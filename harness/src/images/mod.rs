//! The image store for `vmct commit`, `vmct build`, `vmct images`, `vmct run --image` and
//! `vmct shell --image`: each image is a directory `<image root>/committed/<name>/` holding
//! `image.json` (its layers, bottom first). A committed image also holds its layer there (`layer.tar`
//! in OCI form, `layer/` unpacked for overlayfs); a built image points at a content-addressed layer
//! (see [`build`]). [`busybox`] packs the optional shell layer. Every write goes through [`store`]
//! (one lock, atomic writes, temporary dirs renamed into place); [`usage`] records which running
//! instances use which layers, so no removal deletes a layer under a live container. [`run`] runs an
//! image's own process as the workload ([`ready`]: readiness rules; [`rootdisk`]: the linux guest's disk).
pub mod build;
pub mod busybox;
pub mod history;
pub mod import;
pub mod ready;
pub mod rootdisk;
pub mod run;
pub mod store;
pub mod usage;

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
    /// A directory of that name without a record (a failed commit of an earlier version).
    #[error(
        "images: '{0}' is an incomplete image a failed commit left; remove it with `vmct images --rm {0}` or `vmct gc`"
    )]
    Incomplete(String),
    /// The base image cannot be assembled.
    #[error("images: the base image is unavailable: {0}")]
    NoBase(String),
    /// Running containers use the image.
    #[error("images: image '{image}' is in use by {users}; stop them first (`vmct logs` lists instances)")]
    Busy {
        /// The image.
        image: String,
        /// The containers, comma-separated.
        users: String,
    },
    /// A layer of the image is gone (removed meanwhile).
    #[error("images: layer {layer} of image '{image}' is missing (the image was removed or rebuilt meanwhile); `vmct images` lists images")]
    MissingLayer {
        /// The image.
        image: String,
        /// The missing layer.
        layer: PathBuf,
    },
    /// `--from` disagrees with the image the container runs.
    #[error("images: container '{id}' runs image '{runs}', not '{from}'; drop --from or name '{runs}'")]
    WrongParent {
        /// The container.
        id: String,
        /// Its image.
        runs: String,
        /// The `--from` value.
        from: String,
    },
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
    /// Whiteouts and opaque directories in the committed layer.
    pub whiteouts: usize,
    /// Paths of the parent image the committed layer deletes (a directory with everything in it).
    #[serde(default)]
    pub deleted_paths: usize,
    /// Creation time, seconds since the epoch.
    pub created_unix_s: f64,
    /// Entry point (built images that set one); `vmct shell --image` runs it by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Vec<String>>,
    /// Environment (`KEY=value`) of containers of the image, after the runtime's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory of containers of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The spec file a built image came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PathBuf>,
    /// Content digest of a built image (SHA-256, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The image config's `Cmd` (imported images): the default arguments after [`Self::entry`]
    /// (`Entrypoint`), replaced by the command a user gives after `--`, as `docker run` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The image config's `User` (`uid`, `uid:gid`, or a name resolved in the image's /etc/passwd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The image config's `ExposedPorts` keys, e.g. `8080/tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    /// What made each layer, oldest first (see [`history`]); empty in records written before it was
    /// kept ([`history::of`] derives one then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<history::HistoryEntry>,
    /// The archive an imported image came from (`vmct images import`); None for built and committed
    /// images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<import::ImportedFrom>,
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

/// What a commit builds on: the image a container runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parent {
    /// Image name ("base" for the base image).
    pub name: String,
    /// Its layers as the container mounts them, bottom first.
    pub layers: Vec<PathBuf>,
    /// Entry point, environment and working directory the new image keeps.
    pub entry: Option<Vec<String>>,
    /// Environment (`KEY=value`).
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
}

impl Parent {
    /// The parent of a container: what its usage record says it runs; `from` (an image name) must
    /// agree when given. Without a record (a container vmct did not start), `from`'s record, else
    /// the base image's `base_layers`.
    pub fn of(
        id: &str,
        from: Option<&str>,
        base_layers: impl FnOnce() -> Result<Vec<PathBuf>, String>,
    ) -> Result<Parent, ImagesError> {
        if let Some(u) = usage::find(id) {
            if let Some(f) = from.filter(|f| *f != u.image) {
                return Err(ImagesError::WrongParent { id: id.into(), runs: u.image, from: f.into() });
            }
            return Ok(Parent { name: u.image, layers: u.layers, entry: u.entry, env: u.env, cwd: u.cwd });
        }
        Ok(match from.filter(|f| *f != "base") {
            Some(f) => {
                let r = load(f)?;
                Parent { name: r.name, layers: r.layers, entry: r.entry, env: r.env, cwd: r.cwd }
            }
            None => {
                let layers = base_layers().map_err(ImagesError::NoBase)?;
                Parent { name: "base".into(), layers, ..Default::default() }
            }
        })
    }
}

/// What a commit stored, beside the image record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Committed {
    /// The new image.
    pub image: ImageRecord,
    /// Paths inside the container that were not stored (sockets).
    pub skipped: Vec<String>,
}

/// Commit the running container `id` (its upper dir) on top of `parent` as image `name`. The layer
/// and record are written under a temporary name and renamed into place under the store lock: a
/// failed or interrupted commit leaves no image and the name stays free.
pub fn commit(id: &str, name: &str, parent: Parent) -> Result<Committed, ImagesError> {
    if !valid(name) {
        return Err(ImagesError::BadName(name.into()));
    }
    let upper = Path::new(container::runtime::DEFAULT_STATE_ROOT).join(id).join("upper");
    if !upper.is_dir() {
        return Err(ImagesError::NoContainer(id.into()));
    }
    let dir = store().join(name);
    if dir.symlink_metadata().is_ok() {
        return Err(if load(name).is_ok() {
            ImagesError::Exists(name.into())
        } else {
            ImagesError::Incomplete(name.into())
        });
    }
    let tmp = store::TempDir::new(&dir)?;
    let layer = container::commit::commit_into(&upper, tmp.path(), &parent.layers)?;
    let mut all = parent.layers.clone();
    all.push(dir.join("layer"));
    let created_unix_s = crate::logs::unix_now();
    let mut history = parent_history(&parent.name, &parent.layers);
    // An imported parent's Cmd, User and ExposedPorts stay with the image, like its entry point.
    let parent_rec = load(&parent.name).ok().filter(|p| p.layers == parent.layers);
    history.push(history::HistoryEntry {
        origin: history::Origin::Committed,
        created_by: format!("committed from container {id}"),
        created_unix_s: Some(created_unix_s),
        layer: Some(dir.join("layer")),
        size_bytes: layer.tar_bytes,
        comment: (layer.whiteouts > 0).then(|| format!("{} deleted paths", layer.deleted_paths)),
    });
    let rec = ImageRecord {
        name: name.into(),
        layers: all,
        from_container: id.into(),
        layer_tar_bytes: layer.tar_bytes,
        whiteouts: layer.whiteouts,
        deleted_paths: layer.deleted_paths,
        created_unix_s,
        entry: parent.entry,
        env: parent.env,
        cwd: parent.cwd,
        spec: None,
        digest: None,
        cmd: parent_rec.as_ref().and_then(|p| p.cmd.clone()),
        user: parent_rec.as_ref().and_then(|p| p.user.clone()),
        exposed_ports: parent_rec.map(|p| p.exposed_ports).unwrap_or_default(),
        history,
        imported_from: None,
    };
    store::publish_image(tmp, &rec, &parent.name)?;
    Ok(Committed { image: rec, skipped: layer.skipped })
}

/// The history of the layers `layers` of image `parent` (the base image's layers, or an image of the
/// store whose layers they still are), oldest first, for an image built or committed on them.
pub(crate) fn parent_history(parent: &str, layers: &[PathBuf]) -> Vec<history::HistoryEntry> {
    match load(parent) {
        Ok(p) if p.layers == layers => history::of(&p),
        _ => history::for_layers(layers),
    }
}

/// Write `dir/image.json` atomically (see [`store::write_atomic`]).
pub(crate) fn write_record(dir: &Path, rec: &ImageRecord) -> Result<(), ImagesError> {
    store::write_atomic(&dir.join("image.json"), &serde_json::to_vec_pretty(rec).expect("serializable"))
}

/// What [`remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Bytes freed (allocated blocks).
    pub freed_bytes: u64,
    /// The image directory had no record (an incomplete commit of an earlier version).
    pub incomplete: bool,
}

/// Remove image `name`, then every content-addressed build layer no remaining image and no
/// instance uses. Refused while another image builds on its layer or a container runs from it
/// (named in the error). Under the store lock.
pub fn remove(name: &str) -> Result<Removed, ImagesError> {
    if !valid(name) {
        return Err(ImagesError::BadName(name.into()));
    }
    let _lock = store::lock(store::LockMode::Exclusive)?;
    let dir = store().join(name);
    let rec = match load(name) {
        Ok(r) => r,
        Err(e) if !dir.is_dir() => return Err(e),
        // A directory without a record: what a failed commit of an earlier version left.
        Err(_) => {
            let freed_bytes = dir_bytes(&dir);
            store::discard(&dir)?;
            return Ok(Removed { freed_bytes, incomplete: true });
        }
    };
    let images = list();
    if let Some(user) = images.iter().find(|i| i.name != name && i.layers.iter().any(|l| l.starts_with(&dir))) {
        return Err(ImagesError::InUse { image: name.into(), user: user.name.clone() });
    }
    // The layers this removal would delete: its own dir and build layers no other image lists.
    let others: std::collections::BTreeSet<&PathBuf> =
        images.iter().filter(|i| i.name != name).flat_map(|i| i.layers.iter()).collect();
    let mut doomed = vec![dir.clone()];
    doomed.extend(rec.layers.iter().filter(|l| is_build_layer(l) && !others.contains(l)).cloned());
    let users = usage::blockers(name, &doomed);
    if !users.is_empty() {
        return Err(ImagesError::Busy { image: name.into(), users: users.join(", ") });
    }
    let mut freed_bytes = dir_bytes(&dir) + rootdisk::remove_for(&rec);
    store::discard(&dir)?;
    let mut used: std::collections::BTreeSet<PathBuf> = list().into_iter().flat_map(|i| i.layers).collect();
    used.extend(usage::protected_layers());
    let layers = crate::backend::container::image_root().join("layers");
    for e in std::fs::read_dir(&layers).into_iter().flatten().flatten() {
        if is_build_layer(&e.path()) && !used.contains(&e.path()) {
            let bytes = dir_bytes(&e.path());
            if store::discard(&e.path()).is_ok() {
                freed_bytes += bytes;
            }
        }
    }
    Ok(Removed { freed_bytes, incomplete: false })
}

/// A content-addressed build layer (`<image root>/layers/sha256-*`).
fn is_build_layer(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("sha256-"))
        && p.parent().is_some_and(|d| d.ends_with("layers"))
}

/// Load image `name`.
pub fn load(name: &str) -> Result<ImageRecord, ImagesError> {
    if !valid(name) {
        return Err(ImagesError::NoImage(name.into()));
    }
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
        // Temporary dirs of commits in progress start with '.', which no image name does.
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
        assert!(commit("vmct-none", "bad/name", Parent::default())
            .unwrap_err()
            .to_string()
            .contains("invalid image name"));
        assert!(commit("vmct-no-such-container", "ok", Parent::default())
            .unwrap_err()
            .to_string()
            .contains("no running container"));
        assert!(load("vmct-no-such-image").unwrap_err().to_string().contains("no image"));
    }
}

//! Which running instances use which image layers, so nothing removes a layer under a live overlay.
//!
//! Every container `vmct run` or `vmct shell` starts gets a record `<image root>/users/<id>.json`
//! naming its image and its exact layer list (busybox included), plus the image's entry point,
//! environment and working directory (what `vmct commit` of that container inherits). The owning
//! vmct process holds a shared `flock` on the record for the instance's lifetime and deletes it when
//! the instance ends ([`InUse`]'s `Drop`); a record whose lock can be taken belongs to a vmct that
//! died: it stops protecting layers once the container's state dir is gone (`vmct gc` collects both).
//! The record is written under the store's shared lock after checking every layer still exists, and
//! removals check the records under the exclusive lock (see [`super::store`]).
use super::store::{self, LockMode};
use super::ImagesError;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where usage records live.
pub fn dir() -> PathBuf {
    store::root().join("users")
}

/// The record path of instance `id`.
pub fn path_of(id: &str) -> PathBuf {
    dir().join(format!("{id}.json"))
}

/// One instance's use of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Instance (container) id; its state dir is `<container state root>/<id>`.
    pub instance: String,
    /// Image name ("base" for the base image).
    pub image: String,
    /// Layers the instance mounts, bottom first.
    pub layers: Vec<PathBuf>,
    /// Pid of the vmct process that owns the instance.
    pub owner_pid: u32,
    /// Start, seconds since the epoch.
    pub started_unix_s: f64,
    /// The image's entry point, if it sets one.
    #[serde(default)]
    pub entry: Option<Vec<String>>,
    /// The image's environment (`KEY=value`).
    #[serde(default)]
    pub env: Vec<String>,
    /// The image's working directory, if it sets one.
    #[serde(default)]
    pub cwd: Option<String>,
}

impl UsageRecord {
    /// A record for instance `id` of image `image` (its record, or None for the base image) mounting `layers`.
    pub fn new(id: &str, image: Option<&super::ImageRecord>, layers: Vec<PathBuf>) -> UsageRecord {
        UsageRecord {
            instance: id.into(),
            image: image.map_or("base".into(), |i| i.name.clone()),
            layers,
            owner_pid: std::process::id(),
            started_unix_s: crate::logs::unix_now(),
            entry: image.and_then(|i| i.entry.clone()),
            env: image.map(|i| i.env.clone()).unwrap_or_default(),
            cwd: image.and_then(|i| i.cwd.clone()),
        }
    }
}

/// A live usage record: held (locked) until dropped, then deleted.
#[derive(Debug)]
pub struct InUse {
    path: PathBuf,
    _flock: Flock<std::fs::File>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        // Deleted while still locked, so no reader mistakes it for a dead owner's record.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Record that `rec.instance` uses `rec.layers`, after checking (under the store lock) that every
/// layer still exists; the record lives as long as the returned guard.
pub fn acquire(rec: &UsageRecord) -> Result<InUse, ImagesError> {
    let _lock = store::lock(LockMode::Shared)?;
    if let Some(missing) = rec.layers.iter().find(|l| !l.is_dir()) {
        return Err(ImagesError::MissingLayer { image: rec.image.clone(), layer: missing.clone() });
    }
    let path = path_of(&rec.instance);
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |source| ImagesError::Io { path, source }
    };
    let d = dir();
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let tmp = container::image::temp_sibling(&path);
    let locked = (|| {
        std::fs::write(&tmp, serde_json::to_vec_pretty(rec).expect("serializable"))?;
        let f = std::fs::File::open(&tmp)?;
        let flock = Flock::lock(f, FlockArg::LockSharedNonblock).map_err(|(_, e)| std::io::Error::from(e))?;
        // The lock follows the inode through the rename.
        std::fs::rename(&tmp, &path)?;
        Ok(flock)
    })();
    match locked {
        Ok(flock) => Ok(InUse { path, _flock: flock }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io(&path)(e))
        }
    }
}

/// Whether a record's instance still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its vmct holds the record.
    Live,
    /// Its vmct died; `container_left` when the container's state dir (and maybe processes) remains.
    Dead {
        /// The container's state dir still exists.
        container_left: bool,
    },
}

fn state_of(path: &Path, instance: &str) -> Option<State> {
    let f = std::fs::File::open(path).ok()?;
    Some(match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => State::Live,
        _ => State::Dead {
            container_left: Path::new(container::DEFAULT_STATE_ROOT).join(instance).symlink_metadata().is_ok(),
        },
    })
}

/// Every usage record with its state.
pub fn all() -> Vec<(UsageRecord, State)> {
    let mut v: Vec<(UsageRecord, State)> = std::fs::read_dir(dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let rec: UsageRecord = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            let state = state_of(&e.path(), &rec.instance)?;
            Some((rec, state))
        })
        .collect();
    v.sort_by(|a, b| a.0.started_unix_s.total_cmp(&b.0.started_unix_s));
    v
}

/// The record of instance `id`, if it has one whose owner is alive.
pub fn find(id: &str) -> Option<UsageRecord> {
    let path = path_of(id);
    let rec: UsageRecord = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    (state_of(&path, id)? == State::Live).then_some(rec)
}

/// Records that keep `layers` (or image `image`) from being removed: live ones, and those of dead
/// owners whose container is still there. Each as "id (vmct pid N)" or with the gc hint.
pub fn blockers(image: &str, layers: &[PathBuf]) -> Vec<String> {
    all()
        .into_iter()
        .filter(|(r, _)| r.image == image || r.layers.iter().any(|l| layers.iter().any(|x| l.starts_with(x))))
        .filter_map(|(r, s)| match s {
            State::Live => Some(format!("{} (vmct pid {})", r.instance, r.owner_pid)),
            State::Dead { container_left: true } => {
                Some(format!("{} (its vmct pid {} died; `vmct gc` removes it)", r.instance, r.owner_pid))
            }
            State::Dead { container_left: false } => None,
        })
        .collect()
}

/// Every layer a record still protects (see [`blockers`]).
pub fn protected_layers() -> std::collections::BTreeSet<PathBuf> {
    all().into_iter().filter(|(_, s)| *s != State::Dead { container_left: false }).flat_map(|(r, _)| r.layers).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_lives_as_long_as_its_guard() {
        let t = tempfile::tempdir().unwrap();
        let layer = t.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let id = format!("vmct-usage-test-{}", std::process::id());
        let rec = UsageRecord::new(&id, None, vec![layer.clone()]);
        let g = match acquire(&rec) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("skipped a_record_lives_as_long_as_its_guard: {e}");
                return;
            }
        };
        assert_eq!(find(&id), Some(rec.clone()));
        assert_eq!(
            blockers("other", &[t.path().to_path_buf()]),
            vec![format!("{id} (vmct pid {})", std::process::id())]
        );
        assert!(blockers("other", &[t.path().join("elsewhere")]).is_empty());
        assert!(protected_layers().contains(&layer));
        drop(g);
        assert_eq!(find(&id), None);
        assert!(!path_of(&id).exists());
        // A missing layer is refused before anything is recorded.
        let gone = UsageRecord::new(&id, None, vec![t.path().join("gone")]);
        assert!(matches!(acquire(&gone), Err(ImagesError::MissingLayer { .. })));
        assert!(!path_of(&id).exists());
    }

    #[test]
    fn a_dead_owners_record_is_told_apart() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("r.json");
        std::fs::write(&p, "{}").unwrap();
        // Nobody holds its lock: the owner is gone; no container state dir by that name.
        assert_eq!(state_of(&p, "vmct-no-such-instance-4194305"), Some(State::Dead { container_left: false }));
        let held = Flock::lock(std::fs::File::open(&p).unwrap(), FlockArg::LockShared).unwrap();
        assert_eq!(state_of(&p, "x"), Some(State::Live));
        drop(held);
    }
}

//! The image store's write paths, in one place: one lock, one atomic-write helper, one temporary-dir
//! guard, and the collection of what a killed writer left.
//!
//! * [`lock`]: an `flock` on `<image root>/.lock`. Writers (commit, build, remove, gc, image import)
//!   hold it exclusively while they change records or delete layers; starting an instance holds it
//!   shared while it checks its layers and writes its usage record (see [`super::usage`]), so a
//!   removal either sees the user or happens before it starts.
//! * [`write_atomic`]: a file written under a per-writer temporary name next to its destination and
//!   renamed over it: readers see the old or the new content, never half of either.
//! * [`TempDir`]: a directory built under a per-writer temporary name and renamed into place by
//!   [`TempDir::publish`]; dropped unpublished (error, panic, signal unwinding) it is removed.
//! * [`discard`]: a directory renamed away first, then deleted.
//! * [`collect`]: temporary names of writers that are gone, usage records of dead instances and
//!   image directories without a record, for `vmct gc`.
//!
//! Temporary names are `.tmp-<pid>-<seq>-<name>` ([`container::image::temp_sibling`]), so two
//! writers never share one and gc can tell whose it is.
use super::ImagesError;
use nix::fcntl::{Flock, FlockArg};
use std::path::{Path, PathBuf};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImagesError + '_ {
    move |source| ImagesError::Io { path: path.to_path_buf(), source }
}

/// The root of the store (images, build layers, usage records).
pub fn root() -> PathBuf {
    crate::backend::container::image_root()
}

/// A held store lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _flock: Flock<std::fs::File>,
}

/// Whether a lock excludes every other holder or only writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Writers: commit, build, remove, gc.
    Exclusive,
    /// Instance starts (checking layers, writing a usage record).
    Shared,
}

/// Take the store lock (waits for the holder).
pub fn lock(mode: LockMode) -> Result<Lock, ImagesError> {
    let root = root();
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let path = root.join(".lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    let arg = match mode {
        LockMode::Exclusive => FlockArg::LockExclusive,
        LockMode::Shared => FlockArg::LockShared,
    };
    let mut f = f;
    loop {
        match Flock::lock(f, arg) {
            Ok(flock) => return Ok(Lock { _flock: flock }),
            Err((back, nix::errno::Errno::EINTR)) => f = back,
            Err((_, e)) => return Err(io(&path)(e.into())),
        }
    }
}

/// Write `bytes` to `path` atomically: a per-writer temporary file in the same directory, flushed
/// to disk, then renamed over `path`. Creates the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImagesError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = container::image::temp_sibling(path);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io(path))
}

/// A directory under a temporary name next to its destination; removed on drop unless published.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    published: bool,
}

impl TempDir {
    /// Create a temporary directory next to `dest` (creating `dest`'s parent).
    pub fn new(dest: &Path) -> Result<TempDir, ImagesError> {
        let parent = dest.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let path = container::image::temp_sibling(dest);
        std::fs::create_dir(&path).map_err(io(&path))?;
        Ok(TempDir { path, published: false })
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename into `dest`, which must not exist (checked; hold the store lock to make it race-free).
    pub fn publish(mut self, dest: &Path) -> Result<(), ImagesError> {
        if dest.symlink_metadata().is_ok() {
            let name = dest.file_name().unwrap_or_default().to_string_lossy().into_owned();
            return Err(ImagesError::Exists(name));
        }
        std::fs::rename(&self.path, dest).map_err(io(dest))?;
        self.published = true;
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Publish an image whose own layer was written into `tmp` (which becomes `<store>/<rec.name>/`):
/// writes `image.json` into it, then, under the exclusive lock, checks that the layers it stacks on
/// (every layer of `rec` outside `tmp`'s final place, from image `parent`) still exist and renames it
/// into place. Every writer of a self-contained image (commit, import) ends here.
pub fn publish_image(tmp: TempDir, rec: &super::ImageRecord, parent: &str) -> Result<(), ImagesError> {
    let dest = super::store().join(&rec.name);
    write_atomic(&tmp.path().join("image.json"), &serde_json::to_vec_pretty(rec).expect("serializable"))?;
    let _lock = lock(LockMode::Exclusive)?;
    if let Some(missing) = rec.layers.iter().find(|l| !l.starts_with(&dest) && !l.is_dir()) {
        return Err(ImagesError::MissingLayer { image: parent.into(), layer: missing.clone() });
    }
    tmp.publish(&dest)
}

/// Remove the directory `path` atomically for readers: renamed to a temporary name first (one step:
/// the image or layer is there or gone, never half), then deleted; a deletion cut short leaves a
/// temporary name [`collect`] finishes.
pub fn discard(path: &Path) -> Result<(), ImagesError> {
    let tmp = container::image::temp_sibling(path);
    std::fs::rename(path, &tmp).map_err(io(path))?;
    std::fs::remove_dir_all(&tmp).map_err(io(&tmp))
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The writer pid of a temporary name in the store: the current form (`.tmp-<pid>-...`) and the
/// names earlier versions used (`.build-<pid>[-<seq>]`, `.image.json.tmp` whose writer is unknown,
/// reported as pid 0, never alive).
fn temp_writer(name: &str) -> Option<u32> {
    if let Some(pid) = container::image::temp_owner(name) {
        return Some(pid);
    }
    if name == ".image.json.tmp" {
        return Some(0);
    }
    name.strip_prefix(".build-")?.split('-').next()?.parse().ok()
}

/// What gc found in the store.
#[derive(Debug, Default)]
pub struct Collected {
    /// Removed (or, with a dry run, would be).
    pub removed: Vec<String>,
    /// Kept, with the reason.
    pub kept: Vec<String>,
    /// Could not be removed.
    pub errors: Vec<String>,
}

/// Find (and unless `dry_run` remove) the store's leftovers: temporary files and directories of
/// writers that are gone, usage records of instances whose vmct died and whose container is gone,
/// image directories without an `image.json` (a commit of an earlier version that failed), and build
/// layers that no image lists and no instance uses. `doomed`: ids of containers whose state this gc
/// run removes (before this call in a real run), so a dry run lists their usage records as the real run
/// removes them.
pub fn collect(dry_run: bool, doomed: &std::collections::BTreeSet<String>) -> Collected {
    let mut c = Collected::default();
    let _lock = match lock(LockMode::Exclusive) {
        Ok(l) => l,
        Err(e) => {
            c.errors.push(e.to_string());
            return c;
        }
    };
    let root = root();
    let committed = super::store();
    let mut dirs = vec![root.clone(), root.join("layers"), committed.clone(), super::usage::dir()];
    dirs.extend(std::fs::read_dir(&committed).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    let remove = |path: &Path, what: String, c: &mut Collected| {
        if !dry_run {
            let r = if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            if let Err(e) = r {
                c.errors.push(format!("{what}: {e}"));
                return;
            }
        }
        c.removed.push(what);
    };
    for d in &dirs {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = temp_writer(&name) else { continue };
            if pid != 0 && alive(pid) {
                c.kept.push(format!("image store temporary {} of running pid {pid}", e.path().display()));
            } else {
                remove(
                    &e.path(),
                    format!("image store temporary {} of a writer that is gone", e.path().display()),
                    &mut c,
                );
            }
        }
    }
    for e in std::fs::read_dir(&committed).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_dir() || super::load(&name).is_ok() {
            continue;
        }
        remove(&e.path(), format!("incomplete image {name} (no image.json): {}", e.path().display()), &mut c);
    }
    // Build layers no image lists and no instance uses (left by rebuilds under the same name).
    let mut used: std::collections::BTreeSet<PathBuf> = super::list().into_iter().flat_map(|i| i.layers).collect();
    used.extend(super::usage::protected_layers());
    for e in std::fs::read_dir(root.join("layers")).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with("sha256-") && !used.contains(&p) {
            remove(&p, format!("build layer {} no image or instance uses", p.display()), &mut c);
        }
    }
    for (rec, state) in super::usage::all() {
        match state {
            super::usage::State::Live => {}
            super::usage::State::Dead { container_left: true } if !doomed.contains(&rec.instance) => {
                c.kept.push(format!(
                    "image usage record of {} (its vmct died; kept until its container state is collected)",
                    rec.instance
                ))
            }
            super::usage::State::Dead { .. } => remove(
                &super::usage::path_of(&rec.instance),
                format!("image usage record of {} (image {}, its vmct died)", rec.instance, rec.image),
                &mut c,
            ),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_and_temp_dirs_leave_no_temporaries() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/image.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&t.path().join("sub")), vec!["image.json"]);
        let dest = t.path().join("img");
        {
            let d = TempDir::new(&dest).unwrap();
            std::fs::write(d.path().join("x"), "").unwrap();
        }
        assert_eq!(names(t.path()), vec!["sub"], "an unpublished temp dir is removed");
        let d = TempDir::new(&dest).unwrap();
        d.publish(&dest).unwrap();
        assert!(dest.is_dir());
        let again = TempDir::new(&dest).unwrap();
        assert!(matches!(again.publish(&dest), Err(ImagesError::Exists(n)) if n == "img"));
        assert_eq!(names(t.path()), vec!["img", "sub"]);
        discard(&dest).unwrap();
        assert_eq!(names(t.path()), vec!["sub"]);
    }

    #[test]
    fn temporaries_name_their_writer() {
        assert_eq!(temp_writer(".tmp-42-0-img"), Some(42));
        assert_eq!(temp_writer(".build-77"), Some(77));
        assert_eq!(temp_writer(".build-77-3"), Some(77));
        assert_eq!(temp_writer(".image.json.tmp"), Some(0));
        assert_eq!(temp_writer("image.json"), None);
        assert_eq!(temp_writer(".lock"), None);
    }

    #[test]
    fn the_lock_excludes_writers() {
        // Two exclusive locks cannot be held at once, even from one process (flock is per open file).
        let a = lock(LockMode::Exclusive);
        if a.is_err() {
            eprintln!("skipped the_lock_excludes_writers: the image root is not writable here");
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let _b = lock(LockMode::Exclusive).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "second writer waits");
        drop(a);
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("second writer proceeds once released");
        h.join().unwrap();
    }
}

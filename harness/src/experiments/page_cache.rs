//! Page-cache sharing (issue 18 item 3 b), part of the `memory` experiment (`page_cache.csv`): N
//! instances of THE SAME IMAGE read the same file set of M MiB, and the host memory per instance is
//! taken once all N read it.
//!
//! The image ([`FileSet`]) is built once per run: a layer holding one file of M MiB of pseudo-random
//! bytes ([`fill`], from [`SEED`], so nothing is zero or sparse) at
//! [`workloads::protocol::READ_DIR_IN_IMAGE`], under the vmct layer ([`crate::images::run::vmct_layer`],
//! the workload at [`PROBE_PATH`]). The layer and the linux guests' root disk made of it live in the
//! run's own directory `/var/tmp/vmct-fileset-<MiB>m-<pid>` (`layer/`, `<key>.ext4`), not in the shared
//! image cache, whose orphaned disks a concurrent `vmct gc` removes; `vmct gc` removes the directory
//! once its run is dead. It goes when the [`FileSet`] is dropped (success, error, signal: the interrupt
//! makes the run return).
//!
//! Each instance runs the `read` workload scenario (read() into a small buffer: the data is page cache,
//! not the instance's anonymous memory) the way the backend runs an image ([`Way`]):
//! - containers (ours, crun, runc) and runsc: the layers as overlay lower dirs; overlayfs reads through
//!   to the lower file, so every instance reads the one host inode and its page cache;
//! - linux guests (qemu-tcg): the layers flattened into the read-only root disk (virtio-blk); each guest
//!   caches its own copy in its guest RAM. QEMU opens the disk with `cache=none` (O_DIRECT), so the host
//!   page cache holds none of it (measured, not assumed: the disk is mincore'd like the layer file);
//! - the process baseline reads the host's copy directly ([`workloads::protocol::READ_DIR_ENV`]): one
//!   shared page cache, the floor;
//! - the bare guest has no file system: a row that says "not measured".
//!
//! Per instance: growth = its own memory after all N read minus before its read ([`private_held`]:
//! for a backend with a cgroup its usage less the page cache of files charged to it, since the cgroup
//! of the FIRST reader is charged the shared pages, which would otherwise be counted in it alone; else
//! the RSS of its host process, a VMM's guest RAM included); copy = the set's pages found in the
//! memory files (memfds) its host processes hold ([`copy_bytes`]: a VM's guest RAM, runsc's Sentry
//! memory file), because a guest caches the set partly in pages it had touched and freed before (the
//! unpacked initramfs), which the host already counted, so growth alone understates the copy it now
//! holds; private = the larger of the two. Shared = the host page cache of the file the instances read
//! through (mincore), counted once. Host per instance = mean private + shared / N.
//! The host files are dropped from the page cache (fsync + `POSIX_FADV_DONTNEED`) before each backend
//! so each starts cold; page cache can be evicted under memory pressure, so "shared" is what stayed.
use super::memory::{held, process_tree, wait_result_value, MemoryPlan};
use super::{launch_ready, spec, ExperimentError};
use crate::backend::{Backend, BackendError, Instance, InstanceSpec, STOP_GRACE};
use crate::images::rootdisk::{self, RootDisk};
use crate::images::run::{ImageLaunch, ImageSupport, DEFAULT_PATH, PROBE_PATH};
use crate::images::ImageRecord;
use crate::progress::{Mode, Task};
use results::{ExperimentId, GuestModel, IsolationModel, PageCacheRow};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use workloads::protocol::{READ_BYTES, READ_DIR_ENV, READ_DIR_IN_IMAGE};
use workloads::scenario::Scenario;

/// Seed of the file set's bytes.
pub const SEED: u64 = 0x766d_6374_5f70_6331;
/// Prefix of the file set's layer directory (`vmct gc` knows it).
pub const LAYER_PREFIX: &str = "vmct-fileset-";
/// Where the layer directory is made (a base `vmct gc` scans).
pub const LAYER_BASE: &str = "/var/tmp";
/// The file's name in [`READ_DIR_IN_IMAGE`].
pub const FILE_NAME: &str = "data.bin";
/// The image's name in errors and launches.
pub const IMAGE_NAME: &str = "vmct-fileset";
/// What the bare guest's row says.
pub const BARE: &str = "the bare guest has no file system";

/// Errors making the file set; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum FileSetError {
    /// Writing the layer failed.
    #[error("page-cache file set {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Fill `buf` with the pseudo-random bytes of the stream `seed` from word `*state` on (SplitMix64:
/// hand-written, eight lines, because the workspace has no RNG crate and the bytes need only be
/// non-zero and non-repeating so no file system stores them sparse or deduplicated).
pub fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// The image the instances read: its layer (removed on drop) and, once a linux guest needed it, its
/// root disk (removed on drop too).
#[derive(Debug)]
pub struct FileSet {
    root: PathBuf,
    layer: PathBuf,
    bytes: u64,
    record: ImageRecord,
    rootdisk: OnceLock<Result<RootDisk, String>>,
    pages: std::collections::HashSet<PageKey>,
}

/// The first 16 bytes of a 4 KiB page of the file set: unique per page (pseudo-random bytes), so a
/// page of memory starting with them holds that page of the set.
type PageKey = [u8; 16];
/// Page size the set is keyed by.
const PAGE: usize = 4096;
/// Most bytes of memory files scanned per instance ([`copy_bytes`]), so a huge sparse one cannot stall
/// the run.
pub const MAX_SCAN_BYTES: u64 = 8 << 30;

impl FileSet {
    /// Write the layer of `mib` MiB under `base` (owned by the user-namespace root like every layer),
    /// to be stacked under `vmct`, the vmct layer ([`crate::images::run::vmct_layer`]).
    pub fn create(base: &Path, mib: u64, vmct: PathBuf) -> Result<FileSet, FileSetError> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let root = base.join(format!("{LAYER_PREFIX}{mib}m-{}", std::process::id()));
        let layer = root.join("layer");
        let dir = layer.join(READ_DIR_IN_IMAGE.trim_start_matches('/'));
        let file = dir.join(FILE_NAME);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FileSetError::Io { path, source }
        };
        let record = ImageRecord {
            name: IMAGE_NAME.into(),
            layers: vec![layer.clone(), vmct.clone()],
            from_container: String::new(),
            layer_tar_bytes: 0,
            whiteouts: 0,
            deleted_paths: 0,
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            entry: None,
            env: vec![],
            cwd: None,
            spec: None,
            digest: None,
            cmd: None,
            user: None,
            exposed_ports: vec![],
            history: vec![],
            imported_from: None,
        };
        // From here on the drop removes whatever was written.
        let pages = std::collections::HashSet::new();
        let mut set =
            FileSet { root, layer: layer.clone(), bytes: mib << 20, record, rootdisk: OnceLock::new(), pages };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let b = container::USERNS_BASE;
        std::fs::set_permissions(&set.root, std::fs::Permissions::from_mode(0o755)).map_err(io(&set.root))?;
        for d in [&layer, &dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).map_err(io(d))?;
            std::os::unix::fs::lchown(d, Some(b), Some(b)).map_err(io(d))?;
        }
        let mut f = std::fs::File::create(&file).map_err(io(&file))?;
        let (mut buf, mut state) = (vec![0u8; 1 << 20], SEED);
        for _ in 0..mib {
            fill(&mut buf, &mut state);
            f.write_all(&buf).map_err(io(&file))?;
            set.pages.extend(buf.chunks(PAGE).map(key_of));
        }
        f.sync_all().map_err(io(&file))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).map_err(io(&file))?;
        std::os::unix::fs::lchown(&file, Some(b), Some(b)).map_err(io(&file))?;
        Ok(set)
    }

    /// Bytes of the file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The layer directory.
    pub fn layer(&self) -> &Path {
        &self.layer
    }

    /// The run's directory of the file set (its layer and root disk).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host's copy of the set's directory (what the process baseline reads).
    pub fn host_dir(&self) -> PathBuf {
        self.layer.join(READ_DIR_IN_IMAGE.trim_start_matches('/'))
    }

    /// The host's copy of the file.
    pub fn host_file(&self) -> PathBuf {
        self.host_dir().join(FILE_NAME)
    }

    /// The root disk for linux guests, built on first use.
    pub fn rootdisk(&self) -> Result<&RootDisk, String> {
        self.rootdisk
            .get_or_init(|| rootdisk::build_in(&self.record, &self.root).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// What an instance of the image runs: the workload's `read` of the whole set, speaking the
    /// protocol itself (no readiness rule).
    pub fn launch(&self, rootdisk: Option<PathBuf>) -> ImageLaunch {
        ImageLaunch {
            image: IMAGE_NAME.into(),
            layers: self.record.layers.clone(),
            argv: vec![PROBE_PATH.into(), "read".into(), "--mib".into(), (self.bytes >> 20).to_string()],
            env: vec![("PATH".into(), DEFAULT_PATH.into())],
            cwd: "/".into(),
            user: String::new(),
            uid_gid: (0, 0),
            ready: None,
            rootdisk,
        }
    }
}

impl Drop for FileSet {
    /// Removes the layer and the root disk; the vmct layer is shared with image runs and stays cached.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn key_of(page: &[u8]) -> PageKey {
    let mut k = [0u8; 16];
    k.copy_from_slice(&page[..16]);
    k
}

/// Bytes of distinct pages of `set` found in the memory files (memfds: a VMM's guest RAM, runsc's
/// Sentry memory file) held open by the processes `pids`, and how many memory files were scanned
/// (None: the processes hold none). Each file is read only where it has data (SEEK_DATA/SEEK_HOLE;
/// reading shared memory faults nothing in), at most [`MAX_SCAN_BYTES`] in all.
pub fn copy_bytes(pids: &[u32], set: &FileSet) -> Option<(u64, usize)> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let mut seen_files = std::collections::HashSet::new();
    let mut found: std::collections::HashSet<PageKey> = std::collections::HashSet::new();
    let mut scanned = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for pid in pids {
        for e in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
            let is_memfd = std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:"));
            let Some(f) = is_memfd.then(|| std::fs::File::open(e.path()).ok()).flatten() else { continue };
            let Ok(m) = f.metadata() else { continue };
            if !seen_files.insert((m.dev(), m.ino())) {
                continue;
            }
            let fd = std::os::fd::AsFd::as_fd(&f);
            let mut off = 0i64;
            while (off as u64) < m.len() && scanned < MAX_SCAN_BYTES {
                let Ok(data) = nix::unistd::lseek(fd, off, nix::unistd::Whence::SeekData) else { break };
                let hole = nix::unistd::lseek(fd, data, nix::unistd::Whence::SeekHole).unwrap_or(m.len() as i64);
                let mut at = data;
                while at < hole && scanned < MAX_SCAN_BYTES {
                    let want = usize::try_from(hole - at).map_or(buf.len(), |left| left.min(buf.len()));
                    let Ok(n) = f.read_at(&mut buf[..want], at as u64) else { break };
                    if n == 0 {
                        break;
                    }
                    for p in buf[..n].chunks_exact(PAGE) {
                        let k = key_of(p);
                        if set.pages.contains(&k) {
                            found.insert(k);
                        }
                    }
                    (at, scanned) = (at + n as i64, scanned + n as u64);
                }
                off = hole;
            }
        }
    }
    (!seen_files.is_empty()).then(|| (found.len() as u64 * PAGE as u64, seen_files.len()))
}

/// Drop `path` from the host page cache (fsync, then `POSIX_FADV_DONTNEED`: our own file).
pub fn drop_cached(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    f.sync_all()?;
    nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .map_err(std::io::Error::from)
}

/// Bytes of `path` resident in the host page cache (mincore over a mapping of it; mapping faults
/// nothing in).
pub fn cached_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    let len = usize::try_from(f.metadata()?.len()).map_err(std::io::Error::other)?;
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(PAGE).max(PAGE);
    // SAFETY: a fresh read-only shared mapping of an open file; nothing else uses the address range.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
    if addr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `addr` maps `len` bytes; `vec` has one byte per page of them.
    let r = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: unmaps exactly the mapping made above, never touched.
    unsafe { libc::munmap(addr, len) };
    if r != 0 {
        return Err(err);
    }
    Ok(vec.iter().filter(|b| **b & 1 != 0).count() as u64 * page as u64)
}

/// Page cache of files charged to memory cgroup `dir`, bytes: v1 `total_cache - total_shmem` (else
/// `cache - shmem`), v2 `file - shmem`, from its memory.stat. Shared memory (a user-space kernel's
/// memory file, a VMM's memfd) is the instance's own, so it stays private.
pub fn file_cache_in(memory_stat: &str) -> Option<u64> {
    let field =
        |k: &str| memory_stat.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.trim().parse::<u64>().ok());
    let pair = |cache: &str, shmem: &str| Some(field(cache)?.saturating_sub(field(shmem).unwrap_or(0)));
    pair("total_cache", "total_shmem").or_else(|| pair("file", "shmem")).or_else(|| pair("cache", "shmem"))
}

/// memory.stat of the memory cgroup of `pid` (v1 or v2), if it has one.
fn memory_stat_of(pid: u32) -> Option<(PathBuf, String)> {
    use container::cgroup::own_path;
    let pc = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let dir = own_path(&pc, Some("memory"))
        .map(|p| PathBuf::from("/sys/fs/cgroup/memory").join(p.trim_start_matches('/')))
        .filter(|d| d.join("memory.stat").is_file())
        .or_else(|| own_path(&pc, None).map(|p| PathBuf::from("/sys/fs/cgroup").join(p.trim_start_matches('/'))))?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    Some((dir, stat))
}

/// The instance's own memory (see the module docs) and how it was taken.
pub fn private_held(inst: &mut dyn Instance) -> Result<(u64, &'static str), String> {
    let st = inst.stats();
    let (h, how) = held(&st).ok_or_else(|| format!("instance {} has no host memory accounting", inst.id()))?;
    if st.cgroup_usage_bytes.is_none() {
        return Ok((h, how));
    }
    // The instance's cgroup: that of the first process of its tree not in ours (a peer's `run`
    // process stays in the harness's cgroup, the container below it does not).
    let ours = memory_stat_of(std::process::id()).map(|(d, _)| d);
    let pid = inst.pid().ok_or_else(|| format!("instance {} has no host process", inst.id()))?;
    let stat = process_tree(pid)
        .into_iter()
        .filter_map(memory_stat_of)
        .find(|(d, _)| Some(d) != ours.as_ref())
        .map(|(_, s)| s)
        .ok_or_else(|| format!("instance {}: its memory cgroup's memory.stat is not readable", inst.id()))?;
    let cache = file_cache_in(&stat).ok_or_else(|| format!("instance {}: memory.stat has no cache/file", inst.id()))?;
    Ok((h.saturating_sub(cache), "cgroup memory usage less its page cache of files (memory.stat cache/file - shmem)"))
}

/// How a backend runs the image, from its info (model, guest model), not its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// Overlay lower dirs (containers; runsc too: the workload speaks the protocol, so no readiness
    /// check from outside is needed).
    Layers,
    /// The read-only root disk (linux guests).
    RootDisk,
    /// The host's copy, read directly (the process baseline).
    HostDir,
    /// Not measured, and why.
    NotMeasured(String),
}

/// How `info`'s backend runs the file set.
pub fn way(info: &results::BackendInfo) -> Way {
    match crate::images::run::support(info) {
        ImageSupport::Layers => Way::Layers,
        ImageSupport::RootDisk => Way::RootDisk,
        ImageSupport::None(_) if info.model == IsolationModel::UserSpaceKernel => Way::Layers,
        ImageSupport::None(_) if info.model == IsolationModel::Process => Way::HostDir,
        ImageSupport::None(_) if info.guest_model == Some(GuestModel::Bare) => Way::NotMeasured(BARE.into()),
        ImageSupport::None(why) => Way::NotMeasured(why.into()),
    }
}

fn measurement(backend: &dyn Backend, reason: String) -> ExperimentError {
    ExperimentError::Measurement { backend: backend.name().into(), reason }
}

/// One instance, launched and ready.
fn launch_one(
    b: &dyn Backend,
    set: &FileSet,
    w: &Way,
    disk: Option<&Path>,
    plan: &MemoryPlan,
) -> Result<Box<dyn Instance>, BackendError> {
    let mut s: InstanceSpec = spec(Scenario::Read { mib: set.bytes >> 20 });
    if *w == Way::HostDir {
        s.env.push((READ_DIR_ENV.into(), set.host_dir().to_string_lossy().into_owned()));
        return Ok(launch_ready(b, s, plan.timeout)?.0);
    }
    let mut inst = b.launch_image(&set.launch(disk.map(Path::to_path_buf)), &s)?;
    inst.wait_ready(plan.timeout)?;
    Ok(inst)
}

/// The page-cache measurement on `b` (see the module docs).
pub fn page_cache(
    b: &dyn Backend,
    plan: &MemoryPlan,
    set: &FileSet,
    mode: Mode,
) -> Result<PageCacheRow, ExperimentError> {
    let n = plan.instances.max(1);
    let w = way(&b.info());
    let not_measured = |why: &str| PageCacheRow::not_measured(b.name(), n, set.bytes, why);
    if let Way::NotMeasured(why) = &w {
        return Ok(not_measured(why));
    }
    let disk = match w {
        Way::RootDisk => Some(set.rootdisk().map_err(|e| measurement(b, e))?.path.clone()),
        _ => None,
    };
    let host_file = disk.clone().unwrap_or_else(|| set.host_file());
    drop_cached(&set.host_file()).map_err(|e| measurement(b, format!("dropping the file set's cache: {e}")))?;
    if let Some(d) = &disk {
        drop_cached(d).map_err(|e| measurement(b, format!("dropping the root disk's cache: {e}")))?;
    }
    let mut task = Task::new(mode, format!("{} page cache {}", ExperimentId::Memory, b.name()), u64::from(n));
    let mut insts: Vec<(Box<dyn Instance>, u64)> = Vec::with_capacity(n as usize);
    let mut how = "";
    let r = (|| -> Result<Option<PageCacheRow>, ExperimentError> {
        for i in 0..n {
            crate::interrupt::check()?;
            let mut inst = match launch_one(b, set, &w, disk.as_deref(), plan) {
                Ok(x) => x,
                Err(BackendError::Unavailable { reason, .. }) if i == 0 => return Ok(Some(not_measured(&reason))),
                Err(e) => return Err(e.into()),
            };
            let (before, h) = private_held(inst.as_mut()).map_err(|e| measurement(b, e))?;
            how = h;
            let read = wait_result_value(b, inst.as_mut(), READ_BYTES, plan.timeout)?
                .ok_or_else(|| measurement(b, format!("no {READ_BYTES} within the timeout")))?;
            if read < set.bytes as f64 {
                return Err(measurement(b, format!("the instance read {read} of {} bytes", set.bytes)));
            }
            insts.push((inst, before));
            task.inc();
        }
        Ok(None)
    })();
    let measured = match r {
        Ok(None) => (|| -> Result<(f64, Option<f64>, u64), ExperimentError> {
            let (mut growth, mut copies, mut with_files) = (0f64, 0f64, 0u32);
            for (inst, before) in insts.iter_mut() {
                let after = private_held(inst.as_mut()).map_err(|e| measurement(b, e))?.0;
                growth += after.saturating_sub(*before) as f64;
                let tree = inst.pid().map(process_tree).unwrap_or_default();
                if let Some((c, _)) = copy_bytes(&tree, set) {
                    copies += c as f64;
                    with_files += 1;
                }
            }
            let shared = cached_bytes(&host_file)
                .map_err(|e| measurement(b, format!("mincore of {}: {e}", host_file.display())))?;
            Ok((growth / f64::from(n), (with_files == n).then(|| copies / f64::from(n)), shared))
        })(),
        Ok(Some(row)) => {
            task.finish("not measured");
            return Ok(row);
        }
        Err(e) => Err(e),
    };
    for (mut inst, _) in insts {
        let _ = inst.stop(STOP_GRACE);
    }
    let (growth, copy, shared) = measured?;
    let private = copy.map_or(growth, |c| c.max(growth));
    let cache = match w {
        Way::RootDisk => "the root disk (QEMU opens it with cache=none, O_DIRECT: the host caches none of it)",
        Way::HostDir => "the host file the baseline reads",
        _ => "the layer's file (overlayfs reads through to the lower inode)",
    };
    let row = PageCacheRow {
        backend: b.name().into(),
        instances: n,
        file_bytes: set.bytes,
        private_bytes_per_instance: Some(private),
        private_growth_bytes_per_instance: Some(growth),
        copy_bytes_per_instance: copy,
        shared_host_cache_bytes: Some(shared),
        host_bytes_per_instance: Some(PageCacheRow::per_instance(private, shared, n)),
        how: format!(
            "private = the larger of growth ({how}, after all {n} read minus before its read) and the copy \
             of the set found in the instance's memory files{}, mean of {n}; shared = host page cache (mincore) \
             of {cache}, counted once",
            if copy.is_some() { "" } else { " (none: it holds no memory file, so growth)" }
        ),
    };
    task.finish(&format!(
        "{} per instance ({} private, {} shared)",
        crate::units::human_bytes(row.host_bytes_per_instance.unwrap_or(0.0)),
        crate::units::human_bytes(private),
        crate::units::human_bytes(shared as f64)
    ));
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_are_fixed_by_the_seed_and_never_a_zero_page() {
        let (mut a, mut b) = (vec![0u8; 8192], vec![0u8; 8192]);
        let (mut s1, mut s2) = (SEED, SEED);
        fill(&mut a, &mut s1);
        fill(&mut b, &mut s2);
        assert_eq!(a, b);
        assert!(a.chunks(4096).all(|p| p.iter().any(|x| *x != 0)));
        fill(&mut b, &mut s2);
        assert_ne!(a, b, "the stream goes on");
    }

    #[test]
    fn the_file_cache_leaves_shared_memory_private() {
        let v1 = "cache 100\nrss 5\nshmem 30\ntotal_cache 400\ntotal_shmem 100\n";
        assert_eq!(file_cache_in(v1), Some(300));
        assert_eq!(file_cache_in("anon 1\nfile 50\nshmem 20\n"), Some(30));
        assert_eq!(file_cache_in("cache 70\n"), Some(70));
        assert_eq!(file_cache_in("rss 1\n"), None);
    }

    #[test]
    fn a_file_set_is_written_cached_dropped_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let set = match FileSet::create(d.path(), 2, d.path().join("vmct")) {
            Ok(s) => s,
            // Not root: the chown to the user-namespace root fails, naming the path.
            Err(e) => {
                assert!(!nix::unistd::geteuid().is_root(), "{e}");
                assert!(e.to_string().contains(LAYER_PREFIX), "{e}");
                return;
            }
        };
        let f = set.host_file();
        assert_eq!(f.metadata().unwrap().len(), 2 << 20);
        let _ = std::fs::read(&f).unwrap();
        assert_eq!(cached_bytes(&f).unwrap(), 2 << 20, "just read: all cached");
        drop_cached(&f).unwrap();
        assert!(cached_bytes(&f).unwrap() < 1 << 20, "dropped");
        // Two pages of the set in a memory file of this process are found; other bytes are not.
        let m = nix::sys::memfd::memfd_create(c"vmct-test", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        let mut mf = std::fs::File::from(m);
        let data = std::fs::read(&f).unwrap();
        std::io::Write::write_all(&mut mf, &[0x11u8; PAGE]).unwrap();
        std::io::Write::write_all(&mut mf, &data[5 * PAGE..7 * PAGE]).unwrap();
        let (found, files) = copy_bytes(&[std::process::id()], &set).unwrap();
        assert!(found >= 2 * PAGE as u64 && files >= 1, "{found} {files}");
        drop(mf);
        let root = set.root().to_path_buf();
        assert!(set.layer().starts_with(&root));
        drop(set);
        assert!(!root.exists());
    }

    #[test]
    fn backends_read_the_set_by_their_model() {
        use crate::images::run::tests::info;
        assert_eq!(way(&info("container", None)), Way::Layers);
        assert_eq!(way(&info("user-space-kernel", None)), Way::Layers);
        assert_eq!(way(&info("microvm", Some("linux"))), Way::RootDisk);
        assert_eq!(way(&info("process", None)), Way::HostDir);
        assert_eq!(way(&info("microvm", Some("bare"))), Way::NotMeasured(BARE.into()));
    }
}

//! The Linux platform layer: stdout messages, CLOCK_MONOTONIC, mmap'd memory, real system calls.
use std::io::{BufRead, Read, Write};
use workloads::protocol::Message;
use workloads::runner::{Detail, Platform, ScenarioError};
use workloads::scenario::Scenario;

/// Platform for the static Linux binary.
pub struct LinuxPlatform {
    mem: Option<Mapping>,
    line: String,
}

/// An anonymous private mapping; pages cost nothing until touched.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

impl LinuxPlatform {
    pub fn new() -> Self {
        LinuxPlatform { mem: None, line: String::with_capacity(256) }
    }
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Platform for LinuxPlatform {
    fn now_ns(&mut self) -> u64 {
        mono_ns()
    }

    fn emit(&mut self, msg: &Message<'_>) {
        self.line.clear();
        let _ = msg.encode(&mut self.line);
        // One write per message, unbuffered: the host timestamps each line on arrival.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(self.line.as_bytes());
        let _ = out.flush();
    }

    fn memory(&mut self, bytes: usize) -> Result<&mut [u8], &'static str> {
        if self.mem.as_ref().is_none_or(|m| m.len < bytes) {
            self.mem = None;
            // SAFETY: anonymous private mapping with no address hint; the result is checked.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes.max(1),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err("mmap of the working set failed");
            }
            self.mem = Some(Mapping { ptr: ptr.cast(), len: bytes.max(1) });
        }
        let m = self.mem.as_ref().expect("mapping exists");
        // SAFETY: the mapping is live, at least `bytes` long, and only reachable through &mut self.
        Ok(unsafe { std::slice::from_raw_parts_mut(m.ptr, bytes) })
    }

    fn wait_for_stop(&mut self) {
        let stdin = std::io::stdin();
        let mut line = String::new();
        let mut lock = stdin.lock();
        loop {
            line.clear();
            match lock.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.trim() == "stop" => return,
                Ok(_) => {}
            }
        }
    }

    /// Unmaps the working set (its pages go back to the kernel at once).
    fn release_memory(&mut self) -> bool {
        self.mem.take().is_some()
    }

    fn pause_ms(&mut self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    fn run_platform(&mut self, scenario: &Scenario) -> Result<(), ScenarioError> {
        match *scenario {
            Scenario::Syscall { n } => {
                let t0 = mono_ns();
                for _ in 0..n {
                    // SAFETY: getpid has no arguments and cannot fail; the raw syscall bypasses any libc cache.
                    unsafe { libc::syscall(libc::SYS_getpid) };
                }
                let ns = (mono_ns() - t0).max(1);
                self.emit(&Message::Result {
                    name: "syscall.getpid",
                    value: n as f64 * 1e9 / ns as f64,
                    unit: "calls/s",
                });
                Ok(())
            }
            Scenario::Io { mib } => io(self, mib),
            Scenario::Read { mib } => {
                self.flush();
                self.pause_ms(workloads::scenario::READ_QUIET_MS);
                let dir = std::env::var_os(workloads::protocol::READ_DIR_ENV)
                    .map_or_else(|| workloads::protocol::READ_DIR_IN_IMAGE.into(), std::path::PathBuf::from);
                let bytes = read_set(&dir, mib << 20)?;
                self.emit(&Message::Result {
                    name: workloads::protocol::READ_BYTES,
                    value: bytes as f64,
                    unit: "bytes",
                });
                self.flush();
                self.wait_for_stop();
                Ok(())
            }
            Scenario::Probe => {
                crate::probes::run_all(&mut |id, outcome, detail| self.emit(&Message::Probe { id, outcome, detail }));
                Ok(())
            }
            _ => Err(ScenarioError::Unsupported("not a platform scenario")),
        }
    }
}

/// Read the first `want` bytes of the regular files in `dir` (name order) with read() into a 64 KiB
/// buffer: the data goes through the page cache, never into this process's memory (no mmap). Returns
/// the bytes read; fewer files than `want` bytes is a failure naming the directory and what it held.
fn read_set(dir: &std::path::Path, want: u64) -> Result<u64, ScenarioError> {
    use std::fmt::Write as _;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let mut d = Detail::new();
        let _ = write!(d, "{what}: {e}; dir {}", dir.display());
        ScenarioError::Failed(d)
    };
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| fail("listing the file set", &e))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    for path in &files {
        let mut f = std::fs::File::open(path).map_err(|e| fail("opening", &e))?;
        while total < want {
            let n = usize::try_from(want - total).map_or(buf.len(), |left| left.min(buf.len()));
            match f.read(&mut buf[..n]) {
                Ok(0) => break,
                Ok(k) => total += k as u64,
                Err(e) => return Err(fail(&format!("reading at byte {total}"), &e)),
            }
        }
        if total >= want {
            return Ok(total);
        }
    }
    Err(fail(&format!("the file set holds {total} bytes, fewer than the {want} asked"), &"short"))
}

/// Write `mib` MiB, fsync, drop nothing from the cache (we measure the instance's filesystem path,
/// not the disk), read back. Reports write+fsync and read bandwidth in bytes/s. The file is removed
/// whether or not this succeeds; a failure names the errno, the step and how many MiB were written.
fn io(p: &mut LinuxPlatform, mib: u64) -> Result<(), ScenarioError> {
    if std::env::var_os(crate::init::NO_DISK_ENV).is_some() {
        return Err(ScenarioError::Unsupported(
            "no disk in this guest: its files live in RAM (initramfs), so write+fsync would not measure a disk",
        ));
    }
    let dir = std::env::var_os("VMCT_IO_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| ".".into());
    let path = dir.join(format!("vmct-io-{}.dat", std::process::id()));
    let r = io_at(p, &path, mib);
    let _ = std::fs::remove_file(&path);
    r
}

/// The failure of step `what` after `written` of `mib` MiB, most important words first (a long path is
/// what gets cut), e.g. `ENOSPC writing MiB 914 (913 of 1048576 MiB written): No space left on device
/// (os error 28); file ./vmct-io-7.dat`.
fn io_failure(e: &std::io::Error, what: &str, written: u64, mib: u64, path: &std::path::Path) -> ScenarioError {
    use std::fmt::Write as _;
    let mut d = Detail::new();
    let name = crate::probes::sys::io_name(e);
    let _ = write!(d, "{name} {what} ({written} of {mib} MiB written): {e}; file {}", path.display());
    ScenarioError::Failed(d)
}

fn io_at(p: &mut LinuxPlatform, path: &std::path::Path, mib: u64) -> Result<(), ScenarioError> {
    let chunk = vec![0x5au8; 1 << 20];
    let t0 = mono_ns();
    let mut f = std::fs::File::create(path).map_err(|e| io_failure(&e, "creating the file", 0, mib, path))?;
    for i in 0..mib {
        f.write_all(&chunk).map_err(|e| io_failure(&e, &format!("writing MiB {}", i + 1), i, mib, path))?;
    }
    f.sync_all().map_err(|e| io_failure(&e, "in fsync", mib, mib, path))?;
    drop(f);
    let t1 = mono_ns();
    let mut f = std::fs::File::open(path).map_err(|e| io_failure(&e, "reopening the file", mib, mib, path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => return Err(io_failure(&e, &format!("reading back at byte {total}"), mib, mib, path)),
        }
    }
    let t2 = mono_ns();
    let bytes = (mib << 20) as f64;
    p.emit(&Message::Result { name: "io.write_fsync", value: bytes * 1e9 / (t1 - t0).max(1) as f64, unit: "bytes/s" });
    p.emit(&Message::Result { name: "io.read", value: total as f64 * 1e9 / (t2 - t1).max(1) as f64, unit: "bytes/s" });
    Ok(())
}

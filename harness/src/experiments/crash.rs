//! Crash containment (issue 15 item 3), measured on both sides under the same emulation (QEMU TCG,
//! the linux guest model's kernel):
//! - **shared kernel**: N containers of our runtime (default profile) inside ONE Linux guest standing
//!   in for a host, N vCPUs and N x [`MIB_PER_INSTANCE`] MiB; once all N heartbeat, the guest's kernel
//!   is crashed with sysrq-c;
//! - **one kernel per instance**: N linux-guest VMs, 1 vCPU and [`MIB_PER_INSTANCE`] MiB each, the
//!   same workload as a plain process in each; once all N heartbeat, VM 0's kernel is crashed.
//!
//! The guest's /init is `vmct-crash-init` (crate container, embedded in vmct: [`crate::artifacts::CRASH_INIT`]);
//! the workload is `vmct-workload` with `VMCT_HOG=tick` (one SHA-256 rate line every 250 ms). The
//! harness sends `crash` on the crashing guest's serial console; /init writes `c` to
//! `/proc/sysrq-trigger` INSIDE that guest (never on the host: /init refuses to run unless it is PID 1
//! of a kernel booted with `vmct.crash_guest=1`). `panic=-1 reboot=t` and QEMU's `-no-reboot` make the
//! crashed guest's QEMU exit.
//!
//! Survivors are counted: an instance survives if it prints a heartbeat within [`WINDOW`] after the
//! crashed kernel's `Kernel panic` console line. The neighbours' slowdown is the median over survivors
//! of (median rate in the [`WINDOW`] before the crash) / (median rate in the [`WINDOW`] after). Every
//! QEMU process and the temporary directory with the initramfs are removed on success, error, signal
//! and panic (Drop guards; QEMU gets PR_SET_PDEATHSIG, so a SIGKILLed vmct takes its guests along
//! and leaves only the temporary directory `vmct-<pid>-crash` under the containers' state root, which
//! `vmct gc` removes once that pid is gone).
use super::registry::{Experiment, RunContext};
use super::ExperimentError;
use crate::backend::lines::{Line, LineReader};
use crate::backend::qemu_tcg::{self, Accel, QemuArgs};
use crate::backend::BackendError;
use crate::compare::{CompareError, Settings};
use results::{CrashRow, ExperimentId, IsolationModel, Quantity, Record};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// Instances per side (the default plan; 3 keeps a run under a minute on a 2-core host).
pub const INSTANCES: u32 = 3;
/// Guest memory per instance, MiB (the shared guest gets N times this).
pub const MIB_PER_INSTANCE: u64 = 128;
/// Heartbeats each instance must show before the crash to count as alive.
pub const ALIVE_HEARTBEATS: usize = 2;
/// The observation windows before and after the crash.
pub const WINDOW: Duration = Duration::from_secs(3);
/// Longest wait for the guests to boot and every instance to heartbeat (emulated boots, 2-core host).
pub const START_TIMEOUT: Duration = Duration::from_secs(150);
/// Longest wait from `crash` on the console to the kernel's panic line.
pub const PANIC_TIMEOUT: Duration = Duration::from_secs(30);
/// Kernel options the shared guest needs for our runtime (checked in the cached kernel's config).
pub const RUNTIME_CONFIG: &[&str] = &[
    "CONFIG_MAGIC_SYSRQ=y",
    "CONFIG_NAMESPACES=y",
    "CONFIG_PID_NS=y",
    "CONFIG_NET_NS=y",
    "CONFIG_UTS_NS=y",
    "CONFIG_IPC_NS=y",
    "CONFIG_CGROUPS=y",
    "CONFIG_MEMCG=y",
    "CONFIG_CGROUP_PIDS=y",
    "CONFIG_CGROUP_BPF=y",
    "CONFIG_SECCOMP_FILTER=y",
    "CONFIG_OVERLAY_FS=y",
];
/// The kernel command line word `vmct-crash-init` requires.
pub const GUEST_MARK: &str = "vmct.crash_guest=1";
/// The console line of a crashed kernel.
pub const PANIC_LINE: &str = "Kernel panic";

/// The crash experiment.
pub struct Crash;

impl Experiment for Crash {
    const ID: ExperimentId = ExperimentId::Crash;
    type Plan = ();
    type Row = CrashRow;
    const FILES: &'static [&'static str] = &[CrashRow::FILE];
    fn plan(_: &Settings) -> &() {
        &()
    }
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let Some(&tcg) = cx.backends.iter().find(|b| b.name() == qemu_tcg::NAME) else {
            cx.warn(format!(
                "crash: not run: it needs the {} backend (QEMU and the linux guest kernel) among the backends",
                qemu_tcg::NAME
            ));
            return Ok(());
        };
        let kvm = cx.meta.host.kvm;
        match measure(INSTANCES, &tcg.info(), kvm) {
            Ok(m) => {
                for r in &m.rows {
                    crate::progress::note(
                        cx.mode,
                        &format!("crash: {} of {} {} survived", r.survivors, r.instances, r.model),
                    );
                }
                cx.run_dir.write_csv(&m.rows)?;
                for (side, e) in m.errors {
                    cx.warn(format!("crash ({side}): {e}"));
                }
            }
            Err(e) => cx.failed(Self::ID, tcg, e)?,
        }
        Ok(())
    }
}

/// What [`measure`] got: a row per side that ran to the end, and the error of each side that did not.
pub struct Measured {
    /// Rows (the shared-kernel side's first).
    pub rows: Vec<CrashRow>,
    /// Errors, with the side they ended.
    pub errors: Vec<(&'static str, ExperimentError)>,
}

/// Run both sides with `n` instances each; `info` is the qemu-tcg backend's (for the transfer marks).
/// A side's failure does not stop the other.
pub fn measure(n: u32, info: &results::BackendInfo, kvm: results::KvmFlavour) -> Result<Measured, ExperimentError> {
    let (kernel, initrd) = prepare()?;
    let count = results::transfer::transfer(Quantity::CrashContainment, info, kvm);
    let slow = results::transfer::transfer(Quantity::Slowdown, info, kvm);
    let marks = format!("survivor count: {count}; slowdown: {slow}");
    let window = WINDOW.as_secs_f64();
    let mut out = Measured { rows: Vec::new(), errors: Vec::new() };
    let t0 = std::time::Instant::now();
    match shared_kernel(n, &kernel, initrd.path()) {
        Ok(side) => out.rows.push(CrashRow {
            backend: "container".into(),
            model: IsolationModel::Container,
            instances: n,
            crashed: 1,
            survivors: side.survivors,
            victim_slowdown: side.slowdown,
            detail: format!(
                "{n} containers of our runtime (default profile) in ONE linux guest under QEMU TCG (emulated CPU) \
                 standing in for a host, {n} vCPUs, {} MiB; the guest kernel crashed with sysrq-c once all {n} \
                 heartbeat; survivors = containers heartbeating within {window} s after its panic line; {marks}; \
                 side took {:.1} s{}",
                u64::from(n) * MIB_PER_INSTANCE,
                t0.elapsed().as_secs_f64(),
                side.note
            ),
        }),
        Err(ExperimentError::Interrupted(i)) => return Err(i.into()),
        Err(e) => out.errors.push(("containers in one guest", e)),
    }
    let t1 = std::time::Instant::now();
    match one_kernel_each(n, &kernel, initrd.path()) {
        Ok(side) => out.rows.push(CrashRow {
            backend: qemu_tcg::NAME.into(),
            model: IsolationModel::Microvm,
            instances: n,
            crashed: 1,
            survivors: side.survivors,
            victim_slowdown: side.slowdown,
            detail: format!(
                "{n} linux-guest VMs under QEMU TCG (emulated CPU), 1 vCPU and {MIB_PER_INSTANCE} MiB each, the \
                 same heartbeat as a plain process in each; VM 0's kernel crashed with sysrq-c; survivors = VMs \
                 heartbeating within {window} s after its panic line; slowdown = survivors' median rate in the \
                 {window} s before over the {window} s after (>1: slower after; {n} emulated CPUs share the host's \
                 cores, so a crash frees CPU); {marks}; side took {:.1} s{}",
                t1.elapsed().as_secs_f64(),
                side.note
            ),
        }),
        Err(ExperimentError::Interrupted(i)) => return Err(i.into()),
        Err(e) => out.errors.push(("VMs", e)),
    }
    Ok(out)
}

/// The QEMU kernel (checked for the runtime's options) and a temporary initramfs with
/// `vmct-crash-init` as /init and the workload.
fn prepare() -> Result<(PathBuf, Initrd), ExperimentError> {
    let unavailable = |reason: String| BackendError::Unavailable { backend: qemu_tcg::NAME.into(), reason };
    let kernel = qemu_tcg::qemu_kernel().map_err(unavailable)?;
    if std::env::var_os(crate::kernel::KERNEL_ENV).is_none() {
        let config = std::fs::read_to_string(kernel.with_file_name("config")).unwrap_or_default();
        let missing = crate::kernel::missing_options(&RUNTIME_CONFIG.join("\n"), &config);
        if !missing.is_empty() {
            return Err(unavailable(format!(
                "the guest kernel lacks {} (our runtime and sysrq inside the guest): run `vmct kernel build`",
                missing.join(", ")
            ))
            .into());
        }
    }
    Ok((kernel, Initrd::build().map_err(unavailable)?))
}

/// The temporary initramfs, removed on drop.
pub struct Initrd {
    dir: PathBuf,
    path: PathBuf,
}

impl Initrd {
    /// Build it under the containers' state root (where `vmct gc` finds leftovers named `vmct*`).
    fn build() -> Result<Initrd, String> {
        let workload = crate::artifacts::workload_path().map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&workload).map_err(|e| format!("cannot read {}: {e}", workload.display()))?;
        let mut fs = microvm::linux::initramfs::Initramfs::new();
        fs.add_file("bin/vmct-workload", 0o755, bytes);
        fs.add_file("init", 0o755, crate::artifacts::CRASH_INIT.to_vec());
        // The runtime's default profile applies Podman's seccomp profile, read from the host's file.
        let profile = container::seccomp_profile::DEFAULT_PROFILE_PATH;
        let json = std::fs::read(profile).map_err(|e| {
            format!("cannot read {profile} (the containers' seccomp profile; apt-get install golang-github-containers-common): {e}")
        })?;
        fs.add_file(profile, 0o644, json);
        let cpio = fs.to_cpio().map_err(|e| e.to_string())?;
        let dir = Path::new(container::DEFAULT_STATE_ROOT).join(format!(
            "{}-{}-crash",
            crate::backend::NAME_PREFIX,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let initrd = Initrd { path: dir.join("initramfs.cpio"), dir };
        std::fs::write(&initrd.path, cpio).map_err(|e| format!("cannot write {}: {e}", initrd.path.display()))?;
        Ok(initrd)
    }

    /// The archive.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Initrd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One guest: its QEMU (killed and reaped on drop), console input and output.
struct Guest {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    reader: LineReader,
    eof: bool,
}

impl Guest {
    fn spawn(
        name: &str,
        kernel: &Path,
        initrd: &Path,
        mode: &str,
        n: u32,
        vcpus: u32,
        mib: u64,
    ) -> Result<Guest, BackendError> {
        let fail = |reason: String| BackendError::Launch { backend: qemu_tcg::NAME.into(), reason };
        let extra = [
            "panic=-1".to_string(),
            "reboot=t".into(),
            GUEST_MARK.into(),
            format!("VMCT_CRASH_MODE={mode}"),
            format!("VMCT_CRASH_N={n}"),
        ];
        let opts =
            microvm::linux::boot::CmdlineOptions { kernel_log: true, extra: extra.to_vec(), ..Default::default() };
        let append = microvm::linux::boot::cmdline(&opts).map_err(|e| fail(e.to_string()))?;
        // QEMU confined as the qemu-tcg backend runs it (libvirt's default -sandbox, when this QEMU has it).
        let sandbox = crate::backend::peers::which(qemu_tcg::QEMU_BIN)
            .filter(|q| qemu_tcg::sandbox_support(q, qemu_tcg::LIBVIRT_SANDBOX).is_ok())
            .map(|_| qemu_tcg::LIBVIRT_SANDBOX);
        let args = QemuArgs {
            accel: Accel::Tcg,
            kernel,
            initrd,
            append: &append,
            mem_mib: mib,
            vcpus,
            disk: None,
            sandbox,
            balloon: false,
        };
        let (r, w) = nix::unistd::pipe().map_err(|e| fail(format!("pipe: {e}")))?;
        let w2 = w.try_clone().map_err(|e| fail(format!("pipe: {e}")))?;
        let mut cmd = Command::new(qemu_tcg::QEMU_BIN);
        cmd.args(args.to_args()).stdin(Stdio::piped()).stdout(Stdio::from(w)).stderr(Stdio::from(w2));
        // QEMU dies with the thread that started it, so a SIGKILLed vmct leaves no guest running.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| fail(format!("cannot start {}: {e}", qemu_tcg::QEMU_BIN)))?;
        drop(cmd);
        let stdin = child.stdin.take();
        let reader = match LineReader::new(r) {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("console pipe: {e}")));
            }
        };
        Ok(Guest { name: name.into(), child, stdin, reader, eof: false })
    }

    /// Ask /init to crash the kernel.
    fn crash(&mut self) -> Result<(), BackendError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.error("console input closed".into()));
        };
        let sent = stdin.write_all(b"crash\n").and_then(|()| stdin.flush());
        sent.map_err(|e| self.error(format!("console write: {e}")))
    }

    fn error(&self, what: String) -> BackendError {
        BackendError::Launch {
            backend: qemu_tcg::NAME.into(),
            reason: format!("{}: {what}; last console lines: {}", self.name, self.reader.tail.join(" | ")),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a console line says.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleLine {
    /// Instance `i`'s heartbeat with its rate (blocks/s).
    Heartbeat(u32, f64),
    /// The crashed kernel's panic line.
    Panic,
    /// /init or an instance failed.
    Failed(String),
    /// Anything else.
    Other,
}

/// Read one console line of `vmct-crash-init`'s protocol (found anywhere in the line: kernel messages
/// may share the serial line).
pub fn parse_line(line: &str) -> ConsoleLine {
    if line.contains(PANIC_LINE) {
        return ConsoleLine::Panic;
    }
    let Some(at) = line.find("@crash ") else {
        return ConsoleLine::Other;
    };
    let words: Vec<&str> = line[at + 7..].split_whitespace().collect();
    match words.as_slice() {
        ["hb", i, "@vmct", "result", "tick.sha256", rate, ..] => match (i.parse(), rate.parse()) {
            (Ok(i), Ok(r)) => ConsoleLine::Heartbeat(i, r),
            _ => ConsoleLine::Other,
        },
        ["error", ..] | ["failed", ..] => ConsoleLine::Failed(line[at..].to_string()),
        _ => ConsoleLine::Other,
    }
}

/// A heartbeat seen: guest index, instance index within it, host CLOCK_MONOTONIC ns, rate.
type Beat = (usize, u32, u64, f64);

/// When [`watch`] stops: on the heartbeats and the guests' panic times so far.
type Until<'a> = dyn Fn(&[Beat], &[Option<u64>]) -> bool + 'a;

/// Read every guest's console until `until(beats, panics)` holds or `timeout` passes. `panics[g]` is
/// the host time of guest g's panic line. Errors on a failure line, a signal, or the timeout.
fn watch(
    guests: &mut [Guest],
    beats: &mut Vec<Beat>,
    panics: &mut [Option<u64>],
    timeout: Duration,
    what: &str,
    until: &Until<'_>,
) -> Result<(), ExperimentError> {
    let deadline = crate::clock::deadline_ns(timeout);
    loop {
        if until(beats, panics) {
            return Ok(());
        }
        if crate::clock::mono_ns() >= deadline {
            let tails: Vec<String> =
                guests.iter().map(|g| format!("{}: {}", g.name, g.reader.tail.join(" | "))).collect();
            return Err(BackendError::Launch {
                backend: qemu_tcg::NAME.into(),
                reason: format!("no {what} within {} s; last console lines: {}", timeout.as_secs(), tails.join(" || ")),
            }
            .into());
        }
        let mut idle = true;
        for (g, guest) in guests.iter_mut().enumerate() {
            if guest.eof {
                continue;
            }
            let line =
                guest.reader.next(Duration::from_millis(5)).map_err(|e| guest.error(format!("console read: {e}")))?;
            match line {
                Line::Text(t) => {
                    idle = false;
                    let now = crate::clock::mono_ns();
                    match parse_line(&t) {
                        ConsoleLine::Heartbeat(i, r) => beats.push((g, i, now, r)),
                        ConsoleLine::Panic => {
                            panics[g].get_or_insert(now);
                        }
                        ConsoleLine::Failed(f) => return Err(guest.error(f).into()),
                        ConsoleLine::Other => {}
                    }
                }
                Line::Event(..) => idle = false,
                Line::Eof => guest.eof = true,
                Line::Timeout => {}
                Line::Interrupted => return Err(crate::interrupt::Interrupted.into()),
            }
        }
        if idle && guests.iter().all(|g| g.eof) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What one side measured.
struct Side {
    survivors: u32,
    slowdown: Option<f64>,
    note: String,
}

fn median(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| results::stats::median(xs))
}

fn alive(beats: &[Beat], instances: &[(usize, u32)]) -> bool {
    instances.iter().all(|&(g, i)| beats.iter().filter(|b| b.0 == g && b.1 == i).count() >= ALIVE_HEARTBEATS)
}

/// N containers in one guest; crash its kernel.
fn shared_kernel(n: u32, kernel: &Path, initrd: &Path) -> Result<Side, ExperimentError> {
    let guest = Guest::spawn("shared guest", kernel, initrd, "containers", n, n, u64::from(n) * MIB_PER_INSTANCE)?;
    let mut guests = [guest];
    let instances: Vec<(usize, u32)> = (0..n).map(|i| (0, i)).collect();
    crash_and_count(&mut guests, &instances, 0)
}

/// N VMs, one instance each; crash VM 0's kernel.
fn one_kernel_each(n: u32, kernel: &Path, initrd: &Path) -> Result<Side, ExperimentError> {
    let mut guests = Vec::new();
    for g in 0..n {
        guests.push(Guest::spawn(&format!("VM {g}"), kernel, initrd, "process", 1, 1, MIB_PER_INSTANCE)?);
    }
    let instances: Vec<(usize, u32)> = (0..n as usize).map(|g| (g, 0)).collect();
    crash_and_count(&mut guests, &instances, 0)
}

/// Wait until every instance heartbeats, watch [`WINDOW`], crash guest `victim`, watch [`WINDOW`]
/// after its panic line; count the instances heartbeating in that window.
fn crash_and_count(guests: &mut [Guest], instances: &[(usize, u32)], victim: usize) -> Result<Side, ExperimentError> {
    let mut beats = Vec::new();
    let mut panics = vec![None; guests.len()];
    let t_start = crate::clock::mono_ns();
    watch(guests, &mut beats, &mut panics, START_TIMEOUT, "every instance heartbeating", &|b, _| alive(b, instances))?;
    let t_alive = crate::clock::mono_ns();
    let before_from = t_alive;
    let window_ns = u64::try_from(WINDOW.as_nanos()).expect("seconds");
    watch(guests, &mut beats, &mut panics, WINDOW + Duration::from_secs(1), "the window before the crash", &|_, _| {
        crate::clock::mono_ns() >= t_alive + window_ns
    })?;
    if panics.iter().any(Option::is_some) {
        return Err(guests[victim].error("a kernel panicked before the crash was asked for".into()).into());
    }
    guests[victim].crash()?;
    let t_asked = crate::clock::mono_ns();
    watch(guests, &mut beats, &mut panics, PANIC_TIMEOUT, "the kernel's panic line after sysrq-c", &|_, p| {
        p[victim].is_some()
    })?;
    let t_panic = panics[victim].expect("watched for");
    watch(guests, &mut beats, &mut panics, WINDOW + Duration::from_secs(1), "the window after the crash", &|_, _| {
        crate::clock::mono_ns() >= t_panic + window_ns
    })?;
    let after = |&(g, i): &(usize, u32)| {
        beats
            .iter()
            .filter(|b| b.0 == g && b.1 == i && b.2 > t_panic && b.2 <= t_panic + window_ns)
            .map(|b| b.3)
            .collect::<Vec<f64>>()
    };
    let before = |&(g, i): &(usize, u32)| {
        beats
            .iter()
            .filter(|b| b.0 == g && b.1 == i && b.2 >= before_from && b.2 < t_asked)
            .map(|b| b.3)
            .collect::<Vec<f64>>()
    };
    let survivors: Vec<&(usize, u32)> = instances.iter().filter(|x| !after(x).is_empty()).collect();
    let ratios: Vec<f64> = survivors
        .iter()
        .filter_map(|x| {
            let (b, a) = (before(x), after(x));
            let (b, a) = (median(&b)?, median(&a)?);
            (a > 0.0).then(|| b / a)
        })
        .collect();
    let exited = guests[victim].eof;
    let note = format!(
        "; boot to all alive {:.1} s, crash asked to panic line {:.2} s, crashed guest's QEMU {}",
        crate::clock::ns_to_s(t_alive - t_start),
        crate::clock::ns_to_s(t_panic - t_asked),
        if exited { "exited (-no-reboot)" } else { "still running at the window's end" }
    );
    Ok(Side { survivors: u32::try_from(survivors.len()).expect("at most n"), slowdown: median(&ratios), note })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_are_read_wherever_they_start() {
        assert_eq!(
            parse_line("@crash hb 2 @vmct result tick.sha256 81234.5 blocks/s"),
            ConsoleLine::Heartbeat(2, 81234.5)
        );
        assert_eq!(
            parse_line("[  3.1] x@crash hb 0 @vmct result tick.sha256 10 blocks/s"),
            ConsoleLine::Heartbeat(0, 10.0)
        );
        assert_eq!(parse_line("@crash hb 0 @vmct ready"), ConsoleLine::Other);
        assert_eq!(parse_line("[    9.2] Kernel panic - not syncing: sysrq triggered crash"), ConsoleLine::Panic);
        assert!(matches!(parse_line("@crash failed 1 clone: EPERM"), ConsoleLine::Failed(_)));
        assert!(matches!(parse_line("@crash error mount cgroup2"), ConsoleLine::Failed(_)));
        assert_eq!(parse_line("@crash trigger"), ConsoleLine::Other);
        assert_eq!(parse_line("random kernel text"), ConsoleLine::Other);
    }

    #[test]
    fn an_instance_is_alive_after_enough_heartbeats_and_each_counts_apart() {
        let beats: Vec<Beat> = vec![(0, 0, 1, 1.0), (0, 0, 2, 1.0), (0, 1, 3, 1.0)];
        assert!(alive(&beats, &[(0, 0)]));
        assert!(!alive(&beats, &[(0, 0), (0, 1)]), "instance 1 has one heartbeat");
    }

    #[test]
    fn the_guest_mark_is_what_the_init_requires() {
        let init = include_str!("../../../container/src/bin/vmct-crash-init.rs");
        assert!(init.contains(&format!("\"{GUEST_MARK}\"")));
    }
}

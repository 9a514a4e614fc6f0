//! Layer (c) of the attack surface measured, not declared: the host system calls a live supervisor
//! process (our VMM, QEMU, Firecracker, gVisor's Sentry) can still make after its confinement.
//!
//! [`Confinement::measure`] walks every thread of the process and of its descendants (a jailer's child,
//! QEMU's vCPU and I/O threads: seccomp filters are per thread), reads `/proc/TID/status`
//! (`Seccomp:` 0 = no filter, 2 = filter mode; `Seccomp_filters:` how many), copies each filter with
//! `ptrace(PTRACE_SECCOMP_GET_FILTER)` ([`bpf::get_filters`]: the thread is seized, interrupted for the few
//! calls that takes, and detached; needs CAP_SYS_ADMIN) and evaluates the classic BPF programs for every
//! entry of the x86_64 system call table ([`workloads::probe_ids::syscall_table`]):
//! - `allowed`: the call passes every filter with all six arguments and the instruction pointer zero
//!   ([`bpf::run`], exact);
//! - `argument_dependent`: refused with zero arguments but let through for some argument values
//!   ([`bpf::may_allow`], a walk over both branches of every test on an argument; e.g. KVM ioctls
//!   allowed by request number).
//!
//! The process's figure is that of its least confined thread (a compromised VMM picks the thread it
//! runs on). [`note_ready`] measures the first instance of each backend that reaches ready in this
//! process; [`apply`] puts that measurement in the backend's [`BackendSurface`] in place of what the
//! backend declares.
use super::surface::{unfiltered_syscalls, BackendSurface};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ConfinementError {
    /// The process (or all of its threads) could not be read from /proc: it is gone.
    #[error("confinement: /proc/{pid}: {reason}")]
    Proc {
        /// Process id.
        pid: u32,
        /// Why.
        reason: String,
    },
}

/// The seccomp confinement of one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadConfinement {
    /// Thread id (host pid namespace).
    pub tid: u32,
    /// `/proc/TID/comm`.
    pub comm: String,
    /// `Seccomp:` of `/proc/TID/status` (0 none, 1 strict, 2 filter).
    pub mode: u32,
    /// `Seccomp_filters:` of `/proc/TID/status`.
    pub filters: u32,
    /// BPF instructions per filter (most recent first); empty when not read.
    pub instructions: Vec<usize>,
    /// Table entries that pass every filter with zero arguments (the whole table when unfiltered);
    /// None when the filters could not be read (`error` says why).
    pub allowed: Option<u32>,
    /// Table entries refused with zero arguments but allowed for some argument values.
    pub argument_dependent: Option<u32>,
    /// Why the filters could not be read.
    pub error: Option<String>,
}

impl ThreadConfinement {
    /// Read thread `tid`'s status and, in filter mode, its filters; None if the thread is gone or a
    /// zombie.
    pub fn measure(tid: u32) -> Option<ThreadConfinement> {
        Self::measure_with(tid, &mut HashMap::new())
    }

    /// [`ThreadConfinement::measure`], reusing the evaluation of filters already seen (`seen`: the
    /// threads of one process usually share theirs).
    fn measure_with(tid: u32, seen: &mut HashMap<Vec<Vec<bpf::Insn>>, (u32, u32)>) -> Option<ThreadConfinement> {
        let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
        // A zombie thread (e.g. a leader that ended alone) makes no more system calls.
        let state = status.lines().find_map(|l| l.strip_prefix("State:")).unwrap_or("").trim_start();
        if state.starts_with(['Z', 'X']) {
            return None;
        }
        let field = |k: &str| {
            status.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(':')?.trim().parse::<u32>().ok()).unwrap_or(0)
        };
        let comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).unwrap_or_default().trim().to_string();
        let (mode, filters) = (field("Seccomp"), field("Seccomp_filters"));
        let mut t = ThreadConfinement {
            tid,
            comm,
            mode,
            filters,
            instructions: Vec::new(),
            allowed: None,
            argument_dependent: None,
            error: None,
        };
        match mode {
            0 => {
                t.allowed = Some(unfiltered_syscalls());
                t.argument_dependent = Some(0);
            }
            // Strict mode: read, write, _exit, sigreturn only.
            1 => {
                t.allowed = Some(4);
                t.argument_dependent = Some(0);
            }
            _ => match bpf::get_filters(tid, filters) {
                Ok(progs) => {
                    let (allowed, dependent) = *seen.entry(progs.clone()).or_insert_with(|| evaluate(&progs));
                    t.instructions = progs.iter().map(Vec::len).collect();
                    t.allowed = Some(allowed);
                    t.argument_dependent = Some(dependent);
                }
                Err(e) => t.error = Some(e),
            },
        }
        // A thread that ended mid-read: nothing read from it is trusted.
        std::path::Path::new(&format!("/proc/{tid}/status")).exists().then_some(t)
    }
}

/// Evaluate filters `progs` (all installed on one thread: a call runs only if every one lets it) for
/// every entry of the x86_64 table: (allowed with zero arguments, allowed only for other arguments).
pub fn evaluate(progs: &[Vec<bpf::Insn>]) -> (u32, u32) {
    let (mut allowed, mut dependent) = (0u32, 0u32);
    for nr in workloads::probe_ids::syscall_table::entries() {
        let nr = u32::try_from(nr.id()).unwrap_or(u32::MAX);
        let data = bpf::SeccompData::zero_args(nr);
        if progs.iter().all(|p| bpf::run(p, &data).is_some_and(bpf::allows)) {
            allowed += 1;
        } else if progs.iter().all(|p| bpf::may_allow(p, nr)) {
            dependent += 1;
        }
    }
    (allowed, dependent)
}

/// Whether [`Confinement::measure_tree`] reads the process's descendants too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Descend {
    /// The process and every descendant (a jailer and the VMM it starts).
    Yes,
    /// The process's own threads only (gVisor's Sentry: its children are the workload's stub
    /// processes, which the Sentry itself traces).
    No,
}

/// The confinement of a supervisor process: every thread of it and of its descendants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// The process measured.
    pub pid: u32,
    /// Its threads and those of its descendants, in /proc order.
    pub threads: Vec<ThreadConfinement>,
}

impl Confinement {
    /// Measure process `pid` now, with its descendants (see the module docs). Errors if no thread of
    /// it could be read, or it ended meanwhile.
    pub fn measure(pid: u32) -> Result<Confinement, ConfinementError> {
        Self::measure_tree(pid, Descend::Yes)
    }

    /// Measure process `pid` now, its descendants too or not ([`Descend`]).
    pub fn measure_tree(pid: u32, descend: Descend) -> Result<Confinement, ConfinementError> {
        let (mut threads, mut seen) = (Vec::new(), HashMap::new());
        let mut todo = vec![pid];
        while let Some(p) = todo.pop() {
            let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
                .map_err(|e| ConfinementError::Proc { pid: p, reason: e.to_string() });
            let tasks = match tasks {
                Ok(t) => t,
                Err(e) if p == pid => return Err(e),
                Err(_) => continue,
            };
            let mut tids: Vec<u32> =
                tasks.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).collect();
            tids.sort_unstable();
            for tid in tids {
                let kids = std::fs::read_to_string(format!("/proc/{p}/task/{tid}/children")).unwrap_or_default();
                if descend == Descend::Yes {
                    todo.extend(kids.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
                }
                threads.extend(ThreadConfinement::measure_with(tid, &mut seen));
            }
        }
        if threads.is_empty() || !alive(pid) {
            return Err(ConfinementError::Proc {
                pid,
                reason: "the process ended while being read: its threads are not all counted".into(),
            });
        }
        Ok(Confinement { pid, threads })
    }

    /// The least confined thread (most calls allowed with zero arguments), if every filtered thread
    /// could be read; None otherwise (a figure from the readable ones only would understate it).
    pub fn least_confined(&self) -> Option<&ThreadConfinement> {
        if self.threads.iter().any(|t| t.allowed.is_none()) {
            return None;
        }
        self.threads.iter().max_by_key(|t| (t.allowed, t.argument_dependent))
    }

    /// Host system calls the process may make: its least confined thread's, with zero arguments.
    pub fn allowed(&self) -> Option<u32> {
        self.least_confined().and_then(|t| t.allowed)
    }

    /// The source note for `attack_surface.csv`: what was measured, how, per distinct thread
    /// confinement.
    pub fn note(&self, who: &str) -> String {
        let table = unfiltered_syscalls();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &self.threads {
            let what = match (t.mode, t.allowed, &t.error) {
                (0, _, _) => format!("no seccomp filter: all {table}"),
                (_, Some(a), _) => format!(
                    "{} filter(s) of {} BPF instructions: {a} allowed, {} more for some arguments",
                    t.filters,
                    t.instructions.iter().map(ToString::to_string).collect::<Vec<_>>().join("+"),
                    t.argument_dependent.unwrap_or(0)
                ),
                (_, None, e) => {
                    format!("{} filter(s), not readable: {}", t.filters, e.as_deref().unwrap_or("unknown"))
                }
            };
            groups.entry(what).or_default().push(format!("{}/{}", t.tid, t.comm));
        }
        let threads: Vec<String> =
            groups.iter().map(|(what, ts)| format!("{} thread(s) [{}]: {what}", ts.len(), ts.join(","))).collect();
        let filters = self.threads.iter().map(|t| t.filters).max().unwrap_or(0);
        let head = match self.least_confined() {
            Some(t) => format!(
                "{who} (pid {}): measured from the live process's seccomp filter ({filters} filters): {} of the {table} \
                 x86_64 system calls allowed with zero arguments on its least confined thread ({}), {} more \
                 argument-dependent",
                self.pid,
                t.allowed.unwrap_or(0),
                t.comm,
                t.argument_dependent.unwrap_or(0)
            ),
            None => format!("{who} (pid {}): not measured: a filtered thread's filter was not readable", self.pid),
        };
        format!(
            "{head}; per thread: {}; read with PTRACE_SECCOMP_GET_FILTER and evaluated per table entry \
             (ALLOW/LOG/TRACE/USER_NOTIF count as allowed)",
            threads.join("; ")
        )
    }
}

/// Whether `pid` still runs: some thread of it is neither a zombie nor dead (a thread-group leader
/// that ended alone stays a zombie while its other threads run, as in gVisor's Sentry).
fn alive(pid: u32) -> bool {
    let running = |stat: String| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X', 'x']));
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|t| std::fs::read_to_string(t.path().join("stat")).is_ok_and(running))
}

/// The first measurement per backend name in this process ([`note_ready`]).
static MEASURED: Mutex<BTreeMap<String, Result<Confinement, String>>> = Mutex::new(BTreeMap::new());

/// Why the last read of a backend's supervisor did not count, until one does.
static LAST_FAILURE: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Why `backend`'s supervisor was read but not counted in this process, if it was.
pub fn last_failure(backend: &str) -> Option<String> {
    LAST_FAILURE.lock().unwrap_or_else(|e| e.into_inner()).get(backend).cloned()
}

/// Measure `pid` as `backend`'s supervisor, once per backend per process (the first instance that
/// reaches ready and is still running when read; one that ended meanwhile is not counted, the next
/// one is read).
pub fn note_ready(backend: &str, pid: u32, descend: Descend) {
    let mut g = MEASURED.lock().unwrap_or_else(|e| e.into_inner());
    if g.contains_key(backend) {
        return;
    }
    match Confinement::measure_tree(pid, descend) {
        Ok(c) if c.allowed().is_some() => {
            g.insert(backend.to_string(), Ok(c));
        }
        // Kept until an instance reads in full: then that one replaces it.
        Ok(c) => {
            LAST_FAILURE.lock().unwrap_or_else(|e| e.into_inner()).insert(backend.to_string(), c.note(backend));
        }
        Err(e) => {
            LAST_FAILURE.lock().unwrap_or_else(|e| e.into_inner()).insert(backend.to_string(), e.to_string());
        }
    }
}

/// The measurement [`note_ready`] took for `backend` in this process, if any.
pub fn measured(backend: &str) -> Option<Confinement> {
    MEASURED.lock().unwrap_or_else(|e| e.into_inner()).get(backend).and_then(|r| r.as_ref().ok().cloned())
}

/// Replace `surface`'s declared layer (c) with `backend`'s measurement, when one was taken in this
/// process; `who` names the process (e.g. "the QEMU process"). Without one the declaration stays, and
/// its note says it was declared, not measured.
pub fn apply(backend: &str, who: &str, surface: &mut BackendSurface) {
    match measured(backend) {
        Some(c) => {
            surface.supervisor_syscalls_allowed = c.allowed();
            surface.supervisor_note = c.note(who);
        }
        None if !surface.supervisor_note.is_empty() => {
            let why = last_failure(backend)
                .map_or("no live instance read in this run".into(), |f| format!("read failed: {f}"));
            surface.supervisor_note = format!("declared, not measured ({why}): {}", surface.supervisor_note);
        }
        None => {}
    }
}

/// Classic BPF seccomp programs: reading them from a live process, running them on one call
/// ([`run`]), and deciding per system call number whether some arguments let the call through
/// ([`may_allow`]). Hand-written: the crates that handle seccomp (seccompiler, libseccomp) compile
/// filters but neither reads one back nor evaluates a foreign one, and the BPF crates on crates.io
/// target eBPF or socket filters, not seccomp's `seccomp_data` input.
pub mod bpf {
    use std::collections::HashSet;

    /// System call numbers evaluated (x86_64 numbers are below 512; x32 and other ABIs are not).
    pub const MAX_NR: u32 = 512;
    /// `AUDIT_ARCH_X86_64` (linux/audit.h): the `arch` field of `seccomp_data` on this host.
    pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    /// `PTRACE_SECCOMP_GET_FILTER` (linux/ptrace.h).
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    /// `SECCOMP_RET_ACTION_FULL` (linux/seccomp.h).
    const RET_ACTION_FULL: u32 = 0xffff_0000;
    /// `SECCOMP_RET_ALLOW`, `SECCOMP_RET_LOG`, `SECCOMP_RET_TRACE`, `SECCOMP_RET_USER_NOTIF`: see [`allows`].
    const ALLOWING: [u32; 4] = [0x7fff_0000, 0x7ffc_0000, 0x7ff0_0000, 0x7fc0_0000];

    /// One BPF instruction (`struct sock_filter`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    #[repr(C)]
    pub struct Insn {
        /// Opcode.
        pub code: u16,
        /// Jump offset if true.
        pub jt: u8,
        /// Jump offset if false.
        pub jf: u8,
        /// Constant.
        pub k: u32,
    }

    /// Whether some arguments let system call `nr` (arch x86_64) through `prog`: a walk over every path
    /// the program can take, where the argument and instruction-pointer words are unknown (both
    /// branches of a test on them are followed). Jumps only go forward, so the walk ends.
    pub fn may_allow(prog: &[Insn], nr: u32) -> bool {
        let mut seen = HashSet::new();
        let mut todo = vec![State { pc: 0, a: Some(0), x: Some(0), m: [None; 16] }];
        while let Some(s) = todo.pop() {
            if !seen.insert(s) {
                continue;
            }
            let Some(i) = prog.get(s.pc) else { continue };
            let next = |pc: usize, a, x, m| State { pc, a, x, m };
            let (a, x, mut m) = (s.a, s.x, s.m);
            let src = if i.code & 0x08 != 0 { x } else { Some(i.k) };
            let mem = |k: u32| m.get(k as usize).copied().flatten();
            match i.code & 0x07 {
                0x00 => {
                    let v = match i.code & 0xe0 {
                        0x20 if i.code & 0x18 == 0 => match i.k {
                            0 => Some(nr),
                            4 => Some(AUDIT_ARCH_X86_64),
                            _ => None,
                        },
                        0x00 => Some(i.k),
                        0x60 => mem(i.k),
                        0x80 => Some(64),
                        _ => None,
                    };
                    todo.push(next(s.pc + 1, v, x, m));
                }
                0x01 => {
                    let v = match i.code & 0xe0 {
                        0x00 => Some(i.k),
                        0x60 => mem(i.k),
                        0x80 => Some(64),
                        _ => None,
                    };
                    todo.push(next(s.pc + 1, a, v, m));
                }
                0x02 | 0x03 => {
                    if let Some(slot) = m.get_mut(i.k as usize) {
                        *slot = if i.code & 0x07 == 0x02 { a } else { x };
                    }
                    todo.push(next(s.pc + 1, a, x, m));
                }
                0x04 => {
                    let v = match (a, src) {
                        (Some(a), Some(b)) => alu(i.code & 0xf0, a, b),
                        (Some(a), None) if i.code & 0xf0 == 0x80 => Some(a.wrapping_neg()),
                        _ => None,
                    };
                    todo.push(next(s.pc + 1, v, x, m));
                }
                0x05 => {
                    let base = s.pc + 1;
                    if i.code & 0xf0 == 0x00 {
                        todo.push(next(base + i.k as usize, a, x, m));
                        continue;
                    }
                    let taken = match (a, src) {
                        (Some(a), Some(b)) => match i.code & 0xf0 {
                            0x10 => Some(a == b),
                            0x20 => Some(a > b),
                            0x30 => Some(a >= b),
                            0x40 => Some(a & b != 0),
                            _ => None,
                        },
                        _ => None,
                    };
                    if taken != Some(false) {
                        todo.push(next(base + i.jt as usize, a, x, m));
                    }
                    if taken != Some(true) {
                        todo.push(next(base + i.jf as usize, a, x, m));
                    }
                }
                0x06 => {
                    let ret = if i.code & 0x18 == 0x10 { a } else { Some(i.k) };
                    // An unknown return value could allow: counted as allowing (an upper bound).
                    if ret.is_none_or(allows) {
                        return true;
                    }
                }
                _ => {
                    let (a2, x2) = if i.code & 0xf8 == 0x80 { (x, x) } else { (a, a) };
                    todo.push(next(s.pc + 1, a2, x2, m));
                }
            }
        }
        false
    }

    /// The `struct seccomp_data` a filter sees (linux/seccomp.h): `nr`, `arch`, `instruction_pointer`,
    /// `args[6]`, laid out as 64 bytes the program loads 32-bit words from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct SeccompData {
        /// System call number.
        pub nr: u32,
        /// `AUDIT_ARCH_*`.
        pub arch: u32,
        /// Instruction pointer of the call.
        pub instruction_pointer: u64,
        /// The six arguments.
        pub args: [u64; 6],
    }

    impl SeccompData {
        /// Call `nr` on x86_64 with every argument and the instruction pointer zero.
        pub fn zero_args(nr: u32) -> SeccompData {
            SeccompData { nr, arch: AUDIT_ARCH_X86_64, ..Default::default() }
        }

        /// The 32-bit word at byte offset `off` (little endian, as on x86_64); None past the end or
        /// unaligned (the kernel's checker refuses such a program).
        fn word(&self, off: u32) -> Option<u32> {
            let split = |v: u64, hi: bool| {
                let half = if hi { v >> 32 } else { v & 0xffff_ffff };
                u32::try_from(half).unwrap_or(u32::MAX)
            };
            match off {
                0 => Some(self.nr),
                4 => Some(self.arch),
                8 | 12 => Some(split(self.instruction_pointer, off == 12)),
                16..=60 if off.is_multiple_of(4) => {
                    let i = ((off - 16) / 8) as usize;
                    Some(split(self.args[i], off % 8 == 4))
                }
                _ => None,
            }
        }
    }

    /// Run `prog` on `data` exactly as the kernel would and return its `SECCOMP_RET_*` value; None for a
    /// program the kernel's checker would have refused (a jump or load out of range, no return).
    pub fn run(prog: &[Insn], data: &SeccompData) -> Option<u32> {
        let (mut a, mut x, mut m) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        while let Some(i) = prog.get(pc) {
            pc += 1;
            let src = if i.code & 0x08 != 0 { x } else { i.k };
            match i.code & 0x07 {
                0x00 => {
                    a = match i.code & 0xe0 {
                        0x20 if i.code & 0x18 == 0 => data.word(i.k)?,
                        0x00 => i.k,
                        0x60 => *m.get(i.k as usize)?,
                        0x80 => 64,
                        _ => return None,
                    }
                }
                0x01 => {
                    x = match i.code & 0xe0 {
                        0x00 => i.k,
                        0x60 => *m.get(i.k as usize)?,
                        0x80 => 64,
                        _ => return None,
                    }
                }
                0x02 => *m.get_mut(i.k as usize)? = a,
                0x03 => *m.get_mut(i.k as usize)? = x,
                0x04 => a = alu(i.code & 0xf0, a, src)?,
                0x05 => {
                    let taken = match i.code & 0xf0 {
                        0x00 => {
                            pc += i.k as usize;
                            continue;
                        }
                        0x10 => a == src,
                        0x20 => a > src,
                        0x30 => a >= src,
                        0x40 => a & src != 0,
                        _ => return None,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                0x06 => return Some(if i.code & 0x18 == 0x10 { a } else { i.k }),
                _ => {
                    if i.code & 0xf8 == 0x80 {
                        a = x
                    } else {
                        x = a
                    }
                }
            }
        }
        None
    }

    /// Whether a filter's return value lets the call go ahead: `ALLOW` and `LOG` run it; `TRACE` and
    /// `USER_NOTIF` hand it to a tracer or supervisor that may run it (counted as allowed: an upper
    /// bound); `ERRNO`, `TRAP` and the `KILL`s refuse it.
    pub fn allows(ret: u32) -> bool {
        ALLOWING.contains(&(ret & RET_ACTION_FULL))
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct State {
        pc: usize,
        a: Option<u32>,
        x: Option<u32>,
        m: [Option<u32>; 16],
    }

    fn alu(op: u16, a: u32, b: u32) -> Option<u32> {
        Some(match op {
            0x00 => a.wrapping_add(b),
            0x10 => a.wrapping_sub(b),
            0x20 => a.wrapping_mul(b),
            0x30 => a.checked_div(b)?,
            0x40 => a | b,
            0x50 => a & b,
            0x60 => a.checked_shl(b).unwrap_or(0),
            0x70 => a.checked_shr(b).unwrap_or(0),
            0x80 => a.wrapping_neg(),
            0x90 => a.checked_rem(b)?,
            0xa0 => a ^ b,
            _ => return None,
        })
    }

    /// Read the `count` seccomp filters of `pid` (most recent first) with `PTRACE_SECCOMP_GET_FILTER`:
    /// seize thread `pid`, interrupt it, copy each filter, detach (giving back a signal that arrived
    /// meanwhile). The thread is stopped for the few system calls that takes; nothing of the process is
    /// changed. Needs CAP_SYS_ADMIN.
    pub fn get_filters(pid: u32, count: u32) -> Result<Vec<Vec<Insn>>, String> {
        let p = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
        let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
        // SAFETY: PTRACE_SEIZE on a pid with no address arguments; fails harmlessly if not allowed.
        if unsafe { libc::ptrace(libc::PTRACE_SEIZE, p, 0usize, 0usize) } != 0 {
            return Err(err("PTRACE_SEIZE"));
        }
        let (mut signal, mut gone) = (0, false);
        let result = (|| {
            // SAFETY: PTRACE_INTERRUPT on a thread we have seized; no memory is passed.
            if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, p, 0usize, 0usize) } != 0 {
                return Err(err("PTRACE_INTERRUPT"));
            }
            // The first stop: our interrupt (PTRACE_EVENT_STOP), or a signal arriving first (a
            // signal-delivery stop, whose signal is given back on detach). EINTR is retried.
            loop {
                let mut st = 0;
                // SAFETY: waits for the seized thread's stop; `st` is a valid int.
                let r = unsafe { libc::waitpid(p, &mut st, libc::__WALL) };
                if r == p && libc::WIFSTOPPED(st) {
                    if st >> 16 == 0 {
                        signal = libc::WSTOPSIG(st);
                    }
                    break;
                }
                if r == p {
                    gone = true;
                    return Err(format!("thread {pid} ended while being read (wait status {st:#x})"));
                }
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return Err(err("waitpid"));
                }
            }
            let mut progs = Vec::new();
            for index in 0..usize::try_from(count).unwrap_or(0) {
                // SAFETY: with a null data pointer the kernel only returns the filter's length.
                let n = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, p, index, std::ptr::null_mut::<Insn>()) };
                let n = usize::try_from(n).map_err(|_| err("PTRACE_SECCOMP_GET_FILTER (length)"))?;
                let mut buf = vec![Insn::default(); n];
                // SAFETY: `buf` has room for exactly the `n` instructions the kernel reported;
                // `Insn` has `struct sock_filter`'s layout (repr(C), u16 u8 u8 u32).
                let got = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, p, index, buf.as_mut_ptr()) };
                if usize::try_from(got).ok() != Some(n) {
                    return Err(err("PTRACE_SECCOMP_GET_FILTER"));
                }
                progs.push(buf);
            }
            Ok(progs)
        })();
        if !gone {
            let sig = usize::try_from(signal).unwrap_or(0);
            // SAFETY: PTRACE_DETACH of our tracee, giving back the signal its stop held (0: none); no
            // memory is passed.
            if unsafe { libc::ptrace(libc::PTRACE_DETACH, p, 0usize, sig) } != 0 {
                return Err(err("PTRACE_DETACH"));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::bpf::{may_allow, run, Insn, SeccompData};
    use super::*;
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    /// seccompiler's program as the kernel would hand it back.
    fn insns(p: &BpfProgram) -> Vec<Insn> {
        p.iter().map(|f| Insn { code: f.code, jt: f.jt, jf: f.jf, k: f.k }).collect()
    }

    /// A seccompiler filter allowing `plain` outright and `conditional` only when arg0 == `arg0`;
    /// everything else gets `mismatch`.
    fn filter(plain: &[libc::c_long], conditional: &[libc::c_long], arg0: u64, mismatch: SeccompAction) -> BpfProgram {
        let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
            plain.iter().map(|nr| (*nr, Vec::new())).collect();
        for nr in conditional {
            let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, arg0).unwrap();
            rules.insert(*nr, vec![SeccompRule::new(vec![cond]).unwrap()]);
        }
        let f = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, seccompiler::TargetArch::x86_64).unwrap();
        f.try_into().unwrap()
    }

    const PLAIN: [libc::c_long; 6] = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_exit_group,
        libc::SYS_pause,
        libc::SYS_rt_sigreturn,
        libc::SYS_futex,
    ];

    /// Entries of [`PLAIN`].
    const N_PLAIN: u32 = 6;

    fn nr32(nr: i64) -> u32 {
        u32::try_from(nr).unwrap()
    }

    #[test]
    fn bpf_walk_allows_a_call_when_some_arguments_pass() {
        // arch check; nr == 1 -> allow; nr == 2 -> allow only if arg0 == 5; else kill.
        let prog = [
            ins(0x20, 0, 0, 4),                      // ld arch
            ins(0x15, 1, 0, bpf::AUDIT_ARCH_X86_64), // jeq arch
            ins(0x06, 0, 0, 0),                      // ret kill
            ins(0x20, 0, 0, 0),                      // ld nr
            ins(0x15, 0, 1, 1),                      // jeq 1
            ins(0x06, 0, 0, 0x7fff_0000),            // ret allow
            ins(0x15, 0, 3, 2),                      // jeq 2
            ins(0x20, 0, 0, 16),                     // ld arg0 (unknown)
            ins(0x15, 0, 1, 5),                      // jeq 5
            ins(0x06, 0, 0, 0x7fff_0000),            // ret allow
            ins(0x06, 0, 0, 0x0005_0001),            // ret errno
        ];
        let allowed: Vec<u32> = (0..10).filter(|nr| may_allow(&prog, *nr)).collect();
        assert_eq!(allowed, vec![1, 2]);
        // With zero arguments only nr 1 runs; nr 2 with arg0 = 5 runs too.
        let zero: Vec<u32> =
            (0..10).filter(|nr| run(&prog, &SeccompData::zero_args(*nr)) == Some(0x7fff_0000)).collect();
        assert_eq!(zero, vec![1]);
        let mut d = SeccompData::zero_args(2);
        d.args[0] = 5;
        assert_eq!(run(&prog, &d), Some(0x7fff_0000));
        // Another arch is killed.
        assert_eq!(run(&prog, &SeccompData { arch: 0x4000_0003, ..SeccompData::zero_args(1) }), Some(0));
        // A program that falls off its end is refused, as the kernel's checker does.
        assert_eq!(run(&prog[..2], &SeccompData::zero_args(1)), None);
    }

    #[test]
    fn the_evaluator_finds_exactly_the_rules_of_a_seccompiler_filter() {
        for mismatch in [SeccompAction::Errno(1), SeccompAction::KillProcess, SeccompAction::Trap] {
            let p = insns(&filter(&PLAIN, &[libc::SYS_ioctl], 0xae80, mismatch));
            let allowed: Vec<i64> = workloads::probe_ids::syscall_table::entries()
                .map(|s| i64::from(s.id()))
                .filter(|nr| run(&p, &SeccompData::zero_args(nr32(*nr))).is_some_and(bpf::allows))
                .collect();
            let mut want: Vec<i64> = PLAIN.to_vec();
            want.sort_unstable();
            assert_eq!(allowed, want);
            // The ioctl rule needs arg0 == 0xae80: refused with zero arguments, allowed for some.
            assert_eq!(evaluate(std::slice::from_ref(&p)), (N_PLAIN, 1));
            let mut d = SeccompData::zero_args(nr32(libc::SYS_ioctl));
            d.args[0] = 0xae80;
            assert!(run(&p, &d).is_some_and(bpf::allows));
        }
        // A rule whose condition zero arguments meet is allowed outright.
        let p = insns(&filter(&PLAIN, &[libc::SYS_ioctl], 0, SeccompAction::Errno(1)));
        assert_eq!(evaluate(&[p]), (N_PLAIN + 1, 0));
    }

    #[test]
    fn stacked_filters_allow_only_what_every_one_allows() {
        let a = insns(&filter(&PLAIN, &[], 0, SeccompAction::Errno(1)));
        let b = insns(&filter(&PLAIN[..3], &[], 0, SeccompAction::KillThread));
        assert_eq!(evaluate(&[a.clone(), b]), (3, 0));
        // A filter that allows by default and refuses a few (a deny list).
        let deny = SeccompFilter::new(
            [(libc::SYS_reboot, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(1),
            seccompiler::TargetArch::x86_64,
        )
        .unwrap();
        let deny: BpfProgram = deny.try_into().unwrap();
        assert_eq!(evaluate(&[insns(&deny)]).0, unfiltered_syscalls() - 1);
        assert_eq!(evaluate(&[a, insns(&deny)]).0, N_PLAIN);
    }

    #[test]
    fn allowing_actions_are_allow_log_trace_and_user_notif() {
        for r in [0x7fff_0000, 0x7ffc_0000, 0x7ff0_0005, 0x7fc0_0000] {
            assert!(bpf::allows(r), "{r:#x}");
        }
        for r in [0, 0x8000_0000, 0x0003_0000, 0x0005_0001] {
            assert!(!bpf::allows(r), "{r:#x}");
        }
    }

    #[test]
    fn without_a_measurement_the_declaration_says_it_was_declared() {
        let mut s = BackendSurface {
            supervisor_syscalls_allowed: Some(40),
            supervisor_note: "VMM allowlist".into(),
            ..Default::default()
        };
        apply("no-such-backend-measured", "the VMM", &mut s);
        assert_eq!(s.supervisor_syscalls_allowed, Some(40));
        assert!(s.supervisor_note.starts_with("declared, not measured"), "{}", s.supervisor_note);
    }

    #[test]
    fn a_live_process_with_a_known_filter_measures_its_rule_count() {
        if !crate::privileged::gate(
            "a_live_process_with_a_known_filter_measures_its_rule_count",
            &[crate::privileged::Need::Root],
        ) {
            return;
        }
        let prog = filter(&PLAIN, &[libc::SYS_ioctl], 0xae80, SeccompAction::Errno(1));
        // SAFETY: the child only calls async-signal-safe functions (prctl/seccomp through
        // seccompiler's apply_filter on an already compiled program, pause, _exit).
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = if seccompiler::apply_filter(&prog).is_ok() {
                    loop {
                        // SAFETY: pause has no arguments; the filter allows it.
                        unsafe { libc::pause() };
                    }
                } else {
                    3
                };
                // SAFETY: ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let pid = u32::try_from(child.as_raw()).unwrap();
        // Wait until the filter is in place.
        let t0 = std::time::Instant::now();
        while !std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().contains("Seccomp:\t2") {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "child never installed its filter");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let c = Confinement::measure(pid);
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        let c = c.unwrap();
        assert_eq!(c.threads.len(), 1, "{c:?}");
        let t = &c.threads[0];
        assert_eq!((t.mode, t.filters), (2, 1));
        assert_eq!((c.allowed(), t.argument_dependent), (Some(N_PLAIN), Some(1)), "{c:?}");
        let note = c.note("the test child");
        assert!(note.contains("measured from the live process's seccomp filter (1 filters)"), "{note}");
        assert!(note.contains("1 more argument-dependent"), "{note}");
        // Our own (unfiltered) test process, measured through a child that is not filtered: the whole table.
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let c = Confinement::measure(sleeper.id());
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert_eq!(c.unwrap().allowed(), Some(unfiltered_syscalls()));
    }
}

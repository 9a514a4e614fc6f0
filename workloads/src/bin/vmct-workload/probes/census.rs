//! Syscall census (like amicontained): which system calls of the x86_64 table reach the kernel's
//! implementation, i.e. do not fail with EPERM or ENOSYS and do not kill the caller. This is layer (a)
//! of the attack surface: the host-kernel system calls the instance reaches directly.
//!
//! The table is the `syscalls` crate's (`Sysno`, generated from the kernel's syscall_64.tbl; 0.8 ends at
//! 469 `file_setattr`, Linux 6.17), so holes in the numbering are not counted as filtered. Each call is
//! invoked with arguments chosen to fail harmlessly (by default every argument is -1: a bad fd, a
//! faulting pointer, an invalid flag word); calls where -1 could act are given explicit safe arguments,
//! and calls that end, fork, block or change state whatever their arguments are skipped (counted apart).
//! The calls run in a forked child; a call that kills it (a seccomp KILL action) is recorded as filtered
//! and the census goes on in a fresh child from the next entry.
//!
//! The detail starts with [`CensusCounts`] (`table=T reachable=R filtered=F skipped=S`), which the
//! harness parses for the attack-surface figures, then names the filtered and skipped calls.
use super::{sys, Verdict};
use std::io::Write;
use std::time::Duration;
use syscalls::Sysno;
use workloads::probe_ids::CensusCounts;

/// Probe id.
pub const ID: &str = workloads::probe_ids::CENSUS;

/// Never invoked: they end, fork, exec, block or change state regardless of their arguments.
const SKIP: &[Sysno] = &[
    Sysno::rt_sigreturn,
    Sysno::pause,
    Sysno::clone,
    Sysno::fork,
    Sysno::vfork,
    Sysno::execve,
    Sysno::exit,
    Sysno::setsid,
    Sysno::rt_sigsuspend,
    Sysno::vhangup,
    Sysno::sync,
    Sysno::set_tid_address,
    Sysno::exit_group,
    Sysno::execveat,
    Sysno::clone3,
    Sysno::uretprobe, // SIGILL outside a trampoline
    Sysno::uprobe,    // same
];

const M1: u64 = u64::MAX;
/// IPC key no one uses: get-without-create fails with ENOENT.
const IPC_KEY: u64 = 0x766d_6374;
/// A pid no process has (above pid_max).
const NO_PID: u64 = i32::MAX as u64;

/// The arguments for system call `nr`.
///
/// Calls that reboot, load code or swap get arguments their kernel checks reject after the capability
/// check (see `kernel.rs` for the code paths): `reboot` a wrong magic, `init_module` an empty image,
/// `finit_module`/`kexec_*` unknown flags (-1), `delete_module`/`swapoff`/`acct` a faulting name.
pub fn args(nr: Sysno) -> [u64; 6] {
    match nr {
        Sysno::mmap => [0, 0, 0, 0, M1, 0],
        Sysno::mremap => [0, 0, 0, 0, 0, 0],
        Sysno::alarm => [0; 6],
        Sysno::umask => [0o022, 0, 0, 0, 0, 0],
        Sysno::kill | Sysno::tkill => [NO_PID, 0, 0, 0, 0, 0],
        Sysno::tgkill => [NO_PID, NO_PID, 0, 0, 0, 0],
        Sysno::rt_sigqueueinfo => [NO_PID, 0, M1, 0, 0, 0],
        Sysno::rt_tgsigqueueinfo => [NO_PID, NO_PID, 0, M1, 0, 0],
        Sysno::pidfd_send_signal => [M1, 0, 0, 0, 0, 0],
        Sysno::futex => [M1, 1, 0, 0, 0, 0],
        Sysno::modify_ldt => [0, 0, 0, 0, 0, 0],
        Sysno::msgget => [IPC_KEY, 0, 0, 0, 0, 0],
        Sysno::semget => [IPC_KEY, 0, 0, 0, 0, 0],
        Sysno::shmget => [IPC_KEY, 0, 0, 0, 0, 0],
        // magic1 0 is wrong: EINVAL after CAP_SYS_BOOT, before any command.
        Sysno::reboot => [0, 0, 0xdead_beef, 0, 0, 0],
        // Length 0 is below an ELF header: ENOEXEC after CAP_SYS_MODULE.
        Sysno::init_module => [0, 0, 0, 0, 0, 0],
        _ => [M1; 6],
    }
}

/// Is `nr` skipped?
pub fn skipped(nr: Sysno) -> bool {
    SKIP.contains(&nr)
}

/// Did a call with this result reach the kernel's implementation (not EPERM/ENOSYS)?
pub fn reachable(ret: i64, errno: i32) -> bool {
    ret >= 0 || !(errno == libc::EPERM || errno == libc::ENOSYS)
}

/// Per-number state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unknown,
    Reachable,
    Blocked,
    Skipped,
}

/// Compress sorted numbers into `a-b,c` ranges.
pub fn ranges(v: &[i64]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    out.join(",")
}

/// The x86_64 table, in number order.
pub fn table() -> Vec<Sysno> {
    workloads::probe_ids::syscall_table::entries().collect()
}

/// Run the census over the x86_64 table.
pub fn run() -> Verdict {
    let table = table();
    let mut st: Vec<State> =
        table.iter().map(|nr| if skipped(*nr) { State::Skipped } else { State::Unknown }).collect();
    let mut killed = Vec::new();
    let mut start = 0usize;
    for _ in 0..64 {
        let (out, end) = sys::fork_stream(Duration::from_secs(5), |w| {
            for (i, nr) in table.iter().enumerate().skip(start) {
                if skipped(*nr) {
                    continue;
                }
                let a = args(*nr);
                // SAFETY: the arguments are chosen per call to fail harmlessly (see the module docs);
                // the call runs in a forked child that exits right after the census.
                let r = unsafe { libc::syscall(i64::from(nr.id()), a[0], a[1], a[2], a[3], a[4], a[5]) };
                let e = sys::errno();
                let _ = writeln!(w, "{i} {}", if reachable(r, e) { 'r' } else { 'b' });
            }
        });
        for l in out.lines() {
            if let Some((a, b)) = l.split_once(' ') {
                if let Some(s) = a.parse::<usize>().ok().and_then(|i| st.get_mut(i)) {
                    *s = if b == "r" { State::Reachable } else { State::Blocked };
                }
            }
        }
        let Some(first) = st.iter().position(|s| *s == State::Unknown) else { break };
        // The call at `first` killed or hung the child.
        match end {
            sys::End::TimedOut => st[first] = State::Reachable,
            _ => {
                st[first] = State::Blocked;
                killed.push(format!("{}:{end:?}", table[first].name()));
            }
        }
        start = first + 1;
    }
    let of =
        |want: State| -> Vec<Sysno> { table.iter().zip(&st).filter(|(_, s)| **s == want).map(|(n, _)| *n).collect() };
    let (reach, filtered, skip) = (of(State::Reachable), of(State::Blocked), of(State::Skipped));
    let count = |v: &[Sysno]| u32::try_from(v.len()).unwrap_or(u32::MAX);
    let counts = CensusCounts {
        table: count(&table),
        reachable: count(&reach),
        filtered: count(&filtered),
        skipped: count(&skip),
    };
    let names = |v: &[Sysno]| v.iter().map(|n| n.name()).collect::<Vec<_>>().join(",");
    let ids: Vec<i64> = reach.iter().map(|n| i64::from(n.id())).collect();
    let mut detail = format!(
        "{counts}; x86_64 table to {} ({}); filtered: {}; skipped: {}; reachable numbers: {}",
        Sysno::last().name(),
        Sysno::last().id(),
        names(&filtered),
        names(&skip),
        ranges(&ids)
    );
    if !killed.is_empty() {
        detail.push_str(&format!("; killed the census child: {}", killed.join(",")));
    }
    Verdict::reached(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn classification() {
        assert!(reachable(0, 0));
        assert!(reachable(-1, libc::EFAULT));
        assert!(!reachable(-1, libc::EPERM));
        assert!(!reachable(-1, libc::ENOSYS));
    }

    #[test]
    fn dangerous_calls_are_skipped_or_defused() {
        for nr in [Sysno::exit_group, Sysno::fork, Sysno::rt_sigreturn, Sysno::vhangup] {
            assert!(skipped(nr));
        }
        assert_eq!(args(Sysno::kill)[1], 0, "kill sends signal 0 only");
        assert_eq!(args(Sysno::msgget)[1], 0, "no IPC_CREAT");
        assert_ne!(args(Sysno::reboot)[0], 0xfee1_dead, "wrong reboot magic");
        assert_eq!(args(Sysno::init_module)[1], 0, "empty module image");
        assert_eq!(args(Sysno::finit_module)[2], u64::MAX, "unknown finit_module flags");
    }

    #[test]
    fn the_table_is_x86_64s_without_holes() {
        assert_eq!(Sysno::first().id(), 0);
        assert!(Sysno::last().id() >= 469, "table reaches Linux 6.17's file_setattr");
        assert!(Sysno::new(400).is_none(), "hole between 335 and 424 is not an entry");
        assert!(Sysno::count() < Sysno::table_size());
        assert_eq!(table().len(), Sysno::count());
        assert_eq!(table().last(), Some(&Sysno::last()));
    }

    #[test]
    fn census_runs_and_counts() {
        let v = run();
        let c = CensusCounts::parse(&v.detail).expect(&v.detail);
        assert!(c.reachable > 100, "{}", v.detail);
        assert_eq!(c.reachable + c.filtered + c.skipped, c.table, "{}", v.detail);
        assert_eq!(c.table as usize, Sysno::count());
        assert_eq!(CensusCounts::names(&v.detail, "filtered").count(), c.filtered as usize, "{}", v.detail);
        assert_eq!(CensusCounts::names(&v.detail, "skipped").count(), c.skipped as usize, "{}", v.detail);
    }
}

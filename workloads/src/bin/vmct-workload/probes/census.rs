//! Syscall census (like amicontained): which system call numbers reach the kernel, i.e. do not fail
//! with EPERM or ENOSYS. This is the host-kernel surface the instance touches.
//!
//! Each number is invoked with arguments chosen to fail harmlessly (by default every argument is -1:
//! a bad fd, a faulting pointer, an invalid flag word); calls where -1 could act are given explicit safe
//! arguments, and calls that end, fork, block or change global state whatever their arguments are
//! skipped. The calls run in a forked child; a call that kills it (a seccomp KILL action, SIGILL from
//! `uretprobe`) is recorded as blocked and the census goes on in a fresh child from the next number.
use super::{sys, Verdict};
use std::io::Write;
use std::time::Duration;

/// Probe id.
pub const ID: &str = "census.syscalls";

/// Highest x86_64 system call number probed (6.18 ends at 469 `file_setattr`).
pub const MAX_NR: i64 = 470;

/// Never invoked: they end, fork, exec, block, reboot, load code or change global state regardless
/// of their arguments.
const SKIP: &[i64] = &[
    libc::SYS_rt_sigreturn,
    libc::SYS_pause,
    libc::SYS_clone,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_execve,
    libc::SYS_exit,
    libc::SYS_setsid,
    libc::SYS_rt_sigsuspend,
    libc::SYS_vhangup,
    libc::SYS_sync,
    libc::SYS_acct,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_init_module,
    libc::SYS_delete_module,
    libc::SYS_set_tid_address,
    libc::SYS_exit_group,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_finit_module,
    libc::SYS_execveat,
    libc::SYS_clone3,
    335, // uretprobe: SIGILL outside a trampoline
    336, // uprobe: same
];

const M1: u64 = u64::MAX;
/// IPC key no one uses: get-without-create fails with ENOENT.
const IPC_KEY: u64 = 0x766d_6374;
/// A pid no process has (above pid_max).
const NO_PID: u64 = i32::MAX as u64;

/// The arguments for system call `nr`.
pub fn args(nr: i64) -> [u64; 6] {
    match nr {
        libc::SYS_mmap => [0, 0, 0, 0, M1, 0],
        libc::SYS_mremap => [0, 0, 0, 0, 0, 0],
        libc::SYS_alarm => [0; 6],
        libc::SYS_umask => [0o022, 0, 0, 0, 0, 0],
        libc::SYS_kill | libc::SYS_tkill => [NO_PID, 0, 0, 0, 0, 0],
        libc::SYS_tgkill => [NO_PID, NO_PID, 0, 0, 0, 0],
        libc::SYS_rt_sigqueueinfo => [NO_PID, 0, M1, 0, 0, 0],
        libc::SYS_rt_tgsigqueueinfo => [NO_PID, NO_PID, 0, M1, 0, 0],
        libc::SYS_pidfd_send_signal => [M1, 0, 0, 0, 0, 0],
        libc::SYS_futex => [M1, 1, 0, 0, 0, 0],
        libc::SYS_modify_ldt => [0, 0, 0, 0, 0, 0],
        libc::SYS_msgget => [IPC_KEY, 0, 0, 0, 0, 0],
        libc::SYS_semget => [IPC_KEY, 0, 0, 0, 0, 0],
        libc::SYS_shmget => [IPC_KEY, 0, 0, 0, 0, 0],
        _ => [M1; 6],
    }
}

/// Is `nr` skipped?
pub fn skipped(nr: i64) -> bool {
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

/// Run the census.
pub fn run() -> Verdict {
    let n = (MAX_NR + 1) as usize;
    let mut st: Vec<State> = (0..=MAX_NR).map(|nr| if skipped(nr) { State::Skipped } else { State::Unknown }).collect();
    let mut killed = Vec::new();
    let mut start = 0i64;
    for _ in 0..64 {
        let (out, end) = sys::fork_stream(Duration::from_secs(5), |w| {
            for nr in start..=MAX_NR {
                if skipped(nr) {
                    continue;
                }
                let a = args(nr);
                // SAFETY: the arguments are chosen per number to fail harmlessly (see the module docs);
                // the call runs in a forked child that exits right after the census.
                let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
                let e = sys::errno();
                let _ = writeln!(w, "{nr} {}", if reachable(r, e) { 'r' } else { 'b' });
            }
        });
        for l in out.lines() {
            if let Some((a, b)) = l.split_once(' ') {
                if let Ok(nr) = a.parse::<usize>() {
                    if nr < n {
                        st[nr] = if b == "r" { State::Reachable } else { State::Blocked };
                    }
                }
            }
        }
        let Some(first) = st.iter().position(|s| *s == State::Unknown) else { break };
        // The call at `first` killed or hung the child.
        match end {
            sys::End::TimedOut => st[first] = State::Reachable,
            _ => {
                st[first] = State::Blocked;
                killed.push(format!("{first}:{end:?}"));
            }
        }
        start = first as i64 + 1;
    }
    let reach: Vec<i64> = (0..=MAX_NR).filter(|&i| st[i as usize] == State::Reachable).collect();
    let tested = st.iter().filter(|s| **s != State::Skipped).count();
    let skipped: Vec<i64> = (0..=MAX_NR).filter(|&i| st[i as usize] == State::Skipped).collect();
    let mut detail = format!(
        "reachable={} of {tested} (numbers 0-{MAX_NR}, skipped {}: {}); reachable: {}",
        reach.len(),
        skipped.len(),
        ranges(&skipped),
        ranges(&reach)
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
        for nr in [libc::SYS_exit_group, libc::SYS_reboot, libc::SYS_fork, libc::SYS_rt_sigreturn] {
            assert!(skipped(nr));
        }
        assert_eq!(args(libc::SYS_kill)[1], 0, "kill sends signal 0 only");
        assert_eq!(args(libc::SYS_msgget)[1], 0, "no IPC_CREAT");
    }

    #[test]
    fn census_runs_and_counts() {
        let v = run();
        let n: usize = v.detail.split("reachable=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(n > 100, "{}", v.detail);
    }
}

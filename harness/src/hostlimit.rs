//! Host limits that can stop a density sweep before its memory budget (issue 18 item 2): which one a
//! failed launch hit, named with where it is set and its value, and the one the harness raises for
//! itself at start (`RLIMIT_NOFILE`, soft to hard).
//!
//! A launch that fails on a limit fails with an errno: `EMFILE` (the process's open files,
//! `RLIMIT_NOFILE`), `ENFILE` (the system's, `fs.file-max`), `EAGAIN` from fork/clone (a `pids.max` of
//! a cgroup the harness is in, `kernel.threads-max`, `kernel.pid_max`, `RLIMIT_NPROC`; `EAGAIN` from
//! mkdir of a cgroup v2 is its parents' `cgroup.max.descendants`), `ENOSPC` from clone with a new
//! namespace (`user.max_<type>_namespaces` in /proc/sys/user). The errno is read from the launch
//! error's text (`(os error N)` of `std::io::Error`, or the errno name nix and our runtimes print; the
//! errors reach the sweep as text across process boundaries), then [`identify`] reads each candidate
//! limit and its current use where the kernel sets them and names the one that is reached (within
//! [`MARGIN`]: the failed launch's own partial processes may have gone by the time it is read). An
//! errno with no limit at its value (a full disk's `ENOSPC`) identifies nothing, and the sweep records
//! the error as it was.
//!
//! Hand-written: no crate reads these kernel files; each is one number.
use nix::errno::Errno;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A limit counts as reached when its use is within this many of its value.
pub const MARGIN: u64 = 8;

/// Namespace types with a per-user count limit in /proc/sys/user (`max_<type>_namespaces`).
pub const NAMESPACE_TYPES: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// A host limit a launch hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLimit {
    /// The limit and where it is set, e.g. `pids.max of the parent cgroup /user.slice`.
    pub limit: String,
    /// Its value.
    pub value: u64,
}

/// The errnos named in an error text: `(os error N)` and the names `EAGAIN`, `EMFILE`, `ENFILE`,
/// `ENOSPC`, `ENOMEM`, or their strerror texts, in the order of the first occurrence of each.
pub fn errnos_in(text: &str) -> Vec<Errno> {
    let mut found: Vec<(usize, Errno)> = Vec::new();
    let mut add = |at: usize, e: Errno| {
        if !found.iter().any(|(_, f)| *f == e) {
            found.push((at, e));
        }
    };
    let mut rest = text;
    let mut base = 0;
    while let Some(i) = rest.find("(os error ") {
        let tail = &rest[i + 10..];
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<i32>() {
            add(base + i, Errno::from_raw(n));
        }
        base += i + 10;
        rest = tail;
    }
    let words = [
        ("EAGAIN", Errno::EAGAIN),
        ("EMFILE", Errno::EMFILE),
        ("ENFILE", Errno::ENFILE),
        ("ENOSPC", Errno::ENOSPC),
        ("ENOMEM", Errno::ENOMEM),
        ("Resource temporarily unavailable", Errno::EAGAIN),
        ("Too many open files in system", Errno::ENFILE),
        ("No space left on device", Errno::ENOSPC),
        ("Cannot allocate memory", Errno::ENOMEM),
    ];
    // strerror texts in any case (Go's runtimes, runc and runsc, print them in lower case); ASCII
    // lower-casing keeps byte offsets.
    let lower = text.to_ascii_lowercase();
    for (w, e) in words {
        let is_name = w.starts_with('E') && !w.contains(' ');
        let (hay, w) = if is_name { (text, w.to_string()) } else { (lower.as_str(), w.to_ascii_lowercase()) };
        let w = w.as_str();
        let mut from = 0;
        while let Some(i) = hay[from..].find(w).map(|i| i + from) {
            let before = text[..i].chars().next_back();
            let after = text[i + w.len()..].chars().next();
            let word_edge = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
            if !is_name || (word_edge(before) && word_edge(after)) {
                add(i, e);
                break;
            }
            from = i + w.len();
        }
    }
    // "Too many open files" alone is EMFILE; followed by " in system" it is ENFILE.
    let emfile = lower
        .match_indices("too many open files")
        .find(|(i, _)| !lower[*i..].starts_with("too many open files in system"));
    if let Some((i, _)) = emfile {
        add(i, Errno::EMFILE);
    }
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, e)| e).collect()
}

/// Where the kernel's files are: `/` on a host, a directory with the same layout in tests.
#[derive(Debug, Clone)]
pub struct HostView {
    /// Root holding `proc/` and `sys/fs/cgroup/`.
    pub root: PathBuf,
    /// The harness's `RLIMIT_NOFILE` soft limit.
    pub nofile_soft: u64,
    /// The harness's `RLIMIT_NPROC` soft limit (None: unlimited).
    pub nproc_soft: Option<u64>,
}

impl HostView {
    /// This host, as the harness sees it now.
    pub fn host() -> HostView {
        use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
        let soft = |r| getrlimit(r).map_or(RLIM_INFINITY, |(s, _)| s);
        let nproc = soft(Resource::RLIMIT_NPROC);
        HostView {
            root: PathBuf::from("/"),
            nofile_soft: soft(Resource::RLIMIT_NOFILE),
            nproc_soft: (nproc != RLIM_INFINITY).then_some(nproc),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn read_u64(&self, p: &Path) -> Option<u64> {
        std::fs::read_to_string(p).ok()?.split_whitespace().next()?.parse().ok()
    }

    /// Threads on the host (`/proc/loadavg`'s 4th field, after the `/`).
    fn threads(&self) -> Option<u64> {
        let s = std::fs::read_to_string(self.path("proc/loadavg")).ok()?;
        s.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
    }

    /// The cgroup directories of the harness for `controller` (v1 `N:pids:/p`, or v2 `0::/p` when
    /// `controller` is empty), from its own up to the hierarchy's root, as (directory, path shown).
    fn own_cgroups(&self, controller: &str) -> Vec<(PathBuf, String)> {
        let Ok(text) = std::fs::read_to_string(self.path("proc/self/cgroup")) else { return Vec::new() };
        let line = text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, p) = (f.next()?, f.next()?, f.next()?);
            let hit = if controller.is_empty() { ctl.is_empty() } else { ctl.split(',').any(|c| c == controller) };
            hit.then(|| p.to_string())
        });
        let Some(mut p) = line else { return Vec::new() };
        // The v2 hierarchy sits at /sys/fs/cgroup, or at /sys/fs/cgroup/unified on a hybrid host.
        let unified = self.path("sys/fs/cgroup/unified");
        let base = if controller.is_empty() && unified.is_dir() {
            unified
        } else if controller.is_empty() {
            self.path("sys/fs/cgroup")
        } else {
            self.path("sys/fs/cgroup").join(controller)
        };
        let mut out = Vec::new();
        loop {
            out.push((base.join(p.trim_start_matches('/')), p.clone()));
            match p.rsplit_once('/') {
                Some((parent, _)) if !p.trim_end_matches('/').is_empty() && p != "/" => {
                    p = if parent.is_empty() { "/".into() } else { parent.into() }
                }
                _ => break,
            }
        }
        out
    }

    /// A `pids.max` of a cgroup the harness is in (v1 pids controller or v2) whose `pids.current` is
    /// at it.
    fn pids_max(&self) -> Option<HostLimit> {
        ["pids", ""].iter().flat_map(|c| self.own_cgroups(c)).find_map(|(dir, shown)| {
            let max = self.read_u64(&dir.join("pids.max"))?;
            let cur = self.read_u64(&dir.join("pids.current"))?;
            (cur + MARGIN >= max)
                .then(|| HostLimit { limit: format!("pids.max of the parent cgroup {shown}"), value: max })
        })
    }

    /// A `cgroup.max.descendants` (v2) of a cgroup the harness is in whose `nr_descendants` is at it.
    fn cgroup_descendants(&self) -> Option<HostLimit> {
        self.own_cgroups("").into_iter().find_map(|(dir, shown)| {
            let max = self.read_u64(&dir.join("cgroup.max.descendants"))?;
            let stat = std::fs::read_to_string(dir.join("cgroup.stat")).ok()?;
            let cur: u64 = stat.lines().find_map(|l| l.strip_prefix("nr_descendants ")?.trim().parse().ok())?;
            (cur + MARGIN >= max)
                .then(|| HostLimit { limit: format!("cgroup.max.descendants of the cgroup {shown}"), value: max })
        })
    }

    /// The per-process, per-user and system-wide process and thread limits, when reached.
    fn task_limits(&self) -> Option<HostLimit> {
        let threads = self.threads()?;
        let at = |max: u64| threads + MARGIN >= max;
        for (name, file) in
            [("kernel.threads-max", "proc/sys/kernel/threads-max"), ("kernel.pid_max", "proc/sys/kernel/pid_max")]
        {
            if let Some(max) = self.read_u64(&self.path(file)).filter(|m| at(*m)) {
                return Some(HostLimit { limit: name.into(), value: max });
            }
        }
        // RLIMIT_NPROC counts the user's threads; the host's total bounds it from above.
        self.nproc_soft
            .filter(|m| at(*m))
            .map(|m| HostLimit { limit: "RLIMIT_NPROC (processes of the harness's user)".into(), value: m })
    }

    /// A `user.max_<type>_namespaces` whose count of live namespaces of that type (distinct
    /// `/proc/*/ns/<type>` links) is at it.
    fn namespaces(&self) -> Option<HostLimit> {
        let procs: Vec<PathBuf> = std::fs::read_dir(self.path("proc"))
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
            .map(|e| e.path())
            .collect();
        NAMESPACE_TYPES.iter().find_map(|t| {
            let max = self.read_u64(&self.path(&format!("proc/sys/user/max_{t}_namespaces")))?;
            let live: HashSet<PathBuf> =
                procs.iter().filter_map(|p| std::fs::read_link(p.join("ns").join(t)).ok()).collect();
            (live.len() as u64 + MARGIN >= max)
                .then(|| HostLimit { limit: format!("user.max_{t}_namespaces"), value: max })
        })
    }

    /// Open files of the whole system (`fs.file-nr`'s first field) against `fs.file-max`.
    fn file_max(&self) -> Option<HostLimit> {
        let max = self.read_u64(&self.path("proc/sys/fs/file-max"))?;
        let used = self.read_u64(&self.path("proc/sys/fs/file-nr"))?;
        (used + MARGIN >= max).then(|| HostLimit { limit: "fs.file-max".into(), value: max })
    }

    /// Which host limit the errno `e` of a failed launch came from, if one is at its value.
    pub fn identify_errno(&self, e: Errno) -> Option<HostLimit> {
        match e {
            Errno::EMFILE => {
                Some(HostLimit { limit: "RLIMIT_NOFILE (open files of the harness)".into(), value: self.nofile_soft })
            }
            Errno::ENFILE => self.file_max(),
            Errno::EAGAIN => self.pids_max().or_else(|| self.cgroup_descendants()).or_else(|| self.task_limits()),
            // alloc_pid fails with ENOMEM when a pid namespace has no pid left.
            Errno::ENOMEM => self.task_limits(),
            Errno::ENOSPC => self.namespaces().or_else(|| self.cgroup_descendants()),
            _ => None,
        }
    }
}

/// The host limit behind a failed launch's error text, if any (see the module docs).
pub fn identify(error: &str, view: &HostView) -> Option<HostLimit> {
    errnos_in(error).into_iter().find_map(|e| view.identify_errno(e))
}

/// Raise the harness's `RLIMIT_NOFILE` once per process (vmct's `main` does it first; later calls only
/// return what that first one did): the soft limit to the hard one, which a process may do without
/// privilege, and, when the harness has `CAP_SYS_RESOURCE` in its effective set (root on an ordinary
/// host), both to `fs.nr_open` (the kernel's ceiling for this limit). Returns what it did, in words
/// for run.json's caveats ([`nofile_step`]).
pub fn raise_nofile() -> &'static str {
    static DONE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DONE.get_or_init(raise_nofile_now)
}

/// What to do about `RLIMIT_NOFILE` ([`nofile_step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NofileStep {
    /// Nothing can be raised; the caveat says what the limit is and why it stays.
    Keep {
        /// For run.json.
        caveat: String,
    },
    /// Set the limit to these values; the caveat says what was done (when `setrlimit` succeeds).
    Raise {
        /// New soft limit.
        soft: u64,
        /// New hard limit (the current one unless the harness may raise it).
        hard: u64,
        /// For run.json.
        caveat: String,
    },
}

/// The decision of [`raise_nofile`], from the current `soft` and `hard` limits, `fs.nr_open` (None:
/// unreadable) and whether the harness has `CAP_SYS_RESOURCE` (needed to raise the hard limit,
/// setrlimit(2)). The soft limit goes to the hard one capped at `fs.nr_open`; with the capability both
/// go to `fs.nr_open` (never lowered).
pub fn nofile_step(soft: u64, hard: u64, nr_open: Option<u64>, has_cap: bool) -> NofileStep {
    let new_hard = match nr_open {
        Some(n) if has_cap => hard.max(n),
        _ => hard,
    };
    let new_soft = nr_open.map_or(new_hard, |n| new_hard.min(n)).max(soft);
    let stays = if has_cap {
        "the harness has CAP_SYS_RESOURCE, and fs.nr_open is the kernel's ceiling".to_string()
    } else {
        "raising the hard limit needs CAP_SYS_RESOURCE (in the host's user namespace), which the harness does not have"
            .to_string()
    };
    if new_soft == soft && new_hard == hard {
        return NofileStep::Keep {
            caveat: format!(
                "RLIMIT_NOFILE of the harness is {soft} (soft = hard {hard}): a density sweep whose instances need \
                 more open files stops there (\"host limit: RLIMIT_NOFILE ...\"); {stays}"
            ),
        };
    }
    let how = if new_hard > hard {
        format!("soft and hard, from hard {hard}, to fs.nr_open with CAP_SYS_RESOURCE")
    } else if has_cap || nr_open.is_none_or(|n| hard >= n) {
        "soft to hard".to_string()
    } else {
        format!("soft to hard; the hard limit stays below fs.nr_open {}: {stays}", nr_open.unwrap_or(hard))
    };
    NofileStep::Raise {
        soft: new_soft,
        hard: new_hard,
        caveat: format!(
            "RLIMIT_NOFILE of the harness was raised from {soft} to {new_soft} ({how}) for the density sweep; \
             instances inherit it"
        ),
    }
}

fn raise_nofile_now() -> String {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return "RLIMIT_NOFILE could not be read: the harness's open-file limit is unknown".into();
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok());
    let has_cap = caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_RESOURCE).unwrap_or(false);
    // The capability of a user namespace other than the host's does not count for the hard limit
    // (EPERM): then as without it.
    let mut last = String::new();
    for cap in if has_cap { &[true, false][..] } else { &[false][..] } {
        match nofile_step(soft, hard, nr_open, *cap) {
            NofileStep::Keep { caveat } => return caveat,
            NofileStep::Raise { soft: s, hard: h, caveat } => match setrlimit(Resource::RLIMIT_NOFILE, s, h) {
                Ok(()) => return caveat,
                Err(e) => {
                    last =
                        format!("RLIMIT_NOFILE of the harness could not be raised from {soft} to {s} (hard {h}): {e}")
                }
            },
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_goes_to_fs_nr_open_with_cap_sys_resource_and_to_the_hard_limit_without() {
        const NR_OPEN: u64 = 1 << 20;
        // Root on an ordinary host: both limits to fs.nr_open.
        let NofileStep::Raise { soft, hard, caveat } = nofile_step(1024, 4096, Some(NR_OPEN), true) else {
            panic!("nothing raised with CAP_SYS_RESOURCE")
        };
        assert_eq!((soft, hard), (NR_OPEN, NR_OPEN));
        assert!(caveat.contains("raised from 1024 to 1048576") && caveat.contains("CAP_SYS_RESOURCE"), "{caveat}");
        // With soft = hard below fs.nr_open, too.
        let r = nofile_step(20000, 20000, Some(NR_OPEN), true);
        assert!(matches!(r, NofileStep::Raise { soft: NR_OPEN, hard: NR_OPEN, .. }), "{r:?}");
        // Without the capability (this sandbox): soft to hard, and the caveat says why not further.
        let NofileStep::Raise { soft, hard, caveat } = nofile_step(1024, 4096, Some(NR_OPEN), false) else {
            panic!("the soft limit was not raised")
        };
        assert_eq!((soft, hard), (4096, 4096));
        assert!(caveat.contains("raised from 1024 to 4096") && caveat.contains("needs CAP_SYS_RESOURCE"), "{caveat}");
        let NofileStep::Keep { caveat } = nofile_step(100, 100, Some(NR_OPEN), false) else { panic!("raised") };
        assert!(caveat.contains("RLIMIT_NOFILE of the harness is 100") && caveat.contains("does not have"), "{caveat}");
        // At the ceiling already, or fs.nr_open unknown: only the soft limit can move.
        assert!(matches!(nofile_step(NR_OPEN, NR_OPEN, Some(NR_OPEN), true), NofileStep::Keep { .. }));
        let r = nofile_step(1024, 4096, None, true);
        assert!(matches!(r, NofileStep::Raise { soft: 4096, hard: 4096, .. }), "{r:?}");
        // A hard limit above fs.nr_open (set before fs.nr_open was lowered) is never lowered; the soft one
        // goes only to fs.nr_open.
        let r = nofile_step(1024, 2 * NR_OPEN, Some(NR_OPEN), true);
        assert!(matches!(r, NofileStep::Raise { soft: NR_OPEN, hard, .. } if hard == 2 * NR_OPEN), "{r:?}");
    }

    #[test]
    fn errnos_are_read_from_io_errors_errno_names_and_strerror_texts() {
        let e = "process: launch failed: spawning vmct-workload: Resource temporarily unavailable (os error 11)";
        assert_eq!(errnos_in(e), vec![Errno::EAGAIN]);
        assert_eq!(errnos_in("clone: EAGAIN: Try again"), vec![Errno::EAGAIN]);
        assert_eq!(errnos_in("pipe: Too many open files (os error 24)"), vec![Errno::EMFILE]);
        assert_eq!(errnos_in("open: Too many open files in system"), vec![Errno::ENFILE]);
        assert_eq!(errnos_in("unshare: ENOSPC then ENOMEM"), vec![Errno::ENOSPC, Errno::ENOMEM]);
        assert_eq!(errnos_in("XEAGAINS is not a name; ENOENT is not ours"), vec![]);
        assert_eq!(errnos_in("timed out"), vec![]);
        let go = "runc: exited before it reported ready: fork/exec /proc/self/exe: resource temporarily unavailable";
        assert_eq!(errnos_in(go), vec![Errno::EAGAIN]);
        assert_eq!(errnos_in("runsc: open: too many open files"), vec![Errno::EMFILE]);
    }

    fn write(root: &Path, p: &str, text: &str) {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }

    fn view(root: &Path) -> HostView {
        write(root, "proc/loadavg", "0.10 0.20 0.30 1/300 12345\n");
        write(root, "proc/sys/kernel/threads-max", "190000\n");
        write(root, "proc/sys/kernel/pid_max", "4194304\n");
        write(root, "proc/self/cgroup", "5:pids:/a/b\n4:memory:/a\n0::/u\n");
        write(root, "sys/fs/cgroup/pids/a/b/pids.max", "max\n");
        write(root, "sys/fs/cgroup/pids/a/b/pids.current", "50\n");
        write(root, "sys/fs/cgroup/pids/a/pids.max", "60\n");
        write(root, "sys/fs/cgroup/pids/a/pids.current", "55\n");
        HostView { root: root.to_path_buf(), nofile_soft: 1024, nproc_soft: None }
    }

    #[test]
    fn eagain_names_the_pids_max_of_the_parent_cgroup_at_its_value() {
        let d = tempfile::tempdir().unwrap();
        let v = view(d.path());
        let e = "x: launch failed: fork: Resource temporarily unavailable (os error 11)";
        assert_eq!(identify(e, &v), Some(HostLimit { limit: "pids.max of the parent cgroup /a".into(), value: 60 }));
        // Far from the limit: not named (the error stays an error).
        write(d.path(), "sys/fs/cgroup/pids/a/pids.current", "20\n");
        assert_eq!(identify(e, &v), None);
        // The host's thread limit instead.
        write(d.path(), "proc/sys/kernel/threads-max", "305\n");
        assert_eq!(identify(e, &v), Some(HostLimit { limit: "kernel.threads-max".into(), value: 305 }));
    }

    #[test]
    fn emfile_names_the_open_file_limit_and_enospc_a_namespace_count() {
        let d = tempfile::tempdir().unwrap();
        let v = view(d.path());
        let l = identify("pipe2: EMFILE", &v).unwrap();
        assert_eq!((l.limit.as_str(), l.value), ("RLIMIT_NOFILE (open files of the harness)", 1024));
        // Ten processes, each in its own net namespace; the limit is 12.
        for p in 1..=10 {
            let ns = d.path().join(format!("proc/{p}/ns"));
            std::fs::create_dir_all(&ns).unwrap();
            std::os::unix::fs::symlink(format!("net:[40265{p}]"), ns.join("net")).unwrap();
            std::os::unix::fs::symlink("mnt:[1]", ns.join("mnt")).unwrap();
        }
        write(d.path(), "proc/sys/user/max_mnt_namespaces", "100\n");
        write(d.path(), "proc/sys/user/max_net_namespaces", "12\n");
        let l = identify("clone: No space left on device (os error 28)", &v).unwrap();
        assert_eq!((l.limit.as_str(), l.value), ("user.max_net_namespaces", 12));
        write(d.path(), "proc/sys/user/max_net_namespaces", "1000\n");
        assert_eq!(identify("write: No space left on device (os error 28)", &v), None, "a full disk is no host limit");
    }
}

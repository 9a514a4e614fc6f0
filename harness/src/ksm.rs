//! The kernel's same-page merging (KSM, Documentation/admin-guide/mm/ksm.rst) switched on for a
//! measurement and put back afterwards.
//!
//! [`KsmGuard::enable`] refuses when KSM already runs (`run` is not 0: another user relies on it), records
//! the previous `run`, `pages_to_scan` and `sleep_millisecs` in a journal under
//! [`crate::isolation::journal::DIR`] (so `vmct gc` puts them back after a SIGKILL), then writes ours.
//! Dropping the guard (success, error, Ctrl-C unwinding, panic) puts the previous values back, unless
//! someone changed them meanwhile: then it leaves them as found and says so ([`KsmGuard::restore`]).
//! Counters come from `pages_sharing`, `pages_shared` and `full_scans`; the CPU ksmd spends from its
//! /proc/PID/stat.
use crate::isolation::journal::{self, Journal, JournalGuard, SavedValue};
use std::path::{Path, PathBuf};

/// Where the kernel exposes KSM.
pub const SYSFS: &str = "/sys/kernel/mm/ksm";

/// The tunables the guard writes and restores, in restore order (`run` first stops ksmd).
pub const TUNABLES: [&str; 3] = ["run", "pages_to_scan", "sleep_millisecs"];

/// Errors switching KSM on.
#[derive(Debug, thiserror::Error)]
pub enum KsmError {
    /// The kernel has no KSM (CONFIG_KSM off) or its files cannot be read.
    #[error("KSM is not available here: cannot read {path}: {source}")]
    Unavailable {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// KSM already runs: another user relies on its settings, which vmct will not change.
    #[error("KSM already runs here ({path} is {value}): another user relies on it, so vmct leaves it alone")]
    InUse {
        /// The `run` file.
        path: PathBuf,
        /// Its value.
        value: String,
    },
    /// Writing a tunable or the journal failed (the tunables written so far are put back).
    #[error("cannot set KSM: {what}: {source}")]
    Write {
        /// What was written.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Values of [`TUNABLES`], as the files hold them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunables(pub [String; 3]);

impl Tunables {
    /// Read them from `dir`.
    pub fn read(dir: &Path) -> Result<Tunables, KsmError> {
        let mut v: [String; 3] = Default::default();
        for (i, name) in TUNABLES.iter().enumerate() {
            let path = dir.join(name);
            v[i] = std::fs::read_to_string(&path)
                .map_err(|source| KsmError::Unavailable { path, source })?
                .trim()
                .to_string();
        }
        Ok(Tunables(v))
    }
}

/// KSM switched on by this process; dropping it puts the previous tunables back.
#[derive(Debug)]
pub struct KsmGuard {
    dir: PathBuf,
    previous: Tunables,
    ours: Tunables,
    journal: Option<JournalGuard>,
    restored: bool,
}

/// How [`KsmGuard::restore`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The previous values are back.
    Yes,
    /// Someone changed the tunables while vmct ran: left as found (the values found).
    ChangedMeanwhile(Tunables),
    /// Writing failed (the error).
    Failed(String),
}

impl KsmGuard {
    /// Switch KSM on in `dir` (normally [`SYSFS`]) with `pages_to_scan` and `sleep_millisecs`, journaling
    /// the previous values in `journal_dir` (normally [`journal::DIR`]).
    pub fn enable(
        dir: &Path,
        journal_dir: &Path,
        pages_to_scan: u32,
        sleep_millisecs: u32,
    ) -> Result<KsmGuard, KsmError> {
        let previous = Tunables::read(dir)?;
        if previous.0[0] != "0" {
            return Err(KsmError::InUse { path: dir.join("run"), value: previous.0[0].clone() });
        }
        let values = TUNABLES
            .iter()
            .zip(&previous.0)
            .map(|(n, v)| SavedValue { what: format!("ksm {n}"), path: dir.join(n), original: v.clone() })
            .collect();
        let j = Journal { owner_pid: std::process::id(), canary_dir: PathBuf::new(), values };
        let journal = journal::write_tagged_in(journal_dir, "ksm", &j)
            .map_err(|source| KsmError::Write { what: format!("journal in {}", journal_dir.display()), source })?;
        let ours = Tunables(["1".into(), pages_to_scan.to_string(), sleep_millisecs.to_string()]);
        let g =
            KsmGuard { dir: dir.to_path_buf(), previous, ours: ours.clone(), journal: Some(journal), restored: false };
        // Tunables first, `run` last: ksmd starts with our scan rate.
        for i in [1, 2, 0] {
            let path = dir.join(TUNABLES[i]);
            if let Err(source) = std::fs::write(&path, format!("{}\n", ours.0[i])) {
                return Err(KsmError::Write { what: path.display().to_string(), source });
            }
        }
        Ok(g)
    }

    /// The values before [`KsmGuard::enable`].
    pub fn previous(&self) -> &Tunables {
        &self.previous
    }

    /// Put the previous values back now (Drop does it otherwise), unless they were changed meanwhile.
    pub fn restore(&mut self) -> Restored {
        if self.restored {
            return Restored::Yes;
        }
        self.restored = true;
        let now = match Tunables::read(&self.dir) {
            Ok(t) => t,
            Err(e) => return Restored::Failed(e.to_string()),
        };
        // A tunable we had not written yet (enable failed half-way) still holds its previous value.
        let ours_or_previous = now.0.iter().enumerate().all(|(i, v)| *v == self.ours.0[i] || *v == self.previous.0[i]);
        if !ours_or_previous {
            self.journal = None;
            return Restored::ChangedMeanwhile(now);
        }
        for (i, name) in TUNABLES.iter().enumerate() {
            let path = self.dir.join(name);
            if let Err(e) = std::fs::write(&path, format!("{}\n", self.previous.0[i])) {
                // Keep the journal: `vmct gc` tries again.
                if let Some(j) = self.journal.take() {
                    std::mem::forget(j);
                }
                return Restored::Failed(format!("{}: {e}", path.display()));
            }
        }
        self.journal = None;
        Restored::Yes
    }
}

impl Drop for KsmGuard {
    fn drop(&mut self) {
        match self.restore() {
            Restored::Yes => {}
            Restored::ChangedMeanwhile(t) => eprintln!(
                "vmct: KSM settings in {} were changed by another user while vmct ran ({:?}); left as found",
                self.dir.display(),
                t.0
            ),
            Restored::Failed(e) => eprintln!("vmct: cannot put KSM settings back ({e}); `vmct gc` will retry"),
        }
    }
}

/// KSM's counters (Documentation/admin-guide/mm/ksm.rst).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `pages_sharing`: how many more sites share a merged page (the pages saved).
    pub pages_sharing: u64,
    /// `pages_shared`: merged pages in use.
    pub pages_shared: u64,
    /// `full_scans`: full scans of the mergeable areas.
    pub full_scans: u64,
}

impl Counters {
    /// Read them from `dir`; a missing counter reads 0.
    pub fn read(dir: &Path) -> Counters {
        let n =
            |f: &str| std::fs::read_to_string(dir.join(f)).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
        Counters { pages_sharing: n("pages_sharing"), pages_shared: n("pages_shared"), full_scans: n("full_scans") }
    }
}

/// CPU time (user + system) the kernel thread `ksmd` has used, seconds; None when it is not found.
pub fn ksmd_cpu_s() -> Option<f64> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "ksmd") {
            return std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_cpu_s(&s));
        }
    }
    None
}

/// utime + stime of a /proc/PID/stat line, seconds (fields 14 and 15, after the `(comm)`).
pub fn stat_cpu_s(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((utime + stime) as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

/// Bytes of a process's resident memory in mappings KSM may merge (`mg` in VmFlags of /proc/PID/smaps:
/// MADV_MERGEABLE, or every mapping after PR_SET_MEMORY_MERGE) and its whole resident memory; None when
/// the process is gone.
pub fn mergeable_rss(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(mergeable_in(&text))
}

/// [`mergeable_rss`] of an smaps text.
pub fn mergeable_in(smaps: &str) -> (u64, u64) {
    let (mut mergeable, mut total, mut rss) = (0u64, 0u64, 0u64);
    for line in smaps.lines() {
        if let Some(v) = line.strip_prefix("Rss:") {
            rss = v.split_whitespace().next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0) * 1024;
            total += rss;
        } else if let Some(flags) = line.strip_prefix("VmFlags:") {
            if flags.split_whitespace().any(|f| f == "mg") {
                mergeable += rss;
            }
        }
    }
    (mergeable, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sysfs(run: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, v) in TUNABLES.iter().zip([run, "100", "20"]) {
            std::fs::write(d.path().join(n), format!("{v}\n")).unwrap();
        }
        d
    }

    fn values(d: &Path) -> Vec<String> {
        Tunables::read(d).unwrap().0.to_vec()
    }

    #[test]
    fn the_guard_sets_ours_and_puts_the_previous_values_back_on_drop_and_on_panic() {
        let (sys, jd) = (fake_sysfs("0"), tempfile::tempdir().unwrap());
        let g = KsmGuard::enable(sys.path(), jd.path(), 1000, 10).unwrap();
        assert_eq!(values(sys.path()), ["1", "1000", "10"]);
        assert_eq!(std::fs::read_dir(jd.path()).unwrap().count(), 1, "journaled");
        drop(g);
        assert_eq!(values(sys.path()), ["0", "100", "20"]);
        assert_eq!(std::fs::read_dir(jd.path()).unwrap().count(), 0, "journal removed");

        let r = std::panic::catch_unwind(|| {
            let _g = KsmGuard::enable(sys.path(), jd.path(), 500, 5).unwrap();
            panic!("an experiment panicked");
        });
        assert!(r.is_err());
        assert_eq!(values(sys.path()), ["0", "100", "20"], "restored while unwinding");
        assert_eq!(std::fs::read_dir(jd.path()).unwrap().count(), 0);
    }

    #[test]
    fn ksm_in_use_is_refused_and_a_change_by_someone_else_is_left_as_found() {
        let (sys, jd) = (fake_sysfs("1"), tempfile::tempdir().unwrap());
        let e = KsmGuard::enable(sys.path(), jd.path(), 1000, 10).unwrap_err();
        assert!(matches!(e, KsmError::InUse { ref value, .. } if value == "1"), "{e}");
        assert_eq!(values(sys.path()), ["1", "100", "20"], "untouched");

        let sys = fake_sysfs("0");
        let mut g = KsmGuard::enable(sys.path(), jd.path(), 1000, 10).unwrap();
        std::fs::write(sys.path().join("pages_to_scan"), "4242\n").unwrap();
        assert!(matches!(g.restore(), Restored::ChangedMeanwhile(_)));
        assert_eq!(values(sys.path()), ["1", "4242", "10"], "left as found");
        drop(g);
        assert_eq!(values(sys.path()), ["1", "4242", "10"]);
    }

    /// After a SIGKILL (no Drop), `vmct gc`'s journal recovery puts the values back.
    #[test]
    fn a_killed_runs_ksm_settings_are_recovered_from_its_journal() {
        let (sys, jd) = (fake_sysfs("0"), tempfile::tempdir().unwrap());
        let g = KsmGuard::enable(sys.path(), jd.path(), 1000, 10).unwrap();
        // As after SIGKILL: no Drop; recovery runs for a dead owner only, so rename the journal to one.
        let j = std::fs::read_dir(jd.path()).unwrap().next().unwrap().unwrap().path();
        let text = std::fs::read_to_string(&j).unwrap();
        let dead = 4_194_305; // above the kernel's largest pid_max (2^22)
        let text = text.replace(&format!("\"owner_pid\": {}", std::process::id()), &format!("\"owner_pid\": {dead}"));
        std::fs::write(jd.path().join(format!("host-values-{dead}-ksm.json")), text).unwrap();
        std::fs::remove_file(&j).unwrap();
        std::mem::forget(g);
        let r = journal::recover_in(jd.path(), false);
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(values(sys.path()), ["0", "100", "20"]);
        assert_eq!(std::fs::read_dir(jd.path()).unwrap().count(), 0);
    }

    #[test]
    fn counters_stat_and_smaps_flags_parse() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pages_sharing"), "12\n").unwrap();
        std::fs::write(d.path().join("full_scans"), "3\n").unwrap();
        assert_eq!(Counters::read(d.path()), Counters { pages_sharing: 12, pages_shared: 0, full_scans: 3 });
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let stat = "55 (ks md) S 2 0 0 0 -1 2129984 0 0 0 0 150 50 0 0 25 5 1 0 100 0 0";
        assert!((stat_cpu_s(stat).unwrap() - 200.0 / hz).abs() < 1e-9);
        let smaps = "1000-2000 rw-p 0 00:00 0\nRss: 8 kB\nVmFlags: rd wr mr mw me ac mg\n\
                     3000-4000 rw-s 0 00:01 5 /memfd:guest (deleted)\nRss: 100 kB\nVmFlags: rd wr sh mr mw me ms\n";
        assert_eq!(mergeable_in(smaps), (8 * 1024, 108 * 1024));
        assert!(mergeable_rss(std::process::id()).is_some());
    }
}

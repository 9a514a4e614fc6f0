//! A journal of the host values an isolation run may see changed (hostname, domainname, a sysctl) and of
//! its canary directory, so that `vmct gc` can put them back after the run was killed with SIGKILL (every
//! other ending restores them through `Drop`). One JSON file per run under [`DIR`] (a tmpfs: host values
//! and the journal both reset at reboot), written when the canaries are planted and removed after they
//! were restored.
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where journals live.
pub const DIR: &str = "/run/vmct";

/// One host value as it was before the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedValue {
    /// What it is (`hostname`, `domainname`, `sysctl`).
    pub what: String,
    /// Its `/proc/sys` path.
    pub path: PathBuf,
    /// The value before the run.
    pub original: String,
}

/// A run's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The vmct process that planted the canaries.
    pub owner_pid: u32,
    /// Its canary directory (removed on recovery).
    pub canary_dir: PathBuf,
    /// Host values to restore.
    pub values: Vec<SavedValue>,
}

/// Removes the journal file when dropped (after the values were restored).
#[derive(Debug)]
pub struct JournalGuard(PathBuf);

impl Drop for JournalGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Write `j` into `dir` (`host-values-<owner pid>.json`, atomically).
pub fn write_in(dir: &Path, j: &Journal) -> std::io::Result<JournalGuard> {
    write_tagged_in(dir, "", j)
}

/// [`write_in`] for another part of the run that changes host values (`host-values-<owner pid>-<tag>.json`;
/// `tag` empty: the isolation run's own name), so two journals of one run do not overwrite each other.
/// `vmct gc` recovers every journal the same way.
pub fn write_tagged_in(dir: &Path, tag: &str, j: &Journal) -> std::io::Result<JournalGuard> {
    std::fs::create_dir_all(dir)?;
    let tag = if tag.is_empty() { String::new() } else { format!("-{tag}") };
    let path = dir.join(format!("host-values-{}{tag}.json", j.owner_pid));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(j).expect("serializable"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(JournalGuard(path))
}

/// What recovery did, as `vmct gc` lines.
#[derive(Debug, Default, PartialEq)]
pub struct Recovery {
    /// Values restored, directories and journals removed.
    pub removed: Vec<String>,
    /// Journals of runs still alive.
    pub kept: Vec<String>,
    /// What could not be done.
    pub errors: Vec<String>,
}

/// Restore the values of every journal in `dir` whose owner is dead (unless `dry_run`, which only lists).
pub fn recover_in(dir: &Path, dry_run: bool) -> Recovery {
    let mut r = Recovery::default();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("host-values-") || !name.ends_with(".json") {
            continue;
        }
        let j: Journal = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(j) => j,
            Err(e) => {
                r.errors.push(format!("journal {}: {e}", path.display()));
                continue;
            }
        };
        if j.owner_pid != std::process::id() && Path::new(&format!("/proc/{}", j.owner_pid)).exists() {
            r.kept.push(format!("host-value journal of running vmct {}", j.owner_pid));
            continue;
        }
        for v in &j.values {
            let now = std::fs::read_to_string(&v.path).map(|s| s.trim_end_matches('\n').to_string());
            if now.as_deref().ok() == Some(v.original.as_str()) {
                continue;
            }
            let line = format!(
                "{} {} restored to '{}' (was '{}')",
                v.what,
                v.path.display(),
                v.original,
                now.unwrap_or_default()
            );
            if dry_run {
                r.removed.push(line);
            } else if let Err(e) = std::fs::write(&v.path, format!("{}\n", v.original)) {
                r.errors.push(format!("{}: cannot restore: {e}", v.path.display()));
            } else {
                r.removed.push(line);
            }
        }
        // A dry run lists the same lines the real run prints.
        let canary = format!("canary directory {}", j.canary_dir.display());
        if j.canary_dir.exists() {
            if dry_run || std::fs::remove_dir_all(&j.canary_dir).is_ok() {
                r.removed.push(canary);
            } else {
                r.errors.push(format!("{canary}: cannot remove"));
            }
        }
        let journal = format!("journal {} of dead vmct {}", path.display(), j.owner_pid);
        match if dry_run { Ok(()) } else { std::fs::remove_file(&path) } {
            Ok(()) => r.removed.push(journal),
            Err(e) => r.errors.push(format!("{journal}: {e}")),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_runs_values_are_restored_and_its_files_removed() {
        let t = tempfile::tempdir().unwrap();
        let value = t.path().join("hostname");
        std::fs::write(&value, "changed-by-a-probe\n").unwrap();
        let canary_dir = t.path().join("vmct-canary-x");
        std::fs::create_dir(&canary_dir).unwrap();
        // A pid that is not running: the kernel's pid_max is below 2^22 + 1.
        let dead = 4_194_305;
        let j = Journal {
            owner_pid: dead,
            canary_dir: canary_dir.clone(),
            values: vec![SavedValue { what: "hostname".into(), path: value.clone(), original: "host-a".into() }],
        };
        let guard = write_in(t.path(), &j).unwrap();
        std::mem::forget(guard); // as after SIGKILL
        let listed = recover_in(t.path(), true);
        assert_eq!(listed.removed.len(), 3, "value, canary dir, journal: {listed:?}");
        assert_eq!(std::fs::read_to_string(&value).unwrap(), "changed-by-a-probe\n", "dry run changes nothing");
        let done = recover_in(t.path(), false);
        assert!(done.errors.is_empty(), "{done:?}");
        assert_eq!(listed.removed, done.removed, "a dry run lists what the real run does");
        assert_eq!(std::fs::read_to_string(&value).unwrap(), "host-a\n");
        assert!(!canary_dir.exists());
        assert_eq!(recover_in(t.path(), false), Recovery::default(), "nothing left");
    }

    #[test]
    fn a_live_runs_journal_is_kept_and_the_guard_removes_it() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal { owner_pid: 1, canary_dir: t.path().join("none"), values: vec![] };
        let guard = write_in(t.path(), &j).unwrap();
        assert_eq!(recover_in(t.path(), false).kept.len(), 1);
        drop(guard);
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }
}

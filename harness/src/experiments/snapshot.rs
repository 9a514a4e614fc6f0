//! Snapshot: what saving a running instance's state costs and what starting from it buys.
//!
//! Per dirty working set `N` MiB (the instance runs `idle --hold-mib N`, which writes every page of
//! `N` MiB, reports ready and waits), and per backend that can save state:
//! 1. cold start: launch `idle --hold-mib N`, time launch-to-ready (`cold_start_s`);
//! 2. save: [`Instance::save_state`] into a temporary directory (`save_s` = the pause the backend
//!    measured, `save_bytes` = bytes written, holes excluded); the instance is then stopped;
//! 3. restore twice from the same state ([`Backend::restore`]): launch-to-ready of the first is
//!    `restore_s`; once both have settled (a restored microVM reports `restore.memory_ok` after it
//!    has read back all its held memory), `shared_bytes` = (RSS_a + RSS_b) - (PSS_a + PSS_b), the
//!    resident bytes the two map in common (for a microVM: the snapshot's page-cache pages).
//!
//! Each figure is the median over [`SnapshotPlan::runs`] repetitions. Backends whose instances
//! cannot save state (`Unavailable`) are skipped with a note. The saved state lives in a directory
//! under the temp dir that is removed afterwards; restores read it from the page cache (warm), as
//! they would right after a save.
use super::registry::{Experiment, RunContext};
use super::{launch_ready, spec, ExperimentError};
use crate::backend::{Backend, BackendError, Event, Instance, InstanceStats};
use crate::compare::{CompareError, Settings};
use crate::progress::{self, Mode, Task};
use results::{ExperimentId, Record, SnapshotRow};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use workloads::scenario::Scenario;

/// What to measure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPlan {
    /// Dirty working sets, MiB.
    pub dirty_mib: Vec<u64>,
    /// Repetitions per working set (medians are recorded).
    pub runs: u32,
    /// Per-instance timeout (launch, ready, save, stop) (JSON: `timeout_s`, seconds).
    #[serde(rename = "timeout_s", with = "super::duration_s")]
    pub timeout: Duration,
    /// How long to wait at most for a restored instance to settle (`restore.memory_ok`) before
    /// measuring sharing; only for saved states whose instances send it ([`crate::backend::Saved::checks_restore`])
    /// (JSON: `settle_s`, seconds).
    #[serde(rename = "settle_s", with = "super::duration_s")]
    pub settle: Duration,
}

impl SnapshotPlan {
    /// `--quick`: 0 and 16 MiB, once.
    pub fn quick() -> SnapshotPlan {
        SnapshotPlan {
            dirty_mib: vec![0, 16],
            runs: 1,
            timeout: Duration::from_secs(30),
            settle: Duration::from_secs(2),
        }
    }

    /// The default plan: 0, 16, 64 and 256 MiB, three times each.
    pub fn default_plan() -> SnapshotPlan {
        SnapshotPlan {
            dirty_mib: vec![0, 16, 64, 256],
            runs: 3,
            timeout: Duration::from_secs(120),
            settle: Duration::from_secs(5),
        }
    }
}

/// A directory under the temp dir, removed (with its contents) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir, BackendError> {
        let path = std::env::temp_dir().join(format!("{}-snapshot-{tag}", crate::backend::NAME_PREFIX));
        std::fs::create_dir_all(&path).map_err(|source| BackendError::Io {
            backend: "snapshot".into(),
            context: format!("create {}", path.display()),
            source,
        })?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One repetition's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    cold_start_s: f64,
    save_s: f64,
    save_bytes: u64,
    restore_s: f64,
    shared_bytes: Option<u64>,
}

/// Resident bytes two instances have in common: (RSS_a + RSS_b) - (PSS_a + PSS_b). A page mapped by
/// exactly these two counts fully in both RSS and half in each PSS, so it contributes its size once.
pub fn shared_between(a: &InstanceStats, b: &InstanceStats) -> Option<u64> {
    let rss = a.rss_bytes? + b.rss_bytes?;
    let pss = a.pss_bytes? + b.pss_bytes?;
    Some(rss.saturating_sub(pss))
}

/// Wait up to `settle` for `restore.memory_ok`; a value other than 1 means the restored memory is
/// not what was saved, which is an error. Backends that never send it just use up `settle`.
fn settle(inst: &mut dyn Instance, settle: Duration, backend: &str) -> Result<(), BackendError> {
    let deadline = Instant::now() + settle;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match inst.next_event(left) {
            Ok(Some((_, Event::Result { name, value, .. }))) if name == "restore.memory_ok" => {
                if value == 1.0 {
                    return Ok(());
                }
                return Err(BackendError::Save {
                    backend: backend.into(),
                    id: inst.id().into(),
                    reason: "the restored instance's memory differs from what was saved".into(),
                });
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(BackendError::Timeout { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// One repetition at `mib`; `Ok(None)` if the backend cannot save state.
fn once(backend: &dyn Backend, plan: &SnapshotPlan, mib: u64) -> Result<Option<Sample>, ExperimentError> {
    let scenario = Scenario::Idle { hold_mib: mib };
    // The same dirty working set as files too: a container commit saves files, a VM snapshot memory.
    let mut cold_spec = spec(scenario);
    cold_spec.env.push(("VMCT_DIRTY_FILE_MIB".into(), mib.to_string()));
    let (mut cold, ready) = launch_ready(backend, cold_spec, plan.timeout)?;
    let cold_start_s = ready.launch_to_ready_s();
    let dir = TempDir::new(cold.id())?;
    let saved = match cold.save_state(dir.path()) {
        Ok(s) => s,
        Err(BackendError::Unavailable { .. }) => {
            cold.stop(plan.timeout)?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    cold.stop(plan.timeout)?;

    let mut a = backend.restore(&saved, &spec(scenario))?;
    let restore_s = a.wait_ready(plan.timeout)?.launch_to_ready_s();
    let mut b = backend.restore(&saved, &spec(scenario))?;
    b.wait_ready(plan.timeout)?;
    if saved.checks_restore {
        settle(a.as_mut(), plan.settle, backend.name())?;
        settle(b.as_mut(), plan.settle, backend.name())?;
    }
    let shared_bytes = shared_between(&a.stats(), &b.stats());
    a.stop(plan.timeout)?;
    b.stop(plan.timeout)?;
    drop(dir);
    Ok(Some(Sample { cold_start_s, save_s: saved.duration_s, save_bytes: saved.bytes, restore_s, shared_bytes }))
}

fn median_f(xs: impl Iterator<Item = f64>) -> f64 {
    results::stats::median(&xs.collect::<Vec<_>>())
}

fn median_u(xs: impl Iterator<Item = u64>) -> u64 {
    // The median of u64 values is finite, non-negative and within u64 (saturating at its ends).
    #[allow(clippy::cast_possible_truncation)]
    let m = median_f(xs.map(|x| x as f64)).round() as u64;
    m
}

/// Run the snapshot experiment on one backend: one row per dirty working set, or no rows (and a
/// note) if the backend cannot save state.
pub fn run(backend: &dyn Backend, plan: &SnapshotPlan, mode: Mode) -> Result<Vec<SnapshotRow>, ExperimentError> {
    let name = backend.name().to_string();
    if !backend.capabilities().save_state {
        progress::note(mode, &format!("snapshot: skipping {name}: it declares no way to save state"));
        return Ok(Vec::new());
    }
    let runs = plan.runs.max(1);
    let mut task =
        Task::new(mode, format!("{} {name}", ExperimentId::Snapshot), plan.dirty_mib.len() as u64 * runs as u64);
    let mut rows = Vec::new();
    for &mib in &plan.dirty_mib {
        let mut samples = Vec::new();
        for _ in 0..runs {
            crate::interrupt::check()?;
            match once(backend, plan, mib)? {
                Some(s) => samples.push(s),
                None => {
                    progress::note(
                        mode,
                        &format!("{}: skipping {name}: its instances cannot save state", ExperimentId::Snapshot),
                    );
                    return Ok(Vec::new());
                }
            }
            task.inc();
        }
        let shared: Vec<u64> = samples.iter().filter_map(|s| s.shared_bytes).collect();
        rows.push(SnapshotRow {
            backend: name.clone(),
            dirty_mib: mib,
            save_s: median_f(samples.iter().map(|s| s.save_s)),
            save_bytes: median_u(samples.iter().map(|s| s.save_bytes)),
            restore_s: median_f(samples.iter().map(|s| s.restore_s)),
            cold_start_s: median_f(samples.iter().map(|s| s.cold_start_s)),
            shared_bytes: (!shared.is_empty()).then(|| median_u(shared.into_iter())),
        });
    }
    Ok(rows)
}

/// The snapshot experiment, as registered.
pub struct Snapshot;

impl Experiment for Snapshot {
    const ID: ExperimentId = ExperimentId::Snapshot;
    type Plan = SnapshotPlan;
    type Row = SnapshotRow;
    const FILES: &'static [&'static str] = &[SnapshotRow::FILE];

    fn plan(settings: &Settings) -> &SnapshotPlan {
        &settings.snapshot
    }

    /// Every backend gets the whole plan's snapshot settings, emulated ones too.
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), CompareError> {
        let mut rows = Vec::new();
        for b in cx.backends {
            cx.on_backend(*b);
            match run(*b, Self::plan(cx.settings), cx.mode) {
                Ok(r) => rows.extend(r),
                Err(e) => cx.failed(Self::ID, *b, e)?,
            }
            cx.run_dir.write_csv(&rows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::fake::FakeBackend;

    #[test]
    fn shared_bytes_is_rss_minus_pss_of_the_pair() {
        let s = |rss, pss| InstanceStats { rss_bytes: Some(rss), pss_bytes: Some(pss), ..Default::default() };
        // 10 MiB shared by exactly the two, 1 MiB private each.
        let (a, b) = (s(11 << 20, 6 << 20), s(11 << 20, 6 << 20));
        assert_eq!(shared_between(&a, &b), Some(10 << 20));
        assert_eq!(shared_between(&a, &InstanceStats::default()), None);
    }

    #[test]
    fn backends_that_cannot_save_are_skipped_without_rows() {
        let b = FakeBackend::new("fake", 1 << 20);
        let rows = run(&b, &SnapshotPlan::quick(), Mode::Quiet).unwrap();
        assert!(rows.is_empty());
        // Its capabilities say so: nothing is launched to find out.
        assert_eq!(b.launched.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn a_saving_backend_gets_one_row_per_dirty_size_with_medians() {
        let mut b = FakeBackend::new("fake", 1 << 20);
        b.saves = true;
        let plan = SnapshotPlan { runs: 3, settle: Duration::from_millis(10), ..SnapshotPlan::quick() };
        let rows = run(&b, &plan, Mode::Quiet).unwrap();
        assert_eq!(rows.iter().map(|r| r.dirty_mib).collect::<Vec<_>>(), vec![0, 16]);
        for r in &rows {
            assert_eq!(r.save_bytes, (r.dirty_mib << 20) + 4096);
            assert!((r.restore_s - 1e-3).abs() < 1e-9 && (r.cold_start_s - 1e-3).abs() < 1e-9, "{r:?}");
            assert_eq!(r.shared_bytes, None, "the fake reports no PSS");
        }
        assert_eq!(b.used.load(std::sync::atomic::Ordering::SeqCst), 0);
        // 3 runs x 2 sizes x (1 cold + 2 restores).
        assert_eq!(b.launched.load(std::sync::atomic::Ordering::SeqCst), 18);
    }
}

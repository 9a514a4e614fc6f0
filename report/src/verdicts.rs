//! Verdicts on the classic claims about containers and VMs, derived only from the run's CSVs.
//!
//! Each claim compares the best container backend measured (the one most favourable to containers: fastest,
//! densest, fewest isolation failures, least harmed victim, cheapest save) with each microVM guest model
//! measured. A claim "holds" when it is true against every guest model measured, "holds only for the linux guest
//! model" when true against the linux guest and false against the bare guest, and "does not hold here" when it
//! is false against the linux guest or against the only guest model measured.
//!
//! Only figures that pass [`crate::validity`]'s rule take part: an impossible value (a 0 s startup, a NaN or
//! negative density slope) or a single-sample figure never wins; the evidence says which were left out and why.
use crate::data::{Model, RunData};
use crate::units::{fmt_bytes, fmt_secs, fmt_value};
use crate::validity::{self, Figure};
use serde::Serialize;

/// A verdict on one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// True against every microVM guest model measured.
    Holds,
    /// True against the linux guest model, false against the bare guest model.
    HoldsOnlyForLinuxGuest,
    /// True against the bare guest model, false against the linux guest model.
    HoldsOnlyForBareGuest,
    /// False here.
    DoesNotHold,
    /// The run lacks the data to decide.
    NotMeasured,
}

impl Verdict {
    /// The one-line verdict.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::HoldsOnlyForLinuxGuest => "holds only for the linux guest model",
            Verdict::HoldsOnlyForBareGuest => "holds only for the bare guest model",
            Verdict::DoesNotHold => "does not hold here",
            Verdict::NotMeasured => "not measured in this run",
        }
    }

    /// CSS class used by the report.
    pub fn css(self) -> &'static str {
        match self {
            Verdict::Holds => "v-holds",
            Verdict::HoldsOnlyForLinuxGuest => "v-linux",
            Verdict::HoldsOnlyForBareGuest => "v-bare",
            Verdict::DoesNotHold => "v-not",
            Verdict::NotMeasured => "v-unmeasured",
        }
    }

    /// Combine the claim's truth against the bare and the linux guest models.
    fn from_models(bare: Option<bool>, linux: Option<bool>) -> Verdict {
        match (bare, linux) {
            (None, None) => Verdict::NotMeasured,
            (Some(true), None) | (None, Some(true)) | (Some(true), Some(true)) => Verdict::Holds,
            (Some(false), Some(true)) => Verdict::HoldsOnlyForLinuxGuest,
            (Some(true), Some(false)) => Verdict::HoldsOnlyForBareGuest,
            (Some(false), _) | (None, Some(false)) => Verdict::DoesNotHold,
        }
    }
}

/// One claim with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimVerdict {
    /// Short id (`start_faster`, `density`, `isolation`, `shared_kernel`, `state_saving`).
    pub id: &'static str,
    /// The claim in words.
    pub claim: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// The measured evidence, one line per figure compared.
    pub evidence: Vec<String>,
    /// The CSV the evidence comes from.
    pub source: &'static str,
}

/// A backend (or backend/profile) with its model and the figure judged.
type Item = (String, Model, Figure);

/// The best valid value (lower first unless `higher`) among backends of one model.
fn best(items: &[Item], model: Model, higher: bool) -> Option<(&str, f64)> {
    items.iter().filter(|i| i.1 == model).filter_map(|i| Some((i.0.as_str(), i.2.check().ok()?))).min_by(|a, b| {
        if higher {
            b.1.total_cmp(&a.1)
        } else {
            a.1.total_cmp(&b.1)
        }
    })
}

/// Compare the best container with each microVM guest model; `claim(container, vm)` says whether the claim
/// holds for that pair.
fn judge(
    items: &[Item],
    higher_is_better_for_container: bool,
    claim: impl Fn(f64, f64) -> bool,
    show: impl Fn(f64) -> String,
    what: &str,
) -> (Verdict, Vec<String>) {
    // Figures the validity rule refuses are named with the reason and left out.
    let left_out: Vec<String> = items
        .iter()
        .filter_map(|i| {
            let flaw = i.2.check().err()?;
            Some(format!("left out: {} {what} {}", i.0, flaw.describe(&show)))
        })
        .collect();
    let mut ev = Vec::new();
    let Some(c) = best(items, Model::Container, higher_is_better_for_container) else {
        ev.push(format!("no container backend has a valid {what} in this run"));
        ev.extend(left_out);
        return (Verdict::NotMeasured, ev);
    };
    ev.push(format!("best container: {} {what} {}", c.0, show(c.1)));
    let mut vs = |m: Model| {
        // For the VM pick the figure most favourable to the VM (the claim's opposite direction).
        let v = best(items, m, !higher_is_better_for_container)?;
        let holds = claim(c.1, v.1);
        ev.push(format!("{}: {} {what} {}", m.label(), v.0, show(v.1)));
        Some(holds)
    };
    let bare = vs(Model::MicrovmBare);
    let linux = vs(Model::MicrovmLinux);
    if bare.is_none() && linux.is_none() {
        ev.push(format!("no microVM backend has a valid {what} in this run"));
    }
    ev.extend(left_out);
    (Verdict::from_models(bare, linux), ev)
}

/// Harm threshold for the blast-radius claim: the victim failed or slowed down by at least this factor.
pub const HARM_SLOWDOWN: f64 = 1.5;

/// All five verdicts for a loaded run.
pub fn verdicts(run: &RunData) -> Vec<ClaimVerdict> {
    vec![start_faster(run), density(run), isolation(run), shared_kernel(run), state_saving(run)]
}

fn start_faster(run: &RunData) -> ClaimVerdict {
    let items: Vec<Item> = validity::startup_medians(run)
        .into_iter()
        .filter(|(b, _)| !run.emulated(b))
        .map(|(b, f)| (b.clone(), run.model(&b), f))
        .collect();
    let (verdict, evidence) = judge(&items, false, |c, v| c < v, fmt_secs, "median startup");
    ClaimVerdict {
        id: "start_faster",
        claim: "Containers start faster than VMs",
        verdict,
        evidence,
        source: "startup_summary.csv",
    }
}

fn density(run: &RunData) -> ClaimVerdict {
    let items: Vec<Item> = run
        .density_fit
        .iter()
        .flatten()
        .filter(|f| !run.emulated(&f.backend))
        .map(|f| (f.backend.clone(), run.model(&f.backend), validity::instances_per_gib(f)))
        .collect();
    let (verdict, evidence) =
        judge(&items, true, |c, v| c > v, |x| format!("{} instances/GiB", fmt_value(x, "1/GiB")), "density");
    ClaimVerdict {
        id: "density",
        claim: "More containers than VMs fit on a host",
        verdict,
        evidence,
        source: "density_summary.csv",
    }
}

fn isolation(run: &RunData) -> ClaimVerdict {
    // Failures per backend/profile; the container side takes its best-isolated profile.
    let mut items: Vec<Item> = Vec::new();
    for r in run.isolation.iter().flatten() {
        let key = format!("{}/{}", r.backend, r.profile);
        let m = run.model(&r.backend);
        match items.iter_mut().find(|i| i.0 == key) {
            Some(i) => i.2.value += f64::from(u8::from(r.failure)),
            None => items.push((key, m, Figure::count(f64::from(u8::from(r.failure))))),
        }
    }
    let (verdict, evidence) = judge(&items, false, |c, v| v < c, |x| format!("{x:.0} failures"), "isolation");
    ClaimVerdict {
        id: "isolation",
        claim: "VMs isolate better than containers",
        verdict,
        evidence,
        source: "isolation.csv",
    }
}

fn shared_kernel(run: &RunData) -> ClaimVerdict {
    // Harm per backend: the worst slowdown, or 1e9 (ranks above any slowdown) when the victim did not survive.
    // A backend with any invalid slowdown is judged by that figure, so it is left out with the reason.
    let mut items: Vec<Item> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for r in run.blast.iter().flatten() {
        let harm = if r.victim_ok { validity::blast_slowdown(r) } else { Figure::positive(1e9) };
        if !r.victim_ok {
            failed.push(format!("{} victim did not survive a {} neighbour", r.backend, r.neighbour));
        }
        match items.iter_mut().find(|i| i.0 == r.backend) {
            Some(i) if !i.2.valid() => {}
            Some(i) if !harm.valid() => i.2 = harm,
            Some(i) => i.2.value = i.2.value.max(harm.value),
            None => items.push((r.backend.clone(), run.model(&r.backend), harm)),
        }
    }
    let show = |x: f64| {
        if x >= 1e9 {
            "victim failed".to_string()
        } else {
            format!("worst slowdown {}", fmt_value(x, "ratio"))
        }
    };
    let (verdict, mut evidence) =
        judge(&items, false, |c, v| c >= HARM_SLOWDOWN && v < HARM_SLOWDOWN, show, "blast radius");
    evidence.extend(failed);
    evidence.push(format!("harm = victim failed or slowed down at least {HARM_SLOWDOWN}x"));
    ClaimVerdict {
        id: "shared_kernel",
        claim: "A shared kernel is a single point of failure",
        verdict,
        evidence,
        source: "blast.csv",
    }
}

fn state_saving(run: &RunData) -> ClaimVerdict {
    let rows = run.snapshot.as_deref().unwrap_or(&[]);
    // Compare at the largest dirty size measured by both a container and a microVM, else across all sizes.
    let sizes = |m: &dyn Fn(Model) -> bool| -> Vec<u64> {
        rows.iter().filter(|r| m(run.model(&r.backend))).map(|r| r.dirty_mib).collect()
    };
    let cs = sizes(&|m| m == Model::Container);
    let vs = sizes(&|m| matches!(m, Model::MicrovmBare | Model::MicrovmLinux));
    let common = cs.iter().filter(|s| vs.contains(s)).max().copied();
    let items: Vec<Item> = rows
        .iter()
        .filter(|r| common.is_none_or(|c| r.dirty_mib == c))
        .map(|r| (r.backend.clone(), run.model(&r.backend), validity::save_time(r)))
        .collect();
    let (verdict, mut evidence) = judge(&items, false, |c, v| c < v, fmt_secs, "save time");
    if let Some(c) = common {
        evidence.push(format!("compared at {c} MiB dirtied"));
    }
    // Evidence of the pair only: a user-space kernel's checkpoint is neither side of this claim.
    let pair = |b: &str| matches!(run.model(b), Model::Container | Model::MicrovmBare | Model::MicrovmLinux);
    for r in rows.iter().filter(|r| common.is_none_or(|c| r.dirty_mib == c) && pair(&r.backend)) {
        evidence.push(format!("{} wrote {} to save", r.backend, fmt_bytes(r.save_bytes as f64)));
    }
    ClaimVerdict {
        id: "state_saving",
        claim: "Container state is cheaper to save than a VM's",
        verdict,
        evidence,
        source: "snapshot.csv",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_guest_models() {
        assert_eq!(Verdict::from_models(None, None), Verdict::NotMeasured);
        assert_eq!(Verdict::from_models(Some(true), None), Verdict::Holds);
        assert_eq!(Verdict::from_models(Some(false), Some(true)), Verdict::HoldsOnlyForLinuxGuest);
        assert_eq!(Verdict::from_models(Some(false), None), Verdict::DoesNotHold);
        assert_eq!(Verdict::from_models(Some(true), Some(false)), Verdict::HoldsOnlyForBareGuest);
    }

    #[test]
    fn judge_uses_the_best_of_each_model() {
        let items = vec![
            ("container".to_string(), Model::Container, Figure::positive(0.030)),
            ("crun".to_string(), Model::Container, Figure::positive(0.020)),
            ("microvm".to_string(), Model::MicrovmBare, Figure::positive(0.005)),
            ("microvm-linux".to_string(), Model::MicrovmLinux, Figure::positive(0.200)),
        ];
        let (v, ev) = judge(&items, false, |c, v| c < v, fmt_secs, "median startup");
        assert_eq!(v, Verdict::HoldsOnlyForLinuxGuest);
        assert!(ev[0].contains("crun"), "{ev:?}");
    }

    #[test]
    fn a_user_space_kernel_is_neither_the_container_nor_the_vm_of_a_verdict() {
        // runsc starts slowest and fastest here: it must not become the "best container" or a VM.
        let mut items = vec![
            ("container".to_string(), Model::Container, Figure::positive(0.030)),
            ("microvm".to_string(), Model::MicrovmBare, Figure::positive(0.005)),
        ];
        let (before, _) = judge(&items, false, |c, v| c < v, fmt_secs, "median startup");
        for f in [0.001, 9.0] {
            items.push(("runsc".to_string(), Model::UserSpaceKernel, Figure::positive(f)));
            let (v, ev) = judge(&items, false, |c, v| c < v, fmt_secs, "median startup");
            assert_eq!(v, before);
            assert!(ev.iter().all(|e| !e.contains("runsc")), "{ev:?}");
            items.pop();
        }
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;
    use results::{Record, StartupSummary};

    fn load(dir: &std::path::Path) -> RunData {
        RunData::load(&results::RunDir::open(dir).unwrap()).unwrap()
    }

    fn by_id<'a>(v: &'a [ClaimVerdict], id: &str) -> &'a ClaimVerdict {
        v.iter().find(|c| c.id == id).unwrap()
    }

    #[test]
    fn fixture_verdicts_follow_the_data() {
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        let v = verdicts(&load(d.path()));
        // The bare microVM starts faster than every container in the fixture.
        assert_eq!(by_id(&v, "start_faster").verdict, Verdict::DoesNotHold);
        // Containers are denser (18.2 vs 19.5 MiB per instance).
        assert_eq!(by_id(&v, "density").verdict, Verdict::Holds);
        // 0 microVM failures vs at least 1 for the best container.
        assert_eq!(by_id(&v, "isolation").verdict, Verdict::Holds);
        // The fork-loop neighbour slows the container victim 3.2x, the microVM victim 1.06x.
        assert_eq!(by_id(&v, "shared_kernel").verdict, Verdict::Holds);
        // Container commit is slower than the microVM snapshot in the fixture.
        assert_eq!(by_id(&v, "state_saving").verdict, Verdict::DoesNotHold);
        assert!(by_id(&v, "start_faster").evidence.iter().any(|e| e.contains("container-privileged")));
    }

    #[test]
    fn a_slow_linux_guest_makes_the_startup_claim_hold_only_for_it() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        let mut rows: Vec<StartupSummary> = rd.read_csv().unwrap();
        let mut linux =
            rows.iter().find(|r| r.backend == "microvm" && r.mode == results::StartupMode::Sequential).unwrap().clone();
        linux.backend = "microvm-linux".into();
        linux.median_s = 0.180;
        rows.push(linux);
        rd.write_csv(&rows).unwrap();
        let v = verdicts(&load(d.path()));
        assert_eq!(by_id(&v, "start_faster").verdict, Verdict::HoldsOnlyForLinuxGuest);
    }

    /// An emulated linux guest (qemu-tcg) with figures that would flip the startup and density claims
    /// is left out of both: its startup is emulation-bound and its memory includes the emulator.
    #[test]
    fn an_emulated_guest_never_decides_startup_or_density() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write_with_emulated_guest(d.path()).unwrap();
        let mut rows: Vec<StartupSummary> = rd.read_csv().unwrap();
        let mut fast =
            rows.iter().find(|r| r.backend == "microvm" && r.mode == results::StartupMode::Sequential).unwrap().clone();
        (fast.backend, fast.median_s) = ("qemu-tcg".into(), 1e-6);
        rows.push(fast);
        rd.write_csv(&rows).unwrap();
        let mut fits: Vec<results::DensityFit> = rd.read_csv().unwrap();
        let mut dense = fits[0].clone();
        (dense.backend, dense.instances_per_gib) = ("qemu-tcg".into(), 1e9);
        fits.push(dense);
        rd.write_csv(&fits).unwrap();
        let before = {
            let d2 = tempfile::tempdir().unwrap();
            crate::fixture::write(d2.path()).unwrap();
            verdicts(&load(d2.path()))
        };
        let v = verdicts(&load(d.path()));
        for id in ["start_faster", "density"] {
            assert_eq!(by_id(&v, id).verdict, by_id(&before, id).verdict, "{id}");
            assert!(!by_id(&v, id).evidence.iter().any(|e| e.contains("qemu-tcg")), "{id}: {:?}", by_id(&v, id));
        }
    }

    #[test]
    fn missing_csvs_are_not_measured() {
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        for f in [results::SnapshotRow::FILE, results::BlastRow::FILE, results::StartupSummary::FILE] {
            std::fs::remove_file(d.path().join(f)).unwrap();
        }
        let v = verdicts(&load(d.path()));
        for id in ["start_faster", "shared_kernel", "state_saving"] {
            assert_eq!(by_id(&v, id).verdict, Verdict::NotMeasured, "{id}");
        }
        assert_eq!(by_id(&v, "isolation").verdict, Verdict::Holds);
    }
}

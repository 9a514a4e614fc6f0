//! The report's experiment sections as registered units: [`SECTIONS`] is the one list the run report's
//! nav and body, the comparison page ([`crate::compare`]) and the merged page ([`crate::merge`]) are
//! built from. Each section names the experiment whose run writes its CSV ([`results::ExperimentId`]); the
//! harness's test `every_experiment_has_a_report_section_and_every_section_an_experiment` fails when an
//! experiment has no section here or a section reads a file no experiment writes.
use crate::compare::Fig;
use crate::data::RunData;
use crate::sections::{self, Section};
use crate::validity::{self, Figure};
use crate::ReportError;
use results::{
    AttackSurfaceRow, BlastRow, DensityFit, DensityStep, ExperimentId, IsolationRow, OverheadRow, PhaseSample, Record,
    SnapshotRow, StartupSample, StartupSummary,
};

/// What a section is, as data: one constant per section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionMeta {
    /// The `<section id>`, the nav's anchor and the `section` of comparison rows (`startup`).
    pub id: &'static str,
    /// Heading on the run report.
    pub title: &'static str,
    /// Label in the run report's nav.
    pub nav: &'static str,
    /// Heading on the comparison and merged pages; None: the section is not on them.
    pub compare_title: Option<&'static str>,
    /// The experiment whose run writes [`SectionMeta::csv`].
    pub experiment: ExperimentId,
    /// The CSV its figures come from: its row type's [`Record::FILE`].
    pub csv: &'static str,
}

/// One experiment section of the report.
pub trait ReportSection: Sync {
    /// Its id, titles, experiment and CSV.
    fn meta(&self) -> &'static SectionMeta;
    /// [`SectionMeta::id`].
    fn id(&self) -> &'static str {
        self.meta().id
    }
    /// [`SectionMeta::title`].
    fn title(&self) -> &'static str {
        self.meta().title
    }
    /// [`SectionMeta::nav`].
    fn nav(&self) -> &'static str {
        self.meta().nav
    }
    /// [`SectionMeta::compare_title`].
    fn compare_title(&self) -> Option<&'static str> {
        self.meta().compare_title
    }
    /// [`SectionMeta::experiment`].
    fn experiment(&self) -> ExperimentId {
        self.meta().experiment
    }
    /// [`SectionMeta::csv`].
    fn csv(&self) -> &'static str {
        self.meta().csv
    }
    /// Every CSV it reads, for the report footer's links (default: [`ReportSection::csv`]).
    fn files(&self) -> Vec<&'static str> {
        vec![self.csv()]
    }
    /// Why its CSV is absent, in words (default: from run.json's plan and its experiment).
    fn why_absent(&self, run: &RunData) -> String {
        run.why_absent(self.experiment().as_str())
    }
    /// Whether its CSV is in the run directory (a comparison row without a value then says "not measured
    /// for this backend" rather than "not run in this run").
    fn present(&self, run: &RunData) -> bool {
        run.dir.join(self.csv()).exists()
    }
    /// What the figures of [`ReportSection::figures`] measure, for their transfer marks (default: the main
    /// quantity of its experiment, [`results::transfer::experiment_quantities`]).
    fn quantity(&self) -> results::Quantity {
        results::transfer::experiment_quantities(self.experiment())[0]
    }
    /// Its HTML and charts on the run report.
    fn render(&self, run: &RunData) -> Result<Section, ReportError>;
    /// The figures the comparison and merged pages show for it, keyed by (section id, backend, metric).
    fn figures(&self, _run: &RunData) -> Vec<Fig> {
        Vec::new()
    }
}

/// Every experiment section, in page order.
pub static SECTIONS: &[&dyn ReportSection] = &[
    &Startup,
    &Density,
    &Overhead,
    &Isolation,
    &AttackSurface,
    &Blast,
    &Snapshot,
    &crate::crosscheck::CrossCheck,
    &crate::crash::Crash,
    &crate::memory::GiveBack,
    &crate::memory::PageCache,
    &crate::memory::Ksm,
];

/// A figure's key.
fn key(sec: &dyn ReportSection, backend: &str, metric: &str) -> (String, String, String) {
    (sec.id().to_string(), backend.to_string(), metric.to_string())
}

/// Startup: `startup_summary.csv`, with the per-launch samples and phases.
pub struct Startup;

impl ReportSection for Startup {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "startup",
            title: "Startup",
            nav: "Startup",
            compare_title: Some("Startup"),
            experiment: ExperimentId::Startup,
            csv: StartupSummary::FILE,
        };
        &M
    }
    fn files(&self) -> Vec<&'static str> {
        vec![StartupSample::FILE, PhaseSample::FILE, StartupSummary::FILE]
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(sections::startup(self, run)?)
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for s in r.startup_summary.iter().flatten() {
            let median = Ok(validity::startup_median(s));
            v.push((key(self, &s.backend, &format!("median {}", s.mode)), "s".into(), Some(true), median));
            let p99 = Ok(validity::startup_p99(s));
            v.push((key(self, &s.backend, &format!("p99 {}", s.mode)), "s".into(), Some(true), p99));
        }
        v
    }
}

/// Density: `density_summary.csv`, with the sweep's steps.
pub struct Density;

impl ReportSection for Density {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "density",
            title: "Density",
            nav: "Density",
            compare_title: Some("Density"),
            experiment: ExperimentId::Density,
            csv: DensityFit::FILE,
        };
        &M
    }
    fn files(&self) -> Vec<&'static str> {
        vec![DensityStep::FILE, DensityFit::FILE, results::IdleCpuRow::FILE, results::VictimRow::FILE]
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(sections::density(self, run)?)
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for f in r.density_fit.iter().flatten() {
            let slope = Ok(validity::density_slope(f));
            v.push((key(self, &f.backend, "per-instance slope"), "bytes".into(), Some(true), slope));
            let per_gib = Ok(validity::instances_per_gib(f));
            v.push((key(self, &f.backend, "instances per GiB"), "1/GiB".into(), Some(false), per_gib));
        }
        v
    }
}

/// Overhead vs the process baseline: `overhead.csv`.
pub struct Overhead;

impl ReportSection for Overhead {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "overhead",
            title: "Overhead vs the process baseline",
            nav: "Overhead",
            compare_title: Some("Overhead vs the process baseline"),
            experiment: ExperimentId::Overhead,
            csv: OverheadRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(sections::overhead(self, run)?)
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for o in r.overhead.iter().flatten() {
            let metric = if o.metric.is_empty() { o.scenario.clone() } else { o.metric.clone() };
            let dir = if o.unit.ends_with("/s") {
                Some(false)
            } else if ["s", "ms", "us", "µs", "ns"].contains(&o.unit.as_str()) {
                Some(true)
            } else {
                None
            };
            let val = match (o.supported, validity::overhead_ratio(o)) {
                _ if o.failed => Err(format!("failed: {}", o.reason)),
                (true, Some(f)) => Ok(f),
                (true, None) => Err("no process baseline".to_string()),
                (false, _) => Err(format!("unsupported: {}", o.reason)),
            };
            v.push((key(self, &o.backend, &format!("{metric} ratio to process")), "ratio".into(), dir, val));
        }
        v
    }
}

/// Isolation: the probe matrix, `isolation.csv`.
pub struct Isolation;

impl ReportSection for Isolation {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "isolation",
            title: "Isolation",
            nav: "Isolation",
            compare_title: Some("Isolation failures"),
            experiment: ExperimentId::Isolation,
            csv: IsolationRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(sections::isolation(self, run))
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut iso: Vec<(String, f64)> = Vec::new();
        for i in r.isolation.iter().flatten() {
            let key = format!("{}/{}", i.backend, i.profile);
            match iso.iter_mut().find(|x| x.0 == key) {
                Some(x) => x.1 += f64::from(u8::from(i.failure)),
                None => iso.push((key, f64::from(u8::from(i.failure)))),
            }
        }
        iso.into_iter()
            .map(|(b, n)| (key(self, &b, "failures"), "count".into(), Some(true), Ok(Figure::count(n))))
            .collect()
    }
}

/// Attack surface: `attack_surface.csv` (or run.json's copy); not on the comparison pages.
pub struct AttackSurface;

impl ReportSection for AttackSurface {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "surface",
            title: "Attack surface",
            nav: "Attack surface",
            compare_title: None,
            experiment: ExperimentId::Isolation,
            csv: AttackSurfaceRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(crate::surface::attack_surface(self, run))
    }
    fn quantity(&self) -> results::Quantity {
        results::Quantity::AttackSurface
    }
}

/// Blast radius: `blast.csv`, written by the isolation experiment.
pub struct Blast;

impl ReportSection for Blast {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "blast",
            title: "Blast radius",
            nav: "Blast radius",
            compare_title: Some("Blast radius"),
            experiment: ExperimentId::Isolation,
            csv: BlastRow::FILE,
        };
        &M
    }
    /// Run.json files of older versions list it as an experiment of its own, `blast`.
    fn why_absent(&self, run: &RunData) -> String {
        let legacy = run.meta.plan.experiments.iter().any(|e| e == "blast");
        run.why_absent(if legacy { "blast" } else { self.experiment().as_str() })
    }
    fn quantity(&self) -> results::Quantity {
        results::Quantity::Slowdown
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(sections::blast(self, run)?)
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for b in r.blast.iter().flatten() {
            let m = format!("slowdown next to {}{}", b.neighbour, if b.limited { " (limited)" } else { "" });
            v.push((key(self, &b.backend, &m), "ratio".into(), Some(true), Ok(validity::blast_slowdown(b))));
        }
        v
    }
}

/// Saving state: `snapshot.csv`.
pub struct Snapshot;

impl ReportSection for Snapshot {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "snapshot",
            title: "Saving state: commit and snapshot",
            nav: "Saving state",
            compare_title: Some("Saving state"),
            experiment: ExperimentId::Snapshot,
            csv: SnapshotRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(sections::snapshot(self, run)?)
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for s in r.snapshot.iter().flatten() {
            let save = Ok(validity::save_time(s));
            v.push((key(self, &s.backend, &format!("save {} MiB", s.dirty_mib)), "s".into(), Some(true), save));
        }
        v
    }
}

/// The section with id `id`.
pub fn section(id: &str) -> Option<&'static dyn ReportSection> {
    SECTIONS.iter().copied().find(|s| s.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_experiment_has_a_section() {
        let mut ids: Vec<&str> = SECTIONS.iter().map(|s| s.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), SECTIONS.len(), "duplicate section ids");
        for &e in ExperimentId::ALL {
            assert!(SECTIONS.iter().any(|s| s.experiment() == e), "experiment {e} has no report section");
        }
        for s in SECTIONS {
            assert!(s.files().contains(&s.csv()), "{}: files() lists its csv", s.id());
        }
    }

    /// The figures of every section measure one of its experiment's quantities (the table the run.json
    /// marks come from).
    #[test]
    fn every_sections_quantity_is_one_of_its_experiments() {
        for s in SECTIONS {
            let qs = results::transfer::experiment_quantities(s.experiment());
            assert!(qs.contains(&s.quantity()), "{}: {:?} not in {qs:?}", s.id(), s.quantity());
        }
    }

    /// Every registered section is on the rendered fixture report with its title, in the nav, and (unless
    /// it opts out) on the comparison page.
    #[test]
    fn every_registered_section_is_rendered_navigated_and_compared() {
        let d = tempfile::tempdir().unwrap();
        let a = crate::fixture::write(&d.path().join("a")).unwrap();
        let b = crate::fixture::write(&d.path().join("b")).unwrap();
        let html = std::fs::read_to_string(crate::render(&a).unwrap()).unwrap();
        let cmp = std::fs::read_to_string(crate::compare(&a, &b, d.path()).unwrap()).unwrap();
        for s in SECTIONS {
            let head = format!("<section id=\"{}\"><h2>{}</h2>", s.id(), crate::html::esc(s.title()));
            assert!(html.contains(&head), "{head} missing from the report");
            let nav = format!("<a href=\"#{}\">{}</a>", s.id(), crate::html::esc(s.nav()));
            assert!(html.contains(&nav), "{nav} missing from the nav");
            if let Some(t) = s.compare_title() {
                let head = format!("<section id=\"{}\"><h2>{}</h2>", s.id(), crate::html::esc(t));
                assert!(cmp.contains(&head), "{head} missing from the comparison page");
            }
        }
    }
}

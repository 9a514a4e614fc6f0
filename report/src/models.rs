//! The "Three isolation models side by side" section: every backend of the run grouped by its isolation
//! model (shared-kernel container, user-space kernel (gVisor's runsc), microVM), with the headline figure
//! of each experiment in one row: median startup, host memory per instance, the syscall scenario's ratio
//! to the process baseline, isolation failures and the attack-surface layers (a) and (c). The figures are
//! the ones the experiment sections show, judged by the same [`crate::validity`] rule; verdicts stay
//! container vs microVM (a user-space kernel is neither), this section only puts the models next to each
//! other.
use crate::data::{Model, RunData};
use crate::html::{backend, checked, esc, section};
use crate::marks::marked_table;
use crate::sections::Section;
use crate::units::{fmt_bytes, fmt_secs, sig3};
use crate::validity;
use results::{Quantity, Record};

/// The models in the order shown, with what isolates the workload in each.
const ORDER: [(Model, &str); 5] = [
    (Model::Process, "no isolation (the baseline)"),
    (Model::Container, "namespaces, cgroups and seccomp on the shared host kernel"),
    (
        Model::UserSpaceKernel,
        "the Sentry answers the workload's system calls; the host kernel sees only the Sentry's filtered calls",
    ),
    (Model::MicrovmBare, "hardware virtualization, no guest OS: the VMM answers VM exits"),
    (Model::MicrovmLinux, "hardware virtualization, one Linux kernel per VM"),
];

/// The section; None when no experiment of the run has rows for two models or more.
pub fn three_models(run: &RunData) -> Option<Section> {
    let backends = run.backends();
    let models: Vec<Model> =
        ORDER.iter().map(|(m, _)| *m).filter(|m| backends.iter().any(|b| run.model(b) == *m)).collect();
    if models.iter().filter(|m| **m != Model::Process).count() < 2 {
        return None;
    }
    let starts = validity::startup_medians(run);
    let mut rows = Vec::new();
    for (model, how) in ORDER.iter().filter(|(m, _)| models.contains(m)) {
        for b in backends.iter().filter(|b| run.model(b) == *model) {
            let start = starts
                .iter()
                .find(|(n, _)| n == b)
                .map_or_else(|| na("not run"), |(_, f)| checked(f, fmt_secs, results::StartupSummary::FILE));
            let density = run.density_fit.iter().flatten().find(|f| &f.backend == b).map_or_else(
                || na("not run"),
                |f| checked(&validity::density_slope(f), fmt_bytes, results::DensityFit::FILE),
            );
            // A scenario the backend cannot run (the bare guest has no OS, so no system calls) says why; it
            // is not "not run".
            let unsupported = run
                .overhead
                .iter()
                .flatten()
                .find(|o| &o.backend == b && o.scenario == "syscall" && !o.supported)
                .map(|o| na(&format!("not applicable: {}", o.reason)));
            let syscall = run
                .overhead
                .iter()
                .flatten()
                .find(|o| &o.backend == b && o.scenario == "syscall" && !o.metric.is_empty())
                .and_then(validity::overhead_ratio)
                .map_or_else(
                    || unsupported.unwrap_or_else(|| na("not run")),
                    |f| checked(&f, |r| format!("{}x", sig3(r)), results::OverheadRow::FILE),
                );
            let failures = {
                let rs: Vec<_> = run.isolation.iter().flatten().filter(|r| &r.backend == b).collect();
                if rs.is_empty() {
                    na("not run")
                } else {
                    format!("{} of {}", rs.iter().filter(|r| r.failure).count(), rs.len())
                }
            };
            let surface = run
                .attack_surface
                .iter()
                .flatten()
                .chain(run.meta.attack_surface.iter())
                .find(|r| &r.backend == b)
                .cloned();
            let layer = |v: Option<u32>| v.map_or_else(|| na("not declared"), |n| format!("{n} syscalls"));
            let (a, c) = match &surface {
                Some(s) => (layer(s.host_syscalls_reachable), layer(s.supervisor_syscalls_allowed)),
                None => (na("not run"), na("not run")),
            };
            rows.push((
                b.clone(),
                vec![
                    format!("{}<br><span class=\"na\">{}</span>", esc(model.label()), esc(how)),
                    backend(b),
                    start,
                    density,
                    syscall,
                    failures,
                    a,
                    c,
                ],
            ));
        }
    }
    let body = format!(
        "<p>Each backend of this run under its isolation model, with the headline figure of every experiment \
         (details, sample counts and sources in the sections below). Verdicts compare containers with microVMs \
         only; the user-space kernel (gVisor's runsc) is shown beside both and decides none of them.</p>{}",
        marked_table(
            run,
            &[
                ("model", None),
                ("backend", None),
                ("median startup", Some(Quantity::Startup)),
                ("host memory per instance", Some(Quantity::HostMemory)),
                ("syscall rate vs process", Some(Quantity::Throughput)),
                ("isolation failures", Some(Quantity::ProbeOutcome)),
                ("(a) host syscalls reached", Some(Quantity::AttackSurface)),
                ("(c) supervisor syscalls", Some(Quantity::AttackSurface)),
            ],
            rows
        )
    );
    Some(Section { html: section("models", "Three isolation models side by side", &body), charts: Vec::new() })
}

fn na(why: &str) -> String {
    format!("<span class=\"na\">{}</span>", esc(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_grouped_by_model_with_the_user_space_kernel_between() {
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        let mut run = RunData::load(&results::RunDir::open(d.path()).unwrap()).unwrap();
        let mut info = run.meta.backends.iter().find(|b| b.name == "crun").unwrap().clone();
        (info.name, info.model) = ("runsc".into(), results::IsolationModel::UserSpaceKernel);
        run.meta.backends.push(info);
        let html = three_models(&run).unwrap().html;
        let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(at("namespaces, cgroups") < at("user-space kernel (gVisor)"));
        assert!(at("user-space kernel (gVisor)") < at("microVM (bare guest)"));
        assert!(html.contains(">runsc<") || html.contains("runsc"), "{html}");
    }

    /// The bare guest's syscall scenario is unsupported (no OS), with its reason in overhead.csv: the table
    /// says so rather than "not run" (review of issue 15: a real run read "not run" beside a bare guest that ran).
    #[test]
    fn an_unsupported_scenario_says_why_not_not_run() {
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        let run = RunData::load(&results::RunDir::open(d.path()).unwrap()).unwrap();
        let html = three_models(&run).unwrap().html;
        let row = &html[html.find(">microvm<").expect("microvm row")..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(row.contains("not applicable: bare guest has no system calls"), "{row}");
    }
}

//! The "Attack surface" section: per backend, the profile it ran and the three layers of issue 13 from
//! `attack_surface.csv` (or run.json's copy): (a) host-kernel system calls the instance reaches, (b) what
//! the VMM handles for a guest, (c) host system calls the supervising VMM or runtime process may make.
//! Each figure carries its unit and, on hover and in the last column, where it came from; an undeclared
//! figure says "not declared", never 0.
use crate::data::RunData;
use crate::html::{backend, esc, not_run, num, section};
use crate::marks::marked_table;
use crate::registry::ReportSection;
use crate::sections::Section;
use results::{AttackSurfaceRow, Quantity};

/// `N unit` linked to the CSV with `source` on hover, or "not declared".
fn figure(v: Option<u32>, unit: &str, source: &str, csv: &str) -> String {
    match v {
        Some(n) => format!("<span title=\"{}\">{} {}</span>", esc(source), num(&n.to_string(), csv), esc(unit)),
        None if source.starts_with("not applicable") => {
            format!("<span class=\"na\" title=\"{}\">not applicable</span>", esc(source))
        }
        None => format!("<span class=\"na\" title=\"{}\">not declared</span>", esc(source)),
    }
}

/// The rows to show: the CSV, else run.json's copy, sorted in backend order.
fn rows(run: &RunData) -> Option<Vec<AttackSurfaceRow>> {
    let mut v = match &run.attack_surface {
        Some(r) => r.clone(),
        None if !run.meta.attack_surface.is_empty() => run.meta.attack_surface.clone(),
        None => return None,
    };
    v.sort_by_key(|r| run.backend_rank(&r.backend));
    Some(v)
}

/// The section.
pub fn attack_surface(sec: &dyn ReportSection, run: &RunData) -> Section {
    let csv = sec.csv();
    let Some(rows) = rows(run) else {
        return Section {
            html: section(sec.id(), sec.title(), &not_run(csv, &sec.why_absent(run))),
            charts: Vec::new(),
        };
    };
    let mut body = String::from(
        "<p>What an escape from the instance could reach, in three layers, with the isolation profile each \
         backend declares it ran. <b>(a)</b> host-kernel system calls the instance reaches directly, measured \
         by the <code>census.syscalls</code> probe inside it (unit: system calls of the x86_64 table; refused = \
         EPERM/ENOSYS or killed: filtered, or not built into the host kernel); a VM guest reaches none by \
         construction, and a workload under a user-space kernel (gVisor's runsc) reaches none either: its calls go \
         to the Sentry. <b>(b)</b> for microVMs, the VM exit kinds, I/O port ranges and MMIO ranges the VMM \
         handles for the guest, as the VMM declares them; for a user-space kernel, the system calls its Sentry \
         implements (<code>runsc help syscalls</code>). <b>(c)</b> host system calls the supervising VMM or \
         runtime process can still make after its confinement: measured from the live process's seccomp \
         filters (every thread, evaluated with zero arguments; argument-dependent calls counted apart in the \
         source) where an instance of the backend ran, else declared, or the whole table when it is \
         unfiltered. \"not declared\" means the backend does not say, not zero.</p>",
    );
    let t: Vec<(String, Vec<String>)> = rows
        .iter()
        .map(|r| {
            let reached = match (r.host_syscalls_reachable, r.host_syscalls_table) {
                (Some(n), Some(t)) => format!(
                    "<span title=\"{}\">{} of {} syscalls</span>{}",
                    esc(&r.host_syscalls_source),
                    num(&n.to_string(), csv),
                    num(&t.to_string(), csv),
                    match (r.host_syscalls_refused, r.host_syscalls_skipped) {
                        (Some(f), Some(s)) => format!(
                            "<br><span class=\"na\">{f} refused{}, {s} not tried</span>",
                            r.host_syscalls_filtered
                                .map_or(String::new(), |c| format!(" ({c} of them by the isolation)"))
                        ),
                        _ => String::new(),
                    }
                ),
                (n, _) => figure(n, "syscalls", &r.host_syscalls_source, csv),
            };
            let seccomp = match r.instance_seccomp_allowed {
                Some(n) => format!(
                    "{} syscalls allowed<br><span class=\"na\">{}</span>",
                    num(&n.to_string(), csv),
                    esc(&r.instance_seccomp)
                ),
                None => format!("<span class=\"na\">{}</span>", esc(&r.instance_seccomp)),
            };
            let vmm = if let Some(n) = r.user_kernel_syscalls_implemented {
                figure(Some(n), "syscalls the Sentry implements", &r.vmm_source, csv)
            } else if r.vmm_exit_kinds.is_none()
                && r.vmm_device_models.is_none()
                && r.vmm_io_port_ranges.is_none()
                && r.vmm_mmio_ranges.is_none()
            {
                format!("<span class=\"na\">{}</span>", esc(&r.vmm_source))
            } else {
                format!(
                    "{}, {}, {}",
                    match r.vmm_device_models {
                        Some(n) => figure(Some(n), "device models", &r.vmm_source, csv),
                        None => figure(r.vmm_exit_kinds, "exit kinds", &r.vmm_source, csv),
                    },
                    figure(r.vmm_io_port_ranges, "port ranges", &r.vmm_source, csv),
                    figure(r.vmm_mmio_ranges, "MMIO ranges", &r.vmm_source, csv)
                )
            };
            let cells = vec![
                backend(&r.backend),
                esc(r.model.as_str()),
                esc(&r.profile),
                reached,
                seccomp,
                vmm,
                figure(r.supervisor_syscalls_allowed, "syscalls", &r.supervisor_source, csv),
                format!(
                    "(a) {}<br>(b) {}<br>(c) {}",
                    esc(&r.host_syscalls_source),
                    esc(&r.vmm_source),
                    esc(&r.supervisor_source)
                ),
            ];
            (r.backend.clone(), cells)
        })
        .collect();
    let surface = Some(Quantity::AttackSurface);
    let vmm = Some(Quantity::VmmSurface);
    body.push_str(&marked_table(
        run,
        &[
            ("backend", None),
            ("model", None),
            ("profile", None),
            ("(a) host syscalls reached", surface),
            ("instance seccomp", surface),
            ("(b) VMM handles (runsc: its Sentry)", vmm),
            ("(c) supervisor syscalls", vmm),
            ("where from", None),
        ],
        t,
    ));
    Section { html: section(sec.id(), sec.title(), &body), charts: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &std::path::Path) -> RunData {
        RunData::load(&results::RunDir::open(dir).unwrap()).unwrap()
    }

    #[test]
    fn the_three_layers_and_profiles_are_shown_with_units() {
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        let s = attack_surface(&crate::registry::AttackSurface, &load(d.path()));
        let h = &s.html;
        assert!(h.contains("id=\"surface\""));
        assert!(
            h.contains("(a) host syscalls reached") && h.contains("(b) VMM handles") && h.contains("(c) supervisor")
        );
        assert!(h.contains("of <a class=\"n\" href=\"attack_surface.csv\""), "{h}");
        assert!(h.contains("0 by construction"), "VM guest layer (a) explained");
        assert!(h.contains("(35 of them by the isolation)"), "filtered vs the baseline");
        assert!(h.contains("not declared"), "undeclared figures say so");
        assert!(h.contains("exit kinds") && h.contains("privileged"));
    }

    #[test]
    fn absent_surface_says_why() {
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        std::fs::remove_file(d.path().join(<AttackSurfaceRow as results::Record>::FILE)).unwrap();
        let mut run = load(d.path());
        run.meta.attack_surface.clear();
        assert!(attack_surface(&crate::registry::AttackSurface, &run).html.contains("Not run in this run"));
        // run.json's copy is used when the CSV is gone.
        let run = load(d.path());
        assert!(attack_surface(&crate::registry::AttackSurface, &run).html.contains("exit kinds"));
    }
}

//! The "Crash containment" section (issue 15 item 3): `crash.csv` as one table, a row per side (N
//! containers in one guest whose shared kernel crashes; N linux-guest VMs of which one crashes), with
//! the survivors counted after the crash, the neighbours' slowdown and how each side ran. Survivor
//! counts transfer to a VT-x/AMD-V host; the slowdown, a time figure under emulation, does not.
use crate::compare::Fig;
use crate::data::RunData;
use crate::html::{backend, esc, no_rows, not_run, num, section, table};
use crate::registry::{ReportSection, SectionMeta};
use crate::sections::Section;
use crate::units::fmt_value;
use crate::validity::Figure;
use crate::ReportError;
use results::{CrashRow, ExperimentId, Record};

/// Crash containment: `crash.csv`.
pub struct Crash;

impl ReportSection for Crash {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "crash",
            title: "Crash containment",
            nav: "Crash",
            compare_title: Some("Crash containment"),
            experiment: ExperimentId::Crash,
            csv: CrashRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(render(self, run))
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for c in r.crash.iter().flatten() {
            let key = (self.id().to_string(), c.backend.clone(), format!("survivors of {}", c.instances));
            v.push((key, "instances".into(), Some(false), Ok(Figure::count(f64::from(c.survivors)))));
        }
        v
    }
}

fn render(sec: &Crash, run: &RunData) -> Section {
    let csv = sec.csv();
    let html = match &run.crash {
        None => not_run(csv, &sec.why_absent(run)),
        Some(rows) if rows.is_empty() => no_rows(csv, "empty: neither side ran to the end (see the run's warnings)"),
        Some(rows) => {
            let mut body = String::from(
                "<p>A kernel failure, measured on both sides under the same emulation (QEMU TCG, the linux guest \
                 model's kernel): N containers of our runtime inside ONE Linux guest standing in for a host, whose \
                 kernel is crashed with sysrq-c, against N linux-guest VMs of which one crashes its kernel. Each \
                 instance prints a heartbeat; <b>survivors</b> are the instances still heartbeating after the \
                 crashed kernel's panic line, counted. Survivor counts transfer to a host with VT-x/AMD-V; the \
                 neighbours' slowdown (their rate before over after the crash) is a time figure under emulation \
                 and does not.</p>",
            );
            let t: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        backend(&r.backend),
                        esc(&r.model.to_string()),
                        num(&r.instances.to_string(), csv),
                        num(&r.crashed.to_string(), csv),
                        num(&format!("{} of {}", r.survivors, r.instances), csv),
                        r.victim_slowdown
                            .map_or_else(|| "<span class=\"na\">-</span>".into(), |x| num(&fmt_value(x, "ratio"), csv)),
                        esc(&r.detail),
                    ]
                })
                .collect();
            body.push_str(&table(
                &["backend", "model", "instances", "kernels crashed", "survivors", "neighbours' slowdown", "how"],
                &t,
            ));
            body
        }
    };
    Section { html: section(sec.id(), sec.title(), &html), charts: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_show_their_survivors_and_a_missing_slowdown_as_a_dash() {
        let dir = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(dir.path()).unwrap();
        let run = RunData::load(&rd).unwrap();
        let html = render(&Crash, &run).html;
        assert!(html.contains("0 of 3") && html.contains("2 of 3"), "{html}");
        assert!(html.contains("<span class=\"na\">-</span>"), "{html}");
        let figs = Crash.figures(&run);
        assert_eq!(figs.len(), 2);
    }
}

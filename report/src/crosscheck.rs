//! The "Peer cross-check" section (issue 15 item 6): `crosscheck.csv` as one table, a row per (backend,
//! clock) with n, median, p10, p90 and MAD, and on each peer CLI row the ratio of ours to that peer on
//! both clocks, so a "x times crun" figure elsewhere in the report can be checked against crun's own
//! command line.
use crate::compare::Fig;
use crate::data::RunData;
use crate::html::{backend, esc, no_rows, not_run, num, section};
use crate::registry::{ReportSection, SectionMeta};
use crate::sections::Section;
use crate::units::{fmt_secs, fmt_value};
use crate::validity::Figure;
use crate::ReportError;
use results::{CrossCheckRow, CrossClock, ExperimentId, Record};

/// Peer cross-check: `crosscheck.csv`.
pub struct CrossCheck;

impl ReportSection for CrossCheck {
    fn meta(&self) -> &'static SectionMeta {
        const M: SectionMeta = SectionMeta {
            id: "crosscheck",
            title: "Peer cross-check",
            nav: "Cross-check",
            compare_title: Some("Peer cross-check"),
            experiment: ExperimentId::CrossCheck,
            csv: CrossCheckRow::FILE,
        };
        &M
    }
    fn render(&self, run: &RunData) -> Result<Section, ReportError> {
        Ok(render(self, run))
    }
    fn figures(&self, r: &RunData) -> Vec<Fig> {
        let mut v: Vec<Fig> = Vec::new();
        for c in r.crosscheck.iter().flatten() {
            let key = (self.id().to_string(), c.backend.clone(), format!("median {}", c.clock));
            v.push((key, "s".into(), Some(true), Ok(Figure::positive(c.median_s).samples(c.n))));
        }
        v
    }
}

fn ratio(v: Option<f64>, csv: &str) -> String {
    v.map_or_else(|| "<span class=\"na\">-</span>".into(), |x| num(&fmt_value(x, "ratio"), csv))
}

fn render(sec: &CrossCheck, run: &RunData) -> Section {
    let csv = sec.csv();
    let html = match &run.crosscheck {
        None => not_run(csv, &sec.why_absent(run)),
        Some(rows) if rows.is_empty() => no_rows(csv, "empty: no container backend or peer ran"),
        Some(rows) => {
            let mut rows = rows.clone();
            rows.sort_by_key(|r| run.backend_rank(&r.backend));
            let mut body = String::from(
                "<p>The same <code>ready</code> workload (it announces ready and exits at once) timed on several \
                 clocks, n times each after one untimed warm-up: <b>peer-cli-run</b> is the peer CLI's own \
                 whole-process <code>run</code> of the bundle vmct generates (spawn to exit, <code>delete</code> \
                 included when its state outlived the run); <b>vmct-launch-to-ready</b> is vmct's clock of the \
                 startup experiment; <b>vmct-run</b> is a whole-process <code>vmct run</code>, <b>vmct-run-start</b> \
                 vmct's own start within it (spawn to its launch of the instance) and <b>vmct-run-less-start</b> \
                 the two subtracted per sample. The ratios on each peer's CLI row are ours (our container backend, \
                 default profile) over that peer: on vmct's launch-to-ready, and ours' vmct-run-less-start over \
                 the peer CLI's whole-process run. Unit: seconds; MAD unscaled.</p>",
            );
            let t: Vec<(String, Vec<String>)> = rows
                .iter()
                .map(|r| {
                    let cells = vec![
                        backend(&r.backend),
                        format!("<span title=\"{}\">{}</span>", esc(&r.timed), esc(r.clock.as_str())),
                        num(&r.n.to_string(), csv),
                        num(&fmt_secs(r.median_s), csv),
                        num(&fmt_secs(r.p10_s), csv),
                        num(&fmt_secs(r.p90_s), csv),
                        num(&fmt_secs(r.mad_s), csv),
                        if r.clock == CrossClock::PeerCliRun {
                            ratio(r.ratio_ours_launch_to_ready, csv)
                        } else {
                            String::new()
                        },
                        if r.clock == CrossClock::PeerCliRun {
                            ratio(r.ratio_ours_whole_process, csv)
                        } else {
                            String::new()
                        },
                    ];
                    (r.backend.clone(), cells)
                })
                .collect();
            let s = Some(results::Quantity::Startup);
            body.push_str(&crate::marks::marked_table(
                run,
                &[
                    ("backend", None),
                    ("clock", None),
                    ("n", None),
                    ("median", s),
                    ("p10", s),
                    ("p90", s),
                    ("MAD", s),
                    ("ours / peer, launch-to-ready", s),
                    ("ours / peer, whole process", s),
                ],
                t,
            ));
            body
        }
    };
    Section { html: section(sec.id(), sec.title(), &html), charts: Vec::new() }
}

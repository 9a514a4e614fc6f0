//! Several runs (typically one per host) merged into one page: a column per run for every figure the
//! comparison knows (startup, density, overhead, isolation, blast radius, saving state), the best value of each
//! row marked, bar charts of startup medians and density slopes grouped by backend with a colour per host, and
//! links to each run's own report and CSVs. Two runs are better served by [`crate::compare`], which adds deltas.
//!
//! Transfer marks (issue 15 item 5): every figure carries its run's mark, and a figure that does not
//! transfer to a VT-x/AMD-V host running the deployed model (a linux guest's startup under QEMU TCG or
//! kvm_pvm) gets a "deployed model" row: the same figure of the same model from a run where it transfers
//! (a VT-x host's run), named by run and host, or "needs a run on a VT-x host" when no merged run has it
//! ([`DeployedRow`]).
use crate::charts::bars::{bar_chart, Bar, BarChart};
use crate::compare::{compared_sections, figure_cell, figures, judged, side, RunSide};
use crate::data::RunData;
use crate::html::{backend, esc, figure, page, section, table};
use crate::ReportError;
use plotters::style::RGBColor;
use results::{RunDir, Transfer};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// One figure across every merged run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergedRow {
    /// `startup`, `density`, `overhead`, `isolation`, `blast`, `snapshot`.
    pub section: String,
    /// Backend name (with `/profile` for isolation).
    pub backend: String,
    /// What the figure is (`median sequential`, `per-instance slope`, ...).
    pub metric: String,
    /// Unit of the values (`s`, `bytes`, `ratio`, `count`, `1/GiB`).
    pub unit: String,
    /// One value per run, in the order of [`MergedRuns::runs`].
    pub values: Vec<Option<f64>>,
    /// Why a run has no value, or why its value is not compared (too few samples).
    pub notes: Vec<Option<String>>,
    /// Whether a lower value is better (None when the direction is not known).
    pub lower_is_better: Option<bool>,
    /// Index of the best run for this figure, when known, there are two values or more, and the best
    /// differs from the runner-up beyond noise ([`crate::noise`]).
    pub best: Option<usize>,
    /// The noise test of the best run against the runner-up (None without a best candidate).
    pub noise: Option<crate::noise::Noise>,
    /// Each run's transfer mark of this figure (None where the run has no value).
    pub transfer: Vec<Option<Transfer>>,
}

/// The figure of a model's deployed form (hardware virtualisation) for a figure some run measured only on a
/// stand-in that does not transfer (emulated CPU, interpreted guest kernel).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployedRow {
    /// Section id, as [`MergedRow::section`].
    pub section: String,
    /// The isolation model (`microVM (linux guest)`).
    pub model: String,
    /// What the figure is, as [`MergedRow::metric`].
    pub metric: String,
    /// Unit of the value.
    pub unit: String,
    /// The transferable figure, when a merged run has one.
    pub value: Option<f64>,
    /// Where it came from: the run's index in [`MergedRuns::runs`] and the backend that measured it (the first
    /// run in the order given that has one).
    pub from: Option<(usize, String)>,
    /// The figures that do not transfer: (run index, backend, mark).
    pub stand_ins: Vec<(usize, String, Transfer)>,
    /// Why there is no value ("needs a run on a VT-x host").
    pub note: Option<String>,
}

/// What a deployed-model row says when no merged run has a transferable figure.
pub const NEEDS_VTX: &str = "needs a run on a VT-x host";

/// Several runs side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergedRuns {
    /// The runs, in the order given.
    pub runs: Vec<RunSide>,
    /// Every figure present in any run.
    pub rows: Vec<MergedRow>,
    /// The deployed model's figure for every figure some run measured only on a stand-in that does not transfer.
    pub deployed: Vec<DeployedRow>,
}

/// Merge `runs` (at least one) as data, for `--json`.
pub fn merged(runs: &[RunDir]) -> Result<MergedRuns, ReportError> {
    let data: Vec<RunData> = runs.iter().map(RunData::load).collect::<Result<_, _>>()?;
    Ok(merged_of(&data))
}

fn merged_of(data: &[RunData]) -> MergedRuns {
    let figs: Vec<_> = data.iter().map(figures).collect();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for f in figs.iter().flatten() {
        if !keys.contains(&f.0) {
            keys.push(f.0.clone());
        }
    }
    let rows: Vec<MergedRow> = keys
        .into_iter()
        .map(|key| {
            let found: Vec<_> = figs.iter().map(|fs| fs.iter().find(|f| f.0 == key)).collect();
            let any = found.iter().flatten().next().expect("key comes from some run");
            let (unit, lower) = (any.1.clone(), any.2);
            let (values, notes): (Vec<Option<f64>>, Vec<Option<String>>) = found
                .iter()
                .map(|f| match f {
                    Some(f) => judged(&f.3, &unit),
                    None => (None, Some("not measured in this run".to_string())),
                })
                .unzip();
            // Only valid figures (a value without a note) can be the best of a row.
            let present: Vec<(usize, f64)> = values
                .iter()
                .zip(&notes)
                .enumerate()
                .filter_map(|(i, (v, n))| v.filter(|_| n.is_none()).map(|v| (i, v)))
                .collect();
            let best = match lower {
                Some(lower) if present.len() >= 2 => {
                    let cmp = |a: &&(usize, f64), b: &&(usize, f64)| a.1.total_cmp(&b.1);
                    let pick = if lower { present.iter().min_by(cmp) } else { present.iter().max_by(cmp) };
                    // No "best" when every run measured the same value.
                    pick.filter(|p| present.iter().any(|q| q.1 != p.1)).map(|p| p.0)
                }
                _ => None,
            };
            let (best, noise) = beyond_noise(data, &present, best, lower, &key);
            let transfer = values.iter().enumerate().map(|(i, v)| v.map(|_| mark(&data[i], &key))).collect();
            MergedRow {
                section: key.0,
                backend: key.1,
                metric: key.2,
                unit,
                values,
                notes,
                lower_is_better: lower,
                best,
                noise,
                transfer,
            }
        })
        .collect();
    let deployed = deployed_rows(data, &rows);
    MergedRuns { runs: data.iter().map(side).collect(), rows, deployed }
}

/// The backend of a row key (`container/default` -> `container`).
fn backend_of(row_backend: &str) -> &str {
    row_backend.split('/').next().unwrap_or(row_backend)
}

/// The transfer mark of the figure `key` (section, backend, metric) in `run`.
fn mark(run: &RunData, key: &(String, String, String)) -> Transfer {
    let quantity = crate::registry::section(&key.0).map_or(results::Quantity::Startup, |s| s.quantity());
    run.transfer(backend_of(&key.1), quantity)
}

/// A mark a run on another host can fill: the stand-in's CPU was emulated or its guest kernel interpreted.
/// The bare model's figures are its own model's, never filled from another one.
fn fillable(t: Transfer) -> bool {
    matches!(t, Transfer::EmulatedCpu | Transfer::InterpretedGuestKernel)
}

/// One [`DeployedRow`] per (section, model, metric) that some run measured only on a stand-in that does not
/// transfer, filled from the first run (in the order given) whose figure of the same model transfers and is
/// valid (no note).
fn deployed_rows(data: &[RunData], rows: &[MergedRow]) -> Vec<DeployedRow> {
    let mut out: Vec<DeployedRow> = Vec::new();
    let model_of = |i: usize, r: &MergedRow| data[i].model(backend_of(&r.backend));
    for r in rows {
        for (i, t) in r.transfer.iter().enumerate() {
            let Some(t) = t.filter(|t| fillable(*t)) else { continue };
            let model = model_of(i, r);
            let label = model.label().to_string();
            let at = match out.iter().position(|d| d.section == r.section && d.model == label && d.metric == r.metric) {
                Some(at) => at,
                None => {
                    let from = rows
                        .iter()
                        .filter(|o| o.section == r.section && o.metric == r.metric)
                        .flat_map(|o| (0..data.len()).map(move |j| (j, o)))
                        .filter(|(j, o)| {
                            model_of(*j, o) == model
                                && o.transfer[*j] == Some(Transfer::Transfers)
                                && o.notes[*j].is_none()
                        })
                        .min_by_key(|(j, _)| *j)
                        .map(|(j, o)| (j, o.backend.clone(), o.values[j]));
                    out.push(DeployedRow {
                        section: r.section.clone(),
                        model: label,
                        metric: r.metric.clone(),
                        unit: r.unit.clone(),
                        value: from.as_ref().and_then(|f| f.2),
                        note: from.is_none().then(|| NEEDS_VTX.to_string()),
                        from: from.map(|f| (f.0, f.1)),
                        stand_ins: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            out[at].stand_ins.push((i, r.backend.clone(), t));
        }
    }
    out
}

/// The best run kept only when it differs from the runner-up (the next best valid value) beyond noise.
fn beyond_noise(
    data: &[RunData],
    present: &[(usize, f64)],
    best: Option<usize>,
    lower: Option<bool>,
    key: &(String, String, String),
) -> (Option<usize>, Option<crate::noise::Noise>) {
    let (Some(b), Some(lower)) = (best, lower) else { return (None, None) };
    let others = present.iter().filter(|p| p.0 != b);
    let cmp = |x: &&(usize, f64), y: &&(usize, f64)| x.1.total_cmp(&y.1);
    let Some(runner_up) = (if lower { others.min_by(cmp) } else { others.max_by(cmp) }) else { return (None, None) };
    let noise = crate::noise::test_figure(&data[runner_up.0], &data[b], &key.0, &key.1, &key.2);
    (noise.beyond_noise().then_some(b), Some(noise))
}

/// Write the merged page for `runs` and return its path. `out` is a directory (the page is
/// `out/merged.html`, the charts' SVGs beside it) or a file path ending in `.html`.
pub fn merge(runs: &[RunDir], out: &Path) -> Result<PathBuf, ReportError> {
    merge_with_pair(runs, out, None)
}

/// [`merge`] with the verdicts' pair chosen (`vmct report --merge --pair`; None: the first run's default pair).
/// The page's verdicts take the first run as the primary run and fill figures it cannot transfer from the
/// others whose host has VT-x/AMD-V ([`crate::verdicts`]).
pub fn merge_with_pair(
    runs: &[RunDir],
    out: &Path,
    pair: Option<&crate::pair::ConfigPair>,
) -> Result<PathBuf, ReportError> {
    let data: Vec<RunData> = runs.iter().map(RunData::load).collect::<Result<_, _>>()?;
    let m = merged_of(&data);
    let (path, dir) = crate::render::out_path(out, "merged.html");
    fs::create_dir_all(&dir).map_err(|source| ReportError::Write { path: dir.clone(), source })?;
    let charts = charts(&m, &data)?;
    for c in &charts {
        let p = dir.join(&c.file);
        fs::write(&p, &c.svg).map_err(|source| ReportError::Write { path: p, source })?;
    }
    let verdicts = match data.split_first() {
        Some((first, rest)) => {
            crate::render::verdict_section(first, rest, pair, None, Some(&first.dir.display().to_string()))
        }
        None => String::new(),
    };
    fs::write(&path, merged_html_with(&m, &charts, &verdicts))
        .map_err(|source| ReportError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// A distinct colour per run (hosts are not backends, so the backend palette does not apply).
fn run_color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

/// Short legend label: run id and host name (the runs table has the host's full description).
fn run_label(m: &MergedRuns, i: usize) -> String {
    let host = m.runs[i].host.split(" (").next().unwrap_or_default();
    format!("{} @ {host}", m.runs[i].id)
}

/// Startup medians and density slopes, one bar per (backend, run).
/// Sample counts of run `r` for a chart's legend: sequential launches per backend, or instances per density sweep.
fn samples(r: &RunData, density: bool) -> String {
    let ns: Vec<u32> = if density {
        r.density_fit.iter().flatten().map(|f| f.instances).collect()
    } else {
        r.startup_summary.iter().flatten().filter(|s| s.mode == results::StartupMode::Sequential).map(|s| s.n).collect()
    };
    let (lo, hi) = (ns.iter().min(), ns.iter().max());
    let what = if density { "instances" } else { "launches" };
    match (lo, hi) {
        (Some(l), Some(h)) if l == h => format!("n={l} {what}"),
        (Some(l), Some(h)) => format!("n={l}-{h} {what}"),
        _ => "not measured".into(),
    }
}

fn charts(m: &MergedRuns, data: &[RunData]) -> Result<Vec<crate::charts::Chart>, ReportError> {
    let mut out = Vec::new();
    for (file, metric, x_desc, scale, title) in [
        (
            "merged_startup.svg",
            "median sequential",
            "launch-to-ready, median (ms)",
            1e3,
            "Startup median per backend and run (sequential launches)",
        ),
        (
            "merged_density.svg",
            "per-instance slope",
            "host memory per instance (MiB)",
            1.0 / (1024.0 * 1024.0),
            "Density: fitted host memory per instance, per backend and run",
        ),
    ] {
        let mut bars = Vec::new();
        for r in m.rows.iter().filter(|r| r.metric == metric) {
            for (i, v) in r.values.iter().enumerate() {
                if let Some(v) = v {
                    bars.push(Bar {
                        label: format!(
                            "{} #{}{}",
                            r.backend,
                            i + 1,
                            r.transfer[i].map_or_else(String::new, crate::marks::chart_note_of)
                        ),
                        segments: vec![(v * scale, run_color(i))],
                    });
                }
            }
        }
        let spec = BarChart {
            file: file.into(),
            title: format!("{title} ({} runs)", m.runs.len()),
            x_desc: x_desc.into(),
            legend: (0..m.runs.len())
                .map(|i| {
                    let n = samples(&data[i], file.contains("density"));
                    (format!("#{} {}, {n}", i + 1, run_label(m, i)), run_color(i))
                })
                .collect(),
            bars,
            reference: None,
        };
        out.extend(bar_chart(&spec)?);
    }
    Ok(out)
}

/// The cells of a deployed-model row: the model, the figure with where its value came from (or
/// [`NEEDS_VTX`]), then per run the transferable value (in the run it came from) or what that run measured
/// instead.
fn deployed_cells(m: &MergedRuns, d: &DeployedRow, csv: &str) -> Vec<String> {
    let source = match &d.from {
        Some((i, b)) => format!("from #{} {} ({})", i + 1, run_label(m, *i), b),
        None => d.note.clone().unwrap_or_else(|| NEEDS_VTX.to_string()),
    };
    let mut cells = vec![
        format!("<b>{}</b><br><span class=\"na\">deployed model</span>", esc(&d.model)),
        format!("{} <span class=\"na\">({})</span>", esc(&d.metric), esc(&source)),
    ];
    for i in 0..m.runs.len() {
        let stand_in = d.stand_ins.iter().find(|s| s.0 == i);
        cells.push(match (&d.from, stand_in) {
            (Some((j, _)), _) if *j == i => {
                let href = format!("{}/{}", m.runs[i].dir.trim_end_matches('/'), csv);
                figure_cell(d.value, &None, &href, &d.unit)
            }
            (_, Some((_, b, t))) => {
                format!("<span class=\"na\">{} does not transfer</span> {}", esc(b), crate::marks::badge(*t))
            }
            (None, None) => format!("<span class=\"na\">{NEEDS_VTX}</span>"),
            _ => "<span class=\"na\">-</span>".to_string(),
        });
    }
    cells
}

/// The merged page's HTML (`charts` as returned by drawing them; may be empty).
pub fn merged_html(m: &MergedRuns, charts: &[crate::charts::Chart]) -> String {
    merged_html_with(m, charts, "")
}

/// [`merged_html`] with a verdict section (HTML) after the runs table.
pub fn merged_html_with(m: &MergedRuns, charts: &[crate::charts::Chart], verdicts: &str) -> String {
    let cols: Vec<String> = (0..m.runs.len()).map(|i| format!("#{}", i + 1)).collect();
    let mut headers: Vec<&str> = vec![""];
    headers.extend(cols.iter().map(String::as_str));
    let field = |f: &dyn Fn(&RunSide) -> String| m.runs.iter().map(|r| esc(&f(r))).collect::<Vec<_>>();
    let mut run_rows: Vec<Vec<String>> = Vec::new();
    for (k, vals) in [
        ("run", field(&|r| r.id.clone())),
        ("host", field(&|r| r.host.clone())),
        ("KVM flavour", field(&|r| r.kvm.clone())),
        ("cgroup layout", field(&|r| r.cgroup.clone())),
        ("vmct", field(&|r| r.vmct_version.clone())),
        ("git commit", field(&|r| r.git_commit.clone().unwrap_or_else(|| "unknown".into()))),
        ("started", field(&|r| r.started.clone())),
    ] {
        run_rows.push(std::iter::once(esc(k)).chain(vals).collect());
    }
    run_rows.push(
        std::iter::once("report".to_string())
            .chain(m.runs.iter().map(|r| {
                let p = format!("{}/report.html", r.dir.trim_end_matches('/'));
                format!("<a href=\"{}\">report.html</a>", esc(&p))
            }))
            .collect(),
    );
    let hosts: std::collections::BTreeSet<&str> = m.runs.iter().map(|r| r.host.as_str()).collect();
    let mut body = format!(
        "<header class=\"top\"><h1>vmct: {} runs merged</h1><p class=\"sub\">{} distinct host(s): {} · one column \
         per run · <span class=\"down\">green</span> = best of the row, when it differs from the runner-up beyond \
         noise (95% bootstrap CI on the raw samples)</p></header>",
        m.runs.len(),
        hosts.len(),
        esc(&hosts.iter().copied().collect::<Vec<_>>().join("; "))
    );
    body.push_str(&section("runs", "Runs and hosts", &table(&headers, &run_rows)));
    body.push_str(&crate::marks::legend());
    if !m.deployed.is_empty() {
        body.push_str(
            "<p>Rows named <b>deployed model</b> give, for a figure some run measured only on a stand-in that does              not transfer (marked), the same figure of the same model from a run where it transfers, with the run              and host it came from.</p>",
        );
    }
    body.push_str(verdicts);
    if !charts.is_empty() {
        let figs: String = charts
            .iter()
            .map(|c| figure(c, if c.file.contains("density") { "density_summary.csv" } else { "startup_summary.csv" }))
            .collect();
        body.push_str(&section("charts", "Startup and density by host", &figs));
    }
    let mut fig_headers: Vec<&str> = vec!["backend", "figure"];
    fig_headers.extend(cols.iter().map(String::as_str));
    for (sec, title) in compared_sections() {
        let rows: Vec<Vec<String>> = m
            .rows
            .iter()
            .filter(|r| r.section == sec.id())
            .map(|r| {
                let mut cells = vec![
                    backend(r.backend.split('/').next().unwrap_or(&r.backend))
                        + &esc(r.backend.find('/').map_or("", |i| &r.backend[i..])),
                    esc(&r.metric)
                        + &r.noise.as_ref().map_or(String::new(), |n| {
                            let text = n.describe(|v| crate::units::fmt_value(v, &r.unit));
                            format!(" <span class=\"noise\">(best vs runner-up: {})</span>", esc(&text))
                        }),
                ];
                for (i, v) in r.values.iter().enumerate() {
                    let href = format!("{}/{}", m.runs[i].dir.trim_end_matches('/'), sec.csv());
                    let cell = figure_cell(*v, &r.notes[i], &href, &r.unit);
                    let cell =
                        if r.best == Some(i) { cell.replacen("class=\"n\"", "class=\"n down\"", 1) } else { cell };
                    cells.push(match r.transfer[i] {
                        Some(t) if !t.transfers() => format!("{cell} {}", crate::marks::badge(t)),
                        _ => cell,
                    });
                }
                cells
            })
            .chain(m.deployed.iter().filter(|d| d.section == sec.id()).map(|d| deployed_cells(m, d, sec.csv())))
            .collect();
        let html = if rows.is_empty() {
            "<p class=\"notrun\">Not run in any of these runs.</p>".to_string()
        } else {
            table(&fig_headers, &rows)
        };
        body.push_str(&section(sec.id(), title, &html));
    }
    body.push_str(&format!(
        "<footer>Generated by <code>vmct report --merge</code> from {} run directories. Numbers link to the CSV \
         they came from; each run's own report has its sample counts and caveats.</footer>",
        m.runs.len()
    ));
    page(&format!("vmct: {} runs merged", m.runs.len()), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use results::StartupSummary;

    #[test]
    fn merges_three_runs_with_best_values_charts_and_links() {
        let d = tempfile::tempdir().unwrap();
        // Run b is twice as slow to start, run c twice as fast and did not measure crun.
        let runs: Vec<RunDir> = [("a", 1.0), ("b", 2.0), ("c", 0.5)]
            .iter()
            .map(|(n, scale)| crate::fixture::write_drawn(&d.path().join(n), 42, *scale).unwrap())
            .collect();
        let mut rows: Vec<StartupSummary> = runs[2].read_csv().unwrap();
        rows.retain(|r| r.backend != "crun");
        runs[2].write_csv(&rows).unwrap();

        let m = merged(&runs).unwrap();
        assert_eq!(m.runs.len(), 3);
        let row = |b: &str, metric: &str| m.rows.iter().find(|r| r.backend == b && r.metric == metric).unwrap();
        let c = row("container", "median sequential");
        assert_eq!(c.best, Some(2), "the fastest run is marked");
        assert!(matches!(c.noise, Some(crate::noise::Noise::Changed { .. })), "{c:?}");
        assert!((c.values[1].unwrap() / c.values[0].unwrap() - 2.0).abs() < 1e-9);
        let crun = row("crun", "median sequential");
        assert_eq!((crun.values[2], crun.notes[2].as_deref()), (None, Some("not measured in this run")));
        assert_eq!(row("container/default", "failures").best, None, "equal values have no best");
        serde_json::to_string(&m).unwrap();

        let out = d.path().join("merged");
        let page = merge(&runs, &out).unwrap();
        assert_eq!(page, out.join("merged.html"));
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("3 runs merged") && html.contains("<svg"));
        assert!(out.join("merged_startup.svg").exists() && out.join("merged_density.svg").exists());
        for r in &m.runs {
            assert!(html.contains(&format!("{}/report.html", r.dir)));
            assert!(html.contains(&format!("{}/startup_summary.csv", r.dir)));
        }
        assert!(html.contains("class=\"n down\""));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    /// The merged page's verdicts take the first run as primary and fill its non-transferable figures (qemu-tcg
    /// startup) from a merged run whose host has VT-x, naming it.
    #[test]
    fn merged_page_verdicts_fill_emulated_figures_from_a_vtx_run() {
        let d = tempfile::tempdir().unwrap();
        let tcg = crate::fixture::write_with_emulated_guest(&d.path().join("tcg")).unwrap();
        let mut rows: Vec<StartupSummary> = tcg.read_csv().unwrap();
        let mut q = rows.iter().find(|r| r.backend == "microvm").unwrap().clone();
        (q.backend, q.median_s) = ("qemu-tcg".into(), 2.5);
        rows.push(q);
        tcg.write_csv(&rows).unwrap();
        let vtx = crate::fixture::write_vtx_host(&d.path().join("vtx")).unwrap();
        let section = |html: &str| {
            let s = &html[html.find("<section id=\"verdicts\">").unwrap()..];
            s[..s.find("</section>").unwrap()].to_string()
        };
        let alone = merge(&[tcg.clone(), crate::fixture::write(&d.path().join("plain")).unwrap()], &d.path().join("a"))
            .unwrap();
        assert!(section(&std::fs::read_to_string(alone).unwrap()).contains("needs a run on a VT-x host"));
        let page = merge(&[tcg, vtx], &d.path().join("b")).unwrap();
        let sec = section(&std::fs::read_to_string(page).unwrap());
        let main = &sec[..sec.find("<details").unwrap_or(sec.len())];
        assert!(main.contains("<b>container vs qemu-tcg</b>"), "{main}");
        assert!(main.contains("from merged run fixture-vtx-run on host fixture-vtx-host"), "{main}");
    }

    #[test]
    fn invalid_and_single_sample_figures_never_are_the_best() {
        let d = tempfile::tempdir().unwrap();
        let a = crate::fixture::write(&d.path().join("a")).unwrap();
        let b = crate::fixture::write_degenerate(&d.path().join("b")).unwrap();
        let c = crate::fixture::write_drawn(&d.path().join("c"), 42, 2.0).unwrap();
        let m = merged(&[a, b, c]).unwrap();
        let row = |b: &str, metric: &str| m.rows.iter().find(|r| r.backend == b && r.metric == metric).unwrap();
        let single = row("container-privileged", "median sequential");
        assert_eq!((single.best, single.values[1]), (Some(0), Some(0.0005)), "{single:?}");
        assert_eq!(single.notes[1].as_deref(), Some("n = 1: too few samples to compare"));
        let zero = row("container", "median sequential");
        assert_eq!((zero.best, zero.values[1]), (Some(0), None), "{zero:?}");
        let neg = row("container", "instances per GiB");
        assert_eq!(neg.notes[1].as_deref(), Some("invalid: -1.07 k (must be greater than zero)"));
        assert_eq!(neg.best, None, "the two valid runs measured the same value");
        let html = merged_html(&m, &[]);
        assert!(html.contains("<span class=\"flaw\">(n = 1: too few samples to compare)</span>"));
        assert!(!html.contains("NaN B"));
    }

    /// A run from this host (kvm_pvm) whose linux guest ran only emulated (qemu-tcg): its startup and host
    /// memory per instance do not transfer, and alone the merged page says so and that the deployed model's
    /// figure needs a run on a VT-x host; merged with a VT-x host's run (microvm-linux under kvm_intel), the
    /// deployed model's figures come from that run, named with its host.
    #[test]
    fn a_vtx_hosts_run_fills_the_deployed_models_figures() {
        let d = tempfile::tempdir().unwrap();
        let here = crate::fixture::write_with_emulated_guest(&d.path().join("here")).unwrap();
        let mut sums: Vec<StartupSummary> = here.read_csv().unwrap();
        let mut tcg: Vec<_> = sums.iter().filter(|s| s.backend == "microvm").cloned().collect();
        tcg.iter_mut().for_each(|s| (s.backend, s.median_s) = ("qemu-tcg".into(), s.median_s * 300.0));
        sums.extend(tcg);
        here.write_csv(&sums).unwrap();
        let mut fits: Vec<results::DensityFit> = here.read_csv().unwrap();
        let mut tcg = fits.iter().find(|f| f.backend == "microvm").unwrap().clone();
        tcg.backend = "qemu-tcg".into();
        fits.push(tcg);
        here.write_csv(&fits).unwrap();
        let vtx = crate::fixture::write_vtx_host(&d.path().join("vtx")).unwrap();

        let alone = merged(std::slice::from_ref(&here)).unwrap();
        let start = |m: &MergedRuns| {
            m.deployed.iter().find(|r| r.section == "startup" && r.metric == "median sequential").unwrap().clone()
        };
        let s = start(&alone);
        assert_eq!((s.value, s.from.clone(), s.note.as_deref()), (None, None, Some(NEEDS_VTX)), "{s:?}");
        assert_eq!(s.model, "microVM (linux guest)");
        assert_eq!(s.stand_ins, vec![(0, "qemu-tcg".to_string(), Transfer::EmulatedCpu)]);
        assert!(alone.deployed.iter().all(|r| r.model != "microVM (bare guest)"), "the bare model is its own");
        assert!(alone.deployed.iter().any(|r| r.section == "density" && r.metric == "per-instance slope"));
        let html = merged_html(&alone, &[]);
        assert!(html.contains("median sequential <span class=\"na\">(needs a run on a VT-x host)</span>"), "{html}");
        assert!(html.contains(&crate::marks::badge(Transfer::EmulatedCpu)));

        let both = merged(&[here, vtx.clone()]).unwrap();
        let s = start(&both);
        let linux: Vec<StartupSummary> = vtx.read_csv().unwrap();
        let want = linux.iter().find(|r| r.backend == "microvm-linux" && r.mode.concurrency().is_none()).unwrap();
        assert_eq!(s.value, Some(want.median_s), "{s:?}");
        assert_eq!((s.from, s.note), (Some((1, "microvm-linux".to_string())), None));
        let slope = both.deployed.iter().find(|r| r.metric == "per-instance slope").unwrap();
        let vfits: Vec<results::DensityFit> = vtx.read_csv().unwrap();
        let want = vfits.iter().find(|f| f.backend == "microvm-linux").unwrap().slope_bytes;
        assert_eq!((slope.value, slope.from.as_ref().map(|f| f.0)), (Some(want), Some(1)), "{slope:?}");
        let row = both.rows.iter().find(|r| r.backend == "microvm-linux" && r.metric == "median sequential").unwrap();
        assert_eq!(row.transfer, vec![None, Some(Transfer::Transfers)]);
        let html = merged_html(&both, &[]);
        assert!(html.contains("(from #2 fixture-vtx-run @ fixture-vtx-host (microvm-linux))"), "{html}");
        assert!(both.deployed.iter().all(|r| r.note.is_none()), "{:?}", both.deployed);
        assert!(!html.contains(NEEDS_VTX), "every stand-in's figure is filled");
    }

    /// The best of a row is marked only when it beats the runner-up beyond noise: two runs drawn from
    /// the same distribution have no best.
    #[test]
    fn runs_within_noise_have_no_best() {
        let d = tempfile::tempdir().unwrap();
        let a = crate::fixture::write_drawn(&d.path().join("a"), 42, 1.0).unwrap();
        let b = crate::fixture::write_drawn(&d.path().join("b"), 43, 1.0).unwrap();
        let m = merged(&[a, b]).unwrap();
        let c = m.rows.iter().find(|r| r.backend == "container" && r.metric == "median sequential").unwrap();
        assert_ne!(c.values[0], c.values[1]);
        assert_eq!(c.best, None, "{c:?}");
        assert!(matches!(c.noise, Some(crate::noise::Noise::NoChange { .. })), "{c:?}");
        assert!(merged_html(&m, &[]).contains("best vs runner-up: no change detected"));
    }
}

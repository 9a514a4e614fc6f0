//! Comparison of two runs (two hosts, two versions): side-by-side deltas of startup medians and p99s, density
//! slopes, overhead ratios, isolation failures, blast-radius slowdowns and save times, as data (for `--json`)
//! and as one self-contained HTML page.
use crate::data::RunData;
use crate::html::{backend, esc, page, section, table};
use crate::registry::{ReportSection, SECTIONS};
use crate::timefmt::utc;
use crate::units::fmt_value;
use crate::validity::Figure;
use crate::ReportError;
use results::RunDir;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// Which run and host one side of the comparison is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSide {
    /// Run id.
    pub id: String,
    /// Run directory.
    pub dir: String,
    /// Host label (name, cores, memory).
    pub host: String,
    /// KVM flavour.
    pub kvm: String,
    /// cgroup layout.
    pub cgroup: String,
    /// vmct version.
    pub vmct_version: String,
    /// git commit, if known.
    pub git_commit: Option<String>,
    /// Start date, UTC.
    pub started: String,
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaRow {
    /// `startup`, `density`, `overhead`, `isolation`, `blast`, `snapshot`.
    pub section: String,
    /// Backend name (with `/profile` for isolation).
    pub backend: String,
    /// What is compared (`median sequential`, `slope`, `cpu.sha256 ratio`, ...).
    pub metric: String,
    /// Unit of `a` and `b` (`s`, `bytes`, `ratio`, `count`, `1/GiB`).
    pub unit: String,
    /// Value in run A.
    pub a: Option<f64>,
    /// Value in run B.
    pub b: Option<f64>,
    /// Why A has no value (e.g. `unsupported: bare guest has no system calls`), or why its value is not compared
    /// (e.g. `n = 1: too few samples to compare`); no delta is computed then.
    pub a_note: Option<String>,
    /// Why B has no value, or why its value is not compared.
    pub b_note: Option<String>,
    /// b - a.
    pub delta: Option<f64>,
    /// (b - a) / a * 100.
    pub delta_pct: Option<f64>,
    /// Whether a lower value is better (None when the direction is not known).
    pub lower_is_better: Option<bool>,
    /// Whether the delta is beyond noise (a bootstrap CI on the runs' raw samples, [`crate::noise`]);
    /// only a change beyond noise counts as better or worse.
    pub noise: crate::noise::Noise,
    /// A's transfer mark of the figure (None when A has no value).
    pub a_transfer: Option<results::Transfer>,
    /// B's transfer mark of the figure (None when B has no value).
    pub b_transfer: Option<results::Transfer>,
}

impl DeltaRow {
    /// Whether B is better than A (None when unknown, equal, or within noise).
    pub fn b_better(&self) -> Option<bool> {
        let d = self.delta?;
        if d == 0.0 || !self.noise.beyond_noise() {
            return None;
        }
        Some((d < 0.0) == self.lower_is_better?)
    }
}

/// The deltas of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDeltas {
    /// Run A (the baseline).
    pub a: RunSide,
    /// Run B.
    pub b: RunSide,
    /// Every figure present in either run.
    pub rows: Vec<DeltaRow>,
}

pub(crate) fn side(r: &RunData) -> RunSide {
    RunSide {
        id: r.meta.id.clone(),
        dir: fs::canonicalize(&r.dir).unwrap_or_else(|_| r.dir.clone()).display().to_string(),
        host: r.host_label(),
        kvm: r.meta.host.kvm.as_str().into(),
        cgroup: r.meta.host.cgroup.as_str().into(),
        vmct_version: r.meta.vmct_version.clone(),
        git_commit: r.meta.git_commit.clone(),
        started: utc(r.meta.started_unix_s),
    }
}

/// A figure keyed by (section, backend, metric) with its unit, direction, and the figure or a note saying why
/// there is none.
pub type Fig = ((String, String, String), String, Option<bool>, Result<Figure, String>);

/// A figure's value and note as a comparison shows it, by [`crate::validity`]'s rule: (value, None) when valid,
/// (value, reason) when shown but not compared (too few samples), (None, reason) when there is no usable value.
pub(crate) fn judged(f: &Result<Figure, String>, unit: &str) -> (Option<f64>, Option<String>) {
    match f {
        Ok(fig) => match fig.check() {
            Ok(v) => (Some(v), None),
            Err(flaw) if flaw.shows_value() => (Some(fig.value), Some(flaw.to_string())),
            Err(flaw) => (None, Some(flaw.describe(|v| fmt_value(v, unit)))),
        },
        Err(note) => (None, Some(note.clone())),
    }
}

/// Every figure of run `r`, section by section in [`SECTIONS`] order.
pub(crate) fn figures(r: &RunData) -> Vec<Fig> {
    SECTIONS.iter().flat_map(|s| s.figures(r)).collect()
}

fn deltas_of(a: &RunData, b: &RunData) -> RunDeltas {
    let fa = figures(a);
    let fb = figures(b);
    let mut keys: Vec<(String, String, String)> = fa.iter().map(|f| f.0.clone()).collect();
    for f in &fb {
        if !keys.contains(&f.0) {
            keys.push(f.0.clone());
        }
    }
    let absent = |r: &RunData, sec: &str| {
        if crate::registry::section(sec).is_some_and(|s| s.present(r)) {
            "not measured for this backend".to_string()
        } else {
            "not run in this run".to_string()
        }
    };
    let rows = keys
        .into_iter()
        .map(|key| {
            let ga = fa.iter().find(|f| f.0 == key);
            let gb = fb.iter().find(|f| f.0 == key);
            let g = ga.or(gb).expect("key comes from one side");
            let val = |x: Option<&Fig>, r: &RunData| match x {
                Some(f) => judged(&f.3, &g.1),
                None => (None, Some(absent(r, &key.0))),
            };
            let (av, an) = val(ga, a);
            let (bv, bn) = val(gb, b);
            let mark = |r: &RunData| {
                let q = crate::registry::section(&key.0).map_or(results::Quantity::Startup, |s| s.quantity());
                r.transfer(key.1.split('/').next().unwrap_or(&key.1), q)
            };
            // Only two valid figures (no note) are compared.
            let delta = av.zip(bv).filter(|_| an.is_none() && bn.is_none()).map(|(x, y)| y - x);
            let noise = match delta {
                Some(_) => crate::noise::test_figure(a, b, &key.0, &key.1, &key.2),
                None => crate::noise::Noise::Untested { reason: "no delta".into() },
            };
            DeltaRow {
                section: key.0.clone(),
                backend: key.1.clone(),
                metric: key.2.clone(),
                unit: g.1.clone(),
                a: av,
                b: bv,
                a_note: an,
                b_note: bn,
                delta,
                delta_pct: av.zip(delta).filter(|(x, _)| *x != 0.0).map(|(x, d)| d / x * 100.0),
                lower_is_better: g.2,
                noise,
                a_transfer: av.map(|_| mark(a)),
                b_transfer: bv.map(|_| mark(b)),
            }
        })
        .collect();
    RunDeltas { a: side(a), b: side(b), rows }
}

/// The deltas of run B against run A, as data (for `vmct compare --json`).
pub fn deltas(a: &RunDir, b: &RunDir) -> Result<RunDeltas, ReportError> {
    Ok(deltas_of(&RunData::load(a)?, &RunData::load(b)?))
}

/// A comparison or merged page's cell: the value linking to its CSV, with the note (too few samples) marked
/// after it, or only the note when there is no value.
pub(crate) fn figure_cell(v: Option<f64>, note: &Option<String>, href: &str, unit: &str) -> String {
    match (v, note) {
        (Some(v), None) => format!("<a class=\"n\" href=\"{}\">{}</a>", esc(href), esc(&fmt_value(v, unit))),
        (Some(v), Some(n)) => format!(
            "<a class=\"n\" href=\"{}\">{}</a> <span class=\"flaw\">({})</span>",
            esc(href),
            esc(&fmt_value(v, unit)),
            esc(n)
        ),
        (None, n) => format!("<span class=\"na\">{}</span>", esc(n.as_deref().unwrap_or("-"))),
    }
}

/// The sections of a comparison or merged page with their headings, in page order: those of [`SECTIONS`]
/// with a [`ReportSection::compare_title`].
pub(crate) fn compared_sections() -> impl Iterator<Item = (&'static dyn ReportSection, &'static str)> {
    SECTIONS.iter().filter_map(|s| Some((*s, s.compare_title()?)))
}

/// Write the comparison page and return its path. `out` is a directory (the page is `out/compare.html`) or a
/// file path ending in `.html`.
pub fn compare(a: &RunDir, b: &RunDir, out: &Path) -> Result<PathBuf, ReportError> {
    let d = deltas(a, b)?;
    let path = if out.extension().is_some_and(|e| e == "html") { out.to_path_buf() } else { out.join("compare.html") };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| ReportError::Write { path: parent.to_path_buf(), source })?;
    }
    fs::write(&path, compare_html(&d)).map_err(|source| ReportError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// The comparison page's HTML.
pub fn compare_html(d: &RunDeltas) -> String {
    let side_rows: Vec<Vec<String>> = [
        ("run", d.a.id.clone(), d.b.id.clone()),
        ("directory", d.a.dir.clone(), d.b.dir.clone()),
        ("host", d.a.host.clone(), d.b.host.clone()),
        ("KVM flavour", d.a.kvm.clone(), d.b.kvm.clone()),
        ("cgroup layout", d.a.cgroup.clone(), d.b.cgroup.clone()),
        ("vmct", d.a.vmct_version.clone(), d.b.vmct_version.clone()),
        (
            "git commit",
            d.a.git_commit.clone().unwrap_or_else(|| "unknown".into()),
            d.b.git_commit.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("started", d.a.started.clone(), d.b.started.clone()),
    ]
    .into_iter()
    .map(|(k, a, b)| vec![esc(k), esc(&a), esc(&b)])
    .collect();
    let mut body = format!(
        "<header class=\"top\"><h1>vmct comparison</h1><p class=\"sub\">A = <b>{}</b> on {} · B = <b>{}</b> on {} · \
         Δ = B − A; <span class=\"down\">green</span> = B better, <span class=\"up\">red</span> = B worse, only \
         beyond noise (95% bootstrap CI of the difference on the raw samples)</p>\
         </header>",
        esc(&d.a.id),
        esc(&d.a.host),
        esc(&d.b.id),
        esc(&d.b.host)
    );
    body.push_str(&section("runs", "Runs", &table(&["", "A", "B"], &side_rows)));
    body.push_str(&crate::marks::legend());
    for (sec, title) in compared_sections() {
        let link = |dir: &str| format!("{}/{}", dir.trim_end_matches('/'), sec.csv());
        let rows: Vec<Vec<String>> = d
            .rows
            .iter()
            .filter(|r| r.section == sec.id())
            .map(|r| {
                let cell = |v: Option<f64>, note: &Option<String>, dir: &str, t: Option<results::Transfer>| {
                    let c = figure_cell(v, note, &link(dir), &r.unit);
                    match t {
                        Some(t) if !t.transfers() => format!("{c} {}", crate::marks::badge(t)),
                        _ => c,
                    }
                };
                let class = match r.b_better() {
                    Some(true) => "down",
                    Some(false) => "up",
                    None => "",
                };
                let delta = match (r.delta, r.delta_pct) {
                    (Some(dv), Some(p)) => format!(
                        "{}{} ({:+.1}%)",
                        if dv >= 0.0 { "+" } else { "−" },
                        esc(&fmt_value(dv.abs(), &r.unit)),
                        p
                    ),
                    (Some(dv), None) => {
                        format!("{}{}", if dv >= 0.0 { "+" } else { "−" }, esc(&fmt_value(dv.abs(), &r.unit)))
                    }
                    _ => "<span class=\"na\">-</span>".into(),
                };
                let noise = match r.delta {
                    Some(_) => {
                        format!(" <span class=\"noise\">{}</span>", esc(&r.noise.describe(|v| fmt_value(v, &r.unit))))
                    }
                    None => String::new(),
                };
                vec![
                    backend(r.backend.split('/').next().unwrap_or(&r.backend))
                        + &esc(r.backend.find('/').map_or("", |i| &r.backend[i..])),
                    esc(&r.metric),
                    cell(r.a, &r.a_note, &d.a.dir, r.a_transfer),
                    cell(r.b, &r.b_note, &d.b.dir, r.b_transfer),
                    format!("<span class=\"{class}\">{delta}</span>{noise}"),
                ]
            })
            .collect();
        let html = if rows.is_empty() {
            "<p class=\"notrun\">Not run in either run.</p>".to_string()
        } else {
            table(&["backend", "figure", "A", "B", "Δ (B − A)"], &rows)
        };
        body.push_str(&section(sec.id(), title, &html));
    }
    body.push_str(&format!(
        "<footer>Generated by <code>vmct compare</code> from {} and {}. Numbers link to the CSV they came from.</footer>",
        esc(&d.a.dir),
        esc(&d.b.dir)
    ));
    page(&format!("vmct comparison: {} vs {}", d.a.id, d.b.id), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use results::{Record, StartupSummary};

    #[test]
    fn compares_two_runs_as_data_and_html() {
        let d = tempfile::tempdir().unwrap();
        let a = crate::fixture::write(&d.path().join("a")).unwrap();
        let b = crate::fixture::write_drawn(&d.path().join("b"), 42, 2.0).unwrap();
        let mut rows: Vec<StartupSummary> = b.read_csv().unwrap();
        rows.retain(|r| r.backend != "crun");
        b.write_csv(&rows).unwrap();
        std::fs::remove_file(b.path().join(results::SnapshotRow::FILE)).unwrap();

        let dl = deltas(&a, &b).unwrap();
        let row = |backend: &str, metric: &str| {
            dl.rows.iter().find(|r| r.backend == backend && r.metric == metric).unwrap().clone()
        };
        let c = row("container", "median sequential");
        assert!((c.delta_pct.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(c.b_better(), Some(false));
        let crun = row("crun", "median sequential");
        assert_eq!((crun.b, crun.b_note.as_deref()), (None, Some("not measured for this backend")));
        assert_eq!(
            (c.a_transfer, c.b_transfer),
            (Some(results::Transfer::Transfers), Some(results::Transfer::Transfers))
        );
        let bare = row("microvm", "median sequential");
        assert_eq!(bare.b_transfer, Some(results::Transfer::BareModelOnly), "{bare:?}");
        assert_eq!(crun.b_transfer, None, "no value, no mark");
        let snap = row("microvm", "save 16 MiB");
        assert_eq!(snap.b_note.as_deref(), Some("not run in this run"));
        let unsup = row("microvm", "syscall ratio to process");
        assert!(unsup.a_note.unwrap().starts_with("unsupported: bare guest"));
        assert_eq!(row("container/default", "failures").delta, Some(0.0));
        serde_json::to_string(&dl).unwrap();

        let page = compare(&a, &b, d.path()).unwrap();
        assert_eq!(page, d.path().join("compare.html"));
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("+100.0%") && html.contains("class=\"up\""));
        assert!(html.contains(&crate::marks::badge(results::Transfer::BareModelOnly)));
        assert!(html.contains(&format!("{}/startup_summary.csv", dl.a.dir)));
        assert!(!html.contains("http://") && !html.contains("https://"));
        let file = compare(&a, &b, &d.path().join("out/x.html")).unwrap();
        assert!(file.ends_with("out/x.html") && file.exists());
        assert_eq!(StartupSummary::FILE, "startup_summary.csv");
    }

    /// Two runs drawn from the same distribution compare as "no change detected" and are not coloured;
    /// a run shifted by 30% compares as changed, with its interval, and is coloured worse.
    #[test]
    fn only_changes_beyond_noise_are_better_or_worse() {
        let d = tempfile::tempdir().unwrap();
        let a = crate::fixture::write_drawn(&d.path().join("a"), 42, 1.0).unwrap();
        let same = crate::fixture::write_drawn(&d.path().join("same"), 43, 1.0).unwrap();
        let shifted = crate::fixture::write_drawn(&d.path().join("shifted"), 44, 1.3).unwrap();
        let row = |dl: &RunDeltas, backend: &str, metric: &str| {
            dl.rows.iter().find(|r| r.backend == backend && r.metric == metric).unwrap().clone()
        };
        let dl = deltas(&a, &same).unwrap();
        for b in ["process", "microvm", "container", "crun"] {
            let r = row(&dl, b, "median sequential");
            assert!(r.delta.is_some_and(|d| d != 0.0), "{r:?}");
            assert!(matches!(r.noise, crate::noise::Noise::NoChange { .. }), "{r:?}");
            assert_eq!(r.b_better(), None, "{r:?}");
        }
        let slope = row(&dl, "container", "per-instance slope");
        assert!(matches!(slope.noise, crate::noise::Noise::NoChange { .. }), "{slope:?}");
        let html = compare_html(&dl);
        assert!(html.contains("no change detected (95% CI"));
        let dl = deltas(&a, &shifted).unwrap();
        let r = row(&dl, "container", "median sequential");
        assert!(matches!(r.noise, crate::noise::Noise::Changed { .. }), "{r:?}");
        assert_eq!(r.b_better(), Some(false));
        assert!(compare_html(&dl).contains("changed by +"));
        // Figures without raw samples are never coloured.
        let blast = dl.rows.iter().find(|r| r.section == "blast").unwrap();
        assert!(matches!(blast.noise, crate::noise::Noise::Untested { .. }));
    }

    #[test]
    fn invalid_and_single_sample_figures_are_shown_marked_and_not_compared() {
        let d = tempfile::tempdir().unwrap();
        let a = crate::fixture::write(&d.path().join("a")).unwrap();
        let b = crate::fixture::write_degenerate(&d.path().join("b")).unwrap();
        let dl = deltas(&a, &b).unwrap();
        let row = |backend: &str, metric: &str| {
            dl.rows.iter().find(|r| r.backend == backend && r.metric == metric).unwrap().clone()
        };
        let zero = row("container", "median sequential");
        assert_eq!((zero.b, zero.delta, zero.b_better()), (None, None, None));
        assert_eq!(zero.b_note.as_deref(), Some("invalid: 0 s (must be greater than zero)"));
        let single = row("container-privileged", "median sequential");
        assert_eq!((single.b, single.delta, single.b_better()), (Some(0.0005), None, None), "{single:?}");
        assert_eq!(single.b_note.as_deref(), Some("n = 1: too few samples to compare"));
        let nan = row("microvm", "per-instance slope");
        assert_eq!((nan.b, nan.b_note.as_deref()), (None, Some("invalid: NaN (not a finite number)")));
        let neg = row("container", "instances per GiB");
        assert_eq!(neg.b_note.as_deref(), Some("invalid: -1.07 k (must be greater than zero)"));
        let html = compare_html(&dl);
        assert!(html.contains("500 µs</a> <span class=\"flaw\">(n = 1: too few samples to compare)</span>"));
        assert!(!html.contains("NaN B") && !html.contains("−100.0%"), "no delta against an invalid figure");
    }
}

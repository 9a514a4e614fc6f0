//! The experiment sections of the report: startup, density, overhead, isolation, blast radius, snapshot, each
//! registered in [`crate::registry::SECTIONS`], which gives it its id, title and CSV. Each returns its HTML and
//! the charts it drew; a section whose CSV is absent says "not run in this run" and why, one
//! whose CSV is present but empty says so. Figures are judged by [`crate::validity`]: impossible values are
//! replaced by the reason, single-sample figures are marked.
use crate::charts::bars::{bar_chart, Bar, BarChart};
use crate::charts::cdf::{startup_cdf, CdfSeries};
use crate::charts::lines::{xy_chart, XyChart, XySeries};
use crate::charts::{Chart, ChartError};
use crate::data::RunData;
use crate::html::{backend, checked, esc, figure, no_rows, not_run, num, section, table};
use crate::marks::{chart_note, marked, marked_table};
use crate::palette::{backend_color, phase_color};
use crate::registry::ReportSection;
use crate::units::{fmt_bytes, fmt_secs, fmt_value, sig3};
use crate::validity;
use results::Record;
use results::{ProbeOutcome, Quantity, StartupMode};
use std::collections::BTreeMap;

/// A rendered section: HTML plus the charts it embeds (also written as .svg files).
#[derive(Debug, Default)]
pub struct Section {
    /// The `<section>` HTML.
    pub html: String,
    /// Charts drawn for it.
    pub charts: Vec<Chart>,
}

fn absent(sec: &dyn ReportSection, run: &RunData) -> Section {
    Section { html: section(sec.id(), sec.title(), &not_run(sec.csv(), &sec.why_absent(run))), charts: Vec::new() }
}

/// The section to show instead of a table when `rows` is absent (not run) or present but empty; None when there
/// are rows to show.
fn missing<T>(sec: &dyn ReportSection, rows: Option<&Vec<T>>, run: &RunData) -> Option<Section> {
    match rows {
        None => Some(absent(sec, run)),
        Some(r) if r.is_empty() => Some(Section {
            html: section(sec.id(), sec.title(), &no_rows(sec.csv(), "has no rows")),
            charts: Vec::new(),
        }),
        Some(_) => None,
    }
}

fn sorted_backends<T>(run: &RunData, rows: &mut [T], key: impl Fn(&T) -> &str) {
    rows.sort_by_key(|r| run.backend_rank(key(r)));
}

/// Startup: summary table, CDF, phases, launch rate.
pub fn startup(sec: &dyn ReportSection, run: &RunData) -> Result<Section, ChartError> {
    let csv = sec.csv();
    if let Some(s) = missing(sec, run.startup_summary.as_ref(), run) {
        return Ok(s);
    }
    let summary = run.startup_summary.as_deref().unwrap_or_default();
    let samples = &run.startup;
    let mut out = Section::default();
    let mut body = String::from(
        "<p>Launch-to-ready: host monotonic time from \"launch requested\" to the workload's <code>ready</code> \
         message. Warm-up launches are excluded; outliers (MAD rule) are flagged, never dropped.</p>",
    );
    body.push_str(&emulated_note(run, "startup times are emulation-bound"));
    let mut rows = summary.to_vec();
    rows.sort_by_key(|r| (run.backend_rank(&r.backend), r.mode.concurrency().unwrap_or(0)));
    let t: Vec<(String, Vec<String>)> = rows
        .iter()
        .map(|r| {
            let cells = vec![
                backend(&r.backend),
                format!("<span class=\"nw\">{}</span>", esc(&r.mode.to_string())),
                num(&r.n.to_string(), csv),
                checked(&validity::startup_median(r), fmt_secs, csv),
                num(&fmt_secs(r.p90_s), csv),
                checked(&validity::startup_p99(r), fmt_secs, csv),
                num(&fmt_secs(r.min_s), csv),
                num(&fmt_secs(r.max_s), csv),
                num(&fmt_secs(r.mad_s), csv),
                num(&r.outliers.to_string(), csv),
                validity::launch_rate(r)
                    .map_or("<span class=\"na\">-</span>".into(), |f| checked(&f, |v| fmt_value(v, ""), csv)),
            ];
            (r.backend.clone(), cells)
        })
        .collect();
    let s = Some(Quantity::Startup);
    body.push_str(&marked_table(
        run,
        &[
            ("backend", None),
            ("mode", None),
            ("n", None),
            ("median", s),
            ("p90", s),
            ("p99", s),
            ("min", s),
            ("max", s),
            ("MAD", s),
            ("outliers", None),
            ("launches/s", s),
        ],
        t,
    ));

    // CDF of the sequential (else first) mode.
    let samples_file = samples.is_some();
    let samples = samples.as_deref().unwrap_or(&[]);
    let mode = if samples.iter().any(|s| s.mode == StartupMode::Sequential) {
        Some(StartupMode::Sequential)
    } else {
        samples.first().map(|s| s.mode)
    };
    let series: Vec<CdfSeries> = run
        .backends()
        .into_iter()
        .map(|b| CdfSeries {
            samples_s: samples
                .iter()
                .filter(|s| s.backend == b && Some(s.mode) == mode && !s.warmup)
                .map(|s| s.launch_to_ready_s)
                .collect(),
            note: chart_note(run, &b, Quantity::Startup),
            backend: b,
        })
        .collect();
    body.push_str("<h3>Distribution</h3>");
    match startup_cdf(&series, &mode.map(|m| m.to_string()).unwrap_or_default())? {
        Some(c) => {
            body.push_str(&figure(&c, results::StartupSample::FILE));
            out.charts.push(c);
        }
        None if !samples_file => {
            body.push_str(&not_run(results::StartupSample::FILE, "no per-launch samples to draw a CDF from"))
        }
        None => body.push_str(&no_rows(results::StartupSample::FILE, "has no measured launch to draw a CDF from")),
    }

    // Phases: median per (backend, phase), stacked.
    body.push_str("<h3>Where the time goes</h3>");
    match &run.phases {
        None => body.push_str(&not_run(results::PhaseSample::FILE, "the backends reported no phases")),
        Some(phases) => {
            let (sec, charts) = phase_chart(run, phases)?;
            body.push_str(&sec);
            out.charts.extend(charts);
        }
    }

    // Launch rate vs concurrency.
    body.push_str("<h3>Launch rate under concurrency</h3>");
    let series: Vec<XySeries> = run
        .backends()
        .into_iter()
        .map(|b| {
            let pts: Vec<(f64, f64, u32)> = rows
                .iter()
                .filter(|r| r.backend == b)
                .filter_map(|r| {
                    let k = r.mode.concurrency().or((r.mode == StartupMode::Sequential).then_some(1))?;
                    Some((f64::from(k), validity::launch_rate(r)?.shown()?, r.n))
                })
                .collect();
            let n: u32 = pts.iter().map(|p| p.2).sum();
            XySeries {
                legend: format!("{b} (n={n}){}", chart_note(run, &b, Quantity::Startup)),
                backend: b,
                points: pts.iter().map(|p| (p.0, p.1)).collect(),
                fit: None,
            }
        })
        .collect();
    let total: u32 =
        rows.iter().filter(|r| validity::launch_rate(r).and_then(|f| f.shown()).is_some()).map(|r| r.n).sum();
    let spec = XyChart {
        file: "launch_rate.svg".into(),
        title: format!("Launch rate vs concurrency (n = {total} launches)"),
        x_desc: "concurrent launchers".into(),
        y_desc: "launches completed per second (1/s)".into(),
        series,
        connect: true,
        log_y: true,
        integer_x: true,
    };
    match xy_chart(&spec)? {
        Some(c) => {
            body.push_str(&figure(&c, csv));
            out.charts.push(c);
        }
        None => body.push_str(&no_rows(csv, "has no concurrent-launch row with a launch rate (launches/s)")),
    }
    out.html = section(sec.id(), sec.title(), &body);
    Ok(out)
}

fn phase_chart(run: &RunData, phases: &[results::PhaseSample]) -> Result<(String, Vec<Chart>), ChartError> {
    let csv = results::PhaseSample::FILE;
    let sequential = StartupMode::Sequential;
    let mode_ok = |m: StartupMode| m == sequential || !phases.iter().any(|p| p.mode == sequential);
    let mut phase_order: Vec<String> = Vec::new();
    for p in phases.iter().filter(|p| mode_ok(p.mode)) {
        if !phase_order.contains(&p.phase) {
            phase_order.push(p.phase.clone());
        }
    }
    let mut bars = Vec::new();
    let mut rows = Vec::new();
    let mut total = 0usize;
    for b in run.backends() {
        let mine: Vec<&results::PhaseSample> = phases.iter().filter(|p| p.backend == b && mode_ok(p.mode)).collect();
        if mine.is_empty() {
            continue;
        }
        let mut launches: Vec<u32> = mine.iter().map(|p| p.iteration).collect();
        launches.sort();
        launches.dedup();
        total += launches.len();
        // This backend's phases in the order it reported them; colours follow the global phase order.
        let mut own: Vec<&str> = Vec::new();
        for p in &mine {
            if !own.contains(&p.phase.as_str()) {
                own.push(&p.phase);
            }
        }
        let mut segs = Vec::new();
        for ph in own {
            let pi = phase_order.iter().position(|x| x == ph).unwrap_or(0);
            let v: Vec<f64> = mine.iter().filter(|p| p.phase == ph).map(|p| p.duration_s).collect();
            let med = results::stats::median(&v);
            segs.push((med * 1e3, phase_color(pi)));
            rows.push((
                b.clone(),
                vec![backend(&b), esc(ph), num(&v.len().to_string(), csv), num(&fmt_secs(med), csv)],
            ));
        }
        let note = chart_note(run, &b, Quantity::Startup);
        bars.push(Bar { label: format!("{b} (n={}){note}", launches.len()), segments: segs });
    }
    let spec = BarChart {
        file: "startup_phases.svg".into(),
        title: format!("Startup phases: median per phase, stacked (n = {total} launches)"),
        x_desc: "time (ms)".into(),
        legend: phase_order.iter().enumerate().map(|(i, p)| (p.clone(), phase_color(i))).collect(),
        bars,
        reference: None,
    };
    let mut html = String::new();
    let mut charts = Vec::new();
    if spec.bars.is_empty() {
        html.push_str(&no_rows(csv, "has no phase of a measured launch"));
        return Ok((html, charts));
    }
    if let Some(c) = bar_chart(&spec)? {
        html.push_str(&figure(&c, csv));
        charts.push(c);
    }
    html.push_str("<details><summary>Phase medians as a table</summary>");
    let cols = [("backend", None), ("phase", None), ("n", None), ("median", Some(Quantity::Startup))];
    html.push_str(&marked_table(run, &cols, rows));
    html.push_str("</details>");
    Ok((html, charts))
}

/// Density: memory used vs instances with the fitted per-instance cost.
pub fn density(sec: &dyn ReportSection, run: &RunData) -> Result<Section, ChartError> {
    let (steps, fits) = (&run.density, &run.density_fit);
    if steps.is_none() && fits.is_none() {
        return Ok(absent(sec, run));
    }
    let steps = steps.as_deref().unwrap_or(&[]);
    let fits = fits.as_deref().unwrap_or(&[]);
    let csv = sec.csv();
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let mut out = Section::default();
    let mut body = String::from(
        "<p>Host memory used (drop in <code>MemAvailable</code>) as concurrent instances are added, with the \
         least-squares line whose slope is the per-instance cost. Each instance holds the working set given in \
         the table. Long sweeps are fitted over their upper half (<i>fitted over</i>): after a large teardown a \
         host can hand memory back for tens of seconds, which makes the first instances of the next sweep look \
         nearly free; <i>drift at start</i> is how fast <code>MemAvailable</code> was still moving when the \
         sweep began (the sweep waits up to 10 s for it to fall under 4 MiB/s).</p>",
    );
    let series: Vec<XySeries> = run
        .backends()
        .into_iter()
        .filter_map(|b| {
            let pts: Vec<(f64, f64)> = steps
                .iter()
                .filter(|s| s.backend == b)
                .map(|s| (f64::from(s.instances), mib(s.mem_used_delta_bytes as f64)))
                .collect();
            let fit = fits.iter().find(|f| f.backend == b);
            if pts.is_empty() {
                return None;
            }
            let legend = match fit.map(|f| validity::density_slope(f).check()) {
                Some(Ok(slope)) => format!("{b}: {} MiB/instance (n={})", sig3(mib(slope)), pts.len()),
                Some(Err(flaw)) => {
                    format!("{b}: slope {} (n={})", flaw.describe(|v| format!("{} MiB", sig3(mib(v)))), pts.len())
                }
                None => format!("{b} (n={})", pts.len()),
            } + &chart_note(run, &b, Quantity::HostMemory);
            Some(XySeries {
                backend: b,
                legend,
                points: pts,
                fit: fit.map(|f| (mib(f.slope_bytes), mib(f.intercept_bytes))),
            })
        })
        .collect();
    let n: usize = series.iter().map(|s| s.points.len()).sum();
    let spec = XyChart {
        file: "density.svg".into(),
        title: format!("Host memory used vs instances (n = {n} steps; dashed = fit)"),
        x_desc: "instances alive".into(),
        y_desc: "host memory used (MiB)".into(),
        series,
        connect: false,
        log_y: false,
        integer_x: true,
    };
    match xy_chart(&spec)? {
        Some(c) => {
            body.push_str(&figure(&c, results::DensityStep::FILE));
            out.charts.push(c);
        }
        None if run.density.is_none() => {
            body.push_str(&not_run(results::DensityStep::FILE, "no per-step density measurements"))
        }
        None => body.push_str(&no_rows(results::DensityStep::FILE, "has no density step")),
    }
    if let Some((c, html)) = crate::density_latency::chart(run)? {
        body.push_str(&html);
        out.charts.push(c);
    }
    let (html, charts) = crate::density_neighbours::part(run)?;
    body.push_str(&html);
    out.charts.extend(charts);
    let mut fits = fits.to_vec();
    sorted_backends(run, &mut fits, |f| &f.backend);
    let rows: Vec<(String, Vec<String>)> = fits
        .iter()
        .map(|f| {
            let cells = vec![
                backend(&f.backend),
                num(&format!("{} MiB", f.hold_mib), csv),
                num(&f.instances.to_string(), csv),
                esc(&f.stop_reason.to_string()),
                checked(&validity::density_slope(f), fmt_bytes, csv),
                match validity::poor_fit(f.r2) {
                    Some(w) => format!("{} <span class=\"unsup\">{w}</span>", num(&sig3(f.r2), csv)),
                    None => num(&sig3(f.r2), csv),
                },
                f.fit_from_instances.map_or("<span class=\"na\">all</span>".into(), |from| {
                    num(&format!("{from}–{}", f.instances), csv)
                }),
                f.drift_bytes_per_s.map_or("<span class=\"na\">-</span>".into(), |d| {
                    num(&format!("{}{}/s", if d < 0.0 { "−" } else { "+" }, fmt_bytes(d.abs())), csv)
                }),
                num(&fmt_bytes(f.slab_slope_bytes), csv),
                f.guest_mem_bytes.map_or("<span class=\"na\">-</span>".into(), |v| num(&fmt_bytes(v), csv)),
                match f.vmm_overhead_bytes {
                    None => "<span class=\"na\">-</span>".into(),
                    Some(v) if run.emulated(&f.backend) => format!(
                        "{} <span class=\"unsup\">emulator (QEMU + TCG), no KVM VMM's: never used for verdicts</span>",
                        num(&fmt_bytes(v), csv)
                    ),
                    Some(v) => num(&fmt_bytes(v), csv),
                },
                checked(&validity::instances_per_gib(f), |v| fmt_value(v, "1/GiB"), csv),
                num(&fmt_secs(f.launch_at_max_s), csv),
                crate::density_latency::slope_cell(run, &f.backend),
                num(&fmt_secs(f.teardown_s), csv),
            ];
            (f.backend.clone(), cells)
        })
        .collect();
    if run.density_fit.is_none() {
        body.push_str(&not_run(csv, "no fitted per-instance cost"));
    } else if rows.is_empty() {
        body.push_str(&no_rows(csv, "has no fitted per-instance cost"));
    } else {
        let (host, start) = (Some(Quantity::HostMemory), Some(Quantity::Startup));
        body.push_str(&marked_table(
            run,
            &[
                ("backend", None),
                ("held", None),
                ("instances", host),
                ("stopped by", None),
                ("per instance", host),
                ("r²", None),
                ("fitted over", None),
                ("drift at start", None),
                ("slab/instance", Some(Quantity::KernelObjects)),
                ("guest RAM touched", Some(Quantity::GuestMemory)),
                ("VMM overhead", host),
                ("instances/GiB", host),
                ("launch at max", start),
                ("launch growth", start),
                ("teardown", start),
            ],
            rows,
        ));
        body.push_str(&composed_linux_guest(run, &fits));
    }
    out.html = section(sec.id(), sec.title(), &body);
    Ok(out)
}

/// A note naming the run's emulated backends (run.json `emulated`) and what their figures in this section
/// mean (`what`); empty when there are none.
fn emulated_note(run: &RunData, what: &str) -> String {
    let names: Vec<String> =
        run.meta.backends.iter().filter(|b| b.emulated && b.available).map(|b| esc(&b.name)).collect();
    if names.is_empty() {
        return String::new();
    }
    format!(
        "<p class=\"note\">Emulated group: {} run{} the guest CPU under emulation (QEMU TCG): {what}, not figures \
         for a KVM host, and no verdict uses them.</p>",
        names.join(", "),
        if names.len() == 1 { "s" } else { "" }
    )
}

/// For each emulated linux guest: what a Linux-guest microVM on KVM would cost, composed from measured
/// parts of this run (the emulated guest's RAM touched plus our own VMM's overhead), both parts shown;
/// the emulator's own overhead is left out (no KVM VMM has it).
fn composed_linux_guest(run: &RunData, fits: &[results::DensityFit]) -> String {
    let vmm = fits
        .iter()
        .filter(|f| {
            !run.emulated(&f.backend)
                && matches!(run.model(&f.backend), crate::data::Model::MicrovmBare | crate::data::Model::MicrovmLinux)
        })
        .find_map(|f| f.vmm_overhead_bytes.filter(|_| f.guest_mem_bytes.is_some()).map(|v| (f.backend.clone(), v)));
    let mut items = Vec::new();
    for f in fits.iter().filter(|f| run.emulated(&f.backend)) {
        let Some(guest) = f.guest_mem_bytes else { continue };
        items.push(match &vmm {
            Some((b, v)) => format!(
                "<li>Linux-guest microVM on KVM, composed from measured parts: {} = guest RAM touched in {} ({}) + {}'s VMM overhead ({}), per instance holding {} MiB. Not a measured microVM.</li>",
                fmt_bytes(guest + v),
                esc(&f.backend),
                fmt_bytes(guest),
                esc(b),
                fmt_bytes(*v),
                f.hold_mib
            ),
            None => format!(
                "<li>{}: guest RAM touched {} per instance; no KVM VMM overhead was measured in this run to compose a KVM figure with.</li>",
                esc(&f.backend),
                fmt_bytes(guest)
            ),
        });
    }
    if items.is_empty() {
        return String::new();
    }
    format!("<ul>{}</ul>", items.join(""))
}

/// Overhead: ratios to the process baseline, unsupported shown with the reason; check values (unit `u32`) as
/// "same as process" or "differs", never as an overhead bar.
pub fn overhead(sec: &dyn ReportSection, run: &RunData) -> Result<Section, ChartError> {
    let csv = sec.csv();
    if let Some(s) = missing(sec, run.overhead.as_ref(), run) {
        return Ok(s);
    }
    let rows = run.overhead.as_deref().unwrap_or_default();
    let mut out = Section::default();
    let mut body = String::from(
        "<p>Median of each scenario's metric divided by the process baseline's median in the same run \
         (1.0 = same as a plain process; for time-like metrics higher is slower, for throughput metrics lower \
         is slower; the unit says which).</p>",
    );
    body.push_str(&emulated_note(run, "CPU-bound ratios are emulation-bound"));
    let backends: Vec<String> = run.backends().into_iter().filter(|b| rows.iter().any(|r| &r.backend == b)).collect();
    // Rows of the pivot: (scenario, metric) of supported measurements.
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for r in rows.iter().filter(|r| r.supported && !r.failed) {
        if !keys.iter().any(|k| k.0 == r.scenario && k.1 == r.metric) {
            keys.push((r.scenario.clone(), r.metric.clone(), r.unit.clone()));
        }
    }
    for r in rows.iter().filter(|r| !r.supported || r.failed) {
        if !keys.iter().any(|k| k.0 == r.scenario) {
            keys.push((r.scenario.clone(), String::new(), String::new()));
        }
    }
    let mut t = Vec::new();
    for (scen, metric, unit) in &keys {
        let mut row = vec![esc(scen), format!("<code>{}</code> {}", esc(metric), esc(unit))];
        for b in &backends {
            let cell = match rows.iter().find(|r| &r.backend == b && &r.scenario == scen && &r.metric == metric) {
                Some(r) if r.supported && !r.failed => marked(run, b, Quantity::Throughput, {
                    let ratio = match (validity::is_check_value(&r.unit), r.ratio_to_process) {
                        (true, Some(1.0)) => "<span class=\"pass\">same as process</span>".into(),
                        (true, Some(_)) => "<span class=\"fail\">differs from process</span>".into(),
                        _ => validity::overhead_ratio(r)
                            .map_or("-".into(), |f| checked(&f, |x| fmt_value(x, "ratio"), csv)),
                    };
                    format!(
                        "{} <span class=\"na\">({}, n={})</span>",
                        ratio,
                        num(&fmt_value(r.median, &r.unit), csv),
                        r.n
                    )
                }),
                _ => match rows.iter().find(|r| &r.backend == b && &r.scenario == scen && (!r.supported || r.failed)) {
                    Some(r) if r.failed => format!("<span class=\"unsup\">failed: {}</span>", esc(&r.reason)),
                    Some(r) => format!("<span class=\"unsup\">unsupported: {}</span>", esc(&r.reason)),
                    None => "<span class=\"na\">not measured</span>".into(),
                },
            };
            row.push(cell);
        }
        t.push(row);
    }
    let mut headers: Vec<&str> = vec!["scenario", "metric"];
    let hb: Vec<String> = backends.clone();
    headers.extend(hb.iter().map(String::as_str));
    body.push_str(&table(&headers, &t));

    let mut bars = Vec::new();
    let mut n = 0;
    for (scen, metric, _) in keys.iter().filter(|k| !k.1.is_empty() && !validity::is_check_value(&k.2)) {
        for b in &backends {
            if let Some(r) = rows.iter().find(|r| &r.backend == b && &r.scenario == scen && &r.metric == metric) {
                if let Some(x) = validity::overhead_ratio(r).and_then(|f| f.shown()) {
                    n += r.n;
                    let label = format!("{metric} · {b}{}", chart_note(run, b, Quantity::Throughput));
                    bars.push(Bar { label, segments: vec![(x, backend_color(b))] });
                }
            }
        }
    }
    let legend: Vec<(String, plotters::style::RGBColor)> = backends
        .iter()
        .filter(|b| rows.iter().any(|r| &r.backend == *b && r.supported && r.ratio_to_process.is_some()))
        .map(|b| (b.clone(), backend_color(b)))
        .collect();
    let spec = BarChart {
        file: "overhead.svg".into(),
        title: format!("Overhead ratio to the process baseline (n = {n} runs)"),
        x_desc: "median / process median (ratio, 1 = baseline)".into(),
        legend,
        bars,
        reference: Some((1.0, "process baseline = 1".into())),
    };
    if let Some(c) = bar_chart(&spec)? {
        body.push_str(&figure(&c, csv));
        out.charts.push(c);
    }
    out.html = section(sec.id(), sec.title(), &body);
    Ok(out)
}

/// Isolation: the probe x backend/profile matrix with failures highlighted.
pub fn isolation(sec: &dyn ReportSection, run: &RunData) -> Section {
    let csv = sec.csv();
    if let Some(s) = missing(sec, run.isolation.as_ref(), run) {
        return s;
    }
    let rows = run.isolation.as_deref().unwrap_or_default();
    let mut cols: Vec<(String, String)> = Vec::new();
    let mut probes: Vec<String> = Vec::new();
    let mut sorted = rows.to_vec();
    sorted.sort_by_key(|r| run.backend_rank(&r.backend));
    for r in &sorted {
        if !cols.iter().any(|c| c.0 == r.backend && c.1 == r.profile) {
            cols.push((r.backend.clone(), r.profile.clone()));
        }
        if !probes.contains(&r.probe) {
            probes.push(r.probe.clone());
        }
    }
    // Failures per backend, never one total across them (the process baseline's, which has no isolation, would
    // be added to the others').
    let per_backend = failures_by_backend(run)
        .values()
        .map(|(b, n)| {
            let of = rows.iter().filter(|r| &r.backend == b).count();
            format!("{} {} of {}", esc(b), num(&n.to_string(), csv), num(&of.to_string(), csv))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut body = format!(
        "<p>Each probe runs inside the instance against canaries the host planted; a <b>failure</b> (red) is a \
         probe that read, changed or reached host or neighbour state. Failures per backend: {per_backend}.</p>"
    );
    let mut o = String::from("<div class=\"tw\"><table class=\"matrix\"><thead><tr><th>probe</th>");
    for (b, p) in &cols {
        o.push_str(&format!("<th>{}<br><span class=\"na\">{}</span></th>", backend(b), esc(p)));
    }
    o.push_str("</tr></thead><tbody>");
    for probe in &probes {
        o.push_str(&format!("<tr><td><code>{}</code></td>", esc(probe)));
        for (b, p) in &cols {
            match rows.iter().find(|r| &r.backend == b && &r.profile == p && &r.probe == probe) {
                Some(r) => {
                    let class = if r.failure {
                        "fail"
                    } else if r.outcome == ProbeOutcome::Blocked {
                        "pass"
                    } else {
                        "na"
                    };
                    let tip = if r.host_check.is_empty() {
                        r.detail.clone()
                    } else {
                        format!("{}; host check: {}", r.detail, r.host_check)
                    };
                    let cell = format!(
                        "<a class=\"n\" href=\"{csv}\">{}{}</a>",
                        esc(r.outcome.as_str()),
                        if r.failure { " ✗" } else { "" }
                    );
                    o.push_str(&format!(
                        "<td class=\"{class}\" title=\"{}\">{}</td>",
                        esc(&tip),
                        marked(run, b, Quantity::ProbeOutcome, cell)
                    ));
                }
                None => o.push_str("<td class=\"na\">-</td>"),
            }
        }
        o.push_str("</tr>");
    }
    o.push_str("<tr><th>failures</th>");
    for (b, p) in &cols {
        let f = rows.iter().filter(|r| &r.backend == b && &r.profile == p && r.failure).count();
        let cell = marked(run, b, Quantity::ProbeOutcome, num(&f.to_string(), csv));
        o.push_str(&format!("<th class=\"{}\">{cell}</th>", if f > 0 { "fail" } else { "pass" }));
    }
    o.push_str("</tr></tbody></table></div>");
    body.push_str(&o);
    let fails: Vec<Vec<String>> = sorted
        .iter()
        .filter(|r| r.failure)
        .map(|r| {
            vec![
                backend(&r.backend),
                esc(&r.profile),
                format!("<code>{}</code>", esc(&r.probe)),
                esc(&r.detail),
                esc(&r.host_check),
            ]
        })
        .collect();
    if !fails.is_empty() {
        body.push_str("<h3>What the failing probes reached</h3>");
        body.push_str(&table(&["backend", "profile", "probe", "probe saw", "host check"], &fails));
    }
    Section { html: section(sec.id(), sec.title(), &body), charts: Vec::new() }
}

/// Blast radius: victim slowdowns under noisy or faulting neighbours.
pub fn blast(sec: &dyn ReportSection, run: &RunData) -> Result<Section, ChartError> {
    let csv = sec.csv();
    if let Some(s) = missing(sec, run.blast.as_ref(), run) {
        return Ok(s);
    }
    let mut rows = run.blast.clone().unwrap_or_default();
    sorted_backends(run, &mut rows, |r| &r.backend);
    let mut body = String::from(
        "<p>Latency of a victim instance alone and next to a noisy or faulting neighbour; slowdown = with / \
         alone. CPU allotment: what the neighbour was given, the same in every model (its vCPUs for a VM, its \
         CPU quota for a container, its hog threads for the process baseline); the CPU hog spins on all of \
         it.</p>",
    );
    let t: Vec<(String, Vec<String>)> = rows
        .iter()
        .map(|r| {
            let cells = vec![
                backend(&r.backend),
                esc(r.neighbour.as_str()),
                if r.limited { "yes".into() } else { "no".into() },
                r.neighbour_cpus.map_or_else(|| "not recorded".into(), |c| num(&format!("{c} CPUs"), csv)),
                num(&fmt_secs(r.victim_alone_s), csv),
                num(&fmt_secs(r.victim_with_neighbour_s), csv),
                format!(
                    "<span class=\"{}\">{}</span>",
                    if r.slowdown >= crate::verdicts::HARM_SLOWDOWN { "fail" } else { "" },
                    checked(&validity::blast_slowdown(r), |x| fmt_value(x, "ratio"), csv)
                ),
                if r.victim_ok {
                    "<span class=\"pass\">yes</span>".into()
                } else {
                    "<span class=\"fail\">no</span>".into()
                },
            ];
            (r.backend.clone(), cells)
        })
        .collect();
    let slow = Some(Quantity::Slowdown);
    body.push_str(&marked_table(
        run,
        &[
            ("backend", None),
            ("neighbour", None),
            ("limited", None),
            ("CPU allotment", None),
            ("victim alone", slow),
            ("with neighbour", slow),
            ("slowdown", slow),
            ("victim ok", slow),
        ],
        t,
    ));
    let bars: Vec<Bar> = rows
        .iter()
        .map(|r| Bar {
            label: format!(
                "{} ({}) · {}{}",
                r.neighbour,
                if r.limited { "limited" } else { "unlimited" },
                r.backend,
                chart_note(run, &r.backend, Quantity::Slowdown)
            ),
            segments: vec![(r.slowdown, backend_color(&r.backend))],
        })
        .collect();
    let mut legend_b: Vec<String> = Vec::new();
    for r in &rows {
        if !legend_b.contains(&r.backend) {
            legend_b.push(r.backend.clone());
        }
    }
    let spec = BarChart {
        file: "blast.svg".into(),
        title: format!("Victim slowdown next to a neighbour (n = {} pairs)", rows.len()),
        x_desc: "victim latency with neighbour / alone (ratio)".into(),
        legend: legend_b.iter().map(|b| (b.clone(), backend_color(b))).collect(),
        bars,
        reference: Some((1.0, "no slowdown = 1".into())),
    };
    let mut out = Section::default();
    if let Some(c) = bar_chart(&spec)? {
        body.push_str(&figure(&c, csv));
        out.charts.push(c);
    }
    out.html = section(sec.id(), sec.title(), &body);
    Ok(out)
}

/// Snapshot/commit: cost of saving and restoring state.
pub fn snapshot(sec: &dyn ReportSection, run: &RunData) -> Result<Section, ChartError> {
    let csv = sec.csv();
    if let Some(s) = missing(sec, run.snapshot.as_ref(), run) {
        return Ok(s);
    }
    let mut rows = run.snapshot.clone().unwrap_or_default();
    sorted_backends(run, &mut rows, |r| &r.backend);
    let mut body = String::from(
        "<p>Containers save state by committing their upper directory as a layer; microVMs by snapshotting guest \
         memory and device state. Restore is launch-to-ready from the saved state.</p>",
    );
    let t: Vec<(String, Vec<String>)> = rows
        .iter()
        .map(|r| {
            let cells = vec![
                backend(&r.backend),
                num(&format!("{} MiB", r.dirty_mib), csv),
                checked(&validity::save_time(r), fmt_secs, csv),
                num(&fmt_bytes(r.save_bytes as f64), csv),
                num(&fmt_secs(r.restore_s), csv),
                num(&fmt_secs(r.cold_start_s), csv),
                if r.cold_start_s > 0.0 {
                    num(&fmt_value(r.restore_s / r.cold_start_s, "ratio"), csv)
                } else {
                    "-".into()
                },
                r.shared_bytes.map_or("<span class=\"na\">-</span>".into(), |b| num(&fmt_bytes(b as f64), csv)),
            ];
            (r.backend.clone(), cells)
        })
        .collect();
    let start = Some(Quantity::Startup);
    body.push_str(&marked_table(
        run,
        &[
            ("backend", None),
            ("dirtied", None),
            ("save time", Some(Quantity::SaveTime)),
            ("bytes written", Some(Quantity::SaveSize)),
            ("restore to ready", start),
            ("cold start", start),
            ("restore / cold", start),
            ("shared after restore", Some(Quantity::HostMemory)),
        ],
        t,
    ));
    let mut legend_b: Vec<String> = Vec::new();
    let mut bars = Vec::new();
    for r in &rows {
        if !legend_b.contains(&r.backend) {
            legend_b.push(r.backend.clone());
        }
        bars.push(Bar {
            label: format!(
                "{} · {} MiB dirty{}",
                r.backend,
                r.dirty_mib,
                chart_note(run, &r.backend, Quantity::SaveTime)
            ),
            segments: vec![(r.save_s * 1e3, backend_color(&r.backend))],
        });
    }
    let spec = BarChart {
        file: "snapshot.svg".into(),
        title: format!("Time to save state (n = {} saves)", rows.len()),
        x_desc: "save time (ms)".into(),
        legend: legend_b.iter().map(|b| (b.clone(), backend_color(b))).collect(),
        bars,
        reference: None,
    };
    let mut out = Section::default();
    if let Some(c) = bar_chart(&spec)? {
        body.push_str(&figure(&c, csv));
        out.charts.push(c);
    }
    out.html = section(sec.id(), sec.title(), &body);
    Ok(out)
}

/// Isolation failures per backend (all profiles), for the summary cards.
pub fn failures_by_backend(run: &RunData) -> BTreeMap<usize, (String, usize)> {
    let mut m = BTreeMap::new();
    for r in run.isolation.iter().flatten() {
        let e = m.entry(run.backend_rank(&r.backend)).or_insert((r.backend.clone(), 0));
        e.1 += usize::from(r.failure);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The isolation section counts failures per backend, not one total across backends.
    #[test]
    fn the_isolation_section_counts_failures_per_backend() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        let run = RunData::load(&rd).unwrap();
        let html = isolation(&crate::registry::Isolation, &run).html;
        assert!(!html.contains("probe runs."), "{html}");
        let rows = run.isolation.clone().unwrap();
        for (b, n) in failures_by_backend(&run).values() {
            let of = rows.iter().filter(|r| &r.backend == b).count();
            let want = format!("{b} <a class=\"n\" href=\"isolation.csv\" title=\"from isolation.csv\">{n}</a> of");
            assert!(html.contains(&want), "{want} in {html}");
            assert!(of > 0);
        }
    }

    /// An emulated linux guest's density row shows guest RAM and the emulator's overhead apart, the
    /// overhead labelled as never used for verdicts, and the composed KVM figure with both parts.
    #[test]
    fn an_emulated_guest_shows_its_memory_split_and_the_composed_figure() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write_with_emulated_guest(d.path()).unwrap();
        let mut fits: Vec<results::DensityFit> = rd.read_csv().unwrap();
        let vm = fits.iter_mut().find(|f| f.backend == "microvm").unwrap();
        vm.guest_mem_bytes = Some((16 << 20) as f64);
        let mut q = vm.clone();
        (q.backend, q.guest_mem_bytes, q.vmm_overhead_bytes) =
            ("qemu-tcg".into(), Some((40 << 20) as f64), Some((80 << 20) as f64));
        fits.push(q);
        rd.write_csv(&fits).unwrap();
        let run = RunData::load(&rd).unwrap();
        let html = density(&crate::registry::Density, &run).unwrap().html;
        assert!(html.contains("guest RAM touched") && html.contains("emulator (QEMU + TCG)"), "{html}");
        assert!(html.contains("never used for verdicts"));
        let composed = format!("composed from measured parts: {}", fmt_bytes((43 << 20) as f64));
        assert!(html.contains(&composed), "{html}");
        let note = startup(&crate::registry::Startup, &run).unwrap().html;
        assert!(note.contains("Emulated group: qemu-tcg runs the guest CPU under emulation"), "{note}");
    }
}

//! The report page: header, headline summary, host and caveats, verdicts, experiment sections, planner, footer.
use crate::data::RunData;
use crate::html::{backend, checked, esc, num, page, section, table};
use crate::marks::marked;
use crate::pair::ConfigPair;
use crate::planner::{plan_data, LimitStatus, PlanError, PlanInput, PlanOutput};
use crate::registry::SECTIONS;
use crate::sections;
use crate::timefmt::utc;
use crate::units::{fmt_bytes, fmt_secs, fmt_value, sig3};
use crate::validity;
use crate::verdicts::{verdicts_for, ClaimVerdict, Evidence};
use crate::ReportError;
use results::Quantity;
use results::Record;
use std::fs;
use std::path::{Path, PathBuf};

/// Render RUN_DIR/report.html and one .svg per chart; returns the report's path.
pub fn render_run(run: &RunData) -> Result<PathBuf, ReportError> {
    render_run_with(run, None)
}

/// [`render_run`] with the verdicts' main pair chosen (None: the default pair).
pub fn render_run_with(run: &RunData, pair: Option<&ConfigPair>) -> Result<PathBuf, ReportError> {
    render_run_to(run, pair, None)
}

/// Where a page goes for `--out PATH`: PATH itself when it ends in `.html`, else `PATH/<default_name>`;
/// the charts go beside it. Shared by one run's report and the merged page.
pub fn out_path(out: &Path, default_name: &str) -> (PathBuf, PathBuf) {
    let path = if out.extension().is_some_and(|e| e == "html") { out.to_path_buf() } else { out.join(default_name) };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    (path, dir)
}

/// [`render_run_with`] into `out` ([`out_path`]: a directory, or a file ending in `.html`; created if needed)
/// instead of the run directory; None writes RUN_DIR/report.html as before.
pub fn render_run_to(run: &RunData, pair: Option<&ConfigPair>, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    let secs = SECTIONS.iter().map(|s| s.render(run)).collect::<Result<Vec<_>, _>>()?;
    // The planner on the verdicts' pair (issue 15 item 7): the one chosen with `--pair`, else the default pair;
    // never a best-of across backends, and never a different pair from the verdict table's on the same page.
    let plan = pair
        .cloned()
        .or_else(|| ConfigPair::default_for(run))
        .ok_or_else(|| PlanError::NoPair(run.dir.display().to_string()))
        .and_then(|pair| plan_data(std::slice::from_ref(run), &pair, &PlanInput::default_for(run)));
    let image = results::image::read(&run.dir)
        .map_err(|source| ReportError::Write { path: run.dir.join(results::image::FILE), source })?;
    let mut body = match &image {
        // The first line names the image: every figure and verdict below is about it.
        Some(i) => {
            header(run).replacen("<h1>vmct report</h1>", &format!("<h1>vmct report: {}</h1>", esc(&i.headline())), 1)
                + &crate::image::image_section(i)
        }
        None => header(run),
    };
    body.push_str(&crate::marks::legend());
    body.push_str(&summary_cards(run, plan.as_ref().ok()));
    body.push_str(&host_section(run));
    body.push_str(&verdict_section(run, &[], pair, image.as_ref(), None));
    if let Some(s) = crate::models::three_models(run) {
        body.push_str(&s.html);
    }
    for s in &secs {
        body.push_str(&s.html);
    }
    body.push_str(&planner_section(plan, pair.is_some()));
    body.push_str(&footer(run));
    let title = match &image {
        Some(i) => format!("vmct report: {} · {} on {}", i.headline(), run.meta.id, run.host_label()),
        None => format!("vmct report: {} on {}", run.meta.id, run.host_label()),
    };
    let html = page(&title, &body);
    let (path, dir) = match out {
        Some(o) => out_path(o, "report.html"),
        None => (run.dir.join("report.html"), run.dir.clone()),
    };
    fs::create_dir_all(&dir).map_err(|source| ReportError::Write { path: dir.clone(), source })?;
    for c in secs.iter().flat_map(|s| &s.charts) {
        let path = dir.join(&c.file);
        fs::write(&path, &c.svg).map_err(|source| ReportError::Write { path, source })?;
    }
    fs::write(&path, html).map_err(|source| ReportError::Write { path: path.clone(), source })?;
    Ok(path)
}

fn header(run: &RunData) -> String {
    let m = &run.meta;
    let experiments: String =
        SECTIONS.iter().map(|s| format!("<a href=\"#{}\">{}</a>", esc(s.id()), esc(s.nav()))).collect();
    format!(
        "<header class=\"top\"><h1>vmct report</h1><p class=\"sub\">Run <b>{}</b> on <b>{}</b> · {} · vmct {}{} · \
         KVM <b>{}</b> · cgroups <b>{}</b></p>\
         <nav class=\"toc\"><a href=\"#host\">Host</a><a href=\"#verdicts\">Verdicts</a>{experiments}\
         <a href=\"#planner\">Capacity planner</a></nav></header>\n",
        esc(&m.id),
        esc(&run.host_label()),
        esc(&utc(m.started_unix_s)),
        esc(&m.vmct_version),
        m.git_commit.as_deref().map_or(String::new(), |c| format!(" ({})", esc(c))),
        esc(m.host.kvm.as_str()),
        esc(m.host.cgroup.as_str()),
    )
}

/// One entry of a headline card: the backend on the left, its value on the right; a value too wide to fit beside
/// the name (a long reason) wraps onto its own line instead of running past the card's border.
fn card_row(name: &str, value: &str, class: &str) -> String {
    format!("<div class=\"crow\"><span class=\"k\">{name}</span><span class=\"v {class}\">{value}</span></div>")
}

fn summary_cards(run: &RunData, plan: Option<&PlanOutput>) -> String {
    let mut o = String::from("<div class=\"cards\">");
    // What a card says when its CSV has nothing to show.
    let nothing = |present: bool, csv: &str| {
        if present {
            format!("<p class=\"na\">{} has no rows</p>", esc(csv))
        } else {
            "<p class=\"na\">not run in this run</p>".to_string()
        }
    };
    let med = validity::startup_medians(run);
    o.push_str("<div class=\"card\"><h3>Median startup (sequential)</h3>");
    if med.is_empty() {
        o.push_str(&nothing(run.startup_summary.is_some(), results::StartupSummary::FILE));
    } else {
        for (b, m) in &med {
            let value = marked(run, b, Quantity::Startup, checked(m, fmt_secs, results::StartupSummary::FILE));
            o.push_str(&card_row(&backend(b), &value, ""));
        }
    }
    o.push_str("</div><div class=\"card\"><h3>Instances per GiB of host memory (memory each)</h3>");
    match &run.density_fit {
        Some(f) if !f.is_empty() => {
            let mut f = f.clone();
            f.sort_by_key(|x| run.backend_rank(&x.backend));
            for x in &f {
                let csv = results::DensityFit::FILE;
                let per_gib = validity::instances_per_gib(x);
                let slope = validity::density_slope(x);
                // The per-instance cost only when both figures stand; otherwise the reason says it all.
                let each = if per_gib.shown().is_some() && slope.shown().is_some() {
                    format!(" <span class=\"na\">({})</span>", num(&fmt_bytes(x.slope_bytes), csv))
                } else {
                    String::new()
                };
                // An impossible slope is the cause of an impossible count: name the slope.
                let value = if slope.shown().is_none() {
                    checked(&slope, |v| format!("slope {}", fmt_bytes(v)), csv)
                } else {
                    checked(&per_gib, |v| fmt_value(v, "1/GiB"), csv) + &each
                };
                o.push_str(&card_row(&backend(&x.backend), &marked(run, &x.backend, Quantity::HostMemory, value), ""));
            }
        }
        f => o.push_str(&nothing(f.is_some(), results::DensityFit::FILE)),
    }
    o.push_str("</div><div class=\"card\"><h3>Isolation failures</h3>");
    match &run.isolation {
        Some(rows) if rows.is_empty() => o.push_str(&nothing(true, results::IsolationRow::FILE)),
        // Per backend only: a total across backends (the process baseline's and the privileged profile's
        // failures added to the others') describes no configuration anyone runs.
        Some(_) => {
            for (b, n) in sections::failures_by_backend(run).values() {
                let class = if *n > 0 { "up" } else { "down" };
                let value = marked(run, b, Quantity::ProbeOutcome, num(&n.to_string(), results::IsolationRow::FILE));
                o.push_str(&card_row(&backend(b), &value, class));
            }
        }
        None => o.push_str("<p class=\"na\">not run in this run</p>"),
    }
    o.push_str("</div>");
    if let Some(p) = plan {
        o.push_str(&format!(
            "<div class=\"card\"><h3>Planner: {} (this host, {} working set and {} cores each, p99 ≤ {})</h3>{}{}\
             <p><a href=\"#planner\">limits, figures and assumptions</a></p></div>",
            esc(&p.pair.to_string()),
            // From the input planned, never restated by hand: the CPU demand binds as much as memory does.
            esc(&crate::units::fmt_bytes(p.input.working_set_bytes as f64)),
            esc(&crate::units::sig3(p.input.cpu_per_instance)),
            esc(&crate::units::fmt_secs(p.input.slo_p99_s)),
            card_row(&backend(&p.container.backend), &esc(&p.container.binding_words()), ""),
            card_row(&backend(&p.vm.backend), &esc(&p.vm.binding_words()), ""),
        ));
    }
    o.push_str("</div>\n");
    o
}

fn host_section(run: &RunData) -> String {
    let m = &run.meta;
    let h = &m.host;
    let load = |l: &results::env::LoadSnapshot| {
        format!("load {} · MemAvailable {}", sig3(l.loadavg_1m), fmt_bytes(l.mem_available_bytes as f64))
    };
    let steal = m.load_after.as_ref().and_then(|a| {
        let dt = a.total_cpu_s - m.load_before.total_cpu_s;
        (dt > 0.0).then(|| (a.steal_s - m.load_before.steal_s) / dt * 100.0)
    });
    let kv: Vec<(&str, String)> = vec![
        ("host", esc(&h.hostname)),
        ("CPU", esc(&h.cpu_model)),
        ("cores", h.cores.to_string()),
        ("memory", fmt_bytes(h.mem_total_bytes as f64)),
        ("kernel", esc(&h.kernel)),
        ("KVM flavour", format!("<b>{}</b>", esc(h.kvm.as_str()))),
        ("cgroup layout", format!("<b>{}</b>", esc(h.cgroup.as_str()))),
        ("CPU governor", esc(h.cpufreq_governor.as_deref().unwrap_or("not exposed"))),
        ("virtualized host", if h.virtualized { "yes".into() } else { "no".into() }),
        ("before the run", load(&m.load_before)),
        ("after the run", m.load_after.as_ref().map_or("not recorded".into(), load)),
        ("CPU steal during the run", steal.map_or("not recorded".into(), |s| format!("{s:.2}%"))),
        ("harness timestamp cost", m.harness_timestamp_cost_s.map_or("not recorded".into(), fmt_secs)),
        ("vmct", format!("{} · commit {}", esc(&m.vmct_version), esc(m.git_commit.as_deref().unwrap_or("unknown")))),
        ("started", esc(&utc(m.started_unix_s))),
        ("finished", if m.finished_unix_s > 0.0 { esc(&utc(m.finished_unix_s)) } else { "did not finish".into() }),
        ("command", format!("<code>{}</code>", esc(&m.command.join(" ")))),
        (
            "plan",
            esc(&format!(
                "experiments: {}; {} warm-up + {} measured launches; concurrency {:?}; density {} MiB per instance, \
                 budget {}, max {}; overhead runs {}{}",
                m.plan.experiments.join(", "),
                m.plan.warmup,
                m.plan.startup_runs,
                m.plan.concurrency,
                m.plan.density_hold_mib,
                fmt_bytes(m.plan.density_budget_bytes as f64),
                m.plan.density_max_instances,
                m.plan.overhead_runs,
                if m.plan.quick { " (--quick)" } else { "" }
            )),
        ),
    ];
    let mut body = String::from("<div class=\"tw\"><table class=\"kv\">");
    for (k, v) in kv {
        body.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), v));
    }
    body.push_str("</table></div>");
    body.push_str("<h3>Caveats</h3>");
    if m.caveats.is_empty() {
        body.push_str("<p class=\"na\">none recorded</p>");
    } else {
        body.push_str("<ul class=\"caveats\">");
        for c in &m.caveats {
            body.push_str(&format!("<li>{}</li>", esc(c)));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h3>Backends</h3>");
    let rows: Vec<Vec<String>> = m
        .backends
        .iter()
        .map(|b| {
            vec![
                backend(&b.name),
                esc(b.kind.as_str()),
                esc(b.model.as_str()),
                if b.emulated {
                    format!(
                        "{} (emulated CPU: startup, CPU and emulator memory not comparable)",
                        esc(b.guest_model.map_or("-", |g| g.as_str()))
                    )
                } else {
                    esc(b.guest_model.map_or("-", |g| g.as_str()))
                },
                if b.available {
                    "<span class=\"pass\">ran</span>".into()
                } else {
                    format!(
                        "<span class=\"unsup\">unavailable: {}</span>",
                        esc(b.reason.as_deref().unwrap_or("no reason given"))
                    )
                },
                esc(b.version.as_deref().unwrap_or("-")),
                isolation_cell(b.isolation.as_ref()),
            ]
        })
        .collect();
    body.push_str(&table(
        &["backend", "kind", "model", "guest model", "status", "version", "isolation profile"],
        &rows,
    ));
    if !h.peers.is_empty() {
        let rows: Vec<Vec<String>> = h
            .peers
            .iter()
            .map(|p| vec![esc(&p.name), format!("<code>{}</code>", esc(&p.path)), esc(&p.version)])
            .collect();
        body.push_str("<h3>Peers found on the host</h3>");
        body.push_str(&table(&["peer", "path", "version"], &rows));
    }
    section("host", "Host and run", &body)
}

/// The profile a container backend ran with: its description, the seccomp file with its SHA-256 and
/// allowlist size, and how many device rules applied.
fn isolation_cell(p: Option<&results::IsolationProfile>) -> String {
    let Some(p) = p else { return "-".into() };
    let mut out = esc(&p.profile);
    match (&p.seccomp_path, &p.seccomp_sha256) {
        (Some(path), Some(sha)) => out.push_str(&format!(
            "<br>seccomp <code>{}</code> sha256 <code>{}</code>, {} syscalls allowed{}",
            esc(path),
            esc(sha),
            p.seccomp_syscalls_allowed.map_or("?".into(), |n| n.to_string()),
            if p.seccomp_unknown_names_skipped.is_empty() {
                String::new()
            } else {
                format!(", {} unknown names skipped", p.seccomp_unknown_names_skipped.len())
            }
        )),
        _ => out.push_str("<br>no seccomp filter"),
    }
    if p.device_rules.is_empty() {
        out.push_str("<br>devices: all");
    } else {
        out.push_str(&format!("<br>devices: <code>{}</code>", esc(&p.device_rules.join("; "))));
    }
    out
}

/// The verdict table of one pair (`image` prefixes each claim of the main table).
fn verdict_table(
    vs: &[ClaimVerdict],
    image: Option<&results::image::ImageRunInfo>,
    source: &dyn Fn(&str) -> String,
) -> String {
    let mut rows = Vec::new();
    for v in vs {
        let ev: String = v.evidence.iter().map(|e| format!("<li>{}</li>", esc(e))).collect();
        let claim = match image {
            Some(i) => format!("For image {}: {}", i.name, v.claim),
            None => v.claim.to_string(),
        };
        let pair = v
            .pair
            .as_ref()
            .map_or_else(|| "no pair".to_string(), |p| format!("{} vs {}", backend(&p.container), backend(&p.vm)));
        rows.push(vec![
            format!("<b>{}</b>", esc(&claim)),
            format!("{pair}<br><span class=\"na\">if {}</span>", esc(&v.condition)),
            format!("<span class=\"verdict {}\">{}</span>", v.verdict.css(), esc(v.verdict.label())),
            format!("<ul class=\"ev\">{ev}</ul>{}", source(v.source)),
        ]);
    }
    table(&["claim", "pair and condition", "verdict", "evidence"], &rows)
}

/// The verdicts for the main pair (given, else [`ConfigPair::default_for`]), then every other pair of the run
/// ([`ConfigPair::all`]) in a closed `<details>` (no script). `merged` are runs whose VT-x figures may fill the
/// primary run's (see [`crate::verdicts`]).
pub(crate) fn verdict_section(
    run: &RunData,
    merged: &[RunData],
    pair: Option<&ConfigPair>,
    image: Option<&results::image::ImageRunInfo>,
    link_prefix: Option<&str>,
) -> String {
    let ev = Evidence { primary: run, merged };
    // A link to the source CSV of the primary run when it has one (`link_prefix`: the run's directory as seen
    // from the page, None when the page is in it).
    let source = |f: &str| {
        if run.dir.join(f).exists() {
            let href = link_prefix.map_or_else(|| f.to_string(), |p| format!("{}/{f}", p.trim_end_matches('/')));
            format!("<a class=\"n\" href=\"{}\">{}</a>", esc(&href), esc(f))
        } else {
            format!("<span class=\"na\">{}: not in this run</span>", esc(f))
        }
    };
    let main = pair.cloned().or_else(|| ConfigPair::default_for(run));
    let vs = main.as_ref().map_or_else(crate::verdicts::unpaired, |p| verdicts_for(&ev, p));
    let about = image.map_or(String::new(), |i| {
        format!(
            " Every verdict here is about image <b>{}</b> ({}): its own process, ready by the rule <code>{}</code>.",
            esc(&i.name),
            esc(&i.headline()),
            esc(&i.ready_rule)
        )
    });
    let which = match (&main, pair) {
        (Some(p), Some(_)) => format!("the pair chosen with <code>--pair</code>: <b>{}</b>", esc(&p.to_string())),
        (Some(p), None) => format!(
            "the default pair, our container with its default profile against the linux guest model where one \
             ran: <b>{}</b> (choose another with <code>vmct report --pair CONTAINER:VM</code>)",
            esc(&p.to_string())
        ),
        (None, _) => "no pair: the run lacks a container or a VM backend".to_string(),
    };
    let merged_note = if merged.is_empty() {
        String::new()
    } else {
        format!(
            " Figures that do not transfer to a VT-x/AMD-V host in this run are filled from the merged runs ({}) \
             when their host has VT-x/AMD-V; each verdict says which run they came from.",
            esc(&merged.iter().map(|r| r.meta.id.as_str()).collect::<Vec<_>>().join(", "))
        )
    };
    let mut body = format!(
        "<p>Each classic claim compares one container configuration with one VM configuration, measured like for \
         like (the condition under each pair); no claim takes the best backend of a model. This table is for \
         {which}. Only figures that transfer to a host with VT-x/AMD-V running the deployed model decide a verdict; \
         where the pair's figure does not, the verdict says it needs a run on a VT-x host.{merged_note}{about}</p>{}",
        verdict_table(&vs, image, &source)
    );
    let others: Vec<ConfigPair> = ConfigPair::all(run).into_iter().filter(|p| Some(p) != main.as_ref()).collect();
    if !others.is_empty() {
        body.push_str("<h3>Other pairs of this run</h3>");
        for p in others {
            body.push_str(&format!(
                "<details class=\"pair\"><summary>{}</summary>{}</details>",
                esc(&p.to_string()),
                verdict_table(&verdicts_for(&ev, &p), None, &source)
            ));
        }
    }
    section("verdicts", "Verdicts on the classic claims", &body)
}

/// The planner section; `chosen`: the pair was chosen with `vmct report --pair` (else it is the default pair).
fn planner_section(plan: Result<PlanOutput, PlanError>, chosen: bool) -> String {
    let p = match plan {
        Ok(p) => p,
        Err(e) => {
            return section(
                "planner",
                "Capacity planner",
                &format!("<p class=\"notrun\">Not run in this run: {}</p>", esc(&e.to_string())),
            )
        }
    };
    let mut body = format!(
        "<p>The pair <b>{}</b> ({}; pick another with <code>vmct plan --pair CONTAINER:VM</code>) for \
         <b>{}</b> of host memory, <b>{}</b> cores, a <b>{}</b> working set and <b>{}</b> cores of CPU demand per \
         instance and a p99 startup SLO of <b>{}</b> at the planned density (this host; change them with \
         <code>vmct plan --host-mem 256GiB --cores 64 --working-set 128MiB --cpu-per-instance 0.25 --slo-p99 50ms \
         RUN_DIR [--merge VTX_RUN_DIR]</code>). Figures from {}.</p>",
        esc(&p.pair.to_string()),
        if chosen {
            "the pair of the verdict table, chosen with <code>vmct report --pair</code>"
        } else {
            "the default pair"
        },
        fmt_bytes(p.input.host_mem_bytes as f64),
        p.input.cores,
        fmt_bytes(p.input.working_set_bytes as f64),
        sig3(p.input.cpu_per_instance),
        fmt_secs(p.input.slo_p99_s),
        esc(&p.runs.join("; "))
    );
    for s in [&p.container, &p.vm] {
        body.push_str(&format!("<h3>{} ({}): {}</h3>", backend(&s.backend), esc(&s.model), esc(&s.binding_words())));
        let rows: Vec<Vec<String>> = s
            .limits
            .iter()
            .map(|l| {
                let bound = s.binding.as_ref().is_some_and(|b| b.kind == l.kind);
                let what = match &l.status {
                    LimitStatus::Bound { instances } => {
                        let n = crate::planner::fmt_count(*instances);
                        if bound {
                            format!("<b>{n}</b> (binding)")
                        } else {
                            n
                        }
                    }
                    LimitStatus::Unbounded => "no bound".into(),
                    LimitStatus::NotChecked { reason } => {
                        format!("<span class=\"na\">not checked: {}</span>", esc(reason))
                    }
                };
                let from: String = l.sources.iter().map(|x| format!("<li>{}</li>", esc(x))).collect();
                vec![
                    esc(&l.kind.to_string()),
                    what,
                    esc(&l.how),
                    if from.is_empty() { "-".into() } else { format!("<ul>{from}</ul>") },
                ]
            })
            .collect();
        body.push_str(&table(
            &["limit", "instances", "how", "figures used (n, backend, run, host, file; transfer mark)"],
            &rows,
        ));
        if let Some(v) = s.p99_at_planned_s {
            body.push_str(&format!("<p>p99 startup at the planned density: {}.</p>", fmt_secs(v)));
        }
        if !s.notes.is_empty() {
            body.push_str("<ul>");
            for n in &s.notes {
                body.push_str(&format!("<li>{}</li>", esc(n)));
            }
            body.push_str("</ul>");
        }
    }
    if !p.refused.is_empty() {
        body.push_str("<h3>Refused figures</h3><ul>");
        for r in &p.refused {
            body.push_str(&format!("<li>{}</li>", esc(r)));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h3>Assumptions</h3><ul>");
    for a in &p.assumptions {
        body.push_str(&format!("<li>{}</li>", esc(a)));
    }
    body.push_str("</ul>");
    section("planner", "Capacity planner", &body)
}

fn footer(run: &RunData) -> String {
    let files: Vec<&str> = SECTIONS.iter().flat_map(|s| s.files()).filter(|f| run.dir.join(f).exists()).collect();
    let links: Vec<String> =
        std::iter::once("run.json").chain(files).map(|f| format!("<a href=\"{0}\">{0}</a>", esc(f))).collect();
    format!(
        "<footer>Generated by <code>vmct report</code> from run <b>{}</b> measured on <b>{}</b> ({}), \
         directory <code>{}</code>. Every number links to the file it came from: {}. Re-render any time with \
         <code>vmct report RUN_DIR</code>.</footer>",
        esc(&run.meta.id),
        esc(&run.host_label()),
        esc(&utc(run.meta.started_unix_s)),
        esc(&run.dir.display().to_string()),
        links.join(" · ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn isolation_cell_names_profile_seccomp_file_hash_and_devices() {
        let p = results::IsolationProfile {
            profile: "default: Docker/Podman defaults".into(),
            seccomp_path: Some("/usr/share/containers/seccomp.json".into()),
            seccomp_sha256: Some("0123abcd".into()),
            seccomp_syscalls_allowed: Some(371),
            seccomp_unknown_names_skipped: vec!["a".into(), "b".into()],
            device_rules: vec!["deny a *:* rwm".into(), "allow c 1:3 rwm".into()],
        };
        let c = super::isolation_cell(Some(&p));
        for want in
            ["default: Docker/Podman defaults", "seccomp.json", "0123abcd", "371 syscalls", "2 unknown", "c 1:3"]
        {
            assert!(c.contains(want), "{want} in {c}");
        }
        let none = super::isolation_cell(Some(&results::IsolationProfile {
            profile: "privileged".into(),
            ..Default::default()
        }));
        assert!(none.contains("no seccomp filter") && none.contains("devices: all"), "{none}");
        assert_eq!(super::isolation_cell(None), "-");
    }

    use crate::units::{fmt_bytes, fmt_secs};
    use results::{DensityFit, Record, RunDir, StartupSummary};
    use std::fs;

    fn rendered() -> (tempfile::TempDir, RunDir, String) {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(&d.path().join("run")).unwrap();
        let path = crate::render(&rd).unwrap();
        assert_eq!(path, rd.path().join("report.html"));
        let html = fs::read_to_string(&path).unwrap();
        (d, rd, html)
    }

    /// The headline cards show no figure across backends: the isolation card had a big total of the failures
    /// of every backend (59 in a real run: the process baseline's 34 and the privileged profile's 20 included).
    #[test]
    fn the_isolation_card_has_no_total_across_backends() {
        let (_d, _rd, html) = rendered();
        let start = html.find("<h3>Isolation failures</h3>").expect("isolation card");
        let card = &html[start..start + html[start..].find("</div><div class=\"card\">").unwrap_or(html.len() - start)];
        assert!(!card.contains("class=\"big"), "{card}");
        assert!(card.contains("crow"), "per-backend rows stay: {card}");
    }

    /// The planner card states the input it was planned with, the CPU demand included (it was a hand-written
    /// "128 MiB, p99 ≤ 50 ms" that left out the 0.01 cores each that can bind).
    #[test]
    fn the_planner_card_states_its_input() {
        let (_d, _rd, html) = rendered();
        let want = format!(
            "(this host, {} working set and {} cores each, p99 ≤ {})",
            fmt_bytes((128u64 << 20) as f64),
            crate::units::sig3(crate::planner::PlanInput::DEFAULT_CPU_PER_INSTANCE),
            fmt_secs(0.050)
        );
        assert!(html.contains(&want), "{want}");
    }

    #[test]
    fn every_section_and_chart_is_present() {
        let (_d, rd, html) = rendered();
        for id in ["host", "verdicts", "startup", "density", "overhead", "isolation", "blast", "snapshot", "planner"] {
            assert!(html.contains(&format!("<section id=\"{id}\">")), "section {id} missing");
        }
        let charts = [
            "startup_cdf",
            "startup_phases",
            "launch_rate",
            "density",
            "density_launch",
            "density_victim",
            "overhead",
            "blast",
            "snapshot",
        ];
        for c in charts {
            let file = format!("{c}.svg");
            assert!(html.contains(&format!("href=\"{file}\"")), "{file} not linked");
            let svg = fs::read_to_string(rd.path().join(&file)).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("<title>"), "{file}");
        }
        assert_eq!(html.matches("<svg").count(), charts.len());
        assert!(!html.contains("not run in this run") && !html.contains("Not run in this run"));
        // Host summary and caveats.
        for s in ["fixture-host", "kvm_pvm", "hybrid", "Fixture CPU", "6.1.0-fixture", "0123abc", "2023-11-14", "0.17%"]
        {
            assert!(html.contains(s), "{s} missing");
        }
        assert!(html.contains("kvm_pvm (nested, no VT-x/AMD-V)"));
        assert!(html.contains("unavailable: kvm_pvm cannot run a linux guest"));
    }

    #[test]
    fn numbers_match_their_csv_and_link_to_it() {
        let (_d, rd, html) = rendered();
        for s in rd.read_csv::<StartupSummary>().unwrap() {
            for v in [s.median_s, s.p99_s] {
                let cell =
                    format!("href=\"startup_summary.csv\" title=\"from startup_summary.csv\">{}</a>", fmt_secs(v));
                assert!(html.contains(&cell), "{} {}: {cell}", s.backend, s.mode);
            }
        }
        for f in rd.read_csv::<DensityFit>().unwrap() {
            assert!(html.contains(&format!("\"from density_summary.csv\">{}</a>", fmt_bytes(f.slope_bytes))));
        }
        // Every linked file exists in the run directory.
        for part in html.split("href=\"").skip(1) {
            let target = &part[..part.find('"').unwrap()];
            if target.starts_with('#') {
                continue;
            }
            assert!(rd.path().join(target).exists(), "dangling link {target}");
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "network reference in the page");
        assert!(!html.contains("<script"), "no scripts");
    }

    /// The footer links every CSV of the run (the hand-written list it had before the section registry missed
    /// attack_surface.csv).
    #[test]
    fn the_footer_links_every_csv_of_the_run() {
        let (_d, rd, html) = rendered();
        let footer = &html[html.find("<footer>").unwrap()..];
        let mut n = 0;
        for f in fs::read_dir(rd.path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".csv") {
                assert!(footer.contains(&format!("<a href=\"{name}\">{name}</a>")), "{name} not in {footer}");
                n += 1;
            }
        }
        assert!(n >= 10, "the fixture writes every CSV, found {n}");
    }

    /// The verdict table is for the default pair, each row naming the pair and its condition; every other pair of
    /// the run has its own table in a closed `<details>` (no script).
    #[test]
    fn verdicts_show_the_default_pair_and_fold_the_others() {
        let (_d, rd, html) = rendered();
        let sec = section_of(&html, "verdicts");
        let main = &sec[..sec.find("<details").expect("other pairs folded")];
        assert!(main.contains("the default pair") && main.contains("<b>container vs microvm</b>"), "{main}");
        assert!(main.contains("if same probe list on both sides"), "{main}");
        assert!(main.contains("not measured like-for-like here") && main.contains("CRIU"), "{main}");
        let run = crate::data::RunData::load(&rd).unwrap();
        let others = crate::pair::ConfigPair::all(&run).len() - 1;
        assert_eq!(sec.matches("<details class=\"pair\">").count(), others);
        assert!(sec.contains("<summary>crun vs microvm</summary>"), "{sec}");
        assert!(!sec.contains("<details open"), "other pairs start folded");
    }

    /// `vmct report --pair` moves the planner to the same pair as the verdict table (it stayed on the default
    /// pair: one page with verdicts for crun vs microvm and a plan for container vs microvm).
    #[test]
    fn a_chosen_pair_moves_the_planner_with_the_verdicts() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(&d.path().join("run")).unwrap();
        let run = crate::data::RunData::load(&rd).unwrap();
        let pair = crate::pair::ConfigPair::parse("crun:microvm", &run).unwrap();
        let html = fs::read_to_string(crate::render_with_pair(&rd, Some(&pair)).unwrap()).unwrap();
        let planner = section_of(&html, "planner");
        assert!(planner.contains("The pair <b>crun vs microvm</b> (the pair of the verdict table"), "{planner}");
        let card = &html[html.find("<h3>Planner:").expect("planner card")..];
        assert!(card.starts_with("<h3>Planner: crun vs microvm"), "{}", &card[..200]);
        let default = fs::read_to_string(crate::render(&rd).unwrap()).unwrap();
        assert!(section_of(&default, "planner").contains("The pair <b>container vs microvm</b> (the default pair;"));
    }

    #[test]
    fn text_from_csvs_is_escaped() {
        let (_d, _rd, html) = rendered();
        assert!(html.contains("read 4 KiB &lt;kmsg&gt; &amp; &quot;friends&quot;"));
        assert!(!html.contains("<kmsg>"));
    }

    #[test]
    fn unsupported_overhead_shows_the_reason_not_zero() {
        let (_d, _rd, html) = rendered();
        assert!(html.contains("unsupported: bare guest has no system calls"));
    }

    #[test]
    fn missing_csvs_give_not_run_sections() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        for f in
            [results::BlastRow::FILE, results::SnapshotRow::FILE, StartupSummary::FILE, results::StartupSample::FILE]
        {
            fs::remove_file(rd.path().join(f)).unwrap();
        }
        let mut meta = rd.read_meta().unwrap();
        meta.plan.experiments.retain(|e| e != "snapshot");
        rd.write_meta(&meta).unwrap();
        let html = fs::read_to_string(crate::render(&rd).unwrap()).unwrap();
        let sec = |id: &str| {
            let start = html.find(&format!("<section id=\"{id}\">")).unwrap();
            html[start..start + html[start..].find("</section>").unwrap()].to_string()
        };
        assert!(
            sec("snapshot").contains("Not run in this run") && sec("snapshot").contains("not in this run&#39;s plan")
        );
        assert!(sec("blast").contains("Not run in this run") && sec("blast").contains("no results file was written"));
        assert!(sec("startup").contains("Not run in this run"));
        assert!(sec("density").contains("<svg"));
        assert!(sec("verdicts").contains("not measured in this run"));
        assert_eq!(
            html.matches("<svg").count(),
            4,
            "density (memory, launch latency, victim) and overhead charts only"
        );
    }

    /// The HTML of one `<section id=...>` of a page.
    fn section_of(html: &str, id: &str) -> String {
        let start = html.find(&format!("<section id=\"{id}\">")).unwrap();
        html[start..start + html[start..].find("</section>").unwrap()].to_string()
    }

    /// The card entry of a backend inside `html` (the first one).
    fn row_of(html: &str, backend: &str) -> String {
        let start = html.find(&format!("</span>{backend}</span>")).unwrap_or_else(|| panic!("{backend} row"));
        let row = &html[html[..start].rfind("<div class=\"crow\">").unwrap()..];
        row[..row.find("</span></div>").unwrap()].to_string()
    }

    #[test]
    fn degenerate_figures_are_marked_in_the_headline_and_never_win() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write_degenerate(d.path()).unwrap();
        let html = fs::read_to_string(crate::render(&rd).unwrap()).unwrap();
        let cards = &html[html.find("<div class=\"cards\">").unwrap()..html.find("<section id=\"host\">").unwrap()];
        assert!(!cards.contains("NaN B") && !cards.contains(">-1074<"), "raw invalid figures in the cards: {cards}");
        let card = |title: &str| {
            let c = &cards[cards.find(title).unwrap()..];
            c[..c.find("</div><div class=\"card\">").unwrap()].to_string()
        };
        let density = card("Instances per GiB");
        assert!(row_of(&density, "microvm").contains("invalid: NaN (not a finite number)"), "{density}");
        let neg = row_of(&density, "container");
        assert!(neg.contains("invalid: slope -976 KiB (must be greater than zero)"), "{density}");
        assert!(row_of(&density, "process").contains("MiB</a>)"), "valid rows keep their per-instance cost");
        let startup = card("Median startup");
        assert!(row_of(&startup, "container").contains("invalid: 0 s (must be greater than zero)"), "{startup}");
        let single = row_of(&startup, "container-privileged");
        assert!(single.contains("500 µs") && single.contains("(n = 1, not compared)"), "{single}");
        assert!(single.contains("title=\"n = 1: too few samples to compare\""), "{single}");
        // The verdict is decided by valid figures only: the default pair's container has a single 0 s launch, so
        // the startup claim is not measured (and the faster single-launch profile is not in the pair).
        let v = crate::verdicts::verdicts(&crate::data::RunData::load(&rd).unwrap());
        let start = v.iter().find(|c| c.id == "start_faster").unwrap();
        assert_eq!(start.verdict, crate::Verdict::Rejected, "{:?}", start.evidence);
        assert!(
            start
                .evidence
                .iter()
                .any(|e| e == "left out: container median startup invalid: 0 s (must be greater than zero)"),
            "{:?}",
            start.evidence
        );
        assert!(start.evidence.iter().all(|e| !e.contains("container-privileged")), "{:?}", start.evidence);
        let density_v = v.iter().find(|c| c.id == "density").unwrap();
        assert_eq!(density_v.verdict, crate::Verdict::Rejected, "{:?}", density_v.evidence);
        // A present CSV without usable rows is not called absent.
        let startup_sec = section_of(&html, "startup");
        assert!(!startup_sec.contains("is absent"), "{startup_sec}");
        assert!(startup_sec.contains("<code>startup_summary.csv</code> is present but has no concurrent-launch row"));
        // The planner refuses the same figures with the same words.
        let planner = section_of(&html, "planner");
        // The planner refuses the same figures with the same words, for the pair's backends only.
        assert!(planner.contains("density slope invalid: NaN (not a finite number): cannot plan memory"), "{planner}");
        assert!(
            planner.contains("not checked: p99 startup refused (invalid: 0 s (must be greater than zero)"),
            "{planner}"
        );
        assert!(!planner.contains("container-privileged"), "not in the default pair: {planner}");
    }

    #[test]
    fn empty_csvs_are_not_called_absent_and_claim_nothing() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        rd.write_csv::<results::IsolationRow>(&[]).unwrap();
        rd.write_csv::<results::BlastRow>(&[]).unwrap();
        rd.write_csv::<results::PhaseSample>(&[]).unwrap();
        let html = fs::read_to_string(crate::render(&rd).unwrap()).unwrap();
        for id in ["isolation", "blast"] {
            let sec = section_of(&html, id);
            assert!(sec.contains("is present but has no rows") && !sec.contains("absent"), "{sec}");
        }
        assert!(section_of(&html, "startup").contains("<code>startup_phases.csv</code> is present but"));
        assert!(html.contains("isolation.csv has no rows"), "the isolation card does not claim 0 failures");
    }

    #[test]
    fn table_numbers_are_readable_with_units() {
        let (_d, _rd, html) = rendered();
        let overhead = section_of(&html, "overhead");
        for raw in ["1851441976", "2577775405", "u32,"] {
            assert!(!overhead.contains(raw), "raw value {raw} in the overhead table");
        }
        assert!(overhead.contains(">2.40 GiB/s</a>") && overhead.contains(">60.0 ns</a>"), "{overhead}");
        assert!(overhead.contains(">0x6e5ac338</a>") && overhead.contains("same as process"));
        // Every number linking to a CSV has at most four digits in a row (three significant digits, a unit).
        for part in html.split("<a class=\"n\"").skip(1) {
            let text = &part[part.find('>').unwrap() + 1..part.find("</a>").unwrap()];
            let longest = text.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
            assert!(longest <= 4 || text.starts_with("0x"), "unreadable number {text:?}");
        }
    }
}

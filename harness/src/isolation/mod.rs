//! Isolation experiment: host canaries, the probe catalogue on every backend, host-side verification,
//! and blast radius ([`blast`]).
//!
//! For each backend: take the host lock, plant fresh [`canary::Canaries`], launch one instance of the
//! `probe` scenario with the canary locations in its environment, collect its `probe` messages, stop
//! it, then check every canary from the host side (restoring any changed host value) and turn both into
//! [`results::IsolationRow`]s. A failure is any probe that read, changed or reached host or neighbour
//! state, as confirmed by the host check where one exists (hostname, domainname, sysctl, listener,
//! escape cgroup). `process` is the no-isolation baseline: probes that are blocked on the baseline too
//! are host-wide denials (e.g. `/dev/vda` is not openable even on the host) and are marked as such,
//! never credited to a backend's isolation.
//!
//! ```no_run
//! # use harness::isolation::*;
//! # fn f(backends: &[&dyn harness::backend::Backend]) -> Result<(), IsolationError> {
//! let opts = IsolationOptions::new(harness::artifacts::workload_path().unwrap(), std::env::temp_dir());
//! let out = run_isolation(backends, &opts, &|msg| eprintln!("{msg}"))?;
//! // run_dir.write_csv(&out.rows)?; run_dir.write_csv(&out.blast)?;
//! # Ok(()) }
//! ```
pub mod blast;
pub mod canary;
pub mod journal;

use crate::backend::{collect_events, Backend, BackendError, Event, InstanceSpec};
use canary::{Canaries, CanaryError, HostChecks, HostLock};
use results::{IsolationModel, IsolationRow, ProbeOutcome as Outcome};
use std::path::PathBuf;
use std::time::Duration;
use workloads::protocol::ProbeOutcome;
use workloads::scenario::Scenario;

/// Is `b` the no-isolation baseline? Decided by its declared kind (`baseline`), not its name.
pub fn is_baseline(b: &dyn Backend) -> bool {
    b.info().kind == results::BackendKind::Baseline
}

/// The `isolation.csv` outcome of a probe's reported outcome (the row set adds `unsupported`).
pub fn row_outcome(o: ProbeOutcome) -> Outcome {
    match o {
        ProbeOutcome::Blocked => Outcome::Blocked,
        ProbeOutcome::Reached => Outcome::Reached,
        ProbeOutcome::Error => Outcome::Error,
    }
}

/// How long the isolation experiment waits for another vmct process's probes to release the host's
/// canaries (one probe run per host at a time, see [`HostLock`]).
pub const HOST_LOCK_WAIT: Duration = Duration::from_secs(300);

/// Errors that stop the isolation experiment (a backend failing to launch is a row, not an error).
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// Canaries could not be planted.
    #[error(transparent)]
    Canary(#[from] CanaryError),
    /// The user pressed Ctrl-C.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// The workload binary or a working directory could not be prepared.
    #[error("setup failed: {0}")]
    Setup(String),
}

/// Options of the isolation experiment.
#[derive(Debug, Clone)]
pub struct IsolationOptions {
    /// The static workload binary (for the process baseline when `process` is not among the backends).
    pub workload: PathBuf,
    /// Working directory of the baseline process.
    pub work_dir: PathBuf,
    /// Per-instance timeout (ready, and all probes).
    pub timeout: Duration,
    /// Where instance logs go (None: discarded).
    pub log_dir: Option<PathBuf>,
    /// Run the `process` baseline even if it is not in the backend list (its rows are included).
    pub baseline: bool,
    /// Only these probe ids (None: the whole catalogue).
    pub probes: Option<Vec<String>>,
    /// Blast-radius experiment (None: skipped).
    pub blast: Option<blast::BlastOptions>,
    /// Blast-radius options for backends with an emulated guest CPU (smaller samples, see
    /// `crate::compare::for_emulated`); None: the same as [`IsolationOptions::blast`].
    pub emulated_blast: Option<blast::BlastOptions>,
}

impl IsolationOptions {
    /// Defaults: 120 s per instance, baseline on, all probes, blast radius with its defaults.
    pub fn new(workload: PathBuf, work_dir: PathBuf) -> IsolationOptions {
        IsolationOptions {
            workload,
            work_dir,
            timeout: Duration::from_secs(120),
            log_dir: None,
            baseline: true,
            probes: None,
            blast: Some(blast::BlastOptions::default()),
            emulated_blast: None,
        }
    }
}

/// Everything the experiment produced.
#[derive(Debug, Clone, Default)]
pub struct IsolationOutcome {
    /// `isolation.csv`.
    pub rows: Vec<IsolationRow>,
    /// `blast.csv`.
    pub blast: Vec<results::BlastRow>,
    /// Things the user should know (restore failures, skipped blast cases with reasons), each starting
    /// with the backend or `blast:`; whoever prints them adds the experiment's name.
    pub notes: Vec<String>,
    /// `attack_surface.csv`: one row per probed backend, in probe order.
    pub surface: Vec<results::AttackSurfaceRow>,
    /// Wall-clock seconds spent on each backend (probes and blast radius), in probe order.
    pub wall_s: Vec<(String, f64)>,
}

impl IsolationOutcome {
    /// Number of failures per backend, in backend order.
    pub fn failures(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = Vec::new();
        for r in &self.rows {
            match v.iter_mut().find(|(b, _)| *b == r.backend) {
                Some(e) => e.1 += r.failure as usize,
                None => v.push((r.backend.clone(), r.failure as usize)),
            }
        }
        v
    }
}

/// The profile a backend declares it runs ([`Backend::attack_surface`]), for the matrix.
pub fn profile_of(backend: &dyn Backend) -> String {
    let p = backend.attack_surface().profile;
    if p.is_empty() {
        "not declared".into()
    } else {
        p
    }
}

/// Run the probe catalogue on every backend (baseline first), then the blast radius.
pub fn run_isolation(
    backends: &[&dyn Backend],
    opts: &IsolationOptions,
    progress: &dyn Fn(&str),
) -> Result<IsolationOutcome, IsolationError> {
    let mut out = IsolationOutcome::default();
    let own_baseline;
    let mut order: Vec<&dyn Backend> = Vec::new();
    match backends.iter().find(|b| is_baseline(**b)) {
        Some(b) => order.push(*b),
        None if opts.baseline => {
            own_baseline = crate::backend::process::ProcessBackend::new(opts.workload.clone(), opts.work_dir.clone());
            order.push(&own_baseline);
        }
        None => {}
    }
    order.extend(backends.iter().copied().filter(|b| !is_baseline(*b)));
    let mut baseline_rows: Vec<IsolationRow> = Vec::new();
    for b in &order {
        crate::interrupt::check()?;
        let t0 = std::time::Instant::now();
        progress(&format!("isolation: probing {}", b.name()));
        let (mut rows, notes) = probe_backend(*b, opts, &baseline_rows)?;
        out.notes.extend(notes);
        if is_baseline(*b) {
            baseline_rows = rows.clone();
        } else {
            annotate_with_baseline(&mut rows, &baseline_rows);
        }
        let fails = rows.iter().filter(|r| r.failure).count();
        progress(&format!("isolation: {}: {} probes, {fails} failures", b.name(), rows.len()));
        out.surface.push(surface_of(*b, &rows, &baseline_rows));
        out.rows.extend(rows);
        out.wall_s.push((b.name().to_string(), t0.elapsed().as_secs_f64()));
    }
    if let Some(bo) = &opts.blast {
        for b in &order {
            crate::interrupt::check()?;
            let bo = opts.emulated_blast.as_ref().filter(|_| b.capabilities().emulated).unwrap_or(bo);
            let t0 = std::time::Instant::now();
            let (rows, notes) = blast::run_blast(*b, bo, progress)?;
            out.blast.extend(rows);
            out.notes.extend(notes);
            out.wall_s.push((b.name().to_string(), t0.elapsed().as_secs_f64()));
        }
    }
    Ok(out)
}

/// The attack-surface row of `backend` from its declaration, the census row among `rows` and the
/// baseline's census (`baseline`: the `process` rows of the same run, if any).
pub fn surface_of(
    backend: &dyn Backend,
    rows: &[IsolationRow],
    baseline: &[IsolationRow],
) -> results::AttackSurfaceRow {
    let census = |rows: &[IsolationRow]| {
        rows.iter()
            .find(|r| r.probe == workloads::probe_ids::CENSUS && r.outcome == Outcome::Reached)
            .map(|r| r.detail.clone())
    };
    let (own, base) = (census(rows), census(baseline));
    crate::backend::surface::surface_row(&backend.info(), &backend.attack_surface(), own.as_deref(), base.as_deref())
}

/// Run the catalogue on one backend with fresh canaries; returns rows and notes. Launch failures and
/// `unsupported` answers become rows (one per baseline probe id, or one `launch` row).
pub fn probe_backend(
    backend: &dyn Backend,
    opts: &IsolationOptions,
    baseline: &[IsolationRow],
) -> Result<(Vec<IsolationRow>, Vec<String>), IsolationError> {
    let _lock = HostLock::acquire(HOST_LOCK_WAIT)?;
    let canaries = Canaries::plant()?;
    let mut spec = InstanceSpec::new(crate::experiments::next_id(), Scenario::Probe);
    spec.env.extend(canaries.env());
    if let Some(p) = &opts.probes {
        spec.env.push((canary::ENV_ONLY.to_string(), p.join(",")));
    }
    spec.log_dir = opts.log_dir.clone();
    let events = run_instance(backend, &spec, opts.timeout);
    let checks = canaries.check();
    drop(canaries);
    let profile = profile_of(backend);
    let mut notes: Vec<String> = checks.restore_errors.iter().map(|e| restore_note(backend.name(), e)).collect();
    let (info, caps) = (backend.info(), backend.capabilities());
    let rows = match events {
        Ok(ev) => {
            let mut rows = classify(backend.name(), &profile, &ev, &checks, baseline);
            rows.extend(not_in_catalogue(backend, &profile, &rows, opts.probes.as_deref()));
            if info.model == IsolationModel::Microvm {
                credit_guest_kernel(&mut rows);
            }
            if info.model == IsolationModel::UserSpaceKernel {
                credit_user_space_kernel(&mut rows);
            }
            if caps.own_kernel {
                rows = guest_local(rows);
            }
            rows
        }
        Err((outcome, reason)) => {
            notes.push(launch_note(backend.name(), outcome, &reason));
            let mut rows = not_run(backend.name(), &profile, outcome, &reason, baseline);
            rows.extend(uncovered(backend.name(), &profile, &rows, &checks));
            rows
        }
    };
    Ok((rows, notes))
}

/// The note for a backend whose probe instance did not run (`outcome`: why, e.g. failed or timeout).
pub fn launch_note(backend: &str, outcome: impl std::fmt::Display, reason: &str) -> String {
    format!("{backend}: {outcome}: {reason}")
}

/// The note for a host value a probe run left changed that could not be put back.
pub fn restore_note(backend: &str, error: &str) -> String {
    format!("{backend}: {error}")
}

/// In a VM guest the device-node, masked-path and kernel-reach probes reach the guest's own kernel:
/// not a host failure. Their rows say so (other probes keep their host-side judgement).
pub fn credit_guest_kernel(rows: &mut [IsolationRow]) {
    credit_own_kernel(rows, "reached the guest's own kernel (the VM has its own), not the host's");
}

/// In gVisor (runsc) the same probes reach the Sentry, the sandbox's user-space kernel, which answers
/// them itself (its own devices, procfs and system call implementations); the host kernel sees only
/// the Sentry's own filtered calls (attack surface layer c).
pub fn credit_user_space_kernel(rows: &mut [IsolationRow]) {
    credit_own_kernel(rows, "answered by the Sentry (gVisor's user-space kernel), not the host kernel");
}

fn credit_own_kernel(rows: &mut [IsolationRow], why: &str) {
    let own: Vec<&str> = workloads::probe_ids::surface_probes().collect();
    for r in rows.iter_mut().filter(|r| r.outcome == Outcome::Reached && own.contains(&r.probe.as_str())) {
        r.failure = false;
        r.host_check = why.into();
    }
}

/// `unsupported` rows for the attack-surface probes of the Linux catalogue
/// ([`workloads::probe_ids::surface_probes`]) an instance that ran did not report, so the matrix shows
/// every one for every backend: a bare guest has no OS, so no device nodes, procfs or system calls.
fn not_in_catalogue(
    backend: &dyn Backend,
    profile: &str,
    rows: &[IsolationRow],
    only: Option<&[String]>,
) -> Vec<IsolationRow> {
    if rows.iter().all(|r| r.outcome == Outcome::Unsupported) {
        return Vec::new();
    }
    let why = if !backend.capabilities().linux_probes {
        "not applicable: the bare guest has no OS (no device nodes, procfs or system calls); it reaches the \
         host only through VM exits (attack surface layer b)"
    } else {
        "not in this platform's probe catalogue"
    };
    workloads::probe_ids::surface_probes()
        .filter(|id| only.is_none_or(|o| o.iter().any(|w| w == id)))
        .filter(|id| !rows.iter().any(|r| r.probe == *id))
        .map(|id| IsolationRow {
            backend: backend.name().into(),
            profile: profile.into(),
            probe: id.into(),
            outcome: Outcome::Unsupported,
            detail: why.into(),
            host_check: String::new(),
            failure: false,
        })
        .collect()
}

/// Probes (by id prefix) that act on the instance's own kernel only: capabilities, mounts, the clock,
/// keyrings, devices and the instance's own cgroup limits. In a container that kernel is the host's; in a
/// linux-guest VM it is the guest's.
pub const KERNEL_LOCAL_PROBES: &[&str] = &["caps.", "mount.", "clock.", "keyring.", "dev.", "cgroup.raise_limit"];

/// For a linux-guest VM (its own kernel): a [`KERNEL_LOCAL_PROBES`] probe that reached something, with no
/// host-side check saying otherwise, changed only the guest, so it is no failure. Every other probe
/// (host canaries, host processes, the host network) keeps its verdict.
pub fn guest_local(mut rows: Vec<IsolationRow>) -> Vec<IsolationRow> {
    let local = |id: &str| KERNEL_LOCAL_PROBES.iter().any(|p| id.starts_with(p));
    for r in rows.iter_mut().filter(|r| r.failure && r.host_check.is_empty() && local(&r.probe)) {
        r.failure = false;
        r.host_check = "the guest's own kernel: stays inside the VM (no host-side trace)".into();
    }
    rows
}

/// Launch, wait for ready, collect, stop. `Err((outcome, reason))` when the instance never ran the
/// catalogue (`unsupported` for an unavailable backend, `error` for a failed launch).
fn run_instance(
    backend: &dyn Backend,
    spec: &InstanceSpec,
    timeout: Duration,
) -> Result<Vec<Event>, (Outcome, String)> {
    let mut inst = match backend.launch(spec) {
        Ok(i) => i,
        Err(BackendError::Unavailable { reason, .. }) => return Err((Outcome::Unsupported, reason)),
        Err(e) => return Err((Outcome::Error, e.to_string())),
    };
    let res = inst.wait_ready(timeout).and_then(|_| collect_events(inst.as_mut(), timeout));
    let exit = inst.stop(crate::backend::STOP_GRACE);
    match res {
        Ok(ev) => Ok(ev),
        Err(e) => Err((Outcome::Error, format!("{e}; exit {exit:?}"))),
    }
}

/// Rows for a backend that did not run the catalogue.
fn not_run(
    backend: &str,
    profile: &str,
    outcome: Outcome,
    reason: &str,
    baseline: &[IsolationRow],
) -> Vec<IsolationRow> {
    let ids: Vec<String> = baseline.iter().map(|r| r.probe.clone()).collect();
    let ids = if ids.is_empty() { vec!["launch".to_string()] } else { ids };
    ids.into_iter()
        .map(|probe| IsolationRow {
            backend: backend.into(),
            profile: profile.into(),
            probe,
            outcome,
            detail: reason.into(),
            host_check: String::new(),
            failure: false,
        })
        .collect()
}

/// Turn one instance's events and the host checks into rows; `profile` is the one the backend declares.
pub fn classify(
    backend: &str,
    profile: &str,
    events: &[Event],
    checks: &HostChecks,
    baseline: &[IsolationRow],
) -> Vec<IsolationRow> {
    let mut rows = Vec::new();
    for e in events {
        match e {
            Event::Probe { id, outcome, detail } => {
                let (host_check, failure) = judge(id, *outcome, checks);
                rows.push(IsolationRow {
                    backend: backend.into(),
                    profile: profile.into(),
                    probe: id.clone(),
                    outcome: row_outcome(*outcome),
                    detail: detail.clone(),
                    host_check,
                    failure,
                });
            }
            Event::Unsupported { what, reason } if what == "probe" => {
                rows.extend(not_run(backend, profile, Outcome::Unsupported, reason, baseline));
            }
            _ => {}
        }
    }
    let extra = uncovered(backend, profile, &rows, checks);
    rows.extend(extra);
    rows
}

/// The host-side verdict for probe `id`: (host_check text, failure).
pub fn judge(id: &str, outcome: ProbeOutcome, c: &HostChecks) -> (String, bool) {
    let reached = outcome == ProbeOutcome::Reached;
    let changed = |what: &str, v: &Option<String>| match v {
        Some(v) => (format!("host {what} changed to '{v}': detected and restored"), true),
        None if reached => (format!("host {what} unchanged (the probe's change stayed inside the instance)"), false),
        None => (format!("host {what} unchanged"), false),
    };
    match id {
        "fs.host_canary" if !c.file_intact => ("canary file modified or removed".into(), true),
        "fs.host_canary" => ("canary file intact".into(), reached),
        "net.host_loopback" => (
            format!(
                "listener got {} connection(s) carrying the nonce, {} other(s)",
                c.listener_hits, c.listener_others
            ),
            reached || c.listener_hits > 0,
        ),
        "uts.hostname" => changed("hostname", &c.hostname_changed),
        "uts.domainname" => changed("domainname", &c.domainname_changed),
        "sysctl.host_write" => changed(&format!("sysctl {}", canary::SYSCTL), &c.sysctl_changed),
        "cgroup.escape" => match c.cgroup_entered {
            Some(true) => ("a process entered the host escape cgroup".into(), true),
            Some(false) => ("host escape cgroup never entered".into(), false),
            None => ("no host-side trace available; probe report used".into(), reached),
        },
        _ if id.starts_with("info.") || id.starts_with("census.") => {
            ("information only (shared-kernel surface), not counted as a failure".into(), false)
        }
        _ => (String::new(), reached),
    }
}

/// Rows for host-side detections no probe row covers (e.g. the instance died before reporting).
fn uncovered(backend: &str, profile: &str, rows: &[IsolationRow], c: &HostChecks) -> Vec<IsolationRow> {
    let has = |id: &str| rows.iter().any(|r| r.probe == id);
    let mut v = Vec::new();
    let mut add = |probe: &str, check: String| {
        v.push(IsolationRow {
            backend: backend.into(),
            profile: profile.into(),
            probe: probe.into(),
            outcome: Outcome::Reached,
            detail: "detected from the host side only".into(),
            host_check: check,
            failure: true,
        })
    };
    if let (Some(h), false) = (&c.hostname_changed, has("uts.hostname")) {
        add("uts.hostname", format!("host hostname changed to '{h}': restored"));
    }
    if let (Some(h), false) = (&c.domainname_changed, has("uts.domainname")) {
        add("uts.domainname", format!("host domainname changed to '{h}': restored"));
    }
    if let (Some(h), false) = (&c.sysctl_changed, has("sysctl.host_write")) {
        add("sysctl.host_write", format!("host sysctl changed to '{h}': restored"));
    }
    if c.listener_hits > 0 && !has("net.host_loopback") {
        add("net.host_loopback", format!("listener got {} connection(s) carrying the nonce", c.listener_hits));
    }
    if !c.file_intact && !has("fs.host_canary") {
        add("fs.host_canary", "canary file modified or removed".into());
    }
    v
}

/// Mark probes blocked (or undecided) on a backend that are blocked on the baseline too: a host-wide
/// denial, not isolation.
pub fn annotate_with_baseline(rows: &mut [IsolationRow], baseline: &[IsolationRow]) {
    for r in rows.iter_mut().filter(|r| matches!(r.outcome, Outcome::Blocked | Outcome::Error)) {
        if let Some(b) = baseline.iter().find(|b| b.probe == r.probe) {
            if matches!(b.outcome, Outcome::Blocked | Outcome::Error) {
                let note = format!("{} on the host itself too: a host-wide denial, not isolation", b.outcome);
                r.host_check = if r.host_check.is_empty() { note } else { format!("{}; {note}", r.host_check) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(id: &str, o: ProbeOutcome) -> Event {
        Event::Probe { id: id.into(), outcome: o, detail: "d".into() }
    }

    #[test]
    fn host_checks_decide_where_they_exist() {
        let clean = HostChecks { file_intact: true, ..Default::default() };
        // A probe that changed only its own namespace is not a failure when the host is unchanged.
        assert!(!judge("uts.hostname", ProbeOutcome::Reached, &clean).1);
        let dirty = HostChecks { hostname_changed: Some("x".into()), file_intact: true, ..Default::default() };
        let (txt, fail) = judge("uts.hostname", ProbeOutcome::Blocked, &dirty);
        assert!(fail && txt.contains("restored"));
        assert!(
            judge(
                "sysctl.host_write",
                ProbeOutcome::Blocked,
                &HostChecks { sysctl_changed: Some("46".into()), ..clean.clone() }
            )
            .1
        );
        assert!(judge("net.host_loopback", ProbeOutcome::Blocked, &HostChecks { listener_hits: 1, ..clean.clone() }).1);
        assert!(
            judge("cgroup.escape", ProbeOutcome::Blocked, &HostChecks { cgroup_entered: Some(true), ..clean.clone() })
                .1
        );
        assert!(judge("fs.host_canary", ProbeOutcome::Blocked, &HostChecks::default()).1, "tampered canary");
    }

    #[test]
    fn reached_is_a_failure_except_information() {
        let c = HostChecks { file_intact: true, ..Default::default() };
        assert!(judge("pid.host_visible", ProbeOutcome::Reached, &c).1);
        assert!(!judge("pid.host_visible", ProbeOutcome::Blocked, &c).1);
        assert!(!judge("pid.host_visible", ProbeOutcome::Error, &c).1);
        assert!(!judge("info.kernel", ProbeOutcome::Reached, &c).1);
        assert!(!judge("census.syscalls", ProbeOutcome::Reached, &c).1);
    }

    #[test]
    fn unsupported_and_host_only_detections_become_rows() {
        let c = HostChecks { file_intact: true, sysctl_changed: Some("46".into()), ..Default::default() };
        let ev = vec![
            Event::Unsupported { what: "probe".into(), reason: "no syscalls".into() },
            probe("x.y", ProbeOutcome::Blocked),
        ];
        let rows = classify("microvm", "bare", &ev, &c, &[]);
        assert!(rows.iter().any(|r| r.outcome == Outcome::Unsupported && r.probe == "launch"));
        assert!(rows.iter().any(|r| r.probe == "sysctl.host_write" && r.failure));
        assert_eq!(rows[0].profile, "bare");
    }

    #[test]
    fn baseline_denials_are_marked_host_wide() {
        let c = HostChecks { file_intact: true, ..Default::default() };
        let base =
            classify("process", crate::backend::process::PROFILE, &[probe("dev.mem", ProbeOutcome::Blocked)], &c, &[]);
        let mut rows = classify(
            "container",
            "default",
            &[probe("dev.mem", ProbeOutcome::Blocked), probe("dev.kvm", ProbeOutcome::Blocked)],
            &c,
            &base,
        );
        annotate_with_baseline(&mut rows, &base);
        assert!(rows[0].host_check.contains("host-wide"));
        assert!(rows[1].host_check.is_empty());
        assert_eq!(base[0].profile, "none (baseline, no isolation)");
    }

    struct Bare;
    impl Backend for Bare {
        fn name(&self) -> &str {
            "bare"
        }
        fn info(&self) -> results::BackendInfo {
            results::BackendInfo {
                emulated: false,
                isolation: None,
                name: "bare".into(),
                kind: results::BackendKind::Ours,
                model: results::IsolationModel::Microvm,
                guest_model: Some(results::GuestModel::Bare),
                available: true,
                reason: None,
                version: None,
            }
        }
        fn capabilities(&self) -> results::Capabilities {
            results::Capabilities { limits: true, ..results::Capabilities::default() }
        }
        fn launch(&self, _: &InstanceSpec) -> Result<Box<dyn crate::backend::Instance>, BackendError> {
            Err(BackendError::Unavailable { backend: "bare".into(), reason: "test".into() })
        }
    }

    #[test]
    fn a_bare_guest_shows_every_new_probe_as_not_applicable() {
        let c = HostChecks { file_intact: true, ..Default::default() };
        let rows = classify("bare", "bare", &[probe("guest.port_post", ProbeOutcome::Blocked)], &c, &[]);
        let extra = not_in_catalogue(&Bare, "bare", &rows, None);
        let ids: Vec<&str> = extra.iter().map(|r| r.probe.as_str()).collect();
        assert_eq!(ids, workloads::probe_ids::surface_probes().collect::<Vec<_>>());
        assert!(extra.iter().all(|r| r.outcome == Outcome::Unsupported && !r.failure && r.detail.contains("no OS")));
        let only = vec!["dev.node.tty0".to_string()];
        assert_eq!(not_in_catalogue(&Bare, "bare", &rows, Some(&only)).len(), 1);
        // A backend that never ran gets no extra rows (its `unsupported` rows already say why).
        let not_run = not_run("bare", "bare", Outcome::Unsupported, "x", &[]);
        assert!(not_in_catalogue(&Bare, "bare", &not_run, None).is_empty());
    }

    #[test]
    fn a_guest_reaching_its_own_kernel_is_not_a_host_failure() {
        let c = HostChecks { file_intact: true, ..Default::default() };
        let ev = [probe("dev.node.tty0", ProbeOutcome::Reached), probe("pid.host_visible", ProbeOutcome::Reached)];
        let mut rows = classify("microvm-linux", "linux guest", &ev, &c, &[]);
        assert!(rows.iter().all(|r| r.failure));
        credit_guest_kernel(&mut rows);
        assert!(!rows[0].failure && rows[0].host_check.contains("guest's own kernel"));
        assert!(rows[1].failure, "other probes keep their judgement");
    }

    #[test]
    fn a_guest_kernel_reaching_its_own_state_is_no_failure_but_a_host_check_stands() {
        let row = |probe: &str, host_check: &str| IsolationRow {
            backend: "vm".into(),
            profile: "default".into(),
            probe: probe.into(),
            outcome: Outcome::Reached,
            detail: String::new(),
            host_check: host_check.into(),
            failure: true,
        };
        let rows = guest_local(vec![
            row("caps.raise", ""),
            row("fs.host_canary", "canary file modified or removed"),
            row("pid.ptrace_host", ""),
        ]);
        assert!(!rows[0].failure && rows[0].host_check.contains("own kernel"));
        assert!(rows[1].failure, "a host-side detection stays a failure");
        assert!(rows[2].failure, "reaching a host process is never guest-local");
    }

    #[test]
    fn failures_are_counted_per_backend() {
        let c = HostChecks { file_intact: true, ..Default::default() };
        let mut out = IsolationOutcome {
            rows: classify("process", "none", &[probe("pid.host_visible", ProbeOutcome::Reached)], &c, &[]),
            ..Default::default()
        };
        out.rows.extend(classify("container", "default", &[probe("pid.host_visible", ProbeOutcome::Blocked)], &c, &[]));
        assert_eq!(out.failures(), vec![("process".into(), 1), ("container".into(), 0)]);
    }
}

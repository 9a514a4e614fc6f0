//! Capacity planner (issue 15 item 7, issue 18 item 6): how many instances of ONE container configuration and
//! ONE VM configuration (a [`ConfigPair`] the user picks; nothing picks a "best" backend) fit on a target host,
//! at the planned density.
//!
//! Each side gets one count per limit, each named:
//! - **memory**: host memory / memory per instance. Memory per instance comes from figures that transfer
//!   ([`results::transfer`]): for a container (or the bare guest) the density slope − the working set held in
//!   the sweep + the user's working set; for the Linux-guest VM the guest RAM it touched − the held working
//!   set + the user's working set + our own VMM's overhead (never the TCG emulator's). When the Linux guest's VMM
//!   overhead only exists under emulation, the planner composes it with our VMM's overhead measured with the
//!   bare guest, labelled "composed"; with no guest RAM figure the limit reads "needs a run on a VT-x host".
//!   A working-set burst (`burst`) adds the share of it the model keeps after freeing it (give-back, as
//!   measured); files all instances read (`file_set`) add the host bytes each instance costs for them
//!   (page-cache sharing, as measured); KSM's saving is shown beside, not applied (KSM is off by default).
//! - **CPU**: cores / (idle CPU per instance + the user's CPU demand per instance × the measured CPU overhead
//!   vs the process baseline).
//! - **startup SLO**: the largest count at which p99 launch-to-ready (measured on a nearly empty host) + the
//!   fitted launch-latency growth (ms per 1000 alive, [`crate::density_latency`]) stays within the SLO.
//! - **host limits** (pids, open files, ...) that stopped the run's density sweep, when recorded.
//!
//! The tightest checked limit is the binding one and is stated; a limit whose figure is absent or does not
//! transfer is "not checked", with the reason, and the plan goes on without it.
use crate::data::{Model, RunData};
use crate::pair::{ConfigPair, PairError};
use crate::plan_figures::{HeldMemory, PlanFigures, SideFigures, Sourced};
use crate::units::{fmt_bytes, fmt_secs, sig3};
use results::{RunDir, RunDirError};
use serde::Serialize;
use std::fmt;

/// Errors planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A run directory could not be read.
    #[error("planner: {0}")]
    Run(#[from] RunDirError),
    /// The run has neither density nor startup results, so there is nothing to plan from.
    #[error(
        "planner: {0} has no density_summary.csv and no startup_summary.csv; run `vmct compare` with the density and startup experiments first"
    )]
    NoData(String),
    /// An input is out of range.
    #[error("planner: invalid input: {0}")]
    Input(String),
    /// The pair names no backend of the run.
    #[error("planner: --pair {0}")]
    Pair(#[from] PairError),
    /// The run has no container or no VM backend, so there is no pair to plan.
    #[error("planner: {0} has no container and VM backend to pair; run `vmct compare` with both models")]
    NoPair(String),
}

/// What to plan for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlanInput {
    /// Host memory to fill, bytes.
    pub host_mem_bytes: u64,
    /// Host cores.
    pub cores: u32,
    /// Memory each instance's workload keeps resident, bytes.
    pub working_set_bytes: u64,
    /// Startup SLO: p99 launch-to-ready at the planned density, seconds.
    pub slo_p99_s: f64,
    /// The workload's own CPU demand per instance, cores (on the process baseline).
    pub cpu_per_instance: f64,
    /// A transient working-set burst per instance beyond the working set (touched, then freed), bytes.
    pub burst_bytes: u64,
    /// Files every instance reads (the same image files), bytes.
    pub file_set_bytes: u64,
}

impl PlanInput {
    /// Default CPU demand per instance, cores: a mostly idle service (1% of a core).
    pub const DEFAULT_CPU_PER_INSTANCE: f64 = 0.01;

    /// The report's default: this run's host memory and cores, 128 MiB working set, 50 ms p99, 0.01 cores of
    /// demand per instance, no burst, no shared files.
    pub fn default_for(run: &RunData) -> PlanInput {
        PlanInput {
            host_mem_bytes: run.meta.host.mem_total_bytes,
            cores: run.meta.host.cores,
            working_set_bytes: 128 << 20,
            slo_p99_s: 0.050,
            cpu_per_instance: Self::DEFAULT_CPU_PER_INSTANCE,
            burst_bytes: 0,
            file_set_bytes: 0,
        }
    }

    /// Check the ranges: memory and cores above 0, a positive SLO, a demand of at least 0 cores.
    pub fn check(&self) -> Result<(), PlanError> {
        if self.host_mem_bytes == 0 || self.cores == 0 {
            return Err(PlanError::Input(format!(
                "host memory and cores must be above 0 (got {} B, {} cores)",
                self.host_mem_bytes, self.cores
            )));
        }
        if !(self.slo_p99_s.is_finite() && self.slo_p99_s > 0.0) {
            return Err(PlanError::Input(format!("p99 SLO must be a positive duration, got {} s", self.slo_p99_s)));
        }
        if !(self.cpu_per_instance.is_finite() && self.cpu_per_instance >= 0.0) {
            return Err(PlanError::Input(format!(
                "CPU per instance must be 0 or more cores (e.g. 0.25), got {}",
                self.cpu_per_instance
            )));
        }
        Ok(())
    }
}

/// Which limit; in JSON its words ("memory", "CPU", "startup SLO", "host limit (NAME)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKind {
    /// Host memory.
    Memory,
    /// Host CPU.
    Cpu,
    /// The p99 startup SLO at the planned density.
    StartupSlo,
    /// A host limit that stopped the density sweep (its name and value).
    Host(String),
}

impl Serialize for LimitKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKind::Memory => f.write_str("memory"),
            LimitKind::Cpu => f.write_str("CPU"),
            LimitKind::StartupSlo => f.write_str("startup SLO"),
            LimitKind::Host(n) => write!(f, "host limit ({n})"),
        }
    }
}

/// What a limit allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum LimitStatus {
    /// At most this many instances.
    Bound {
        /// Instances.
        instances: u64,
    },
    /// Checked, and it bounds nothing (e.g. launch latency does not grow with instances alive).
    Unbounded,
    /// Not checked: a figure is absent or does not transfer.
    NotChecked {
        /// Why, in words.
        reason: String,
    },
}

/// One limit of one side, with how it was computed and from which figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limit {
    /// Which limit.
    pub kind: LimitKind,
    /// What it allows.
    #[serde(flatten)]
    pub status: LimitStatus,
    /// How it was computed (terms and values), in words.
    pub how: String,
    /// Each figure used: "name value (n = .., backend of run .. on host .., file)".
    pub sources: Vec<String>,
}

impl Limit {
    fn instances(&self) -> Option<u64> {
        match self.status {
            LimitStatus::Bound { instances } => Some(instances),
            _ => None,
        }
    }
}

/// The binding limit of a side: the tightest checked one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binding {
    /// Which limit.
    pub kind: LimitKind,
    /// Instances it allows: the planned density.
    pub instances: u64,
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.instances {
            0 => write!(f, "binding limit: {} allows no instance", self.kind),
            n => write!(f, "binding limit: {} at {} instances", self.kind, fmt_count(n)),
        }
    }
}

/// "950", "1.3 k", "24.0 k", "1.20 M".
pub fn fmt_count(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1000..=999_999 => format!("{} k", sig3(n as f64 / 1e3)),
        _ => format!("{} M", sig3(n as f64 / 1e6)),
    }
}

/// The plan of one side of the pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SidePlan {
    /// Backend name.
    pub backend: String,
    /// Its model, in words.
    pub model: String,
    /// Planned memory per instance, bytes (None: not plannable from transferable figures).
    pub mem_per_instance_bytes: Option<f64>,
    /// Whether the memory per instance is composed from two backends' figures (labelled in `limits`).
    pub mem_composed: bool,
    /// Every limit, checked or not.
    pub limits: Vec<Limit>,
    /// The tightest checked limit; None when no limit could be checked.
    pub binding: Option<Binding>,
    /// p99 launch-to-ready at the planned density (p99 measured + growth × instances), seconds.
    pub p99_at_planned_s: Option<f64>,
    /// Notes (extrapolation, KSM, assumptions taken for an absent figure).
    pub notes: Vec<String>,
    /// The figures the side was planned from, with their sources and transfer marks.
    pub figures: SideFigures,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanOutput {
    /// The input.
    pub input: PlanInput,
    /// The pair planned, as given.
    pub pair: ConfigPair,
    /// Runs the figures come from: "id on host (kvm)", the primary first.
    pub runs: Vec<String>,
    /// The container configuration.
    pub container: SidePlan,
    /// The VM configuration.
    pub vm: SidePlan,
    /// Figures refused as impossible values, per backend.
    pub refused: Vec<String>,
    /// Every assumption the numbers rest on.
    pub assumptions: Vec<String>,
}

/// Plan from run directories (the primary first, then merged runs) for `pair` ("CONTAINER:VM"; None: the
/// primary run's default pair, [`ConfigPair::default_for`]).
pub fn plan(runs: &[RunDir], pair: Option<&str>, input: &PlanInput) -> Result<PlanOutput, PlanError> {
    input.check()?;
    let data = runs.iter().map(RunData::load).collect::<Result<Vec<_>, _>>()?;
    let primary = data.first().ok_or_else(|| PlanError::Input("no run directory given".into()))?;
    let pair = match pair {
        Some(p) => ConfigPair::parse(p, primary)?,
        None => ConfigPair::default_for(primary).ok_or_else(|| PlanError::NoPair(primary.dir.display().to_string()))?,
    };
    plan_data(&data, &pair, input)
}

/// Plan from loaded runs (the primary first) for `pair`.
pub fn plan_data(runs: &[RunData], pair: &ConfigPair, input: &PlanInput) -> Result<PlanOutput, PlanError> {
    input.check()?;
    let primary = runs.first().ok_or_else(|| PlanError::Input("no run directory given".into()))?;
    if runs.iter().all(|r| r.density_fit.is_none() && r.startup_summary.is_none()) {
        return Err(PlanError::NoData(primary.dir.display().to_string()));
    }
    let figures = PlanFigures::from_runs(runs, pair);
    let labels =
        runs.iter().map(|r| format!("{} on {} ({})", r.meta.id, r.host_label(), r.meta.host.kvm.as_str())).collect();
    Ok(plan_figures(&figures, pair, labels, input))
}

fn cite<T>(name: &str, s: &Sourced<T>, value: String) -> String {
    format!("{name} {value} ({})", s.cite())
}

/// A figure the side may use, or why not.
fn usable<'a, T>(s: &'a Option<Sourced<T>>, side: &SideFigures, what: &str) -> Result<&'a Sourced<T>, String> {
    match s {
        Some(s) if s.usable_for(side.model) => Ok(s),
        Some(s) => Err(format!(
            "{what} of {} ({}) is {}; needs a run on a VT-x host",
            s.source.backend,
            s.source.run,
            s.transfer.mark()
        )),
        None => match side.refused.iter().find(|(w, _)| w == what) {
            Some((_, why)) => Err(format!("{what} refused ({why})")),
            None => Err(format!("{what} not measured in the runs given")),
        },
    }
}

struct Memory {
    per: f64,
    /// Bytes held once per host whatever the count (the shared page cache of files all instances read).
    once: f64,
    composed: bool,
    how: String,
    sources: Vec<String>,
    notes: Vec<String>,
}

/// Notes on a measured memory figure: a poor fit, or less than the working set held (shared, not yet resident,
/// or noise).
fn memory_notes(what: &str, m: &HeldMemory) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(r2) = m.fit_r2.filter(|r| crate::validity::poor_fit(*r).is_some()) {
        notes.push(format!("{what}: the density fit is poor (r² = {}): treat the memory count as rough", sig3(r2)));
    }
    if m.bytes < m.held_bytes {
        notes.push(format!(
            "{what} {} is below the {} each instance held (pages shared, not yet resident, or noise): the \
             overhead beyond the working set is planned as 0",
            fmt_bytes(m.bytes),
            fmt_bytes(m.held_bytes)
        ));
    }
    notes
}

/// Base memory per instance (before burst and files) from transferable figures.
fn base_memory(f: &SideFigures, ws: f64) -> Result<Memory, String> {
    let b = fmt_bytes;
    if f.model != Model::MicrovmLinux {
        let s = usable(&f.density_slope, f, "density slope")?;
        let over = (s.value.bytes - s.value.held_bytes).max(0.0);
        return Ok(Memory {
            once: 0.0,
            per: over + ws,
            composed: false,
            how: format!(
                "density slope {} − {} held in the sweep + {} working set = {}",
                b(s.value.bytes),
                b(s.value.held_bytes),
                b(ws),
                b(over + ws)
            ),
            sources: vec![cite("density slope", s, b(s.value.bytes))],
            notes: memory_notes("density slope", &s.value),
        });
    }
    let g = usable(&f.guest_ram, f, "guest RAM touched")?;
    let guest = (g.value.bytes - g.value.held_bytes).max(0.0);
    let (vmm, composed, vmm_words) = match usable(&f.vmm_overhead, f, "VMM overhead") {
        Ok(v) => (v, false, "our VMM's overhead"),
        Err(own) => match &f.bare_vmm_overhead {
            Some(v) if v.transfer == results::Transfer::BareModelOnly || v.transfer.transfers() => (
                v,
                true,
                "composed: our VMM's overhead measured with the bare guest (a lower bound: no virtio devices)",
            ),
            _ => return Err(own),
        },
    };
    let per = guest + ws + vmm.value;
    Ok(Memory {
        once: 0.0,
        per,
        composed,
        how: format!(
            "guest RAM touched {} − {} held in the sweep + {} working set + {vmm_words} {} = {}",
            b(g.value.bytes),
            b(g.value.held_bytes),
            b(ws),
            b(vmm.value),
            b(per)
        ),
        sources: vec![cite("guest RAM touched", g, b(g.value.bytes)), cite("VMM overhead", vmm, b(vmm.value))],
        notes: memory_notes("guest RAM touched", &g.value),
    })
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // floor of a finite, non-negative count
fn whole(x: f64) -> u64 {
    x.max(0.0).floor() as u64
}

fn plan_side(f: &SideFigures, input: &PlanInput) -> SidePlan {
    let mut notes = Vec::new();
    let mut limits = Vec::new();
    // Memory.
    let mem = base_memory(f, input.working_set_bytes as f64).map(|mut m| {
        notes.append(&mut m.notes);
        if input.burst_bytes > 0 {
            let burst = input.burst_bytes as f64;
            match usable(&f.give_back, f, "memory give-back") {
                Ok(g) => {
                    m.per += g.value * burst;
                    m.how.push_str(&format!(
                        "; + {} of a {} burst still held after it was freed",
                        sig3(g.value),
                        fmt_bytes(burst)
                    ));
                    m.sources.push(cite("give-back", g, format!("{} of the burst held", sig3(g.value))));
                }
                Err(why) => {
                    m.per += burst;
                    m.how.push_str(&format!("; + the whole {} burst (nothing given back assumed)", fmt_bytes(burst)));
                    notes.push(format!("give-back not checked: {why}; the whole burst is planned as held"));
                }
            }
        }
        if input.file_set_bytes > 0 {
            let files = input.file_set_bytes as f64;
            match usable(&f.page_cache, f, "page-cache sharing") {
                Ok(p) => {
                    let (private, shared) = (p.value.private_per_byte, p.value.shared_per_byte);
                    m.per += private * files;
                    m.once += shared * files;
                    m.how.push_str(&format!(
                        "; + {} × {} of shared files each (page cache as measured), and {} of them once per host",
                        sig3(private),
                        fmt_bytes(files),
                        fmt_bytes(shared * files)
                    ));
                    m.sources.push(cite(
                        "page cache",
                        p,
                        format!("{} B each and {} B once per B of files", sig3(private), sig3(shared)),
                    ));
                }
                Err(why) => {
                    m.per += files;
                    m.how.push_str(&format!("; + {} of files (each instance's own copy assumed)", fmt_bytes(files)));
                    notes.push(format!(
                        "page-cache sharing not checked: {why}; each instance is planned with its own copy"
                    ));
                }
            }
        }
        if let (0, Some(p)) = (input.file_set_bytes, &f.page_cache) {
            let usable = match usable(&f.page_cache, f, "page-cache sharing") {
                Ok(_) => String::new(),
                Err(why) => format!("; not usable: {why}"),
            };
            notes.push(format!(
                "page-cache sharing as measured (not applied: pass --file-set SIZE for files all instances \
                 read): {} host bytes per instance and {} once per host, per byte of files ({}){usable}",
                sig3(p.value.private_per_byte),
                sig3(p.value.shared_per_byte),
                p.cite()
            ));
        }
        m
    });
    let mem_per = mem.as_ref().ok().map(|m| m.per);
    let composed = mem.as_ref().is_ok_and(|m| m.composed);
    limits.push(match mem {
        Ok(m) => Limit {
            kind: LimitKind::Memory,
            status: if m.per > 0.0 {
                LimitStatus::Bound { instances: whole((input.host_mem_bytes as f64 - m.once).max(0.0) / m.per) }
            } else {
                LimitStatus::Unbounded
            },
            how: if m.once > 0.0 {
                format!(
                    "({} of host memory - {} held once) / ({})",
                    fmt_bytes(input.host_mem_bytes as f64),
                    fmt_bytes(m.once),
                    m.how
                )
            } else {
                format!("{} of host memory / ({})", fmt_bytes(input.host_mem_bytes as f64), m.how)
            },
            sources: m.sources,
        },
        Err(reason) => Limit {
            kind: LimitKind::Memory,
            status: LimitStatus::NotChecked { reason },
            how: String::new(),
            sources: vec![],
        },
    });
    if let (Some(per), Ok(k)) = (mem_per, usable(&f.ksm, f, "KSM")) {
        let with = (per - k.value.saved_bytes_per_instance).max(1.0);
        notes.push(format!(
            "with KSM on (off by default, not applied): {} instances by memory; ksmd ran at {} cores while \
             merging (at the scan rate the experiment set; its cost follows that rate, not the instance count, \
             and a host of thousands of instances needs a faster rate to keep up) ({})",
            fmt_count(whole(input.host_mem_bytes as f64 / with)),
            sig3(k.value.ksmd_cores),
            k.cite()
        ));
    }
    // CPU.
    limits.push(match usable(&f.idle_cpu, f, "idle CPU per instance") {
        Ok(idle) => {
            let mut sources = vec![cite("idle CPU", idle, format!("{} cores", sig3(idle.value)))];
            let ratio = match usable(&f.cpu_ratio, f, "CPU overhead vs process") {
                Ok(r) => {
                    sources.push(cite("CPU overhead", r, format!("{}x", sig3(r.value))));
                    r.value
                }
                Err(why) => {
                    notes.push(format!("{why}: the CPU demand is taken as given (ratio 1)"));
                    1.0
                }
            };
            let per = idle.value + input.cpu_per_instance * ratio;
            Limit {
                kind: LimitKind::Cpu,
                status: if per > 0.0 {
                    LimitStatus::Bound { instances: whole(f64::from(input.cores) / per) }
                } else {
                    LimitStatus::Unbounded
                },
                how: format!(
                    "{} cores / (idle {} + demand {} × overhead {} = {} cores per instance)",
                    input.cores,
                    sig3(idle.value),
                    sig3(input.cpu_per_instance),
                    sig3(ratio),
                    sig3(per)
                ),
                sources,
            }
        }
        // The idle cost is unknown, but it only adds to the demand: the demand alone still caps the count
        // (an upper bound), so it must bind when it is the tightest (a demand of 0.1 core on 2 cores allows
        // at most 20 instances, whatever memory allows).
        Err(reason) if input.cpu_per_instance > 0.0 => Limit {
            kind: LimitKind::Cpu,
            status: LimitStatus::Bound { instances: whole(f64::from(input.cores) / input.cpu_per_instance) },
            how: format!(
                "{} cores / your demand {} cores per instance alone ({reason}: idle cost not counted, so the true \
                 count is at most this)",
                input.cores,
                sig3(input.cpu_per_instance)
            ),
            sources: vec![],
        },
        Err(reason) => Limit {
            kind: LimitKind::Cpu,
            status: LimitStatus::NotChecked { reason },
            how: String::new(),
            sources: vec![],
        },
    });
    // Startup SLO at the planned density.
    let slo = input.slo_p99_s;
    let p99 = usable(&f.startup_p99, f, "p99 startup");
    let growth = usable(&f.launch_growth, f, "launch-latency growth");
    limits.push(match (&p99, &growth) {
        (Ok(p), _) if p.value > slo => Limit {
            kind: LimitKind::StartupSlo,
            status: LimitStatus::Bound { instances: 0 },
            how: format!("p99 {} on a nearly empty host already exceeds the SLO {}", fmt_secs(p.value), fmt_secs(slo)),
            sources: vec![cite("p99 startup", p, fmt_secs(p.value))],
        },
        (Ok(p), Ok(g)) => {
            let per_instance_s = g.value.ms_per_1000 / 1e6;
            let sources = vec![
                cite("p99 startup", p, fmt_secs(p.value)),
                cite("launch growth", g, format!("{} ms/1000 alive", sig3(g.value.ms_per_1000))),
            ];
            if per_instance_s > 0.0 {
                let n = whole((slo - p.value) / per_instance_s);
                if n > u64::from(g.value.max_alive) {
                    notes.push(format!(
                        "startup SLO count {} is extrapolated beyond the {} instances alive measured",
                        fmt_count(n),
                        g.value.max_alive
                    ));
                }
                Limit {
                    kind: LimitKind::StartupSlo,
                    status: LimitStatus::Bound { instances: n },
                    how: format!(
                        "(SLO {} − p99 {}) / {} ms per 1000 alive",
                        fmt_secs(slo),
                        fmt_secs(p.value),
                        sig3(g.value.ms_per_1000)
                    ),
                    sources,
                }
            } else {
                Limit {
                    kind: LimitKind::StartupSlo,
                    status: LimitStatus::Unbounded,
                    how: format!(
                        "p99 {} ≤ SLO {} and launch latency does not grow with instances alive (up to {} measured)",
                        fmt_secs(p.value),
                        fmt_secs(slo),
                        g.value.max_alive
                    ),
                    sources,
                }
            }
        }
        (Ok(p), Err(why)) => Limit {
            kind: LimitKind::StartupSlo,
            status: LimitStatus::NotChecked {
                reason: format!("{why}: p99 {} meets the SLO on a nearly empty host only", fmt_secs(p.value)),
            },
            how: String::new(),
            sources: vec![cite("p99 startup", p, fmt_secs(p.value))],
        },
        (Err(why), _) => Limit {
            kind: LimitKind::StartupSlo,
            status: LimitStatus::NotChecked { reason: why.clone() },
            how: String::new(),
            sources: vec![],
        },
    });
    // Host limits the density sweep ran into.
    match usable(&f.host_limit, f, "host limit") {
        Ok(h) => limits.push(Limit {
            kind: LimitKind::Host(h.value.name.clone()),
            status: LimitStatus::Bound { instances: h.value.instances },
            how: "stopped the density sweep on the measured host; the target host's setting may differ".into(),
            sources: vec![cite("host limit", h, h.value.instances.to_string())],
        }),
        Err(why) => limits.push(Limit {
            kind: LimitKind::Host("pids, open files, ...".into()),
            status: LimitStatus::NotChecked {
                reason: if f.host_limit.is_none() {
                    "no host limit stopped a density sweep in the runs given".into()
                } else {
                    why
                },
            },
            how: String::new(),
            sources: vec![],
        }),
    }
    let binding = limits
        .iter()
        .filter_map(|l| l.instances().map(|n| (n, l)))
        .min_by_key(|(n, _)| *n)
        .map(|(instances, l)| Binding { kind: l.kind.clone(), instances });
    let p99_at_planned_s = match (&binding, &p99, &growth) {
        // A fitted slope below zero is noise, not launches getting faster as the host fills (the SLO limit
        // reads it as "does not grow"): it never lowers the p99 below the one measured.
        (Some(b), Ok(p), Ok(g)) => Some(p.value + g.value.ms_per_1000.max(0.0) / 1e6 * b.instances as f64),
        _ => None,
    };
    SidePlan {
        backend: f.backend.clone(),
        model: f.model.label().to_string(),
        mem_per_instance_bytes: mem_per,
        mem_composed: composed,
        limits,
        binding,
        p99_at_planned_s,
        notes,
        figures: f.clone(),
    }
}

/// Plan the pair from its figures (the core; [`plan_data`] fills the figures from runs). `runs` labels the
/// runs the figures come from, primary first.
pub fn plan_figures(figures: &PlanFigures, pair: &ConfigPair, runs: Vec<String>, input: &PlanInput) -> PlanOutput {
    let assumptions = vec![
        format!("The pair is {pair}, as chosen; no backend is picked as a best-of across configurations."),
        "Only figures that transfer to a VT-x/AMD-V host running the deployed model are used (results::transfer); \
         each limit names its figures and the run and host they came from."
            .to_string(),
        format!(
            "Memory: the working set ({}) is resident and not shared between instances; no host memory is reserved \
             beyond that; the per-instance cost is assumed to stay linear beyond the largest count measured.",
            fmt_bytes(input.working_set_bytes as f64)
        ),
        format!(
            "CPU: idle CPU per instance + your demand of {} cores per instance (--cpu-per-instance; default {}) \
             scaled by the measured CPU-scenario overhead vs the process baseline.",
            sig3(input.cpu_per_instance),
            PlanInput::DEFAULT_CPU_PER_INSTANCE
        ),
        format!(
            "Startup SLO: p99 launch-to-ready ≤ {} at the planned density, modelled as the p99 measured on a nearly \
             empty host + the fitted growth of launch latency per instance alive (the tail is assumed to shift with \
             the fit); not scaled to the target host's cores.",
            fmt_secs(input.slo_p99_s)
        ),
        "The binding limit is the tightest checked one; a limit not checked does not bound the count.".to_string(),
    ];
    PlanOutput {
        input: *input,
        pair: pair.clone(),
        runs,
        container: plan_side(&figures.container, input),
        vm: plan_side(&figures.vm, input),
        refused: figures.refused(),
        assumptions,
    }
}

impl SidePlan {
    /// "binding limit: CPU at 1.3 k instances", or why no limit could be checked.
    pub fn binding_words(&self) -> String {
        match &self.binding {
            Some(b) => b.to_string(),
            None => "no limit could be checked".into(),
        }
    }
}

impl fmt::Display for PlanOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.input;
        writeln!(
            f,
            "Capacity plan for the pair {}: {} host memory, {} cores, {} working set and {} cores of demand per \
             instance, p99 startup SLO {}",
            self.pair,
            fmt_bytes(i.host_mem_bytes as f64),
            i.cores,
            fmt_bytes(i.working_set_bytes as f64),
            sig3(i.cpu_per_instance),
            fmt_secs(i.slo_p99_s)
        )?;
        writeln!(f, "figures from: {}", self.runs.join("; "))?;
        for s in [&self.container, &self.vm] {
            writeln!(f)?;
            writeln!(f, "{} ({}): {}", s.backend, s.model, s.binding_words())?;
            if let Some(m) = s.mem_per_instance_bytes {
                writeln!(
                    f,
                    "  memory per instance: {}{}",
                    fmt_bytes(m),
                    if s.mem_composed { " (composed)" } else { "" }
                )?;
            }
            if let Some(p) = s.p99_at_planned_s {
                writeln!(f, "  p99 startup at the planned density: {}", fmt_secs(p))?;
            }
            for l in &s.limits {
                let what = match &l.status {
                    LimitStatus::Bound { instances } => format!("{} instances", fmt_count(*instances)),
                    LimitStatus::Unbounded => "no bound".into(),
                    LimitStatus::NotChecked { reason } => format!("not checked: {reason}"),
                };
                writeln!(f, "  {:<12} {what}", l.kind.to_string())?;
                if !l.how.is_empty() {
                    writeln!(f, "               {}", l.how)?;
                }
                for src in &l.sources {
                    writeln!(f, "               from {src}")?;
                }
            }
            for n in &s.notes {
                writeln!(f, "  note: {n}")?;
            }
        }
        if !self.refused.is_empty() {
            writeln!(f, "\nRefused figures:")?;
            for r in &self.refused {
                writeln!(f, "  - {r}")?;
            }
        }
        writeln!(f, "\nAssumptions:")?;
        for a in &self.assumptions {
            writeln!(f, "  - {a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan_figures::{HostLimit, KsmSaving, LaunchGrowth, PageCacheShare, Source};
    use results::Transfer;

    const MIB: f64 = 1048576.0;

    fn src(backend: &str) -> Source {
        Source {
            run: "r1".into(),
            host: "h (2 cores, 24 GiB)".into(),
            kvm: "kvm_pvm".into(),
            backend: backend.into(),
            file: "x.csv".into(),
        }
    }

    fn fig<T>(backend: &str, value: T, transfer: Transfer) -> Option<Sourced<T>> {
        Some(Sourced { value, unit: "", n: 20, source: src(backend), transfer })
    }

    /// Container: 20 MiB slope with 16 held (4 MiB own), p99 10 ms + 2 ms per 1000 alive, idle 0.001 cores.
    /// VM (linux guest): 40 MiB guest RAM with 16 held + 3 MiB VMM, p99 5 ms flat, idle 0.001 cores.
    fn figures() -> PlanFigures {
        let t = Transfer::Transfers;
        let mut c = SideFigures::empty("container", Model::Container);
        c.density_slope = fig("container", HeldMemory { bytes: 20.0 * MIB, held_bytes: 16.0 * MIB, fit_r2: None }, t);
        c.startup_p99 = fig("container", 0.010, t);
        c.launch_growth = fig("container", LaunchGrowth { ms_per_1000: 2.0, max_alive: 5000 }, t);
        c.idle_cpu = fig("container", 0.001, t);
        let mut v = SideFigures::empty("microvm-linux", Model::MicrovmLinux);
        v.guest_ram = fig("microvm-linux", HeldMemory { bytes: 40.0 * MIB, held_bytes: 16.0 * MIB, fit_r2: None }, t);
        v.vmm_overhead = fig("microvm-linux", 3.0 * MIB, t);
        v.startup_p99 = fig("microvm-linux", 0.005, t);
        v.launch_growth = fig("microvm-linux", LaunchGrowth { ms_per_1000: 0.0, max_alive: 100 }, t);
        v.idle_cpu = fig("microvm-linux", 0.001, t);
        PlanFigures { container: c, vm: v }
    }

    fn pair() -> ConfigPair {
        ConfigPair { container: "container".into(), vm: "microvm-linux".into() }
    }

    fn input() -> PlanInput {
        PlanInput {
            host_mem_bytes: 64 << 30,
            cores: 16,
            working_set_bytes: 0,
            slo_p99_s: 0.050,
            cpu_per_instance: 0.0,
            burst_bytes: 0,
            file_set_bytes: 0,
        }
    }

    fn limit(s: &SidePlan, kind: &LimitKind) -> LimitStatus {
        s.limits.iter().find(|l| &l.kind == kind).unwrap().status.clone()
    }

    #[test]
    fn the_tightest_limit_binds_and_is_named() {
        let out = plan_figures(&figures(), &pair(), vec!["r1".into()], &input());
        let c = &out.container;
        // memory: 64 GiB / 4 MiB = 16384; CPU: 16 / 0.001 = 16000; SLO: (50 − 10) ms / 2 µs = 20000.
        assert_eq!(limit(c, &LimitKind::Memory), LimitStatus::Bound { instances: 16384 });
        assert_eq!(limit(c, &LimitKind::Cpu), LimitStatus::Bound { instances: 16000 });
        assert_eq!(limit(c, &LimitKind::StartupSlo), LimitStatus::Bound { instances: 20000 });
        assert_eq!(c.binding, Some(Binding { kind: LimitKind::Cpu, instances: 16000 }));
        assert_eq!(c.binding_words(), "binding limit: CPU at 16.0 k instances");
        let p99 = c.p99_at_planned_s.unwrap();
        assert!((p99 - 0.042).abs() < 1e-12, "10 ms + 16 × 2 ms: {p99}");
        // A CPU demand per instance moves the binding limit: 16 / (0.001 + 0.1) = 158.
        let busy = PlanInput { cpu_per_instance: 0.1, ..input() };
        let out2 = plan_figures(&figures(), &pair(), vec![], &busy);
        assert_eq!(out2.container.binding, Some(Binding { kind: LimitKind::Cpu, instances: 158 }));
        // VM: memory 64 GiB / (24 + 3) MiB = 2427 binds; its launch latency does not grow.
        let v = &out.vm;
        assert_eq!(v.mem_per_instance_bytes, Some(27.0 * MIB));
        assert_eq!(limit(v, &LimitKind::StartupSlo), LimitStatus::Unbounded);
        assert_eq!(v.binding, Some(Binding { kind: LimitKind::Memory, instances: 2427 }));
        let text = out.to_string();
        assert!(text.contains("container (container): binding limit: CPU at 16.0 k instances"), "{text}");
        assert!(text.contains("microvm-linux (microVM (linux guest)): binding limit: memory at 2.43 k"), "{text}");
        // A host limit the sweep ran into binds when it is the tightest, named with its value.
        let mut f = figures();
        let pids = HostLimit { name: "pids.max of the parent cgroup at 4096".into(), instances: 4090 };
        f.container.host_limit = fig("container", pids, Transfer::Transfers);
        let c = plan_figures(&f, &pair(), vec![], &input()).container;
        assert_eq!(
            c.binding_words(),
            "binding limit: host limit (pids.max of the parent cgroup at 4096) at 4.09 k instances"
        );
        // A poor fit below the held working set is planned, with both said.
        let mut f = figures();
        let m = HeldMemory { bytes: 80e3, held_bytes: 4.0 * MIB, fit_r2: Some(0.64) };
        f.container.density_slope = fig("container", m, Transfer::Transfers);
        let c = plan_figures(&f, &pair(), vec![], &input()).container;
        assert!(c.notes.iter().any(|n| n.contains("poor (r² = 0.640)")), "{:?}", c.notes);
        assert!(c.notes.iter().any(|n| n.contains("below the 4.00 MiB each instance held")), "{:?}", c.notes);
        // A tight SLO binds instead: (12 − 10) ms / 2 µs = 1000.
        let tight = PlanInput { slo_p99_s: 0.012, ..input() };
        let out3 = plan_figures(&figures(), &pair(), vec![], &tight);
        assert_eq!(out3.container.binding, Some(Binding { kind: LimitKind::StartupSlo, instances: 1000 }));
        let missed = plan_figures(&figures(), &pair(), vec![], &PlanInput { slo_p99_s: 0.009, ..input() });
        assert_eq!(missed.container.binding_words(), "binding limit: startup SLO allows no instance");
    }

    /// Without an idle-CPU figure the user's demand alone still caps the count (the idle cost only adds to
    /// it): 16 cores / 0.5 = 32 instances bind, not the 16384 memory allows (review of issue 15: the plan said
    /// "binding limit: memory at 187" while 0.1 core per instance on 2 cores allowed 20).
    #[test]
    fn a_missing_idle_cpu_figure_still_bounds_by_the_demand_alone() {
        let mut f = figures();
        f.container.idle_cpu = None;
        let out = plan_figures(&f, &pair(), vec![], &PlanInput { cpu_per_instance: 0.5, ..input() });
        let c = &out.container;
        assert_eq!(limit(c, &LimitKind::Cpu), LimitStatus::Bound { instances: 32 });
        assert_eq!(c.binding, Some(Binding { kind: LimitKind::Cpu, instances: 32 }));
        let how = &c.limits.iter().find(|l| l.kind == LimitKind::Cpu).unwrap().how;
        assert!(how.contains("idle CPU per instance not measured") && how.contains("at most this"), "{how}");
        // No demand and no idle figure: nothing to bound with, said so; memory binds (SLO 20000 > 16384).
        let out = plan_figures(&f, &pair(), vec![], &PlanInput { cpu_per_instance: 0.0, ..input() });
        let c = &out.container;
        assert!(
            matches!(limit(c, &LimitKind::Cpu), LimitStatus::NotChecked { reason } if reason.contains("idle CPU per instance not measured")),
            "{:?}",
            c.limits
        );
        assert_eq!(c.binding, Some(Binding { kind: LimitKind::Memory, instances: 16384 }));
        assert!(out.to_string().contains("CPU          not checked: idle CPU per instance not measured"));
    }

    /// A fitted launch-latency slope below zero does not lower the p99 at the planned density below the
    /// p99 measured (review of issue 15: "does not grow" beside a planned p99 of 22.3 ms under a measured 22.6).
    #[test]
    fn a_negative_launch_growth_does_not_lower_the_planned_p99() {
        let mut f = figures();
        f.container.launch_growth =
            fig("container", LaunchGrowth { ms_per_1000: -1.67, max_alive: 999 }, Transfer::Transfers);
        let c = plan_figures(&f, &pair(), vec![], &input()).container;
        assert_eq!(limit(&c, &LimitKind::StartupSlo), LimitStatus::Unbounded);
        let p99 = c.p99_at_planned_s.unwrap();
        assert!((p99 - 0.010).abs() < 1e-12, "{p99}");
    }

    #[test]
    fn a_figure_that_does_not_transfer_is_not_used() {
        let mut f = figures();
        // The Linux guest under TCG: its VMM overhead is the emulator's, its startup and idle CPU emulated.
        f.vm.vmm_overhead = fig("qemu-tcg", 90.0 * MIB, Transfer::EmulatedCpu);
        f.vm.startup_p99 = fig("qemu-tcg", 0.001, Transfer::EmulatedCpu);
        f.vm.idle_cpu = fig("qemu-tcg", 1e-9, Transfer::EmulatedCpu);
        let out = plan_figures(&f, &pair(), vec![], &input());
        let v = &out.vm;
        for k in [LimitKind::Memory, LimitKind::Cpu, LimitKind::StartupSlo] {
            match limit(v, &k) {
                LimitStatus::NotChecked { reason } => {
                    assert!(reason.contains("emulated: does not transfer; needs a run on a VT-x host"), "{reason}")
                }
                s => panic!("{k} used a non-transferable figure: {s:?}"),
            }
        }
        assert_eq!(v.binding, None);
        assert_eq!(v.binding_words(), "no limit could be checked");
        // With our VMM's overhead from the bare guest the memory is composed and labelled so; the emulator's
        // 90 MiB is still not in it.
        f.vm.bare_vmm_overhead = fig("microvm", 2.0 * MIB, Transfer::BareModelOnly);
        let out = plan_figures(&f, &pair(), vec![], &input());
        assert_eq!(out.vm.mem_per_instance_bytes, Some(26.0 * MIB));
        assert!(out.vm.mem_composed);
        let how = &out.vm.limits[0].how;
        assert!(how.contains("composed: our VMM's overhead measured with the bare guest"), "{how}");
        // A bare-model figure on the container side or as the linux guest's own figure is not used.
        let mut f = figures();
        f.container.density_slope =
            fig("container", HeldMemory { bytes: MIB, held_bytes: 0.0, fit_r2: None }, Transfer::BareModelOnly);
        let c = plan_figures(&f, &pair(), vec![], &input()).container;
        assert!(matches!(limit(&c, &LimitKind::Memory), LimitStatus::NotChecked { .. }));
    }

    #[test]
    fn burst_and_shared_files_use_give_back_and_page_cache_or_say_they_are_assumed() {
        let mut f = figures();
        f.container.give_back = fig("container", 0.25, Transfer::Transfers);
        let share = |private_per_byte: f64, shared_per_byte: f64| PageCacheShare { private_per_byte, shared_per_byte };
        f.container.page_cache = fig("container", share(0.0, 0.0), Transfer::Transfers);
        let inp = PlanInput { burst_bytes: 64 << 20, file_set_bytes: 100 << 20, ..input() };
        let out = plan_figures(&f, &pair(), vec![], &inp);
        // 4 MiB + 0.25 × 64 MiB + 0 × 100 MiB.
        assert_eq!(out.container.mem_per_instance_bytes, Some(20.0 * MIB));
        // The VM has neither figure: the whole burst and its own copy of the files, said in the notes.
        assert_eq!(out.vm.mem_per_instance_bytes, Some((27.0 + 64.0 + 100.0) * MIB));
        assert!(out.vm.notes.iter().any(|n| n.starts_with("give-back not checked")), "{:?}", out.vm.notes);
        assert!(out.vm.notes.iter().any(|n| n.starts_with("page-cache sharing not checked")));
        // Without --file-set the measured sharing is shown, not applied.
        let out = plan_figures(&f, &pair(), vec![], &input());
        assert_eq!(out.container.mem_per_instance_bytes, Some(4.0 * MIB));
        let shown = out.container.notes.iter().find(|n| n.starts_with("page-cache sharing as measured"));
        assert!(shown.is_some_and(|n| n.contains("not applied") && n.contains("--file-set")), "{:?}", out.container);
    }

    /// KSM is shown, not applied, with ksmd's CPU as measured over the window: its cost follows the scan rate,
    /// so it is not divided by the 4 instances measured and scaled to "cores per 1000 instances" (the scale run
    /// read "ksmd costing 6.07 cores per 1000 instances" for a ksmd that ran at 0.024 cores).
    #[test]
    fn ksm_is_shown_with_ksmd_cpu_as_measured_not_scaled_per_instance() {
        let mut f = figures();
        f.container.ksm =
            fig("container", KsmSaving { saved_bytes_per_instance: MIB, ksmd_cores: 0.024 }, Transfer::Transfers);
        let out = plan_figures(&f, &pair(), vec![], &input());
        let n = out.container.notes.iter().find(|n| n.starts_with("with KSM on")).expect("KSM note");
        assert!(n.contains("ksmd ran at 0.0240 cores") && !n.contains("per 1000"), "{n}");
        assert_eq!(out.container.mem_per_instance_bytes, Some(4.0 * MIB), "not applied");
    }

    /// Files all instances read: the shared copy counts once per host, not once per instance at the N the
    /// row was measured with (a 64 MiB set read by 4 containers was 16 MiB each; planned at 16 000 it
    /// would have cost 16 MiB x 16 000), and a VM's own copy counts for each.
    #[test]
    fn a_shared_page_cache_counts_once_per_host_at_the_planned_density() {
        let mut f = figures();
        f.container.page_cache =
            fig("container", PageCacheShare { private_per_byte: 0.0, shared_per_byte: 1.0 }, Transfer::Transfers);
        f.vm.page_cache =
            fig("microvm-linux", PageCacheShare { private_per_byte: 1.0, shared_per_byte: 0.0 }, Transfer::Transfers);
        let inp = PlanInput { file_set_bytes: 64 << 20, ..input() };
        let out = plan_figures(&f, &pair(), vec![], &inp);
        // Container: (64 GiB - 64 MiB once) / 4 MiB = 16368; before: 64 GiB / (4 + 16) MiB = 3276.
        assert_eq!(out.container.mem_per_instance_bytes, Some(4.0 * MIB));
        assert_eq!(limit(&out.container, &LimitKind::Memory), LimitStatus::Bound { instances: 16368 });
        let how = &out.container.limits.iter().find(|l| l.kind == LimitKind::Memory).unwrap().how;
        assert!(how.contains("64.0 MiB held once"), "{how}");
        // The VM: its own 64 MiB copy each.
        assert_eq!(out.vm.mem_per_instance_bytes, Some((27.0 + 64.0) * MIB));
    }

    #[test]
    fn the_pair_is_used_as_given() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(d.path()).unwrap();
        // crun is slower to start and bigger than our container: a best-of would never plan it; here it is
        // planned because it is the pair's container side.
        let out = plan(
            std::slice::from_ref(&rd),
            Some("crun:microvm"),
            &PlanInput::default_for(&RunData::load(&rd).unwrap()),
        )
        .unwrap();
        assert_eq!(out.pair, ConfigPair { container: "crun".into(), vm: "microvm".into() });
        assert_eq!((out.container.backend.as_str(), out.vm.backend.as_str()), ("crun", "microvm"));
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["pair"]["container"], "crun");
        assert!(json.get("recommended").is_none());
        // The default pair: our container against the VM that ran.
        let def = plan(std::slice::from_ref(&rd), None, &input()).unwrap();
        assert_eq!((def.container.backend.as_str(), def.vm.backend.as_str()), ("container", "microvm"));
        // The bare guest's own figures plan the bare guest.
        assert!(matches!(def.vm.limits[0].status, LimitStatus::Bound { .. }), "{:?}", def.vm.limits[0]);
    }

    /// Issue 15 item 5 for the planner: on this host the linux guest ran only under TCG, so its startup cannot be
    /// judged ("needs a run on a VT-x host") and its memory is composed and labelled; a merged VT-x run fills both.
    #[test]
    fn a_vt_x_run_fills_what_the_emulated_linux_guest_cannot_give() {
        let d = tempfile::tempdir().unwrap();
        let here = crate::plan_figures::test_runs::emulated_here(&d.path().join("a"));
        let inp = PlanInput { cpu_per_instance: 0.0, ..input() };
        let alone = plan(std::slice::from_ref(&here), Some("container:qemu-tcg"), &inp).unwrap();
        let v = &alone.vm;
        match limit(v, &LimitKind::StartupSlo) {
            LimitStatus::NotChecked { reason } => assert!(
                reason.contains(
                    "p99 startup of qemu-tcg (fixture-run) is emulated: does not transfer; needs a run on a VT-x host"
                ),
                "{reason}"
            ),
            s => panic!("{s:?}"),
        }
        assert!(v.mem_composed, "guest RAM from qemu-tcg + our VMM's overhead with the bare guest");
        // 40 MB guest RAM − 16 MiB held + 0 working set + 3 MiB bare VMM: the emulator's 90 MB is not in it.
        assert_eq!(v.mem_per_instance_bytes, Some(40e6 - 16.0 * MIB + 3.0 * MIB));
        let vtx = crate::fixture::write_vtx_host(&d.path().join("b")).unwrap();
        let fits: Vec<results::DensityFit> = vtx.read_csv().unwrap();
        let vmm = fits.iter().find(|f| f.backend == "microvm-linux").and_then(|f| f.vmm_overhead_bytes).unwrap();
        let both = plan(&[here, vtx], Some("container:qemu-tcg"), &inp).unwrap();
        let v = &both.vm;
        assert!(!v.mem_composed);
        assert_eq!(v.mem_per_instance_bytes, Some(40e6 - 16.0 * MIB + vmm));
        // The SLO is now judged (its arithmetic is tested above) on the VT-x run's microvm-linux figures.
        let slo = v.limits.iter().find(|l| l.kind == LimitKind::StartupSlo).unwrap();
        assert!(!matches!(slo.status, LimitStatus::NotChecked { .. }), "{slo:?}");
        assert!(
            slo.sources.iter().all(|s| s.contains("microvm-linux of run fixture-vtx-run on fixture-vtx-host")),
            "{:?}",
            slo.sources
        );
        assert_eq!(both.runs.len(), 2);
        let vtx_run = &both.runs[1];
        assert!(vtx_run.starts_with("fixture-vtx-run on fixture-vtx-host") && vtx_run.ends_with("(kvm_intel)"));
    }

    #[test]
    fn rejects_bad_inputs_unknown_pairs_and_empty_runs() {
        let d = tempfile::tempdir().unwrap();
        let rd = crate::fixture::write(&d.path().join("full")).unwrap();
        for bad in [
            PlanInput { cores: 0, ..input() },
            PlanInput { cpu_per_instance: -0.5, ..input() },
            PlanInput { cpu_per_instance: f64::NAN, ..input() },
            PlanInput { slo_p99_s: 0.0, ..input() },
        ] {
            assert!(matches!(plan(std::slice::from_ref(&rd), None, &bad), Err(PlanError::Input(_))), "{bad:?}");
        }
        let e = plan(std::slice::from_ref(&rd), Some("container:nosuchvm"), &input()).unwrap_err();
        assert!(matches!(e, PlanError::Pair(_)) && e.to_string().contains("nosuchvm"), "{e}");
        let empty = RunDir::create(d.path().join("empty")).unwrap();
        empty.write_meta(&crate::fixture::meta()).unwrap();
        let e = plan(&[empty], None, &input()).unwrap_err();
        assert!(e.to_string().contains("no density_summary.csv"), "{e}");
    }

    #[test]
    fn counts_read_in_thousands() {
        assert_eq!(fmt_count(950), "950");
        assert_eq!(fmt_count(1300), "1.30 k");
        assert_eq!(fmt_count(2_400_000), "2.40 M");
    }
}

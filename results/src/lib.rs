//! vmct results: the record schema every experiment writes and the report reads.
//!
//! A run directory (RUN_DIR) holds `run.json` ([`RunMeta`]: plan, versions, host environment) and one CSV
//! per experiment ([`records`]). Units are in the field names: `_s` seconds, `_bytes` bytes,
//! `_per_s` per second. The report is rendered from these files alone, so any run can be re-rendered.
pub mod crash;
pub mod crosscheck;
pub mod env;
pub mod experiment;
pub mod image;
pub mod memory;
pub mod neighbours;
pub mod records;
pub mod rundir;
pub mod stats;
pub mod surface;
pub mod transfer;
pub mod vocab;

pub use crash::CrashRow;
pub use crosscheck::{CrossCheckRow, CrossClock};
pub use env::{CgroupLayout, HostEnv, KvmFlavour};
pub use experiment::{ExperimentId, UnknownExperiment};
pub use memory::{GiveBack, GiveBackRow, KsmRow, PageCacheRow};
pub use neighbours::{IdleCpuRow, VictimRow};
pub use records::*;
pub use rundir::{BackendInfo, IsolationProfile, Plan, RunDir, RunDirError, RunMeta, WallTime};
pub use surface::AttackSurfaceRow;
pub use transfer::{Quantity, Transfer};
pub use vocab::{
    BackendKind, Capabilities, DensityStop, GuestModel, IsolationModel, Neighbour, ProbeOutcome, StartupMode,
    StopReason, VocabError,
};

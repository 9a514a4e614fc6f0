//! The closed set of experiments `vmct compare` can run, by id.
//!
//! An id's serde name is the word the CLI takes (`--experiments startup,density`) and run.json records
//! (`full_plan.experiments`), so files written before this enum existed read the same. The harness maps
//! each id to the code that runs it (`harness::experiments::registry`, an exhaustive `match`: an id
//! without an experiment does not compile); the report's sections name the id whose run writes their CSV.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Declares [`ExperimentId`] and its list [`ExperimentId::ALL`] from one line per experiment, so a new
/// experiment is one line here.
macro_rules! experiment_ids {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// One experiment of `vmct compare`. Declaration order is run order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ExperimentId {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl ExperimentId {
            /// Every experiment, in run order (the order `vmct compare` runs them and the presets list them).
            pub const ALL: &'static [ExperimentId] = &[$(ExperimentId::$variant),*];

            /// The id's word (`startup`), as the CLI takes it and run.json records it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ExperimentId::$variant => $name,)*
                }
            }
        }
    };
}

experiment_ids! {
    /// Launch-to-ready distributions (`startup.csv`, `startup_phases.csv`, `startup_summary.csv`).
    Startup = "startup",
    /// Steady-state overhead vs the process baseline (`overhead.csv`).
    Overhead = "overhead",
    /// Memory density sweep (`density.csv`, `density_summary.csv`).
    Density = "density",
    /// Isolation probes, attack surface and blast radius (`isolation.csv`, `attack_surface.csv`, `blast.csv`).
    Isolation = "isolation",
    /// Saving and restoring state (`snapshot.csv`).
    Snapshot = "snapshot",
    /// Peer cross-check: each peer CLI's own `run` beside vmct's clocks (`crosscheck.csv`).
    CrossCheck = "crosscheck",
    /// Crash containment: a shared guest kernel's crash vs one VM's, under QEMU TCG (`crash.csv`).
    Crash = "crash",
    /// Memory over time and sharing: give-back after a burst, page-cache sharing, KSM
    /// (`memory_giveback.csv`, `page_cache.csv`, `ksm.csv`).
    Memory = "memory",
}

impl ExperimentId {
    /// The valid words, comma-separated, for error messages.
    pub fn valid_list() -> String {
        ExperimentId::ALL.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for ExperimentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no experiment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown experiment '{0}'; valid experiments: {list}", list = ExperimentId::valid_list())]
pub struct UnknownExperiment(pub String);

impl FromStr for ExperimentId {
    type Err = UnknownExperiment;

    /// Parse an experiment's word (exact, as [`ExperimentId::as_str`] writes it).
    fn from_str(s: &str) -> Result<ExperimentId, UnknownExperiment> {
        ExperimentId::ALL.iter().copied().find(|e| e.as_str() == s).ok_or_else(|| UnknownExperiment(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_the_serde_names_and_parse_back() {
        for &e in ExperimentId::ALL {
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{}\"", e.as_str()));
            assert_eq!(serde_json::from_str::<ExperimentId>(&format!("\"{e}\"")).unwrap(), e);
            assert_eq!(e.as_str().parse::<ExperimentId>().unwrap(), e);
        }
        // The words run.json files have always recorded, still in their run order (new ones may come between).
        let at = |w: &str| ExperimentId::ALL.iter().position(|e| e.as_str() == w).unwrap_or_else(|| panic!("{w} gone"));
        let old: Vec<usize> = ["startup", "overhead", "density", "isolation", "snapshot"].map(at).to_vec();
        assert!(old.windows(2).all(|p| p[0] < p[1]), "run order changed: {old:?}");
    }

    #[test]
    fn an_unknown_word_names_itself_and_the_valid_ones() {
        let e = "blast".parse::<ExperimentId>().unwrap_err().to_string();
        assert_eq!(e, format!("unknown experiment 'blast'; valid experiments: {}", ExperimentId::valid_list()));
        assert!(serde_json::from_str::<ExperimentId>("\"Startup\"").is_err(), "words are exact");
    }
}

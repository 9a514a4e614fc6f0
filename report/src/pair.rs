//! Configuration pairs (issue 15 items 1 and 7): every verdict and the planner compare ONE named container
//! configuration (a backend, which fixes its runtime and isolation profile) with ONE named VM configuration
//! (a backend, which fixes its VMM and guest model). Nothing picks a best-of across configurations: the
//! pair is chosen before any figure is looked at.
//!
//! The default pair is our container runtime with its default (Docker/Podman) profile against the Linux
//! guest: our VMM's `microvm-linux` where it ran, else a Linux guest stand-in that ran (here `qemu-tcg`,
//! whose time figures do not transfer: [`results::transfer`]).
use crate::data::{Model, RunData};
use results::BackendKind;
use serde::Serialize;
use std::fmt;

/// Errors choosing a pair.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PairError {
    /// The text is not `CONTAINER:VM`.
    #[error("pair {0:?}: expected CONTAINER:VM, two backend names of the run (e.g. container:microvm-linux)")]
    Syntax(String),
    /// A side names no backend of the run, or one of the wrong model.
    #[error("pair side {name:?}: not a {side} backend of this run; valid: {}", valid.join(", "))]
    Side {
        /// The name given.
        name: String,
        /// "container" or "VM".
        side: &'static str,
        /// The run's backends of that side.
        valid: Vec<String>,
    },
}

/// One container configuration and one VM configuration, by backend name as in run.json.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ConfigPair {
    /// The container side (model [`Model::Container`]).
    pub container: String,
    /// The VM side (model [`Model::MicrovmLinux`] or [`Model::MicrovmBare`]).
    pub vm: String,
}

impl fmt::Display for ConfigPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} vs {}", self.container, self.vm)
    }
}

fn is_vm(m: Model) -> bool {
    matches!(m, Model::MicrovmLinux | Model::MicrovmBare)
}

impl ConfigPair {
    /// The run's container-side backends, in run order.
    pub fn containers(run: &RunData) -> Vec<String> {
        run.backends().into_iter().filter(|b| run.model(b) == Model::Container).collect()
    }

    /// The run's VM-side backends, in run order.
    pub fn vms(run: &RunData) -> Vec<String> {
        run.backends().into_iter().filter(|b| is_vm(run.model(b))).collect()
    }

    /// Every pair the run can show (the report lets the reader pick any), default first.
    pub fn all(run: &RunData) -> Vec<ConfigPair> {
        let mut out: Vec<ConfigPair> = Self::default_for(run).into_iter().collect();
        for c in Self::containers(run) {
            for v in Self::vms(run) {
                let p = ConfigPair { container: c.clone(), vm: v };
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// The default pair (module docs): our container with the default profile against the Linux guest,
    /// preferring a backend that ran and is not emulated. None when the run has no container or no VM.
    pub fn default_for(run: &RunData) -> Option<ConfigPair> {
        let info = |b: &str| run.meta.backends.iter().find(|i| i.name == b);
        let ours_default = |b: &String| {
            info(b).is_some_and(|i| {
                i.kind == BackendKind::Ours
                    && i.isolation.as_ref().is_none_or(|p| p.profile.starts_with("default"))
            })
        };
        let containers = Self::containers(run);
        let container = containers.iter().find(|b| ours_default(b)).or(containers.first())?.clone();
        let vms = Self::vms(run);
        let ran = |b: &String| info(b).is_none_or(|i| i.available);
        let emulated = |b: &String| info(b).is_some_and(|i| i.emulated);
        let linux = |b: &String| run.model(b) == Model::MicrovmLinux;
        let vm = vms
            .iter()
            .find(|b| linux(b) && ran(b) && !emulated(b))
            .or_else(|| vms.iter().find(|b| linux(b) && ran(b)))
            .or_else(|| vms.iter().find(|b| ran(b)))
            .or(vms.first())?
            .clone();
        Some(ConfigPair { container, vm })
    }

    /// Parse `CONTAINER:VM` and check both sides against the run.
    pub fn parse(text: &str, run: &RunData) -> Result<ConfigPair, PairError> {
        let (c, v) = text.split_once(':').ok_or_else(|| PairError::Syntax(text.to_string()))?;
        let (c, v) = (c.trim(), v.trim());
        if c.is_empty() || v.is_empty() {
            return Err(PairError::Syntax(text.to_string()));
        }
        let check = |name: &str, side: &'static str, valid: Vec<String>| {
            if valid.iter().any(|x| x == name) {
                Ok(name.to_string())
            } else {
                Err(PairError::Side { name: name.to_string(), side, valid })
            }
        };
        Ok(ConfigPair {
            container: check(c, "container", Self::containers(run))?,
            vm: check(v, "VM", Self::vms(run))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, RunData) {
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write_with_emulated_guest(d.path()).unwrap();
        let run = RunData::load(&results::RunDir::open(d.path()).unwrap()).unwrap();
        (d, run)
    }

    #[test]
    fn default_pair_is_our_default_container_against_a_linux_guest() {
        let (_d, run) = fixture();
        let p = ConfigPair::default_for(&run).expect("fixture has both sides");
        assert_eq!(run.model(&p.container), Model::Container);
        assert_eq!(run.model(&p.vm), Model::MicrovmLinux, "{p}");
        assert_eq!(ConfigPair::all(&run)[0], p);
        // Without a linux guest the VM side falls back to the VM that ran (the bare guest).
        let d = tempfile::tempdir().unwrap();
        crate::fixture::write(d.path()).unwrap();
        let bare = RunData::load(&results::RunDir::open(d.path()).unwrap()).unwrap();
        assert_eq!(bare.model(&ConfigPair::default_for(&bare).unwrap().vm), Model::MicrovmBare);
    }

    #[test]
    fn parse_checks_each_side_against_the_run() {
        let (_d, run) = fixture();
        let p = ConfigPair::default_for(&run).unwrap();
        assert_eq!(ConfigPair::parse(&format!("{}:{}", p.container, p.vm), &run), Ok(p.clone()));
        assert!(matches!(ConfigPair::parse("container", &run), Err(PairError::Syntax(_))));
        let e = ConfigPair::parse(&format!("{}:{}", p.vm, p.vm), &run).unwrap_err().to_string();
        assert!(e.contains("not a container backend") && e.contains(&p.container), "{e}");
    }
}

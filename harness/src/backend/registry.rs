//! Every backend vmct knows, in report order, with its availability on this host.
use super::Backend;
use std::path::Path;

/// All backends: process baseline, our microVM and container runtimes, then peers.
pub fn all(workload: &Path, work_dir: &Path) -> Vec<Box<dyn Backend>> {
    let mut v: Vec<Box<dyn Backend>> =
        vec![Box::new(super::process::ProcessBackend::new(workload.to_path_buf(), work_dir.to_path_buf()))];
    v.extend(extra(workload));
    v
}

fn extra(workload: &Path) -> Vec<Box<dyn Backend>> {
    let mut v = Vec::new();
    v.extend(super::microvm::backends());
    v.push(super::microvm_linux::backend());
    v.push(super::qemu_tcg::backend(workload));
    v.extend(super::container::backends(workload));
    v.extend(super::peers::backends(workload));
    v
}

/// All backends plus the peer VMMs the user pointed at (`--peer NAME=PATH`).
pub fn all_with_peers(workload: &Path, work_dir: &Path, peers: &[super::vmm_peers::Peer]) -> Vec<Box<dyn Backend>> {
    let mut v = all(workload, work_dir);
    for p in peers {
        v.push(super::vmm_peers::backend(p, workload));
    }
    v
}

/// Names of all backends (for `--backends` validation and help).
pub fn names(backends: &[Box<dyn Backend>]) -> Vec<String> {
    backends.iter().map(|b| b.name().to_string()).collect()
}

/// Select backends by name; unknown names are an error naming the valid ones.
pub fn select(backends: Vec<Box<dyn Backend>>, wanted: &[String]) -> Result<Vec<Box<dyn Backend>>, String> {
    let valid = names(&backends);
    for w in wanted {
        if !valid.contains(w) {
            return Err(format!("unknown backend '{w}'; valid backends: {}", valid.join(", ")));
        }
    }
    Ok(backends.into_iter().filter(|b| wanted.iter().any(|w| w == b.name())).collect())
}

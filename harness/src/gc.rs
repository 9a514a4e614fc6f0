//! Leftover collection for `vmct gc`: processes of dead harness runs (found by the `VMCT_OWNER`
//! variable every instance carries), host values a killed isolation run left changed (from its
//! [`crate::isolation::journal`]), and kernel objects named with the project prefix (delegated to
//! the runtimes that create them).
use crate::backend::OWNER_ENV;
use std::fs;

/// What gc found and did.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Objects removed (or that would be, with --dry-run).
    pub removed: Vec<String>,
    /// Objects kept because their harness is still running.
    pub kept: Vec<String>,
    /// Objects that could not be removed.
    pub errors: Vec<String>,
}

fn alive(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// The owner pid recorded in a process's environment.
fn owner_of(pid: u32) -> Option<u32> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        let s = std::str::from_utf8(kv).ok()?;
        s.strip_prefix(OWNER_ENV)?.strip_prefix('=')?.parse().ok()
    })
}

/// Find and (unless `dry_run`) remove leftovers.
pub fn collect(dry_run: bool) -> GcReport {
    let mut rep = GcReport::default();
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else { return rep };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Some(owner) = owner_of(pid) else { continue };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        if owner != pid && alive(owner) && owner != me {
            rep.kept.push(format!("process {pid} ({comm}) of running vmct {owner}"));
            continue;
        }
        let what = format!("process {pid} ({comm}) of dead vmct {owner}");
        if !dry_run {
            // SAFETY: kill(2) on a pid; no memory is involved.
            if unsafe { libc::kill(pid as i32, libc::SIGKILL) } != 0 {
                rep.errors.push(format!("{what}: {}", std::io::Error::last_os_error()));
                continue;
            }
        }
        rep.removed.push(what);
    }
    let j = crate::isolation::journal::recover_in(std::path::Path::new(crate::isolation::journal::DIR), dry_run);
    rep.removed.extend(j.removed);
    rep.kept.extend(j.kept);
    rep.errors.extend(j.errors);
    if dry_run {
        rep.kept.push("kernel objects (cgroups, netns, veths, container state) are only listed when removed; run without --dry-run".into());
    } else {
        // Cgroups, network namespaces, veths and per-container state named with the prefix.
        let c = container::gc(crate::backend::NAME_PREFIX);
        rep.removed.extend(c.removed);
        rep.kept.extend(c.kept);
        rep.errors.extend(c.errors);
    }
    rep
}

//! Sysctl probe: write a host-global sysctl the harness restores.
use super::{sys, Ctx, Verdict};

/// Read the integer sysctl the harness named and write value+1. Harmless: the harness picks a benign,
/// non-namespaced knob (default `fs.lease-break-time`) and restores its value after the instance.
pub fn host_write(ctx: &Ctx) -> Verdict {
    let Some(path) = &ctx.sysctl else { return Verdict::error("no sysctl given (VMCT_CANARY_SYSCTL unset)") };
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s.trim().to_string(),
        Err(e) => return Verdict::blocked(format!("{} reading {}", sys::io_name(&e), path.display())),
    };
    let Ok(v) = old.parse::<i64>() else {
        return Verdict::error(format!("{} is not an integer: {old}", path.display()));
    };
    let new = v + 1;
    match std::fs::write(path, format!("{new}\n")) {
        Ok(()) => Verdict::reached(format!("wrote {}={new} (was {old}; the harness restores it)", path.display())),
        Err(e) => Verdict::blocked(format!("{} writing {}", sys::io_name(&e), path.display())),
    }
}

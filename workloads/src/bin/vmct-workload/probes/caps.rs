//! Capability probe: try to raise every bounding-set capability into the effective set.
use super::{sys, Ctx, Verdict};

/// Capabilities that reach the host when held in the host user namespace.
const DANGEROUS: &[(u32, &str)] = &[
    (2, "dac_read_search"),
    (12, "net_admin"),
    (16, "sys_module"),
    (17, "sys_rawio"),
    (19, "sys_ptrace"),
    (21, "sys_admin"),
    (22, "sys_boot"),
    (25, "sys_time"),
];

const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> Option<(u64, u64)> {
    let mut h = Header { version: VERSION_3, pid: 0 };
    let mut d = [Data::default(); 2];
    // SAFETY: h and d are the v3 header and two-element data array capget expects.
    if unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) } != 0 {
        return None;
    }
    let eff = d[0].effective as u64 | (d[1].effective as u64) << 32;
    let prm = d[0].permitted as u64 | (d[1].permitted as u64) << 32;
    Some((eff, prm))
}

fn bounding() -> u64 {
    (0..64u32)
        // SAFETY: PR_CAPBSET_READ only reads; an unknown capability yields EINVAL.
        .filter(|&c| unsafe { libc::prctl(libc::PR_CAPBSET_READ, c as libc::c_ulong, 0, 0, 0) } == 1)
        .fold(0, |m, c| m | 1 << c)
}

/// Names of the dangerous capabilities in `mask`.
pub fn dangerous(mask: u64) -> Vec<&'static str> {
    DANGEROUS.iter().filter(|(c, _)| mask & (1 << c) != 0).map(|(_, n)| *n).collect()
}

/// Raise effective = permitted = bounding with capset, then report which dangerous capabilities are
/// effective. Harmless: capabilities of the forked probe child only, which exits right after.
pub fn raise(ctx: &Ctx) -> Verdict {
    let Some((_, prm)) = capget() else { return Verdict::error(format!("capget: {}", sys::errno_name(sys::errno()))) };
    let bnd = bounding();
    let want = prm | bnd;
    // The 64-bit set in the two 32-bit halves capset's v3 data takes.
    let low = u32::try_from(want & 0xffff_ffff).expect("masked to 32 bits");
    let high = u32::try_from(want >> 32).expect("the upper 32 bits");
    let mut h = Header { version: VERSION_3, pid: 0 };
    let d = [
        Data { effective: low, permitted: low, inheritable: 0 },
        Data { effective: high, permitted: high, inheritable: 0 },
    ];
    // SAFETY: h and d are the v3 header and data array capset expects; only this process changes.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
    let raise =
        if r == 0 { "capset raise ok".to_string() } else { format!("capset raise: {}", sys::errno_name(sys::errno())) };
    let (eff, _) = capget().unwrap_or((0, 0));
    let bad = dangerous(eff);
    let detail = format!("CapEff={eff:#x} CapBnd={bnd:#x}; {raise}; dangerous effective: [{}]", bad.join(","));
    if bad.is_empty() {
        return Verdict::blocked(detail);
    }
    match ctx.same_ns("user") {
        Some(false) => Verdict::blocked(format!("{detail} (only within its own user namespace)")),
        Some(true) => Verdict::reached(format!("{detail} (host user namespace)")),
        None => Verdict::reached(format!("{detail} (user namespace unknown)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_names() {
        assert_eq!(dangerous(1 << 21 | 1 << 0), vec!["sys_admin"]);
        assert!(dangerous(0).is_empty());
    }
}

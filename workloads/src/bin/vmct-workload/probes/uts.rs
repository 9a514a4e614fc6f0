//! UTS probes: set the hostname and domainname.
use super::{sys, Ctx, Verdict};

/// Set the hostname to `vmct-probe-<nonce>`. Harmless: the harness restores the host's value right
/// after the instance (and in its Drop guard).
pub fn hostname(ctx: &Ctx) -> Verdict {
    let tag = ctx.tag();
    // SAFETY: tag points to tag.len() valid bytes.
    let r = unsafe { libc::sethostname(tag.as_ptr().cast(), tag.len()) };
    classify(ctx, "hostname", &tag, r)
}

/// Set the NIS domainname to `vmct-probe-<nonce>`. Harmless: restored by the harness like the hostname.
pub fn domainname(ctx: &Ctx) -> Verdict {
    let tag = ctx.tag();
    // SAFETY: tag points to tag.len() valid bytes.
    let r = unsafe { libc::setdomainname(tag.as_ptr().cast(), tag.len()) };
    classify(ctx, "domainname", &tag, r)
}

fn classify(ctx: &Ctx, what: &str, tag: &str, r: i32) -> Verdict {
    if r != 0 {
        return Verdict::blocked(format!("set{what}: {}", sys::errno_name(sys::errno())));
    }
    match ctx.same_ns("uts") {
        Some(false) => Verdict::blocked(format!("set {what} in its own UTS namespace only")),
        Some(true) => Verdict::reached(format!("set the host {what} to {tag} (the harness restores it)")),
        None => Verdict::reached(format!("set {what} to {tag} (UTS namespace unknown; the harness checks)")),
    }
}

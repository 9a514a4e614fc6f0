//! File-system probes: read the host canary file by its host path.
use super::{sys, Ctx, Verdict};

/// Read the canary file the harness planted outside the instance's root. Harmless: a read of a file the
/// harness created for this purpose.
pub fn host_canary(ctx: &Ctx) -> Verdict {
    let (Some(path), Some(nonce)) = (&ctx.file, &ctx.nonce) else {
        return Verdict::error("no canary file given (VMCT_CANARY_FILE/VMCT_CANARY_NONCE unset)");
    };
    match std::fs::read_to_string(path) {
        Ok(s) if s.contains(nonce.as_str()) => {
            Verdict::reached(format!("read the host canary {} (nonce matches)", path.display()))
        }
        Ok(_) => Verdict::blocked(format!("{} exists but is not the host canary", path.display())),
        Err(e) => Verdict::blocked(format!("{} reading {}", sys::io_name(&e), path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workloads::protocol::ProbeOutcome;

    #[test]
    fn canary_read_is_reached_missing_is_blocked() {
        let dir = std::env::temp_dir().join(format!("vmct-test-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("canary");
        std::fs::write(&f, "nonce-abc").unwrap();
        let mut ctx = Ctx { file: Some(f.clone()), nonce: Some("nonce-abc".into()), ..Ctx::default() };
        assert_eq!(host_canary(&ctx).outcome, ProbeOutcome::Reached);
        ctx.nonce = Some("other".into());
        assert_eq!(host_canary(&ctx).outcome, ProbeOutcome::Blocked);
        ctx.file = Some(dir.join("missing"));
        assert!(host_canary(&ctx).detail.starts_with("ENOENT"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

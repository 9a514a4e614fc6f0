//! Translation of [`Resolved`] rules: to the OCI `linux.seccomp` section (crun, runc) and, with
//! libseccomp, to the BPF program our init installs.
use super::*;

fn scmp_action(a: LinuxSeccompAction, errno: Option<u32>) -> libseccomp::ScmpAction {
    use libseccomp::ScmpAction as S;
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => S::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => S::KillProcess,
        LinuxSeccompAction::ScmpActTrap => S::Trap,
        LinuxSeccompAction::ScmpActErrno => S::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        LinuxSeccompAction::ScmpActNotify => S::Notify,
        // SECCOMP_RET_TRACE carries a 16-bit message: larger values are clamped.
        LinuxSeccompAction::ScmpActTrace => S::Trace(errno.map_or(0, |e| u16::try_from(e).unwrap_or(u16::MAX))),
        LinuxSeccompAction::ScmpActLog => S::Log,
        LinuxSeccompAction::ScmpActAllow => S::Allow,
    }
}

fn scmp_op(a: &ArgRule) -> (libseccomp::ScmpCompareOp, u64) {
    use libseccomp::ScmpCompareOp as O;
    match a.op {
        LinuxSeccompOperator::ScmpCmpNe => (O::NotEqual, a.value),
        LinuxSeccompOperator::ScmpCmpLt => (O::Less, a.value),
        LinuxSeccompOperator::ScmpCmpLe => (O::LessOrEqual, a.value),
        LinuxSeccompOperator::ScmpCmpEq => (O::Equal, a.value),
        LinuxSeccompOperator::ScmpCmpGe => (O::GreaterEqual, a.value),
        LinuxSeccompOperator::ScmpCmpGt => (O::Greater, a.value),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (O::MaskedEqual(a.value), a.value_two),
    }
}

impl Resolved {
    /// Compile with libseccomp. `path` and `sha256` only label the result.
    pub fn compile(&self, path: &Path, sha256: &str) -> Result<Compiled, ProfileError> {
        use libseccomp::{ScmpArch, ScmpArgCompare, ScmpFilterContext, ScmpSyscall};
        let err = |what: String, e: &dyn std::fmt::Display| ProfileError::Compile {
            path: path.into(),
            what,
            reason: e.to_string(),
        };
        let default = scmp_action(self.default_action, self.default_errno_ret);
        let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("create filter".into(), &e))?;
        // Calls of an architecture left out of the filter get the default action, not a kill.
        ctx.set_act_badarch(default).map_err(|e| err("bad-architecture action".into(), &e))?;
        for a in &self.architectures {
            let arch = ScmpArch::from_str(a).map_err(|e| err(format!("architecture {a}"), &e))?;
            ctx.add_arch(arch).map_err(|e| err(format!("add architecture {a}"), &e))?;
        }
        // A binary tree of syscall numbers instead of a linear list (libseccomp >= 2.5), as crun does.
        let _ = ctx.set_ctl_optimize(2);
        let mut unknown = BTreeSet::new();
        let mut allowed = BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let action = scmp_action(r.action, r.errno_ret);
            if action == default {
                // libseccomp refuses rules equal to the default action (crun and runc skip them too).
                continue;
            }
            let conds: Vec<ScmpArgCompare> = r
                .args
                .iter()
                .map(|a| {
                    let (op, datum) = scmp_op(a);
                    ScmpArgCompare::new(a.index, op, datum)
                })
                .collect();
            for name in &r.names {
                let Ok(nr) = ScmpSyscall::from_name(name) else {
                    unknown.insert(name.clone());
                    continue;
                };
                ctx.add_rule_conditional(action, nr, &conds)
                    .map_err(|e| err(format!("rule {i} ({name}, {:?})", r.action), &e))?;
                if r.action == LinuxSeccompAction::ScmpActAllow {
                    allowed.insert(name.clone());
                }
            }
        }
        let bpf = export_bpf(&ctx).map_err(|e| err("export BPF".into(), &e))?;
        Ok(Compiled {
            bpf: Arc::new(bpf),
            info: ProfileInfo {
                path: path.into(),
                sha256: sha256.into(),
                syscalls_allowed: u32::try_from(allowed.len()).expect("a few hundred syscalls"),
                unknown_names_skipped: unknown.into_iter().collect(),
            },
            resolved: self.clone(),
        })
    }

    /// The `linux.seccomp` section Podman writes for crun and runc from the same rules.
    pub fn to_oci(&self) -> LinuxSeccomp {
        use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};
        let arches: Vec<Arch> = self
            .architectures
            .iter()
            .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
            .collect();
        let syscalls = self
            .rules
            .iter()
            .map(|r| {
                let mut b = LinuxSyscallBuilder::default().names(r.names.clone()).action(r.action);
                if let Some(e) = r.errno_ret {
                    b = b.errno_ret(e);
                }
                if !r.args.is_empty() {
                    let args = r
                        .args
                        .iter()
                        .map(|a| {
                            LinuxSeccompArgBuilder::default()
                                .index(a.index as usize)
                                .value(a.value)
                                .value_two(a.value_two)
                                .op(a.op)
                                .build()
                                .expect("every field of a seccomp argument is set")
                        })
                        .collect::<Vec<_>>();
                    b = b.args(args);
                }
                b.build().expect("every field of a seccomp rule is set")
            })
            .collect::<Vec<_>>();
        let mut b =
            LinuxSeccompBuilder::default().default_action(self.default_action).architectures(arches).syscalls(syscalls);
        if let Some(e) = self.default_errno_ret {
            b = b.default_errno_ret(e);
        }
        b.build().expect("every field of a seccomp section is set")
    }
}

/// libseccomp's BPF as seccompiler's instruction type (what [`crate::sys::Sys::seccomp`] installs).
/// Exported through a pipe: a program is at most BPF_MAXINSNS (4096) instructions of 8 bytes, 32 KiB,
/// within a pipe's 64 KiB buffer, so the export never blocks.
fn export_bpf(ctx: &libseccomp::ScmpFilterContext) -> Result<seccompiler::BpfProgram, std::io::Error> {
    use std::io::Read;
    let (r, w) = crate::sys::pipe()?;
    ctx.export_bpf(&w).map_err(std::io::Error::other)?;
    drop(w);
    let mut bytes = Vec::new();
    std::fs::File::from(r).read_to_end(&mut bytes)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| seccompiler::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

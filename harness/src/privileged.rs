//! Gate for tests that need root, namespaces or /dev/kvm.
//!
//! Without `VMCT_REQUIRE_PRIVILEGED=1` such a test skips with a one-line reason (a laptop without KVM);
//! with it (CI), a missing privilege fails the test instead.

/// Is the requirement met? `Err(reason)` if not.
pub fn check(need: Need) -> Result<(), String> {
    let root = nix::unistd::geteuid().is_root();
    match need {
        Need::Root if !root => Err("needs root".into()),
        Need::Kvm => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(|_| ())
            .map_err(|e| format!("needs /dev/kvm ({e})")),
        _ => Ok(()),
    }
}

/// What a test needs.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// Root (namespaces, cgroups, mounts).
    Root,
    /// Read-write /dev/kvm.
    Kvm,
}

/// Whether privileged tests must run (CI).
pub fn required() -> bool {
    std::env::var("VMCT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Returns true if the test may go on; prints a one-line skip reason and returns false otherwise;
/// panics when `VMCT_REQUIRE_PRIVILEGED=1` and the need is not met.
pub fn gate(test: &str, needs: &[Need]) -> bool {
    for n in needs {
        if let Err(reason) = check(*n) {
            if required() {
                panic!("{test}: {reason}, and VMCT_REQUIRE_PRIVILEGED=1 forbids skipping");
            }
            eprintln!("skipped {test}: {reason} (set VMCT_REQUIRE_PRIVILEGED=1 to make this a failure)");
            return false;
        }
    }
    true
}

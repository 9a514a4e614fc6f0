#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The crash experiment on this host (issue 15 item 3): N containers of our runtime inside one linux
//! guest under QEMU TCG do not survive the crash of their shared guest kernel (0 of N), and N
//! linux-guest VMs survive the crash of one of them (N-1 of N); both counted from heartbeats. Every
//! QEMU process and the temporary initramfs are gone afterwards. Needs root and Debian's
//! qemu-system-x86 (skips without them unless `VMCT_REQUIRE_PRIVILEGED=1`); builds the guest kernel
//! first when it is missing and required.
use harness::backend::qemu_tcg::{QemuTcgBackend, QEMU_BIN};
use harness::backend::Backend;
use harness::experiments::crash::{self, INSTANCES};
use harness::privileged::{gate, required, Need};
use harness::{artifacts, kernel};
use results::IsolationModel;

/// Our children whose command is QEMU (this test binary starts no other QEMU).
fn our_qemus() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((comm, rest)) = stat.rsplit_once(") ") else { continue };
        let ppid = rest.split_whitespace().nth(1).unwrap_or("");
        if ppid == me && comm.contains("qemu-system") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_shared_kernel_crash_ends_every_container_and_a_vm_crash_ends_one_vm() {
    let test = "a_shared_kernel_crash_ends_every_container_and_a_vm_crash_ends_one_vm";
    if !gate(test, &[Need::Root]) {
        return;
    }
    if harness::backend::peers::which(QEMU_BIN).is_none() {
        assert!(!required(), "{test}: {QEMU_BIN} missing; scripts/setup-host installs qemu-system-x86");
        eprintln!("skipped {test}: {QEMU_BIN} not installed");
        return;
    }
    if !kernel::cached_bzimage_path().is_file() && std::env::var_os(kernel::KERNEL_ENV).is_none() {
        if !required() {
            eprintln!("skipped {test}: no guest kernel (run `vmct kernel build`)");
            return;
        }
        kernel::build(&kernel::BuildOptions::default(), &mut |_| {}).expect("guest kernel builds");
    }
    let info = QemuTcgBackend::new(&artifacts::workload_path().unwrap()).info();
    let t0 = std::time::Instant::now();
    let m = crash::measure(INSTANCES, &info, results::KvmFlavour::detect()).unwrap();
    eprintln!("crash experiment took {:.1} s", t0.elapsed().as_secs_f64());
    let errors: Vec<String> = m.errors.iter().map(|(side, e)| format!("{side}: {e}")).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let side = |model| m.rows.iter().find(|r| r.model == model).expect("both sides have a row");
    let (c, v) = (side(IsolationModel::Container), side(IsolationModel::Microvm));
    eprintln!("{c:?}\n{v:?}");
    assert_eq!((c.instances, c.crashed, c.survivors), (INSTANCES, 1, 0), "{c:?}");
    assert_eq!((v.instances, v.crashed, v.survivors), (INSTANCES, 1, INSTANCES - 1), "{v:?}");
    assert!(v.victim_slowdown.is_some_and(|s| s > 0.0), "{v:?}");
    assert!(c.detail.contains("TCG") && c.detail.contains("survivor count: transfers"), "{}", c.detail);
    assert!(v.detail.contains("slowdown: emulated"), "{}", v.detail);
    assert_eq!(our_qemus(), Vec::<u32>::new(), "QEMU processes left");
    let tmp = std::path::Path::new(container::DEFAULT_STATE_ROOT).join(format!("vmct-{}-crash", std::process::id()));
    assert!(!tmp.exists(), "{} left", tmp.display());
}

#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The linux guest model (`microvm-linux`) on this host: the guest kernel boots far enough to print its
//! first console line; the initramfs has a runnable /init; on VT-x/AMD-V hosts the backend runs the
//! workload end to end. Needs /dev/kvm (skips without it unless `VMCT_REQUIRE_PRIVILEGED=1`).
use harness::backend::microvm_linux::{self, backend, initramfs_for};
use harness::backend::{collect_events, Event, InstanceSpec};
use harness::privileged::{gate, required, Need};
use harness::{artifacts, kernel};
use microvm::linux::{initramfs, probe_first_byte, ProbeOptions};
use std::path::PathBuf;
use std::time::Duration;
use workloads::scenario::Scenario;

/// The cached kernel; under `VMCT_REQUIRE_PRIVILEGED=1` it is built if missing (about 2 minutes on 2 CPUs).
fn guest_kernel(test: &str) -> Option<PathBuf> {
    if let Some(k) = kernel::cached() {
        return Some(k);
    }
    if !required() {
        eprintln!("skipped {test}: no guest kernel (run `vmct kernel build`)");
        return None;
    }
    eprintln!("{test}: building the guest kernel first");
    Some(kernel::build(&kernel::BuildOptions::default(), &mut |_| {}).expect("guest kernel builds"))
}

#[test]
fn guest_kernel_prints_its_first_console_line() {
    if !gate("guest_kernel_prints_its_first_console_line", &[Need::Kvm]) {
        return;
    }
    let Some(kernel) = guest_kernel("guest_kernel_prints_its_first_console_line") else { return };
    // The first byte comes in well under a second on kvm_pvm (interpreted); do not wait for /init here.
    let opts = ProbeOptions { timeout: Duration::from_secs(30), stop_at_first_line: true, ..Default::default() };
    let fb = probe_first_byte(&kernel, &opts).unwrap();
    eprintln!("{}", fb.summary());
    let first = fb.first_byte.expect("a console byte within 30 s");
    let (at, line) = fb.first_line.clone().expect("a console line");
    assert!(line.contains("Linux version"), "first line: {line}");
    assert!(first <= at && fb.vmm_setup <= first);
    assert_eq!(fb.unavailable.is_some(), fb.flavour == microvm::status::Flavour::Pvm);
}

#[test]
fn initramfs_has_a_runnable_init() {
    let workload = artifacts::workload_path().unwrap();
    let path = initramfs_for(&workload).unwrap();
    let entries = initramfs::parse(&std::fs::read(&path).unwrap()).unwrap();
    let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap_or_else(|| panic!("/{n} missing"));
    let console = get("dev/console");
    assert!(console.is_char_device() && console.rdev == (5, 1));
    let init = get("init");
    assert!(init.is_executable_file());
    assert_eq!(&init.data[..4], b"\x7fELF");
    assert_eq!(init.data, std::fs::read(&workload).unwrap());
    // Runnable: the very bytes of /init run the workload on the host (static, no interpreter).
    let dir = std::env::temp_dir().join(format!("vmct-initramfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("init");
    std::fs::write(&exe, &init.data).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&exe).arg("ready").output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("@vmct ready"), "{out:?}");
    // The container's image layers are in it too.
    assert!(entries.iter().any(|e| e.name == "bin/vmct-workload"));
}

#[test]
fn backend_runs_the_workload_or_says_why_not() {
    if !gate("backend_runs_the_workload_or_says_why_not", &[Need::Kvm]) {
        return;
    }
    let b = backend();
    let info = b.info();
    if !info.available {
        let reason = info.reason.unwrap();
        eprintln!("microvm-linux unavailable here: {reason}");
        assert!(reason.contains("VT-x/AMD-V") || reason.contains("vmct kernel build"), "{reason}");
        return;
    }
    std::env::set_var(microvm_linux::VMCT_BIN_ENV, env!("CARGO_BIN_EXE_vmct"));
    let spec =
        InstanceSpec::new("vmct-test-linux-cpu", Scenario::parse(["cpu", "--iters", "1000"].into_iter()).unwrap());
    let mut inst = b.launch(&spec).unwrap();
    let ready = inst.wait_ready(Duration::from_secs(30)).unwrap();
    let names: Vec<&str> = ready.phases.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"init_start") && names.contains(&"first_console_byte"), "{names:?}");
    let events = collect_events(inst.as_mut(), Duration::from_secs(30)).unwrap();
    assert!(events.iter().any(|e| matches!(e, Event::Done { status: 0 })), "{events:?}");
    let exit = inst.stop(Duration::from_secs(10)).unwrap();
    assert_eq!((exit.status, exit.error), (Some(0), None));
}

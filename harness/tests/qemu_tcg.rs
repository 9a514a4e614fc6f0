#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The `qemu-tcg` backend on this host: the linux guest model under QEMU TCG reaches ready and reports
//! its phases, runs the container probe list inside, accounts guest RAM apart from QEMU's overhead,
//! writes the io scenario to its virtio-blk disk, and a guest that misses its deadline is killed with
//! its console in the error. Needs root and Debian's qemu-system-x86 (skips without them unless
//! `VMCT_REQUIRE_PRIVILEGED=1`); builds the guest kernel first when it is missing and required.
use harness::backend::qemu_tcg::{QemuTcgBackend, QemuTcgInstance, QEMU_BIN};
use harness::backend::{collect_events, Backend, BackendError, Event, Instance, InstanceSpec};
use harness::isolation::{self, IsolationOptions};
use harness::privileged::{gate, required, Need};
use harness::{artifacts, kernel};
use std::collections::BTreeSet;
use std::time::Duration;
use workloads::scenario::Scenario;

/// Generous: a TCG boot takes 2-3 s alone, several times that on a loaded 2-core host.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The backend, or None (skip) when this host cannot run it and running is not required.
fn backend(test: &str) -> Option<QemuTcgBackend> {
    if !gate(test, &[Need::Root]) {
        return None;
    }
    if harness::backend::peers::which(QEMU_BIN).is_none() {
        assert!(!required(), "{test}: {QEMU_BIN} missing; scripts/setup-host installs qemu-system-x86");
        eprintln!("skipped {test}: {QEMU_BIN} not installed");
        return None;
    }
    if !kernel::cached_bzimage_path().is_file() && std::env::var_os(kernel::KERNEL_ENV).is_none() {
        if !required() {
            eprintln!("skipped {test}: no guest kernel (run `vmct kernel build`)");
            return None;
        }
        kernel::build(&kernel::BuildOptions::default(), &mut |_| {}).expect("guest kernel builds");
    }
    let b = QemuTcgBackend::new(&workload());
    let info = b.info();
    assert!(info.available, "{test}: qemu-tcg unavailable: {:?}", info.reason);
    assert!(info.emulated);
    Some(b)
}

fn workload() -> std::path::PathBuf {
    // One writer for the cached workload binary (tests run in parallel threads).
    static W: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    W.get_or_init(|| artifacts::workload_path().expect("workload binary")).clone()
}

fn spec(scenario: Scenario) -> InstanceSpec {
    InstanceSpec::new(harness::experiments::next_id(), scenario)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn reaches_ready_with_its_phases_and_exits_with_the_guest() {
    let Some(b) = backend("reaches_ready_with_its_phases_and_exits_with_the_guest") else { return };
    let mut inst = b.launch(&spec(Scenario::Ready)).unwrap();
    let pid = inst.pid().unwrap();
    let ready = inst.wait_ready(TIMEOUT).unwrap();
    let names: Vec<&str> = ready.phases.iter().map(|p| p.name.as_str()).collect();
    eprintln!("qemu-tcg ready in {:.3} s: {:?}", ready.launch_to_ready_s(), ready.phases);
    assert_eq!(names, ["kernel_start", "init_start", "to_ready"]);
    assert!(ready.phases.iter().all(|p| p.duration_s >= 0.0));
    let events = collect_events(inst.as_mut(), TIMEOUT).unwrap();
    assert!(matches!(events.last(), Some(Event::Done { status: 0 })), "{events:?}");
    // The guest's reboot ends QEMU (-no-reboot).
    let exit = inst.stop(TIMEOUT).unwrap();
    assert_eq!(exit.status, Some(0), "{exit:?}");
    assert!(!alive(pid));
}

#[test]
fn guest_ram_and_emulator_overhead_are_separate() {
    let Some(b) = backend("guest_ram_and_emulator_overhead_are_separate") else { return };
    let mut inst = b.launch(&spec(Scenario::Idle { hold_mib: 16 })).unwrap();
    inst.wait_ready(TIMEOUT).unwrap();
    let st = inst.stats();
    eprintln!("qemu-tcg idle 16 MiB: {st:?}");
    let (guest, overhead, rss) = (st.guest_mem_bytes.unwrap(), st.vmm_overhead_bytes.unwrap(), st.rss_bytes.unwrap());
    assert!(guest >= 16 << 20, "guest RAM touched {guest} below the 16 MiB the workload holds");
    assert!(overhead > 0);
    assert_eq!(guest + overhead, rss);
    // The idle workload stops on the `stop` line stop() writes to its console.
    let exit = inst.stop(TIMEOUT).unwrap();
    assert_eq!(exit.status, Some(0), "{exit:?}");
}

#[test]
fn io_writes_to_the_virtio_blk_disk_on_the_host() {
    let Some(b) = backend("io_writes_to_the_virtio_blk_disk_on_the_host") else { return };
    let mut inst: QemuTcgInstance = b.launch_tcg(&spec(Scenario::Io { mib: 8 })).unwrap();
    let image = inst.disk_image().expect("the io scenario gets a disk").to_path_buf();
    let before = inst.disk_allocated_bytes().unwrap();
    inst.wait_ready(TIMEOUT).unwrap();
    let events = collect_events(&mut inst, TIMEOUT).unwrap();
    let after = inst.disk_allocated_bytes().unwrap();
    eprintln!("disk {}: {before} -> {after} bytes allocated; {events:?}", image.display());
    assert!(events.iter().any(|e| matches!(e, Event::Result { name, .. } if name == "io.write_fsync")), "{events:?}");
    assert!(after >= before + (8 << 20), "the image grew by {} bytes, less than the 8 MiB written", after - before);
    inst.stop(TIMEOUT).unwrap();
    assert!(!image.exists(), "the disk image is removed with the instance");
}

#[test]
fn the_container_probe_list_runs_inside_the_guest() {
    let Some(b) = backend("the_container_probe_list_runs_inside_the_guest") else { return };
    let mut opts = IsolationOptions::new(workload(), std::env::temp_dir());
    opts.blast = None;
    opts.timeout = TIMEOUT;
    let base = harness::backend::process::ProcessBackend::new(workload(), std::env::temp_dir());
    let (process_rows, _) = isolation::probe_backend(&base, &opts, &[]).unwrap();
    let (rows, notes) = isolation::probe_backend(&b, &opts, &process_rows).unwrap();
    let ids = |r: &[results::IsolationRow]| r.iter().map(|r| r.probe.clone()).collect::<BTreeSet<_>>();
    assert!(process_rows.len() > 10, "{process_rows:?}");
    assert_eq!(ids(&rows), ids(&process_rows), "notes: {notes:?}");
    // The device-node, masked-path and kernel-reach probes meet the guest's own minimal kernel, which has
    // none of those devices or procfs files: "not applicable" (error) is a valid answer there; every other
    // probe must decide.
    let surface: BTreeSet<&str> = workloads::probe_ids::surface_probes().collect();
    let undecided: Vec<_> = rows
        .iter()
        .filter(|r| r.outcome == results::ProbeOutcome::Error && !surface.contains(r.probe.as_str()))
        .collect();
    assert!(undecided.is_empty(), "{undecided:#?}");
    // Its own kernel: nothing the probes reach is host state.
    let failures: Vec<_> = rows.iter().filter(|r| r.failure).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_guest_that_misses_its_deadline_is_killed_with_its_console_in_the_error() {
    let Some(b) = backend("a_guest_that_misses_its_deadline_is_killed_with_its_console_in_the_error") else {
        return;
    };
    let mut inst = b.launch(&spec(Scenario::Ready)).unwrap();
    let pid = inst.pid().unwrap();
    // Long enough for QEMU to start and print, far too short for the guest to reach /init.
    let e = inst.wait_ready(Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, BackendError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("QEMU killed"), "{e}");
    assert!(!alive(pid), "QEMU {pid} still runs");
}

/// A guest without a disk (initramfs only, e.g. `microvm-linux`) has /init set `VMCT_IO_NO_DISK`: its
/// files live in RAM, so the io scenario reports `unsupported` instead of write+fsync figures.
#[test]
fn an_initramfs_only_guest_reports_no_fsync_figures() {
    let out = std::process::Command::new(workload())
        .args(["io", "--mib", "1"])
        .env("VMCT_IO_NO_DISK", "1")
        .env("VMCT_IO_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("@vmct unsupported io"), "{text}");
    assert!(!text.contains("io.write_fsync"), "{text}");
}

/// `vmct` ends on SIGPIPE (its default action, restored in `main`): writing `stop` to a QEMU whose guest
/// already ended (and closed its stdin) must be an error, not the harness's death. This killed whole
/// `vmct compare` runs before `send_line` blocked SIGPIPE around its write.
#[test]
fn a_line_to_an_exited_instance_is_an_error_not_a_sigpipe() {
    use harness::backend::child::ChildInstance;
    let mut inst = ChildInstance::spawn("test", &spec(Scenario::Ready), std::process::Command::new("true")).unwrap();
    // Its output ends (coreutils close stdout early) and then the process: a zombie has closed its stdin.
    assert_eq!(inst.next_event(Duration::from_secs(10)).unwrap(), None);
    let pid = inst.pid().unwrap();
    let t0 = std::time::Instant::now();
    while alive(pid) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: setting a signal's disposition has no memory preconditions; restored below.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let r = inst.send_line("stop");
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGPIPE, old) };
    let e = r.unwrap_err();
    assert!(e.to_string().contains("Broken pipe"), "{e}");
}

/// Layer (b) of the attack surface is measured from QEMU's monitor, not declared by hand: the device
/// models, ports and MMIO ranges of the command line vmct builds (the virtio-blk disk, the serial port,
/// the virtio-mmio slots).
#[test]
fn the_device_model_layer_is_read_from_qemus_monitor() {
    let Some(b) = backend("the_device_model_layer_is_read_from_qemus_monitor") else { return };
    let s = b.attack_surface();
    let v = s.vmm.unwrap_or_else(|| panic!("layer (b) not measured: {}", s.supervisor_note));
    let devices = v.device_models.as_deref().unwrap_or_default();
    for d in ["virtio-blk-device", "virtio-mmio", "isa-serial"] {
        assert!(devices.iter().any(|k| k == d), "{d} missing from {devices:?}");
    }
    assert!(v.exit_kinds.is_empty(), "device models are not exit kinds: {:?}", v.exit_kinds);
    assert!(v.io_ports.contains(&(0x3f8, 0x3ff)), "{:?}", v.io_ports);
    assert!(!v.mmio_ranges.is_empty());
    assert!(v.source.as_deref().is_some_and(|t| t.contains("measured from QEMU's monitor")), "{:?}", v.source);
}

/// QEMU started as the backend starts it, but with no machine: its confinement measured live, with
/// and without libvirt's default `-sandbox`.
fn measure_bare_qemu(sandbox: Option<&str>) -> harness::backend::confinement::Confinement {
    use std::io::Write;
    let mut cmd = std::process::Command::new(harness::backend::peers::which(QEMU_BIN).unwrap());
    cmd.args(["-M", "none", "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "stdio"]);
    if let Some(s) = sandbox {
        cmd.args(["-sandbox", s]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The monitor's banner: QEMU has parsed its options and installed its filter.
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    let _ = std::io::Read::read(&mut out, &mut buf).unwrap();
    let c = harness::backend::confinement::Confinement::measure(child.id());
    let _ = child.stdin.take().unwrap().write_all(b"quit\n");
    assert!(child.wait().unwrap().success());
    c.unwrap()
}

#[test]
fn qemu_runs_with_libvirts_default_sandbox_and_its_filter_is_measured() {
    use harness::backend::qemu_tcg::{sandbox_support, LIBVIRT_SANDBOX};
    let test = "qemu_runs_with_libvirts_default_sandbox_and_its_filter_is_measured";
    let Some(b) = backend(test) else { return };
    let qemu = harness::backend::peers::which(QEMU_BIN).unwrap();
    // Detection: an option this QEMU refuses is said, with QEMU's own words.
    let e = sandbox_support(&qemu, "on,bogus=deny").unwrap_err();
    assert!(e.contains("bogus"), "{e}");
    if let Err(e) = sandbox_support(&qemu, LIBVIRT_SANDBOX) {
        // A QEMU built without seccomp: the profile says so and the row stays unfiltered.
        let p = b.info().isolation.unwrap().profile;
        assert!(p.contains("without -sandbox") && p.contains(&e), "{p}");
        return;
    }
    let profile = b.info().isolation.unwrap().profile;
    assert!(profile.contains(&format!("-sandbox {LIBVIRT_SANDBOX}")), "{profile}");
    let (with, without) = (measure_bare_qemu(Some(LIBVIRT_SANDBOX)), measure_bare_qemu(None));
    let table = harness::backend::surface::unfiltered_syscalls();
    eprintln!(
        "QEMU -M none: with -sandbox {LIBVIRT_SANDBOX}: {:?} of {table} ({} threads); without: {:?}",
        with.allowed(),
        with.threads.len(),
        without.allowed()
    );
    assert_eq!(without.allowed(), Some(table));
    let n = with.allowed().expect("filters readable");
    assert!(n > 50 && n < table, "{n} of {table}: {}", with.note("qemu"));

    // The backend's own instance (an idle one: a `ready` instance ends at once and is not read) is
    // measured at ready, and the surface row is no longer unconfined.
    let mut inst = b.launch(&spec(Scenario::Idle { hold_mib: 0 })).unwrap();
    inst.wait_ready(TIMEOUT).unwrap();
    inst.stop(TIMEOUT).unwrap();
    let s = b.attack_surface();
    eprintln!("qemu-tcg layer (c): {:?}: {}", s.supervisor_syscalls_allowed, s.supervisor_note);
    let allowed = s.supervisor_syscalls_allowed.expect("measured");
    assert!(allowed < table, "{allowed} of {table}: {}", s.supervisor_note);
    assert!(s.supervisor_note.contains("measured from the live process's seccomp filter"), "{}", s.supervisor_note);
    assert!(s.profile.contains("libvirt"), "{}", s.profile);
}

/// The give-back measurement on the linux guest: one instance of a 16 MiB burst through the memory
/// experiment's code, labelled with free-page reporting (the guest kernel has the balloon and page
/// reporting, and the burst scenario attaches the device); the burst shows in QEMU's RSS (in part).
#[test]
fn a_burst_in_the_linux_guest_is_measured_with_free_page_reporting() {
    let Some(b) = backend("a_burst_in_the_linux_guest_is_measured_with_free_page_reporting") else { return };
    assert_eq!(b.give_back(), results::GiveBack::FreePageReporting, "the cached kernel has BALLOON_CONFIG");
    let mut plan = harness::experiments::memory::MemoryPlan::quick();
    (plan.instances, plan.burst_mib, plan.after, plan.timeout) = (1, 16, Duration::from_secs(3), TIMEOUT);
    let r = harness::experiments::memory::give_back(&b, &plan, harness::progress::Mode::Quiet).unwrap();
    assert_eq!((r.instances, r.burst_bytes, r.mechanism), (1, 16 << 20, results::GiveBack::FreePageReporting));
    // Only in part: the guest kernel may place the burst on pages it touched before (boot, initramfs).
    assert!(r.held_peak_bytes > r.held_before_bytes, "the burst shows in QEMU's RSS: {r:?}");
    assert!(r.after_s >= 3.0, "{r:?}");
}

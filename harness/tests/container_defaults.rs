#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! Docker/Podman defaults in our runtime's `default` and `userns` profiles (issue 13): device cgroup
//! rules, masked paths, Podman's seccomp profile; `privileged` keeps full access (the reference that
//! shows each check can see an exposure); crun and runc run the generated bundle.
//! Needs root (skips without it unless `VMCT_REQUIRE_PRIVILEGED=1`).
//!
//! Harmless: device nodes are created on the container's own (overlay) root and only opened, never
//! read or written (`: < node` opens read-only and closes, in a subshell).
use container::{ContainerSpec, Image, Output, Profile, Runtime};
use harness::backend::{collect_events, Backend, Event, InstanceSpec};
use harness::privileged::{gate, required, Need};
use std::path::Path;
use std::time::Duration;
use workloads::scenario::Scenario;

const T: Duration = Duration::from_secs(30);

/// A busybox-static image readable by the userns profile's mapped root, or None without busybox.
fn busybox_image(dir: &Path) -> Option<Image> {
    let bb = Path::new("/bin/busybox");
    if !bb.exists() {
        assert!(!required(), "busybox-static is needed (apt-get install busybox-static)");
        eprintln!("skipped: /bin/busybox missing (apt-get install busybox-static)");
        return None;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let owner = Some((container::USERNS_BASE, container::USERNS_BASE));
    let layer = container::image::build_layer(&dir.join("bb"), &[(bb, "/bin/busybox")], owner).unwrap();
    Some(Image::open(vec![layer], vec!["/bin/busybox".into()]).unwrap())
}

/// Root check, then a temp dir holding a busybox image (None: skipped).
fn setup(test: &str) -> Option<(tempfile::TempDir, Image)> {
    if !gate(test, &[Need::Root]) {
        return None;
    }
    let t = tempfile::Builder::new().prefix("vmct-test").tempdir_in("/var/tmp").unwrap();
    let img = busybox_image(t.path())?;
    Some((t, img))
}

/// Run `script` with `sh -c` in a container of `profile`; (exit status, output, devices.list read
/// from the host while it ran, if the container has a v1 devices cgroup).
fn run_sh(img: &Image, profile: Profile, tag: &str, script: &str) -> (Option<i32>, String, Option<String>) {
    let rt = Runtime::new(img.clone(), profile).unwrap();
    let dir = tempfile::Builder::new().prefix("vmct-test").tempdir_in("/var/tmp").unwrap();
    let log = dir.path().join("out.log");
    let id = format!("vmct-t{}-def-{tag}-{}", std::process::id(), profile.name());
    // The script waits for stdin to close, so the host can read the cgroup while it runs.
    let mut s = ContainerSpec::new(id, vec!["sh".into(), "-c".into(), format!("{script}; read _ || true")]);
    s.stdout = Output::File(log.clone());
    let mut c = rt.start(&s).unwrap();
    let list = c
        .cgroup_dirs()
        .and_then(|d| d.dirs.iter().find(|(k, _)| *k == container::cgroup::Controller::Devices))
        .and_then(|(_, p)| std::fs::read_to_string(p.join("devices.list")).ok());
    let exit = c.stop(T).unwrap();
    (exit.status, std::fs::read_to_string(&log).unwrap(), list)
}

/// What `devices.list` shows for Docker's default rules (the kernel lists rules in its own order).
fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn device_nodes_created_inside_cannot_be_opened_except_privileged() {
    let Some((_t, img)) = setup("device_nodes_created_inside_cannot_be_opened_except_privileged") else { return };
    // The case (tty0) and a harmless one to open for the privileged reference (kmsg, c 1:11).
    let script = "for n in 'tty0 4 0' 'kmsg 1 11'; do set -- $n; \
                  if mknod /$1 c $2 $3 2>/dev/null; then echo mknod-$1-ok; else echo mknod-$1-failed; fi; \
                  if [ $1 = kmsg ] || [ $PROFILE != privileged ]; then \
                  if ( : < /$1 ) 2>/dev/null; then echo open-$1-ok; else echo open-$1-failed; fi; fi; done; \
                  if ( : < /dev/null && : < /dev/zero && : < /dev/urandom ); then echo defaults-ok; fi";
    // After `devices.deny a`, devices.list shows only the exceptions allowed after it.
    let expected_list = sorted_lines(
        "c *:* m\nb *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 1:7 rwm\nc 1:8 rwm\nc 1:9 rwm\nc 5:0 rwm\nc 5:1 rwm\nc 5:2 rwm\nc 136:* rwm",
    );
    for profile in [Profile::Default, Profile::Userns, Profile::Privileged] {
        let script = format!("PROFILE={}; {script}", profile.name());
        let (status, out, list) = run_sh(&img, profile, "dev", &script);
        assert_eq!(status, Some(0), "{profile:?}: {out}");
        assert!(out.contains("defaults-ok"), "{profile:?}: /dev/null, zero, urandom must open: {out}");
        match profile {
            Profile::Default => {
                // mknod is allowed (as in Docker), opening the node is not (EPERM from the device cgroup).
                assert!(out.contains("mknod-tty0-ok") && out.contains("open-tty0-failed"), "{out}");
                assert!(out.contains("mknod-kmsg-ok") && out.contains("open-kmsg-failed"), "{out}");
            }
            Profile::Userns => {
                // No mknod in a user namespace; nothing opens either way.
                assert!(!out.contains("open-tty0-ok") && !out.contains("open-kmsg-ok"), "{out}");
            }
            Profile::Privileged => {
                assert!(out.contains("mknod-kmsg-ok") && out.contains("open-kmsg-ok"), "privileged reaches: {out}");
            }
        }
        match (profile, list) {
            (Profile::Privileged, l) => assert!(l.is_none(), "privileged gets no devices cgroup: {l:?}"),
            (_, Some(l)) => {
                assert_eq!(sorted_lines(&l), expected_list, "{profile:?} devices.list");
            }
            (_, None) => {
                // cgroup v2: the rules are a BPF program (checked by the open results above).
                assert!(std::fs::read_to_string("/proc/self/cgroup")
                    .unwrap()
                    .lines()
                    .all(|l| !l.contains(":devices:")));
            }
        }
    }
}

#[test]
fn masked_paths_read_empty_except_privileged() {
    let Some((_t, img)) = setup("masked_paths_read_empty_except_privileged") else { return };
    let script = "echo keys=$(cat /proc/keys | wc -c) timer_list=$(cat /proc/timer_list | wc -c) \
                  firmware=$(ls -A /sys/firmware | wc -l); \
                  if echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null; then echo sys-writable; fi";
    let host_timer = std::fs::read_to_string("/proc/timer_list").unwrap().len();
    assert!(host_timer > 0);
    for profile in [Profile::Default, Profile::Userns, Profile::Privileged] {
        let (status, out, _) = run_sh(&img, profile, "mask", script);
        assert_eq!(status, Some(0), "{profile:?}: {out}");
        if profile == Profile::Privileged {
            assert!(!out.contains("timer_list=0 "), "privileged sees the real timer_list: {out}");
        } else {
            assert!(out.contains("keys=0 timer_list=0 firmware=0"), "{profile:?}: {out}");
            assert!(!out.contains("sys-writable"), "{profile:?}: {out}");
        }
    }
}

#[test]
fn seccomp_profile_is_podmans_and_is_reported() {
    let Some((_t, img)) = setup("seccomp_profile_is_podmans_and_is_reported") else { return };
    let rt = Runtime::new(img.clone(), Profile::Default).unwrap();
    let info = rt.seccomp_info().unwrap();
    assert_eq!(info.path, Path::new(container::seccomp_profile::DEFAULT_PROFILE_PATH));
    let bytes = std::fs::read(&info.path).unwrap();
    assert_eq!(info.sha256, container::seccomp_profile::sha256_hex(&bytes));
    assert!(info.syscalls_allowed > 300, "{info:?}");
    assert!(Runtime::new(img.clone(), Profile::Privileged).unwrap().seccomp_info().is_none());
    // A missing profile file is a clear error naming the Debian package.
    let e = Runtime::with_seccomp_profile(img, Profile::Default, Path::new("/nonexistent/seccomp.json")).unwrap_err();
    assert!(e.to_string().contains(container::seccomp_profile::PROFILE_PACKAGE), "{e}");
    // The backend reports the same profile in run.json's backend info and its attack surface.
    let w = harness::artifacts::workload_path().unwrap();
    let b = harness::backend::container::by_name("container", &w).unwrap();
    let iso = b.info().isolation.unwrap();
    assert_eq!(iso.seccomp_sha256.as_deref(), Some(info.sha256.as_str()));
    assert!(iso.profile.starts_with("default: Docker/Podman defaults"), "{iso:?}");
    let s = b.attack_surface();
    assert_eq!(s.seccomp_profile.unwrap().sha256, info.sha256);
}

#[test]
fn crun_and_runc_run_the_generated_bundle() {
    if !gate("crun_and_runc_run_the_generated_bundle", &[Need::Root]) {
        return;
    }
    let w = harness::artifacts::workload_path().unwrap();
    for b in harness::backend::peers::backends(&w) {
        let name = b.name().to_string();
        let info = b.info();
        if !info.available {
            assert!(!required(), "{name}: {:?}", info.reason);
            eprintln!("skipped {name}: {:?}", info.reason);
            continue;
        }
        let iso = info.isolation.unwrap_or_else(|| panic!("{name}: no isolation profile in its info"));
        // runsc installs the bundle's seccomp profile only with --oci-seccomp (off by default).
        assert_eq!(iso.seccomp_sha256.is_some(), info.model == results::IsolationModel::Container, "{name}: {iso:?}");
        assert_eq!(iso.device_rules.len(), container::devices::DEFAULT_RULES.len(), "{name}");
        // io exercises files, fsync and more syscalls than ready under Podman's profile.
        for words in ["ready", "io --mib 1"] {
            let id = format!("vmct-t{}-gen-{name}-{}", std::process::id(), words.split(' ').next().unwrap());
            let mut i = b.launch(&InstanceSpec::new(id, Scenario::parse(words.split_whitespace()).unwrap())).unwrap();
            i.wait_ready(T).unwrap_or_else(|e| panic!("{name} {words}: {e}"));
            let ev = collect_events(i.as_mut(), T).unwrap();
            assert_eq!(ev.last(), Some(&Event::Done { status: 0 }), "{name} {words}: {ev:?}");
            assert_eq!(i.stop(T).unwrap().status, Some(0), "{name} {words}");
        }
    }
}

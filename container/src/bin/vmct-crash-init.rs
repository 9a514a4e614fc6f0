//! `vmct-crash-init`: /init of the crash experiment's linux guest (harness `experiments::crash`, issue 15
//! item 3). It runs inside a guest under QEMU TCG, never on the host: since its last step crashes the
//! kernel it runs on, it refuses to run unless it is PID 1 AND the kernel command line carries
//! [`GUEST_MARK`] (which only the harness's QEMU command line puts there; a container or pid namespace
//! on a host sees the host's command line).
//!
//! The guest stands in for a host: this init starts N instances of the workload's `tick` heartbeat
//! (`VMCT_HOG=tick`, one SHA-256 rate line every 250 ms), either as N containers of our runtime
//! (`VMCT_CRASH_MODE=containers`: crate `container`, default profile, cgroup v2 inside the guest) or as
//! N plain processes (`VMCT_CRASH_MODE=process`: one per VM on the VM side of the experiment), relays
//! each instance's lines to the console, and when it reads the line `crash` on the console crashes the
//! guest's kernel with sysrq-c (`c` into `/proc/sysrq-trigger`).
//!
//! Console protocol (one line each, prefix `@crash `):
//! ```text
//! @crash up containers 3          instances about to start (mode, count)
//! @crash hb 1 @vmct result tick.sha256 81234.5 blocks/s    instance 1's line
//! @crash failed 1 <reason>        instance 1 did not start
//! @crash error <reason>           setup failed (this init then waits: PID 1 must not exit)
//! @crash trigger                  sysrq-c is written next
//! ```
//! Setup: a tmpfs becomes the root (MS_MOVE + chroot, as switch_root does: the runtime's pivot_root
//! cannot leave the initramfs' rootfs), with proc, sysfs, devtmpfs, a tmpfs /tmp and cgroup2 mounted,
//! and the workload binary copied in and made the image's single layer.
use container::{ContainerSpec, Image, Profile, Runtime};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

/// Where the initramfs holds the workload (the base image's path, `harness::backend::container`).
const WORKLOAD: &str = "/bin/vmct-workload";
/// The kernel command line word that marks the crash experiment's guest.
const GUEST_MARK: &str = "vmct.crash_guest=1";
/// Longest the heartbeat runs (seconds; the workload caps its hogs at 120).
const TICK_SECS: &str = "120";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("@crash {line}\n").as_bytes());
    let _ = out.flush();
}

fn main() {
    if std::process::id() != 1 || !in_crash_guest() {
        eprintln!(
            "vmct-crash-init: runs only as /init of the crash experiment's guest (PID 1, `{GUEST_MARK}` on the \
             kernel command line): it crashes its kernel"
        );
        std::process::exit(2);
    }
    let mode = std::env::var("VMCT_CRASH_MODE").unwrap_or_default();
    let n: u32 = std::env::var("VMCT_CRASH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    if let Err(e) = run(&mode, n) {
        say(&format!("error {e}"));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn run(mode: &str, n: u32) -> Result<(), String> {
    switch_root(mode == "containers")?;
    say(&format!("up {mode} {n}"));
    let mut keep = Vec::new();
    match mode {
        "containers" => {
            let layer = container::image::build_layer(
                Path::new("/var/lib/vmct-crash/layer"),
                &[(Path::new("/vmct-workload"), WORKLOAD)],
                None,
            )
            .map_err(|e| e.to_string())?;
            let image = Image::open(vec![layer], vec![WORKLOAD.into()]).map_err(|e| e.to_string())?;
            let rt = Runtime::new(image, Profile::Default).map_err(|e| e.to_string())?;
            for i in 0..n {
                let mut spec = ContainerSpec::new(format!("vmct-crash-{i}"), vec!["ready".into()]);
                spec.env = vec![("VMCT_HOG".into(), "tick".into()), ("VMCT_HOG_SECS".into(), TICK_SECS.into())];
                match rt.start(&spec) {
                    Ok(mut c) => {
                        if let Some(fd) = c.take_stdout() {
                            relay(i, std::fs::File::from(fd));
                        }
                        keep.push(c);
                    }
                    Err(e) => say(&format!("failed {i} {e}")),
                }
            }
            wait_for_crash();
            drop(keep);
        }
        "process" => {
            let mut children = Vec::new();
            for i in 0..n {
                let child = std::process::Command::new("/vmct-workload")
                    .arg("ready")
                    .env("VMCT_HOG", "tick")
                    .env("VMCT_HOG_SECS", TICK_SECS)
                    .stdout(std::process::Stdio::piped())
                    .spawn();
                match child {
                    Ok(mut c) => {
                        if let Some(out) = c.stdout.take() {
                            relay(i, out);
                        }
                        children.push(c);
                    }
                    Err(e) => say(&format!("failed {i} {e}")),
                }
            }
            wait_for_crash();
        }
        other => return Err(format!("VMCT_CRASH_MODE={other:?}: valid modes: containers, process")),
    }
    Ok(())
}

/// Whether the kernel command line has [`GUEST_MARK`] (proc is mounted here first if it is not yet).
fn in_crash_guest() -> bool {
    let read = || std::fs::read_to_string("/proc/cmdline").ok();
    let line = read().or_else(|| {
        let _ = std::fs::create_dir_all("/proc");
        nix::mount::mount(Some("proc"), "/proc", Some("proc"), nix::mount::MsFlags::empty(), None::<&str>).ok()?;
        read()
    });
    line.is_some_and(|l| l.split_whitespace().any(|w| w == GUEST_MARK))
}

/// Relay instance `i`'s output lines to the console on a thread of their own.
fn relay(i: u32, from: impl std::io::Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            say(&format!("hb {i} {line}"));
        }
    });
}

/// Wait for the line `crash` on the console, then crash the kernel (sysrq-c). Returns if the console
/// closes without it.
fn wait_for_crash() {
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if line.trim() == "crash" {
            say("trigger");
            // Writing to /proc/sysrq-trigger works whatever kernel.sysrq says; `c` panics the kernel.
            if let Err(e) = std::fs::write("/proc/sysrq-trigger", "c") {
                say(&format!("error cannot write /proc/sysrq-trigger: {e}"));
            }
        }
    }
}

/// A tmpfs as the new root (the initramfs rootfs cannot be pivot_root'ed away from), with the workload
/// and the seccomp profile copied in, then the kernel file systems the runtime reads mounted (cgroup2 if `cgroups`).
fn switch_root(cgroups: bool) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let m = |src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>| {
        std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
        mount(Some(src), target, Some(fstype), flags, data).map_err(|e| format!("mount {fstype} on {target}: {e}"))
    };
    m("tmpfs", "/newroot", "tmpfs", MsFlags::empty(), Some("mode=755"))?;
    std::fs::copy(WORKLOAD, "/newroot/vmct-workload").map_err(|e| format!("copy {WORKLOAD}: {e}"))?;
    // The runtime's seccomp profile (Podman's), which the harness put in the initramfs.
    let profile = container::seccomp_profile::DEFAULT_PROFILE_PATH;
    if Path::new(profile).is_file() {
        let dest = format!("/newroot{profile}");
        std::fs::create_dir_all(Path::new(&dest).parent().expect("absolute path"))
            .and_then(|()| std::fs::copy(profile, &dest).map(drop))
            .map_err(|e| format!("copy {profile}: {e}"))?;
    }
    std::env::set_current_dir("/newroot").map_err(|e| format!("chdir /newroot: {e}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| format!("move root: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    m("proc", "/proc", "proc", MsFlags::empty(), None)?;
    m("sysfs", "/sys", "sysfs", MsFlags::empty(), None)?;
    m("devtmpfs", "/dev", "devtmpfs", MsFlags::empty(), None)?;
    m("tmpfs", "/tmp", "tmpfs", MsFlags::empty(), Some("mode=1777"))?;
    if cgroups {
        m("cgroup2", "/sys/fs/cgroup", "cgroup2", MsFlags::empty(), None)?;
    }
    std::fs::create_dir_all("/var/tmp").map_err(|e| format!("mkdir /var/tmp: {e}"))?;
    Ok(())
}

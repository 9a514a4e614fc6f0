#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! Signals to `vmct shell`, `vmct run` and `vmct compare`, sent the way a user's terminal or a process
//! manager sends them: every catchable signal whose default action ends the process restores the terminal,
//! removes the instance (processes, cgroups, state dirs, mounts) and exits 128 + signal. The commands run
//! on a real pty that is their controlling terminal, so Ctrl-C is typed, not sent with kill(2).
mod common;

use common::{leftovers, vmct};
use harness::privileged::{gate, required, Need};
use nix::sys::signal::{kill, Signal};
use nix::sys::termios::{tcgetattr, LocalFlags};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A pty whose slave is the controlling terminal of the spawned command (a new session, like a login).
struct Term {
    master: OwnedFd,
    slave: std::fs::File,
    seen: String,
}

impl Term {
    fn new() -> Term {
        let ws = nix::pty::Winsize { ws_row: 24, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        Term { master: pty.master, slave: std::fs::File::from(pty.slave), seen: String::new() }
    }

    /// Spawn `cmd` with the slave as stdin (and stdout/stderr unless already set) and controlling tty.
    fn spawn(&self, cmd: &mut Command, stdout_too: bool) -> Child {
        cmd.stdin(self.slave.try_clone().unwrap());
        if stdout_too {
            cmd.stdout(self.slave.try_clone().unwrap()).stderr(self.slave.try_clone().unwrap());
        }
        // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe and touch no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.env("TERM", "xterm").spawn().unwrap()
    }

    /// Read until `want` appears (panics after `secs` with what was read).
    fn read_until(&mut self, want: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.seen.contains(want) {
            assert!(Instant::now() < deadline, "timed out waiting for {want:?}; the terminal showed:\n{}", self.seen);
            self.drain(100);
        }
    }

    /// Read what is there within `ms`.
    fn drain(&mut self, ms: u16) {
        let mut buf = [0u8; 4096];
        let mut fds = [nix::poll::PollFd::new(self.master.as_fd(), nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)).unwrap_or(0) > 0 {
            if let Ok(n) = nix::unistd::read(&self.master, &mut buf) {
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    }

    fn type_in(&self, text: &str) {
        nix::unistd::write(&self.master, text.as_bytes()).unwrap();
    }

    /// Whether the terminal is in the user's normal mode (echo and line editing on).
    fn cooked(&self) -> bool {
        let t = tcgetattr(self.slave.as_fd()).unwrap();
        t.local_flags.contains(LocalFlags::ECHO | LocalFlags::ICANON)
    }

    /// Wait for `child` to end (draining the terminal so it never blocks); panics after `secs`.
    fn wait(&mut self, child: &mut Child, secs: u64, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.drain(50);
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: still running {secs} s after the signal; the terminal showed:\n{}", self.seen);
            }
            self.drain(20);
        }
    }
}

/// The signals a user or a process manager sends, with their names.
const SIGNALS: [Signal; 9] = [
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
];

fn busybox_ready(test: &str) -> bool {
    if !gate(test, &[Need::Root]) {
        return false;
    }
    if let Err(e) = harness::images::busybox::find() {
        assert!(!required(), "{test}: {e}");
        eprintln!("skip {test}: {e}");
        return false;
    }
    true
}

#[test]
fn shell_restores_the_terminal_and_removes_the_container_on_every_terminating_signal() {
    if !busybox_ready("shell_restores_the_terminal_and_removes_the_container_on_every_terminating_signal") {
        return;
    }
    for sig in SIGNALS {
        let mut term = Term::new();
        assert!(term.cooked());
        let mut child = term.spawn(Command::new(vmct()).arg("shell"), true);
        let pid = child.id();
        term.read_until("# ", 30);
        assert!(!term.cooked(), "vmct shell put the terminal in raw mode");
        kill(Pid::from_raw(pid as i32), sig).unwrap();
        let st = term.wait(&mut child, 15, &format!("vmct shell after {sig}"));
        assert_eq!(st.code(), Some(128 + sig as i32), "{sig}: {st:?}; the terminal showed:\n{}", term.seen);
        assert!(term.cooked(), "{sig}: the terminal was left in raw mode");
        assert!(term.seen.contains(&format!("interrupted by {sig}")), "{sig}: {}", term.seen);
        let left = leftovers(pid);
        assert!(left.is_empty(), "{sig}: vmct shell left {left:?}");
    }
}

#[test]
fn shell_whose_output_reader_went_away_restores_the_terminal_and_cleans_up() {
    if !busybox_ready("shell_whose_output_reader_went_away_restores_the_terminal_and_cleans_up") {
        return;
    }
    // The terminal is the input; the output goes to a pipe (an ssh session, `| tee`) whose reader ends.
    let mut term = Term::new();
    let mut cmd = Command::new(vmct());
    cmd.arg("shell").stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = term.spawn(&mut cmd, false);
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&got).contains("# ") {
        assert!(Instant::now() < deadline, "no prompt: {}", String::from_utf8_lossy(&got));
        let mut b = [0u8; 256];
        let n = std::io::Read::read(&mut out, &mut b).unwrap();
        assert!(n > 0, "output closed early");
        got.extend_from_slice(&b[..n]);
    }
    assert!(!term.cooked());
    drop(out);
    term.type_in("echo more output\r");
    let st = term.wait(&mut child, 15, "vmct shell after its output closed");
    assert_eq!((st.code(), st.signal()), (Some(141), None), "{st:?}");
    assert!(term.cooked(), "the terminal was left in raw mode");
    let left = leftovers(pid);
    assert!(left.is_empty(), "vmct shell left {left:?}");
}

/// `vmct run` of a long cpu workload on `backend`, stopped by `sig` (SIGINT typed as Ctrl-C): it ends
/// with 128 + signal long before the workload would have, saying so, with nothing left behind.
/// Returns the seconds from the signal to vmct's exit (reported, never asserted).
fn run_stopped_by(backend: &str, sig: Signal) -> f64 {
    let mut term = Term::new();
    let mut child = term.spawn(
        Command::new(vmct()).args(["run", "--backend", backend, "--workload", "cpu", "--iters", "300000000"]),
        true,
    );
    let pid = child.id();
    term.read_until("ready ", 30);
    // Let the workload get into its loop (a vCPU in guest code, a process computing).
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    if sig == Signal::SIGINT {
        term.type_in("\x03");
    } else {
        kill(Pid::from_raw(pid as i32), sig).unwrap();
    }
    let st = term.wait(&mut child, 15, &format!("vmct run --backend {backend} after {sig}"));
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(st.code(), Some(128 + sig as i32), "{backend} {sig}: {st:?}; the terminal showed:\n{}", term.seen);
    assert!(term.seen.contains(&format!("interrupted by {sig}")), "{backend} {sig}:\n{}", term.seen);
    assert!(!term.seen.contains("done "), "{backend} {sig}: the workload ran to the end:\n{}", term.seen);
    let left = leftovers(pid);
    assert!(left.is_empty(), "{backend} {sig}: vmct run left {left:?}");
    took
}

#[test]
fn run_stops_its_instance_at_once_on_a_signal_whatever_the_workload_is_doing() {
    if !gate("run_stops_its_instance_at_once_on_a_signal_whatever_the_workload_is_doing", &[Need::Root]) {
        return;
    }
    let mut backends = vec!["process", "container"];
    if gate("run_stops_its_instance_at_once_on_a_signal_whatever_the_workload_is_doing (microvm)", &[Need::Kvm]) {
        backends.push("microvm");
    }
    for backend in backends {
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
            let took = run_stopped_by(backend, sig);
            eprintln!("vmct run --backend {backend}: {sig} to exit {:.1} ms", took * 1e3);
        }
    }
}

#[test]
fn compare_stops_cleanly_on_sigquit_and_sigusr1() {
    if !gate("compare_stops_cleanly_on_sigquit_and_sigusr1", &[Need::Root]) {
        return;
    }
    for sig in [Signal::SIGQUIT, Signal::SIGUSR1] {
        let out = tempfile::tempdir().unwrap();
        let mut term = Term::new();
        let mut child = term.spawn(
            Command::new(vmct())
                .args(["compare", "--quick", "--backends", "process,container", "--experiments", "overhead", "--out"])
                .arg(out.path().join("run")),
            true,
        );
        let pid = child.id();
        // Wait until an instance of the run is up, then signal.
        let deadline = Instant::now() + Duration::from_secs(60);
        while common::owned_processes(pid).is_empty() {
            assert!(child.try_wait().unwrap().is_none(), "compare ended early:\n{}", term.seen);
            assert!(Instant::now() < deadline, "compare never started an instance:\n{}", term.seen);
            term.drain(5);
        }
        kill(Pid::from_raw(pid as i32), sig).unwrap();
        let st = term.wait(&mut child, 30, &format!("vmct compare after {sig}"));
        assert_eq!(st.code(), Some(128 + sig as i32), "{sig}: {st:?}:\n{}", term.seen);
        assert!(term.seen.contains(&format!("interrupted by {sig}")), "{sig}:\n{}", term.seen);
        let left = leftovers(pid);
        assert!(left.is_empty(), "{sig}: vmct compare left {left:?}");
    }
}

#[test]
fn run_whose_reader_went_away_stops_its_instance_quietly() {
    if !gate("run_whose_reader_went_away_stops_its_instance_quietly", &[Need::Root]) {
        return;
    }
    // `vmct run ... | head -3`: the probe workload keeps printing after the reader has gone.
    for backend in ["process", "container"] {
        let mut child = Command::new(vmct())
            .args(["run", "--backend", backend, "--workload", "probe"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut out = child.stdout.take().unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("ready ") {
            let mut b = [0u8; 256];
            let n = std::io::Read::read(&mut out, &mut b).unwrap();
            assert!(n > 0, "{backend}: output closed early");
            got.extend_from_slice(&b[..n]);
        }
        drop(out);
        let st = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!((st.code(), st.signal()), (Some(141), None), "{backend}: {st:?} {err}");
        assert!(err.is_empty(), "{backend}: a closed reader ends vmct quietly: {err}");
        let left = leftovers(pid);
        assert!(left.is_empty(), "{backend}: vmct run left {left:?}");
    }
}

/// SIGTERM to `vmct kernel build` ends the step it runs (make and its compilers, here a stand-in `tar`
/// that would sleep a minute) and vmct exits 128 + 15 at once; the build once went on to the end.
#[test]
fn sigterm_stops_a_kernel_build_and_the_step_it_runs() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let pidfile = d.path().join("step.pid");
    for tool in ["make", "gcc", "flex", "bison", "bc", "tar"] {
        let body = if tool == "tar" {
            format!("#!/bin/sh\necho $$ > {}\nexec sleep 60\n", pidfile.display())
        } else {
            "#!/bin/sh\nexit 0\n".to_string()
        };
        let p = bin.join(tool);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let tarball = d.path().join("linux-source-vmct-test.tar.xz");
    std::fs::write(&tarball, b"").unwrap();
    if !std::path::Path::new("/usr/include/gelf.h").is_file() {
        assert!(!required(), "libelf-dev (gelf.h) is needed by `vmct kernel build`; .ci/run installs it");
        eprintln!("skipped: /usr/include/gelf.h missing (apt-get install -y libelf-dev)");
        return;
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new(vmct())
        .args(["kernel", "build", "--force", "--tarball"])
        .arg(&tarball)
        .env("PATH", path)
        .env("XDG_CACHE_HOME", d.path().join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !pidfile.exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "the build never reached its extract step");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let step: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t1.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = kill(Pid::from_raw(step), Signal::SIGKILL);
            panic!("vmct kernel build went on after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(128 + 15), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    // The step's process is gone (reaped by its parent, vmct, or no longer running).
    let alive = std::fs::read_to_string(format!("/proc/{step}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "the build step {step} outlived vmct");
}

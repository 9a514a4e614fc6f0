#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! `vmct shell` driven through a real pty, the way a person types into it, and `vmct build`.
use harness::privileged::{gate, required, Need};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn vmct() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("vmct")
}

/// Gate on root, and on busybox-static (installed by scripts/setup-host; required in CI).
fn ready(test: &str) -> bool {
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

/// Read from the pty master until `want` appears (or panic after `secs` with what was read).
fn read_until(master: &OwnedFd, seen: &mut String, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {want:?}; the terminal showed:\n{seen}");
        let mut fds = [nix::poll::PollFd::new(master.as_fd(), nix::poll::PollFlags::POLLIN)];
        let ms = left.as_millis().min(500) as u16;
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)).unwrap_or(0) == 0 {
            continue;
        }
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(_) => panic!("the terminal closed before {want:?}; it showed:\n{seen}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

fn type_in(master: &OwnedFd, text: &str) {
    nix::unistd::write(master, text.as_bytes()).unwrap();
}

#[test]
fn shell_in_a_terminal_runs_commands_takes_ctrl_c_and_window_size_and_returns_the_exit_status() {
    if !ready("shell_in_a_terminal_runs_commands_takes_ctrl_c_and_window_size_and_returns_the_exit_status") {
        return;
    }
    let pty = nix::pty::openpty(Some(&nix::pty::Winsize { ws_row: 33, ws_col: 111, ws_xpixel: 0, ws_ypixel: 0 }), None)
        .unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = Command::new(vmct())
        .arg("shell")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .env("TERM", "xterm")
        .spawn()
        .unwrap();
    let master = pty.master;
    let mut seen = String::new();
    read_until(&master, &mut seen, "# ", 30);
    // A command and its output; the window size of the user's terminal reached the container's pty.
    type_in(&master, "stty size; tty; echo out-$((6*7)); hostname\r");
    read_until(&master, &mut seen, "out-42", 15);
    read_until(&master, &mut seen, "vmct-shell-", 5);
    assert!(seen.contains("33 111"), "window size not passed on:\n{seen}");
    // The terminal lives in the container's own devpts instance.
    assert!(seen.contains("/dev/pts/0"), "`tty` inside does not name the container's pty:\n{seen}");
    // Ctrl-C reaches the container's foreground job: `sleep 600` ends and the shell prompts again.
    type_in(&master, "sleep 600\r");
    read_until(&master, &mut seen, "sleep 600", 5);
    std::thread::sleep(Duration::from_millis(500));
    type_in(&master, "\x03");
    type_in(&master, "echo after-$((1+1))\r");
    read_until(&master, &mut seen, "after-2", 15);
    // The exit status of the shell is vmct's.
    type_in(&master, "exit 7\r");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        // Keep draining the terminal so vmct never blocks on a full pty.
        let mut buf = [0u8; 4096];
        let mut fds = [nix::poll::PollFd::new(master.as_fd(), nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) > 0 {
            let _ = nix::unistd::read(&master, &mut buf);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "vmct shell did not end after `exit 7`:\n{seen}");
    };
    assert_eq!(status.code(), Some(7), "{seen}");
    assert!(master.as_raw_fd() > 2);
}

#[test]
fn shell_with_piped_input_runs_it_and_exits_with_its_status() {
    if !ready("shell_with_piped_input_runs_it_and_exits_with_its_status") {
        return;
    }
    let mut child = Command::new(vmct())
        .args(["shell", "--backend", "container-userns"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"echo piped-$((2+3)); id -u; exit 4\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("piped-5"), "{text}");
    assert_eq!(out.status.code(), Some(4), "{text}");
    // A command instead of the shell; a bad one is a clear usage error.
    let out =
        Command::new(vmct()).args(["shell", "--", "/bin/sh", "-c", "exit 9"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(9));
    let out = Command::new(vmct()).args(["shell", "--", "no-such-tool"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'no-such-tool' is not in /bin or /usr/bin"));
}

#[test]
fn build_an_image_from_a_spec_cache_it_and_run_it() {
    if !ready("build_an_image_from_a_spec_cache_it_and_run_it") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let name = format!("vmct-test-build-{}", std::process::id());
    std::fs::create_dir(t.path().join("site")).unwrap();
    std::fs::write(t.path().join("site/index.html"), "hello from the spec\n").unwrap();
    let spec = t.path().join("image.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"{name}\"\nbusybox = true\nentry = [\"/bin/sh\", \"-c\", \"cat /srv/site/index.html; exit 5\"]\n\
             [[add]]\nsrc = \"site\"\ndest = \"/srv/site\"\n"
        ),
    )
    .unwrap();
    let build = || Command::new(vmct()).arg("build").arg(&spec).output().unwrap();
    let first = build();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = build();
    let (a, b) = (String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&second.stdout));
    assert!(b.starts_with("cached image"), "unchanged inputs reuse the layer: {a} / {b}");
    // The entry point runs by default; the workload of the base image is still there.
    let out = Command::new(vmct()).args(["shell", "--image", &name]).stdin(Stdio::null()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from the spec"));
    assert_eq!(out.status.code(), Some(5));
    let out = Command::new(vmct())
        .args(["run", "--backend", "container", "--image", &name, "--workload", "ready"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One changed byte builds a new layer.
    std::fs::write(t.path().join("site/index.html"), "hello from the spec!\n").unwrap();
    assert!(String::from_utf8_lossy(&build().stdout).starts_with("built image"));
    let rm = Command::new(vmct()).args(["images", "--rm", &name]).output().unwrap();
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    assert!(harness::images::load(&name).is_err());
    let bad = Command::new(vmct()).args(["build", "/nonexistent/spec.toml"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/spec.toml"));
}

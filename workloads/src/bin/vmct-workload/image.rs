//! /init of a linux guest that runs an image (`vmct.image=1` on the kernel command line, see
//! [`workloads::image_run`]), the way Firecracker and Kata guests get a container image:
//!
//! 1. bring up loopback (the image's service and the `tcp:PORT` rule use 127.0.0.1);
//! 2. mount the root disk `/dev/vda` (the image's layers flattened into ext4 by the host) read-only
//!    on [`LOWER`], a tmpfs on [`RW`], and overlayfs of the two on [`ROOT`] (changes stay in guest RAM);
//! 3. mount /proc, /sys, /dev inside it and chroot there;
//! 4. no `vmct.ready` (the host asked for a vmct scenario: `probe`, the memory experiment's `read`):
//!    run it here, beside the image's own files; otherwise
//!    start the image's argv with its environment, working directory and user, stdin from /dev/null,
//!    stdout and stderr forwarded line by line to the console;
//! 5. apply the readiness rule (a connect to 127.0.0.1:PORT polled every [`TCP_POLL`], a regex over
//!    the forwarded lines, or the process's exit) and report `ready`; a `stop` line on the console
//!    sends SIGTERM (SIGKILL after [`STOP_GRACE`]); the exit status is reported as `done` (128 + the
//!    signal for a killed process) and the VM ends.
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;
use workloads::image_run::{self, ReadyRule};
use workloads::protocol::Message;

/// The root disk, read-only.
const LOWER: &str = "/vmct/lower";
/// The tmpfs holding the overlay's upper and work dirs.
const RW: &str = "/vmct/rw";
/// The image's root as the process sees it.
const ROOT: &str = "/vmct/root";
/// Interval between two connect attempts of the `tcp:PORT` rule.
const TCP_POLL: Duration = Duration::from_millis(5);
/// Time between SIGTERM and SIGKILL when the host asks to stop.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The run as the kernel command line gives it.
#[derive(Debug, Default)]
struct Params {
    argv: Vec<String>,
    env: Vec<String>,
    cwd: String,
    user: String,
    ready: String,
}

/// Whether the kernel command line asks for an image.
pub fn requested(cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == format!("{}=1", image_run::PARAM_IMAGE))
}

fn decoded(v: &str) -> Result<String, String> {
    let mut out = Vec::new();
    image_run::decode(v, |b| out.push(b)).map_err(|e| format!("{e} in {v:?}"))?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn params(cmdline: &str) -> Result<Params, String> {
    let mut p = Params { cwd: "/".into(), ..Default::default() };
    let list = |v: &str| v.split(',').filter(|s| !s.is_empty()).map(decoded).collect::<Result<Vec<_>, _>>();
    for w in cmdline.split_whitespace() {
        let Some((k, v)) = w.split_once('=') else { continue };
        match k {
            image_run::PARAM_ARGV => p.argv = list(v)?,
            image_run::PARAM_ENV => p.env = list(v)?,
            image_run::PARAM_CWD => p.cwd = decoded(v)?,
            image_run::PARAM_USER => p.user = decoded(v)?,
            image_run::PARAM_READY => p.ready = decoded(v)?,
            _ => {}
        }
    }
    Ok(p)
}

fn emit(m: &Message<'_>) {
    let mut s = String::new();
    let _ = m.encode(&mut s);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

fn failed(reason: &str) -> u8 {
    // Also as plain text: a host waiting for `ready` shows the console's last lines.
    eprintln!("vmct-workload: init: image: {reason}");
    emit(&Message::Failed { what: "image", reason });
    emit(&Message::Done { status: 1 });
    1
}

/// Run the image (or the probes inside it) and return the status to report.
pub fn run(args: Vec<String>) -> u8 {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let p = match params(&cmdline) {
        Ok(p) => p,
        Err(e) => return failed(&format!("image parameters on the kernel command line: {e}")),
    };
    if let Err(e) = loopback_up() {
        eprintln!("vmct-workload: init: loopback: {e}");
    }
    if let Err(e) = enter_root() {
        return failed(&e);
    }
    // No readiness rule: the host asked for a vmct scenario (the probes, the memory experiment's
    // `read`), run here by this binary in the image's root, speaking the protocol itself.
    if p.ready.is_empty() {
        return crate::run(args);
    }
    match supervise(&p) {
        Ok(status) => status,
        Err(e) => failed(&e),
    }
}

fn enter_root() -> Result<(), String> {
    let step = |what: &str, r: std::io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
    for d in [LOWER, RW, ROOT] {
        step(&format!("mkdir {d}"), std::fs::create_dir_all(d))?;
    }
    step("mount /dev/vda (ext4, read-only)", mount("/dev/vda", LOWER, "ext4", libc::MS_RDONLY, None))?;
    step("mount tmpfs", mount("tmpfs", RW, "tmpfs", 0, Some("mode=0755")))?;
    for d in ["upper", "work"] {
        step("mkdir", std::fs::create_dir_all(format!("{RW}/{d}")))?;
    }
    let data = format!("lowerdir={LOWER},upperdir={RW}/upper,workdir={RW}/work");
    step("mount overlay", mount("overlay", ROOT, "overlay", 0, Some(&data)))?;
    for (src, dir, fs) in [("proc", "proc", "proc"), ("sysfs", "sys", "sysfs"), ("devtmpfs", "dev", "devtmpfs")] {
        let target = format!("{ROOT}/{dir}");
        step(&format!("mkdir {target}"), std::fs::create_dir_all(&target))?;
        step(&format!("mount {fs} on {target}"), mount(src, &target, fs, 0, None))?;
    }
    let tmp = format!("{ROOT}/tmp");
    if !std::path::Path::new(&tmp).exists() {
        step("mkdir /tmp", std::fs::create_dir_all(&tmp))?;
    }
    step("chroot", std::os::unix::fs::chroot(ROOT))?;
    step("chdir /", std::env::set_current_dir("/"))
}

fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: Option<&str>) -> std::io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput));
    let (src, target, fstype) = (c(src)?, c(target)?, c(fstype)?);
    let data = data.map(c).transpose()?;
    let dp = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is a NUL-terminated string living across the call, or null for no data.
    let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, dp) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `ip link set lo up`, by ioctl (the guest has no tools of its own).
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket creation; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: fd is a socket and ifr a valid ifreq naming "lo"; the kernel writes only the flags.
    let mut r = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) };
    if r == 0 {
        let up = libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).expect("IFF_UP|IFF_RUNNING is 0x41");
        // SAFETY: the flags member of the union is the one SIOCGIFFLAGS filled.
        unsafe { ifr.ifr_ifru.ifru_flags |= up };
        // SAFETY: as above; SIOCSIFFLAGS reads the ifreq.
        r = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) };
    }
    let e = std::io::Error::last_os_error();
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    if r == 0 {
        Ok(())
    } else {
        Err(e)
    }
}

enum Ev {
    Ready,
    Stop,
    Exited(u8),
}

fn supervise(p: &Params) -> Result<u8, String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let rule = ReadyRule::parse(&p.ready).map_err(|e| e.to_string())?;
    let regex = match rule {
        ReadyRule::Log(re) => Some(regex::Regex::new(re).map_err(|e| format!("log:{re}: {e}"))?),
        _ => None,
    };
    let (uid, gid) = image_run::resolve_user(
        &p.user,
        &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        &std::fs::read_to_string("/etc/group").unwrap_or_default(),
    )
    .map_err(|e| format!("user '{}': {e}", p.user))?;
    let argv0 = p.argv.first().ok_or("the image has no command")?;
    let (r, w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let w2 = w.try_clone().map_err(|e| format!("pipe: {e}"))?;
    let mut cmd = std::process::Command::new(argv0);
    cmd.args(&p.argv[1..]).env_clear().current_dir(&p.cwd).uid(uid).gid(gid);
    cmd.envs(p.env.iter().filter_map(|kv| kv.split_once('=')));
    cmd.stdin(std::process::Stdio::null()).stdout(w).stderr(w2);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {argv0:?} (cwd {}): {e}", p.cwd))?;
    drop(cmd);
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<Ev>();
    // Forward the process's output to the console; match the log rule.
    let t = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            println!("{line}");
            if regex.as_ref().is_some_and(|re| re.is_match(&line)) {
                let _ = t.send(Ev::Ready);
            }
        }
    });
    if let ReadyRule::Tcp(port) = rule {
        let t = tx.clone();
        std::thread::spawn(move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                std::thread::sleep(TCP_POLL);
            }
            let _ = t.send(Ev::Ready);
        });
    }
    // The host's `stop` line (or the console closing) asks the process to end.
    let t = tx.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.trim() == "stop" => {
                    let _ = t.send(Ev::Stop);
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    std::thread::spawn(move || {
        let status = match child.wait() {
            Ok(st) => st.code().or(st.signal().map(|s| 128 + s)).unwrap_or(1),
            Err(_) => 1,
        };
        let _ = tx.send(Ev::Exited(u8::try_from(status).unwrap_or(1)));
    });
    let mut ready = false;
    let mut kill_at: Option<std::time::Instant> = None;
    loop {
        let ev = match kill_at {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(std::time::Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match ev {
            Ok(Ev::Ready) if !ready && rule.holds_alive() => {
                ready = true;
                emit(&Message::Ready);
            }
            Ok(Ev::Ready) => {}
            Ok(Ev::Stop) => {
                signal(pid, libc::SIGTERM);
                kill_at = Some(std::time::Instant::now() + STOP_GRACE);
            }
            Ok(Ev::Exited(status)) => {
                if !rule.holds_alive() {
                    emit(&Message::Ready);
                }
                // Let the forwarder print what the process wrote last.
                std::thread::sleep(Duration::from_millis(20));
                emit(&Message::Done { status: status.into() });
                return Ok(status);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                signal(pid, libc::SIGKILL);
                kill_at = None;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(1),
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill takes plain integers; pid is our own child.
    unsafe { libc::kill(pid, sig) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_run_from_the_kernel_command_line() {
        let c = "console=ttyS0 vmct.workload=ready vmct.image=1 vmct.argv=busybox,httpd,-f,-p,8080 \
                 vmct.env=PATH=/bin%3A/usr/bin,A=two%20words vmct.cwd=/srv vmct.user=www vmct.ready=tcp:8080";
        assert!(requested(c) && !requested("vmct.image=0"));
        let p = params(c).unwrap();
        assert_eq!(p.argv, ["busybox", "httpd", "-f", "-p", "8080"]);
        assert_eq!(p.env, ["PATH=/bin:/usr/bin", "A=two words"]);
        assert_eq!((p.cwd.as_str(), p.user.as_str(), p.ready.as_str()), ("/srv", "www", "tcp:8080"));
    }
}

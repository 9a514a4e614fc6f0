//! `vmct shell`: a container with a real terminal, like `docker run -it`.
//!
//! The container's init opens a pty in the container's own devpts (its peer becomes stdin, stdout,
//! stderr and the controlling terminal) and passes the master back over a socket, like runc's console
//! socket (see [`container::ContainerSpec::terminal`]); this module relays bytes between the user's
//! terminal and that master. With a terminal on our stdin it is switched to raw mode, so Ctrl-C,
//! Ctrl-Z and arrow keys travel as bytes to the container's line discipline, which signals the
//! container's foreground process group; the window size is copied on start and on every SIGWINCH.
//! Without a terminal (a pipe) input is forwarded as is and end of input becomes Ctrl-D.
use container::{ContainerSpec, Exit, Image, Limits, Profile, Runtime};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Errors of a shell session.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The image could not be assembled.
    #[error(transparent)]
    Image(#[from] container::ImageError),
    /// The runtime could not start the container.
    #[error(transparent)]
    Runtime(#[from] container::RuntimeError),
    /// The terminal relay failed.
    #[error("shell: terminal relay: {0}")]
    Relay(#[from] std::io::Error),
    /// Stopped by a signal to vmct (any of [`crate::interrupt::SIGNALS`]; Ctrl-C only when stdin is not
    /// a terminal, since in raw mode it is a byte for the container).
    #[error("shell: the container was stopped and removed")]
    Interrupted(#[source] crate::interrupt::Interrupted),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ShellRequest {
    /// Container id (hostname, cgroup, state dir).
    pub id: String,
    /// Layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// Command line; `command[0]` is an absolute path inside the image.
    pub command: Vec<String>,
    /// The image's environment (`KEY=value`), after the defaults.
    pub env: Vec<String>,
    /// The image's working directory (default `/`).
    pub cwd: Option<String>,
    /// Runtime profile.
    pub profile: Profile,
    /// Resource limits.
    pub limits: Limits,
}

static WINCH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_sig: libc::c_int) {
    WINCH.store(true, Ordering::SeqCst);
}

/// Start the container, relay the terminal until it ends, and return its exit code (128 + signal
/// when killed, like a shell reports it).
pub fn run(req: &ShellRequest) -> Result<i32, ShellError> {
    let mut image = Image::open(req.layers.clone(), req.command.clone())?;
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
    image.env.extend([("TERM".into(), term), ("HOME".into(), "/".into()), ("PS1".into(), r"\h:\w\$ ".into())]);
    for kv in &req.env {
        if let Some((k, v)) = kv.split_once('=') {
            image.env.retain(|(e, _)| e != k);
            image.env.push((k.into(), v.into()));
        }
    }
    if let Some(cwd) = &req.cwd {
        image.cwd = cwd.clone();
    }
    let rt = Runtime::new(image, req.profile)?;
    let mut spec = ContainerSpec::new(req.id.clone(), Vec::new());
    spec.terminal = true;
    spec.limits = req.limits;
    let mut c = rt.start(&spec)?;
    let master = c.take_terminal().expect("terminal requested");
    let stdin = std::io::stdin();
    let tty = nix::unistd::isatty(stdin.as_fd()).unwrap_or(false);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t) };
    let relayed = {
        let _raw = if tty { RawMode::enter() } else { None };
        if tty {
            copy_winsize(stdin.as_fd(), master.as_fd());
        } else {
            // No terminal of ours to copy from: the classic 24x80, so full-screen tools still work.
            let ws = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
            // SAFETY: TIOCSWINSZ reads a winsize from `ws`.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        relay(&master, tty)
    };
    // SAFETY: restoring the default disposition has no preconditions.
    unsafe { libc::signal(libc::SIGWINCH, libc::SIG_DFL) };
    // After the pty closed the container has ended or is ending; when a signal asked to stop, do not wait.
    let grace = if crate::interrupt::requested() { Duration::ZERO } else { crate::backend::REAP_GRACE };
    let exit: Exit = c.stop(grace)?;
    relayed?;
    Ok(exit.status.unwrap_or_else(|| 128 + exit.signal.unwrap_or(0)))
}

/// The user's terminal in raw mode until dropped (also on panic and error paths).
struct RawMode {
    stdin: std::io::Stdin,
    saved: Termios,
    /// Lets a second signal, which ends vmct at once, still put the terminal back.
    _guard: crate::interrupt::TerminalGuard,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let guard = crate::interrupt::TerminalGuard::new(&libc::termios::from(saved.clone()));
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { stdin, saved, _guard: guard })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(self.stdin.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Copy the window size of `from` to the pty `to` (the kernel then sends SIGWINCH to its foreground group).
fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a winsize into `ws`, which is valid and writable.
    if unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0 {
        // SAFETY: TIOCSWINSZ reads a winsize from `ws`.
        unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

/// Relay stdin -> master and master -> stdout until the container side of the pty is closed.
fn relay(master: &OwnedFd, tty: bool) -> Result<(), ShellError> {
    const CTRL_D: u8 = 4;
    set_nonblocking(master)?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut to_master: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    let mut buf = [0u8; 16 * 1024];
    loop {
        if crate::interrupt::requested() {
            return Err(ShellError::Interrupted(crate::interrupt::Interrupted));
        }
        if WINCH.swap(false, Ordering::SeqCst) && tty {
            copy_winsize(stdin.as_fd(), master.as_fd());
        }
        let mut master_events = PollFlags::POLLIN;
        if !to_master.is_empty() {
            master_events |= PollFlags::POLLOUT;
        }
        let read_stdin = stdin_open && to_master.is_empty();
        let mut fds = vec![PollFd::new(master.as_fd(), master_events)];
        if read_stdin {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
        let master_rev = fds[0].revents().unwrap_or(PollFlags::empty());
        let stdin_rev = fds.get(1).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
        drop(fds);
        if master_rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(master, &mut buf) {
                // EIO: every slave fd is closed, i.e. the container has ended.
                Ok(0) | Err(nix::errno::Errno::EIO) => break,
                Ok(n) => {
                    stdout.write_all(&buf[..n])?;
                    stdout.flush()?;
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(std::io::Error::from(e).into()),
            }
        }
        if master_rev.contains(PollFlags::POLLOUT) && !to_master.is_empty() {
            match nix::unistd::write(master, &to_master) {
                Ok(n) => drop(to_master.drain(..n)),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EIO) => break,
                Err(e) => return Err(std::io::Error::from(e).into()),
            }
        }
        if stdin_rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    if !tty {
                        // End of piped input: end of file for the program reading the terminal.
                        to_master.push(CTRL_D);
                    }
                }
                Ok(n) => to_master.extend_from_slice(&buf[..n]),
            }
        }
    }
    Ok(())
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    Ok(())
}

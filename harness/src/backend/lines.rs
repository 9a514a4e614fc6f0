//! Non-blocking protocol line reader over a pipe fd, with poll(2) timeouts and host arrival stamps.
//!
//! No thread per instance: a density sweep keeps 1000+ instances alive, and each only costs its fd.
use crate::clock;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;
use workloads::protocol::Message;

use super::Event;

/// What reading produced.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A protocol message, stamped with host CLOCK_MONOTONIC ns at arrival.
    Event(u64, Event),
    /// A non-protocol line (plain log output).
    Text(String),
    /// The writer closed the pipe.
    Eof,
    /// Nothing within the timeout.
    Timeout,
    /// A signal asked vmct to stop ([`crate::interrupt`]) while waiting.
    Interrupted,
}

/// Reads lines from a pipe.
pub struct LineReader {
    fd: OwnedFd,
    buf: Vec<u8>,
    eof: bool,
    /// Last non-protocol lines seen (for error messages), at most 20.
    pub tail: Vec<String>,
    /// Raw copy of everything read (the instance's log file), if any.
    tee: Option<std::fs::File>,
}

impl LineReader {
    /// Wrap a pipe read end (made non-blocking here).
    pub fn new(fd: OwnedFd) -> io::Result<LineReader> {
        // SAFETY: fcntl on an fd we own; F_GETFL/F_SETFL do not touch memory.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LineReader { fd, buf: Vec::with_capacity(512), eof: false, tail: Vec::new(), tee: None })
    }

    /// Also append every byte read to `file` (the instance's log).
    pub fn tee(mut self, file: std::fs::File) -> Self {
        self.tee = Some(file);
        self
    }

    /// The next line, waiting at most `timeout`. A wait checks [`crate::interrupt::requested`] at least
    /// every [`crate::interrupt::POLL_SLICE`] and returns [`Line::Interrupted`] once a stop is requested.
    pub fn next(&mut self, timeout: Duration) -> io::Result<Line> {
        let deadline = clock::deadline_ns(timeout);
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let now = clock::mono_ns();
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(match Message::decode(&text) {
                    Ok(m) => Line::Event(now, Event::from(&m)),
                    Err(_) => {
                        let t = text.trim_end().to_string();
                        if self.tail.len() == 20 {
                            self.tail.remove(0);
                        }
                        self.tail.push(t.clone());
                        Line::Text(t)
                    }
                });
            }
            if self.eof {
                if !self.buf.is_empty() {
                    self.buf.push(b'\n');
                    continue;
                }
                return Ok(Line::Eof);
            }
            let now = clock::mono_ns();
            if now >= deadline && !self.readable(0)? {
                return Ok(Line::Timeout);
            }
            if crate::interrupt::requested() {
                return Ok(Line::Interrupted);
            }
            let slice_ms =
                u64::try_from(crate::interrupt::POLL_SLICE.as_millis()).expect("the poll slice is milliseconds");
            let wait_ms =
                i32::try_from(((deadline.saturating_sub(now)) / 1_000_000 + 1).min(slice_ms)).unwrap_or(i32::MAX);
            if !self.readable(wait_ms)? {
                if clock::mono_ns() >= deadline {
                    return Ok(Line::Timeout);
                }
                continue;
            }
            self.fill()?;
        }
    }

    fn readable(&self, ms: i32) -> io::Result<bool> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        loop {
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(r > 0);
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: reading into a stack buffer of the given length from an fd we own.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                self.buf.extend_from_slice(&chunk[..n as usize]);
                if let Some(f) = &mut self.tee {
                    use std::io::Write;
                    let _ = f.write_all(&chunk[..n as usize]);
                }
                if (n as usize) < chunk.len() {
                    return Ok(());
                }
            } else if n == 0 {
                self.eof = true;
                return Ok(());
            } else {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pipe() -> (OwnedFd, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 returned two fresh fds that we now own.
        unsafe { (std::os::fd::FromRawFd::from_raw_fd(fds[0]), std::os::fd::FromRawFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn reads_messages_text_timeout_and_eof() {
        let (r, mut w) = pipe();
        let mut lr = LineReader::new(r).unwrap();
        assert_eq!(lr.next(Duration::from_millis(10)).unwrap(), Line::Timeout);
        w.write_all(b"hello\n@vmct ready\n@vmct result a 1.5 s\n@vmct do").unwrap();
        assert_eq!(lr.next(Duration::ZERO).unwrap(), Line::Text("hello".into()));
        assert!(matches!(lr.next(Duration::ZERO).unwrap(), Line::Event(_, Event::Ready)));
        match lr.next(Duration::ZERO).unwrap() {
            Line::Event(_, Event::Result { name, value, unit }) => {
                assert_eq!((name.as_str(), value, unit.as_str()), ("a", 1.5, "s"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lr.next(Duration::from_millis(5)).unwrap(), Line::Timeout);
        w.write_all(b"ne 0\n").unwrap();
        drop(w);
        assert!(matches!(lr.next(Duration::from_secs(1)).unwrap(), Line::Event(_, Event::Done { status: 0 })));
        assert_eq!(lr.next(Duration::from_secs(1)).unwrap(), Line::Eof);
        assert_eq!(lr.tail, vec!["hello".to_string()]);
    }
}

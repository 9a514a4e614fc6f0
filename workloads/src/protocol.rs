//! The workload message protocol: one text line per message, prefixed with [`PREFIX`].
//!
//! ```text
//! @vmct ready
//! @vmct result cpu.sha256 1234567.5 blocks/s
//! @vmct result cpu.iter_p99 0.000512 s
//! @vmct probe fs.host_canary blocked ENOENT reading /tmp/vmct-canary
//! @vmct unsupported syscall bare guest has no system calls
//! @vmct failed io ENOSPC (No space left on device) writing MiB 913 of 1048576
//! @vmct phase vm_create 123456789
//! @vmct done 0
//! ```
//! Linux platforms print the lines on stdout; the bare guest writes them into a mailbox in guest
//! memory and rings a doorbell port, and the VMM prints them on its stdout. The host timestamps every
//! line on arrival (CLOCK_MONOTONIC); guest clocks are never compared with host clocks. `phase` lines are
//! written only by host-side components (the VMM process), whose timestamps are host CLOCK_MONOTONIC ns.
use core::fmt;

/// Every protocol line starts with this prefix; other lines on the same stream are plain log output.
pub const PREFIX: &str = "@vmct ";

/// The `cpu` scenario runs its SHA-256 blocks in this many iterations of (nearly) equal size (at most
/// one block apart; fewer iterations when it has fewer blocks) and times each on the instance's own
/// monotonic clock, so a victim's tail latency is seen, not only its mean rate.
pub const CPU_ITERATIONS: usize = 200;

/// `cpu` result: iterations timed (unit `count`).
pub const CPU_ITERATIONS_TIMED: &str = "cpu.iterations";

/// `cpu` result: median iteration latency (nearest rank, unit `s`).
pub const CPU_ITER_P50: &str = "cpu.iter_p50";

/// `cpu` result: 99th percentile iteration latency (nearest rank, unit `s`).
pub const CPU_ITER_P99: &str = "cpu.iter_p99";

/// The environment variable naming the directory the `read` scenario reads its file set from
/// (the process baseline reads the host's copy); unset: [`READ_DIR_IN_IMAGE`].
pub const READ_DIR_ENV: &str = "VMCT_READ_DIR";

/// Where the file set sits in the image the memory experiment builds for `read` (its own layer).
pub const READ_DIR_IN_IMAGE: &str = "/.vmct-fileset";

/// `read` result: bytes read from the file set (unit `bytes`).
pub const READ_BYTES: &str = "read.bytes";

/// Outcome of one isolation probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The isolation boundary stopped the probe.
    Blocked,
    /// The probe reached host or neighbour state: an isolation failure.
    Reached,
    /// The probe could not decide (for example an unexpected error).
    Error,
}

impl ProbeOutcome {
    /// The wire name of the outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeOutcome::Blocked => "blocked",
            ProbeOutcome::Reached => "reached",
            ProbeOutcome::Error => "error",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "blocked" => Some(ProbeOutcome::Blocked),
            "reached" => Some(ProbeOutcome::Reached),
            "error" => Some(ProbeOutcome::Error),
            _ => None,
        }
    }
}

/// One protocol message, borrowing its text from the line it was decoded from.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    /// The workload is ready (startup measurements end here).
    Ready,
    /// A measured figure: `name` and `unit` contain no spaces.
    Result {
        /// Metric name, e.g. `cpu.sha256`.
        name: &'a str,
        /// The value in `unit`.
        value: f64,
        /// Unit, e.g. `blocks/s`, `bytes/s`, `calls/s`.
        unit: &'a str,
    },
    /// One isolation probe result.
    Probe {
        /// Probe identifier, e.g. `fs.host_canary`.
        id: &'a str,
        /// What happened.
        outcome: ProbeOutcome,
        /// Free text (may contain spaces, no newlines).
        detail: &'a str,
    },
    /// The platform cannot run a scenario or metric by design (e.g. no system calls on the bare guest);
    /// never reported as zero.
    Unsupported {
        /// What is unsupported (a scenario or metric name).
        what: &'a str,
        /// Why, in words.
        reason: &'a str,
    },
    /// A scenario the platform can run failed this time (a full disk, a failed allocation): the error
    /// and how far it got. The run is a failure, not [`Message::Unsupported`]; `done` carries a nonzero
    /// status.
    Failed {
        /// What failed (a scenario name).
        what: &'a str,
        /// The error (errno name and text where there is one) and the progress made, in words.
        reason: &'a str,
    },
    /// A host-side phase boundary: `name` reached at host CLOCK_MONOTONIC `mono_ns`.
    Phase {
        /// Phase name, e.g. `vm_create`.
        name: &'a str,
        /// Host CLOCK_MONOTONIC in nanoseconds.
        mono_ns: u64,
    },
    /// The workload finished with `status` (0 = success).
    Done {
        /// Exit status.
        status: i32,
    },
}

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The line does not start with [`PREFIX`] (it is plain log output).
    NotProtocol,
    /// Unknown message kind.
    UnknownKind,
    /// A field is missing.
    MissingField(&'static str),
    /// A field does not parse.
    BadField(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotProtocol => write!(f, "not a protocol line (no '{}' prefix)", PREFIX.trim_end()),
            DecodeError::UnknownKind => write!(f, "unknown message kind"),
            DecodeError::MissingField(x) => write!(f, "missing field '{x}'"),
            DecodeError::BadField(x) => write!(f, "field '{x}' does not parse"),
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| b.is_ascii_whitespace())
}

impl Message<'_> {
    /// Write the message as one line (with trailing newline) to `w`.
    ///
    /// Names, ids and units must be single tokens; free text has newlines replaced by spaces.
    pub fn encode<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        w.write_str(PREFIX)?;
        match self {
            Message::Ready => w.write_str("ready")?,
            Message::Result { name, value, unit } => {
                debug_assert!(is_token(name) && is_token(unit));
                write!(w, "result {name} {value} {unit}")?
            }
            Message::Probe { id, outcome, detail } => {
                debug_assert!(is_token(id));
                write!(w, "probe {id} {} ", outcome.as_str())?;
                write_text(w, detail)?
            }
            Message::Unsupported { what, reason } => {
                write!(w, "unsupported {what} ")?;
                write_text(w, reason)?
            }
            Message::Failed { what, reason } => {
                write!(w, "failed {what} ")?;
                write_text(w, reason)?
            }
            Message::Phase { name, mono_ns } => write!(w, "phase {name} {mono_ns}")?,
            Message::Done { status } => write!(w, "done {status}")?,
        }
        w.write_char('\n')
    }

    /// Decode one line (with or without its trailing newline).
    pub fn decode(line: &str) -> Result<Message<'_>, DecodeError> {
        let line = line.trim_end_matches(['\n', '\r']);
        let rest = line.strip_prefix(PREFIX).ok_or(DecodeError::NotProtocol)?;
        let (kind, rest) = split_token(rest);
        match kind {
            "ready" => Ok(Message::Ready),
            "result" => {
                let (name, rest) = split_token(rest);
                let (value, rest) = split_token(rest);
                let (unit, _) = split_token(rest);
                if name.is_empty() {
                    return Err(DecodeError::MissingField("name"));
                }
                if unit.is_empty() {
                    return Err(DecodeError::MissingField("unit"));
                }
                let value = value.parse().map_err(|_| DecodeError::BadField("value"))?;
                Ok(Message::Result { name, value, unit })
            }
            "probe" => {
                let (id, rest) = split_token(rest);
                let (outcome, detail) = split_token(rest);
                if id.is_empty() {
                    return Err(DecodeError::MissingField("id"));
                }
                let outcome = ProbeOutcome::parse(outcome).ok_or(DecodeError::BadField("outcome"))?;
                Ok(Message::Probe { id, outcome, detail })
            }
            "unsupported" => {
                let (what, reason) = split_token(rest);
                if what.is_empty() {
                    return Err(DecodeError::MissingField("what"));
                }
                Ok(Message::Unsupported { what, reason })
            }
            "failed" => {
                let (what, reason) = split_token(rest);
                if what.is_empty() {
                    return Err(DecodeError::MissingField("what"));
                }
                Ok(Message::Failed { what, reason })
            }
            "phase" => {
                let (name, rest) = split_token(rest);
                let (ns, _) = split_token(rest);
                if name.is_empty() {
                    return Err(DecodeError::MissingField("name"));
                }
                let mono_ns = ns.parse().map_err(|_| DecodeError::BadField("mono_ns"))?;
                Ok(Message::Phase { name, mono_ns })
            }
            "done" => {
                let (st, _) = split_token(rest);
                let status = st.parse().map_err(|_| DecodeError::BadField("status"))?;
                Ok(Message::Done { status })
            }
            _ => Err(DecodeError::UnknownKind),
        }
    }
}

fn write_text<W: fmt::Write>(w: &mut W, text: &str) -> fmt::Result {
    for c in text.chars() {
        w.write_char(if c == '\n' || c == '\r' { ' ' } else { c })?;
    }
    Ok(())
}

/// Split off the first space-separated token; returns (token, rest-after-one-space).
fn split_token(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn roundtrip(m: Message<'_>) {
        let mut s = String::new();
        m.encode(&mut s).unwrap();
        assert!(s.ends_with('\n'));
        assert_eq!(Message::decode(&s).unwrap(), m, "line {s:?}");
    }

    #[test]
    fn every_message_roundtrips() {
        roundtrip(Message::Ready);
        roundtrip(Message::Result { name: "cpu.sha256", value: 1234.5, unit: "blocks/s" });
        roundtrip(Message::Result { name: "x", value: 1e-9, unit: "s" });
        roundtrip(Message::Probe {
            id: "fs.canary",
            outcome: ProbeOutcome::Reached,
            detail: "read 16 bytes from /tmp/x",
        });
        roundtrip(Message::Probe { id: "p", outcome: ProbeOutcome::Blocked, detail: "" });
        roundtrip(Message::Unsupported { what: "syscall", reason: "bare guest has no system calls" });
        roundtrip(Message::Failed { what: "io", reason: "ENOSPC (No space left on device) writing MiB 3 of 9" });
        roundtrip(Message::Phase { name: "vm_create", mono_ns: 18_446_744_073_709_551_615 });
        roundtrip(Message::Done { status: -3 });
    }

    #[test]
    fn newlines_in_text_cannot_split_a_message() {
        let mut s = String::new();
        Message::Probe { id: "a", outcome: ProbeOutcome::Error, detail: "two\nlines" }.encode(&mut s).unwrap();
        assert_eq!(s.matches('\n').count(), 1);
        assert_eq!(
            Message::decode(&s).unwrap(),
            Message::Probe { id: "a", outcome: ProbeOutcome::Error, detail: "two lines" }
        );
    }

    #[test]
    fn bad_lines_are_rejected_with_reason() {
        assert_eq!(Message::decode("hello"), Err(DecodeError::NotProtocol));
        assert_eq!(Message::decode("@vmct frob"), Err(DecodeError::UnknownKind));
        assert_eq!(Message::decode("@vmct result a notanumber u"), Err(DecodeError::BadField("value")));
        assert_eq!(Message::decode("@vmct result a 1"), Err(DecodeError::MissingField("unit")));
        assert_eq!(Message::decode("@vmct probe a maybe x"), Err(DecodeError::BadField("outcome")));
        assert_eq!(Message::decode("@vmct done x"), Err(DecodeError::BadField("status")));
        assert_eq!(Message::decode("@vmct failed"), Err(DecodeError::MissingField("what")));
        assert_eq!(Message::decode("@vmct phase a -1"), Err(DecodeError::BadField("mono_ns")));
    }
}

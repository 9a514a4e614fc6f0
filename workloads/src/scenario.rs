//! Workload scenarios and their command-line style arguments, shared by every platform.
//!
//! The Linux binary takes them as argv (`vmct-workload cpu --iters 1000`); the bare guest gets the same
//! words from the VMM in guest memory. Parsing is `no_std` and validates sizes so a bad size fails with a
//! clear message before any instance is launched.
use core::fmt;

/// Largest memory size a scenario accepts, in MiB (1 TiB): anything above is surely a typo.
pub const MAX_MIB: u64 = 1 << 20;
/// Largest iteration / call count a scenario accepts.
pub const MAX_COUNT: u64 = 1 << 40;

/// Names of all scenarios, for error messages and `--help`.
pub const NAMES: &[&str] = &["ready", "idle", "cpu", "mem", "syscall", "io", "probe", "burst", "read"];

/// One workload scenario with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Report ready and exit (startup measurements).
    Ready,
    /// Touch `hold_mib` MiB, report ready, wait until told to stop (density).
    Idle {
        /// MiB to allocate and touch before reporting ready.
        hold_mib: u64,
    },
    /// SHA-256 over a chain of `iters` 64-byte blocks; reports blocks/s.
    Cpu {
        /// Number of SHA-256 block compressions.
        iters: u64,
    },
    /// Sequential and random page-touch bandwidth over `mib` MiB.
    Mem {
        /// Buffer size in MiB.
        mib: u64,
    },
    /// `n` getpid-style system call round trips (Linux platforms only).
    Syscall {
        /// Number of round trips.
        n: u64,
    },
    /// Write + fsync + read `mib` MiB in the instance's own filesystem (Linux platforms only).
    Io {
        /// MiB to write and read back.
        mib: u64,
    },
    /// Run the isolation probe catalogue.
    Probe,
    /// Report ready, wait [`BURST_QUIET_MS`], touch `mib` MiB (`burst.touched`), hold it
    /// [`BURST_HOLD_MS`], free it (`burst.freed`: 1 if the platform returned it to its OS), then wait
    /// until told to stop (the memory experiment's give-back).
    Burst {
        /// MiB to touch, then free.
        mib: u64,
    },
    /// Report ready, wait [`READ_QUIET_MS`], read the first `mib` MiB of the file set (the regular
    /// files of the directory named by [`crate::protocol::READ_DIR_ENV`], else
    /// [`crate::protocol::READ_DIR_IN_IMAGE`], in name order) with read() into a small buffer, so the
    /// data lands in the page cache and not in the instance's own memory, report
    /// [`crate::protocol::READ_BYTES`], then wait until told to stop (the memory experiment's
    /// page-cache sharing; Linux platforms only).
    Read {
        /// MiB to read.
        mib: u64,
    },
}

/// How long `read` waits after `ready` before reading, ms (the host reads "before").
pub const READ_QUIET_MS: u64 = 1000;

/// How long `burst` waits after `ready` before touching its memory, ms (the host reads "before").
pub const BURST_QUIET_MS: u64 = 1000;
/// How long `burst` holds its touched memory before freeing it, ms (the host reads the peak).
pub const BURST_HOLD_MS: u64 = 1000;

/// Why scenario arguments were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioError<'a> {
    /// No scenario name given.
    Missing,
    /// Unknown scenario name.
    UnknownScenario(&'a str),
    /// A flag the scenario does not take.
    UnknownFlag {
        /// The scenario.
        scenario: &'static str,
        /// The flag given.
        flag: &'a str,
    },
    /// A flag without its value.
    MissingValue(&'static str),
    /// A value that is not a whole number in range.
    BadValue {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: &'a str,
        /// The accepted range.
        range: (u64, u64),
    },
}

impl fmt::Display for ScenarioError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Missing => write!(f, "no workload given; valid workloads: {}", Names),
            ScenarioError::UnknownScenario(s) => {
                write!(f, "unknown workload '{s}'; valid workloads: {}", Names)
            }
            ScenarioError::UnknownFlag { scenario, flag } => {
                write!(f, "workload '{scenario}' takes no flag '{flag}'")?;
                match flag_of(scenario) {
                    Some(valid) => write!(f, "; valid: {valid} N"),
                    None => write!(f, "; it takes no flags"),
                }
            }
            ScenarioError::MissingValue(flag) => write!(f, "flag '{flag}' needs a value"),
            ScenarioError::BadValue { flag, value, range } => write!(
                f,
                "invalid value '{value}' for '{flag}': expected a whole number from {} to {}",
                range.0, range.1
            ),
        }
    }
}

struct Names;
impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in NAMES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

/// The one flag each parameterised scenario takes.
fn flag_of(scenario: &str) -> Option<&'static str> {
    match scenario {
        "idle" => Some("--hold-mib"),
        "cpu" => Some("--iters"),
        "mem" | "io" | "burst" | "read" => Some("--mib"),
        "syscall" => Some("--n"),
        _ => None,
    }
}

/// (flag, minimum, maximum, default) of each parameterised scenario.
fn spec(name: &str) -> Option<(&'static str, u64, u64, u64)> {
    match name {
        "idle" => Some(("--hold-mib", 0, MAX_MIB, 0)),
        "cpu" => Some(("--iters", 1, MAX_COUNT, 200_000)),
        "mem" => Some(("--mib", 1, MAX_MIB, 64)),
        "syscall" => Some(("--n", 1, MAX_COUNT, 200_000)),
        "io" => Some(("--mib", 1, MAX_MIB, 16)),
        "burst" => Some(("--mib", 1, MAX_MIB, 64)),
        "read" => Some(("--mib", 1, MAX_MIB, 16)),
        _ => None,
    }
}

impl Scenario {
    /// Parse `name [--flag N]`.
    pub fn parse<'a, I>(mut words: I) -> Result<Scenario, ScenarioError<'a>>
    where
        I: Iterator<Item = &'a str>,
    {
        let name = words.next().ok_or(ScenarioError::Missing)?;
        let canonical: &'static str = match NAMES.iter().find(|n| **n == name) {
            Some(n) => n,
            None => return Err(ScenarioError::UnknownScenario(name)),
        };
        let mut value = None;
        while let Some(w) = words.next() {
            let Some((flag, min, max, _)) = spec(canonical) else {
                return Err(ScenarioError::UnknownFlag { scenario: canonical, flag: w });
            };
            // Accept both `--flag N` and `--flag=N`.
            let (given, inline) = match w.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (w, None),
            };
            if given != flag {
                return Err(ScenarioError::UnknownFlag { scenario: canonical, flag: w });
            }
            let v = match inline {
                Some(v) => v,
                None => words.next().ok_or(ScenarioError::MissingValue(flag))?,
            };
            let n: u64 = v.parse().ok().filter(|n| (min..=max).contains(n)).ok_or(ScenarioError::BadValue {
                flag,
                value: v,
                range: (min, max),
            })?;
            value = Some(n);
        }
        let param = || value.or_else(|| spec(canonical).map(|s| s.3)).unwrap_or(0);
        Ok(match canonical {
            "ready" => Scenario::Ready,
            "idle" => Scenario::Idle { hold_mib: param() },
            "cpu" => Scenario::Cpu { iters: param() },
            "mem" => Scenario::Mem { mib: param() },
            "syscall" => Scenario::Syscall { n: param() },
            "io" => Scenario::Io { mib: param() },
            "burst" => Scenario::Burst { mib: param() },
            "read" => Scenario::Read { mib: param() },
            _ => Scenario::Probe,
        })
    }

    /// The scenario's name.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Ready => "ready",
            Scenario::Idle { .. } => "idle",
            Scenario::Cpu { .. } => "cpu",
            Scenario::Mem { .. } => "mem",
            Scenario::Syscall { .. } => "syscall",
            Scenario::Io { .. } => "io",
            Scenario::Probe => "probe",
            Scenario::Burst { .. } => "burst",
            Scenario::Read { .. } => "read",
        }
    }

    /// Memory the scenario itself needs beyond the binary, in bytes (guest memory sizing).
    pub fn working_set_bytes(&self) -> u64 {
        match *self {
            Scenario::Idle { hold_mib } => hold_mib << 20,
            Scenario::Mem { mib } | Scenario::Io { mib } | Scenario::Burst { mib } | Scenario::Read { mib } => {
                mib << 20
            }
            _ => 0,
        }
    }
}

/// Formats as the words [`Scenario::parse`] accepts, e.g. `cpu --iters 1000`.
impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let v = match *self {
            Scenario::Idle { hold_mib } => hold_mib,
            Scenario::Cpu { iters } => iters,
            Scenario::Mem { mib } | Scenario::Io { mib } | Scenario::Burst { mib } | Scenario::Read { mib } => mib,
            Scenario::Syscall { n } => n,
            Scenario::Ready | Scenario::Probe => return Ok(()),
        };
        write!(f, " {} {v}", flag_of(self.name()).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    fn p(s: &str) -> Result<Scenario, ScenarioError<'_>> {
        Scenario::parse(s.split_whitespace())
    }

    #[test]
    fn parses_every_scenario_with_defaults_and_values() {
        assert_eq!(p("ready"), Ok(Scenario::Ready));
        assert_eq!(p("idle"), Ok(Scenario::Idle { hold_mib: 0 }));
        assert_eq!(p("idle --hold-mib 8"), Ok(Scenario::Idle { hold_mib: 8 }));
        assert_eq!(p("cpu --iters=5"), Ok(Scenario::Cpu { iters: 5 }));
        assert_eq!(p("mem --mib 2"), Ok(Scenario::Mem { mib: 2 }));
        assert_eq!(p("syscall --n 7"), Ok(Scenario::Syscall { n: 7 }));
        assert_eq!(p("io"), Ok(Scenario::Io { mib: 16 }));
        assert_eq!(p("probe"), Ok(Scenario::Probe));
        assert_eq!(p("burst"), Ok(Scenario::Burst { mib: 64 }));
        assert_eq!(p("burst --mib 3"), Ok(Scenario::Burst { mib: 3 }));
        assert!(p("burst --mib 0").is_err());
        assert_eq!(p("read"), Ok(Scenario::Read { mib: 16 }));
        assert_eq!(p("read --mib 2"), Ok(Scenario::Read { mib: 2 }));
        assert_eq!(Scenario::Read { mib: 2 }.working_set_bytes(), 2 << 20);
    }

    #[test]
    fn display_roundtrips() {
        for s in [
            "ready",
            "idle --hold-mib 3",
            "cpu --iters 9",
            "mem --mib 1",
            "syscall --n 4",
            "io --mib 2",
            "probe",
            "burst --mib 5",
            "read --mib 6",
        ] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_input_with_a_clear_message() {
        let e = p("frobnicate").unwrap_err().to_string();
        assert!(e.contains("unknown workload 'frobnicate'") && e.contains("cpu"), "{e}");
        let e = p("cpu --iters 0").unwrap_err().to_string();
        assert!(e.contains("invalid value '0' for '--iters'"), "{e}");
        let e = p("mem --mib -3").unwrap_err().to_string();
        assert!(e.contains("'-3'"), "{e}");
        let e = p("idle --hold-mib 99999999999").unwrap_err().to_string();
        assert!(e.contains("from 0 to 1048576"), "{e}");
        assert_eq!(p("cpu --iters"), Err(ScenarioError::MissingValue("--iters")));
        let e = p("ready --x 1").unwrap_err().to_string();
        assert!(e.contains("takes no flags"), "{e}");
        let e = p("cpu --mib 1").unwrap_err().to_string();
        assert!(e.contains("valid: --iters N"), "{e}");
        assert_eq!(p(""), Err(ScenarioError::Missing));
    }
}

//! An image's own process as the workload (`vmct run --image NAME --ready RULE`): the readiness
//! rules and how a linux guest's /init is told what to run.
//!
//! The host and the guest's /init share this: the harness applies a rule to a container from the
//! outside, the /init inside a guest applies the same rule and reports `ready` over the console.
//!
//! The guest gets the run on its kernel command line as dotted parameters (which Linux keeps away
//! from /init's argv and environment; /init reads /proc/cmdline): [`PARAM_IMAGE`] `=1`, then
//! [`PARAM_ARGV`], [`PARAM_ENV`], [`PARAM_CWD`], [`PARAM_USER`], [`PARAM_READY`], each value
//! percent-encoded by [`encode`] (list items separated by `,`), so spaces, quotes and commas travel.
use core::fmt;

/// `vmct.image=1`: /init runs an image from its root disk instead of a built-in scenario.
pub const PARAM_IMAGE: &str = "vmct.image";
/// The image's argv (entry point ++ command), comma-separated encoded items.
pub const PARAM_ARGV: &str = "vmct.argv";
/// The image's environment (`KEY=value`), comma-separated encoded items.
pub const PARAM_ENV: &str = "vmct.env";
/// The working directory.
pub const PARAM_CWD: &str = "vmct.cwd";
/// The user (`uid`, `uid:gid`, `name` or `name:group`).
pub const PARAM_USER: &str = "vmct.user";
/// The readiness rule ([`ReadyRule`]).
pub const PARAM_READY: &str = "vmct.ready";

/// The valid forms of a readiness rule, for error messages.
pub const RULE_FORMS: &str = "tcp:PORT (a TCP connect to 127.0.0.1:PORT inside the instance succeeds, PORT 1-65535), \
log:REGEX (a line of the process's stdout or stderr matches REGEX), exit (the process runs to completion; \
its exit status is recorded)";

/// When an image's process counts as ready: a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyRule<'a> {
    /// A TCP connect to 127.0.0.1:PORT inside the instance's network namespace (or guest) succeeds.
    Tcp(u16),
    /// A line of the process's stdout or stderr matches this regular expression (`regex` syntax).
    Log(&'a str),
    /// The process ran to completion: ready is its exit, and its exit status is recorded.
    Exit,
}

/// A rule that is none of [`RULE_FORMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleError<'a> {
    /// The text given.
    pub given: &'a str,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for RuleError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid readiness rule '{}': {}; valid forms: {RULE_FORMS}", self.given, self.why)
    }
}

impl<'a> ReadyRule<'a> {
    /// Parse `tcp:PORT`, `log:REGEX` or `exit` (the regular expression is checked by the caller,
    /// which compiles it).
    pub fn parse(s: &'a str) -> Result<ReadyRule<'a>, RuleError<'a>> {
        let err = |why| RuleError { given: s, why };
        if s == "exit" {
            return Ok(ReadyRule::Exit);
        }
        if let Some(p) = s.strip_prefix("tcp:") {
            return match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(err("PORT must be a number from 1 to 65535")),
                Ok(port) => Ok(ReadyRule::Tcp(port)),
            };
        }
        if let Some(re) = s.strip_prefix("log:") {
            return if re.is_empty() { Err(err("REGEX is empty")) } else { Ok(ReadyRule::Log(re)) };
        }
        Err(err("unknown kind"))
    }

    /// Whether the process keeps running after it is ready (every rule but `exit`).
    pub fn holds_alive(&self) -> bool {
        !matches!(self, ReadyRule::Exit)
    }
}

impl fmt::Display for ReadyRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyRule::Tcp(p) => write!(f, "tcp:{p}"),
            ReadyRule::Log(re) => write!(f, "log:{re}"),
            ReadyRule::Exit => f.write_str("exit"),
        }
    }
}

/// Percent-encode `s` for a kernel command-line value: every byte outside `[A-Za-z0-9/._:=+@-]`
/// becomes `%XX` (so no space, quote, comma or `%` is left).
pub fn encode(s: &str, out: &mut dyn fmt::Write) -> fmt::Result {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/._:=+@-".contains(&b) {
            out.write_char(char::from(b))?;
        } else {
            write!(out, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// A malformed `%` escape at byte offset `.0` of a value [`decode`] was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEscape(pub usize);

impl fmt::Display for BadEscape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed %-escape at byte {}", self.0)
    }
}

/// Decode what [`encode`] wrote, byte by byte into `push`.
pub fn decode(s: &str, mut push: impl FnMut(u8)) -> Result<(), BadEscape> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(BadEscape(i))?;
            let hex = core::str::from_utf8(hex).map_err(|_| BadEscape(i))?;
            push(u8::from_str_radix(hex, 16).map_err(|_| BadEscape(i))?);
            i += 3;
        } else {
            push(b[i]);
            i += 1;
        }
    }
    Ok(())
}

/// The uid and gid an image's `User` names: `uid`, `uid:gid`, `name` or `name:group`, names looked
/// up in the image's `/etc/passwd` and `/etc/group` text (as Docker does; an empty user is root).
/// A numeric uid alone takes its gid from passwd when listed there, else the same number as gid 0.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<(u32, u32), &'static str> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entry = |text: &'_ str, name: &str| -> Option<(u32, u32)> {
        text.lines().find_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let _pw = f.next()?;
            let id = f.next()?.parse().ok()?;
            let gid = f.next().and_then(|g| g.parse().ok()).unwrap_or(0);
            (n == name).then_some((id, gid))
        })
    };
    let (uid, pw_gid) = if u.is_empty() {
        (0, 0)
    } else if let Ok(n) = u.parse::<u32>() {
        let by_id = passwd.lines().find_map(|l| {
            let f: [&str; 4] = {
                let mut it = l.split(':');
                [it.next()?, it.next()?, it.next()?, it.next()?]
            };
            (f[2].parse::<u32>().ok()? == n).then(|| f[3].parse().ok()).flatten()
        });
        (n, by_id.unwrap_or(0))
    } else {
        entry(passwd, u).ok_or("user name not found in the image's /etc/passwd")?
    };
    let gid = match g {
        None | Some("") => pw_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => entry(group, g).ok_or("group name not found in the image's /etc/group")?.0,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    #[test]
    fn rules_parse_and_print_back() {
        for s in ["tcp:8080", "log:^listening on [0-9]+$", "exit"] {
            assert_eq!(std::format!("{}", ReadyRule::parse(s).unwrap()), s);
        }
        assert_eq!(ReadyRule::parse("tcp:80").unwrap(), ReadyRule::Tcp(80));
        assert!(!ReadyRule::parse("exit").unwrap().holds_alive());
        for bad in ["tcp:0", "tcp:70000", "tcp:", "log:", "http:80", "", "exit:1"] {
            let e = std::format!("{}", ReadyRule::parse(bad).unwrap_err());
            assert!(e.contains(bad) && e.contains("tcp:PORT") && e.contains("log:REGEX"), "{e}");
        }
    }

    #[test]
    fn users_resolve_like_docker() {
        let pw = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\n";
        let gr = "root:x:0:\nstaff:x:50:\n";
        assert_eq!(resolve_user("", pw, gr), Ok((0, 0)));
        assert_eq!(resolve_user("www", pw, gr), Ok((33, 34)));
        assert_eq!(resolve_user("33", pw, gr), Ok((33, 34)));
        assert_eq!(resolve_user("1000:1000", pw, gr), Ok((1000, 1000)));
        assert_eq!(resolve_user("www:staff", pw, gr), Ok((33, 50)));
        assert!(resolve_user("nobody", pw, gr).is_err() && resolve_user("www:none", pw, gr).is_err());
    }

    #[test]
    fn encoding_keeps_spaces_commas_and_quotes_off_the_command_line() {
        let s = "sh -c 'echo \"a,b\" 100%'";
        let mut enc = String::new();
        encode(s, &mut enc).unwrap();
        assert!(!enc.contains([' ', ',', '"', '\'']), "{enc}");
        let mut dec = Vec::new();
        decode(&enc, |b| dec.push(b)).unwrap();
        assert_eq!(String::from_utf8(dec).unwrap(), s);
        assert!(decode("%4", |_| ()).is_err() && decode("%zz", |_| ()).is_err());
    }
}

//! Masked-path probes (`masked.*`): is a path Docker masks (see
//! [`workloads::probe_ids::MASKED_PATHS`]) readable with content inside the instance?
//!
//! `reached`: a file gave bytes, or a directory listed entries. `blocked`: refused (EPERM/EACCES), or
//! masked (a /dev/null bind over a file, an empty directory), or empty. `error`: the path does not
//! exist here (on a host without it, e.g. /proc/timer_stats since Linux 4.11, the baseline says the
//! same and the row is not applicable), or another failure. Harmless: at most 4 KiB are read.
use super::{sys, Verdict};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Bytes read from a file at most.
const READ_MAX: u64 = 4096;

/// The outcome for a failed open/read/list of `path`.
fn refused(path: &str, what: &str, e: &std::io::Error) -> Verdict {
    let name = sys::io_name(e);
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Verdict::blocked(format!("{what} {path}: {name}")),
        Some(libc::ENOENT) => Verdict::error(format!("{path} does not exist here (ENOENT): not applicable")),
        _ => Verdict::error(format!("{what} {path}: {name}")),
    }
}

/// Probe one masked path.
pub fn probe(path: &str) -> Verdict {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return refused(path, "stat", &e),
    };
    if meta.is_dir() {
        return match std::fs::read_dir(path) {
            Ok(rd) => {
                let names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                if names.is_empty() {
                    Verdict::blocked(format!("{path} lists no entries (masked or empty)"))
                } else {
                    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
                    Verdict::reached(format!("{path} lists {} entries ({})", names.len(), shown.join(", ")))
                }
            }
            Err(e) => refused(path, "list", &e),
        };
    }
    if meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        return Verdict::blocked(format!("{path} is /dev/null (masked)"));
    }
    let mut buf = Vec::new();
    match std::fs::File::open(path).and_then(|f| f.take(READ_MAX).read_to_end(&mut buf)) {
        Ok(0) => Verdict::blocked(format!("{path} reads empty")),
        Ok(n) => Verdict::reached(format!("read {n} bytes of {path}")),
        Err(e) => refused(path, "read", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workloads::protocol::ProbeOutcome;

    #[test]
    fn content_empty_absent_and_null() {
        let dir = std::env::temp_dir().join(format!("vmct-masked-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("file"), "x").unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        let p = |s: &str| dir.join(s).display().to_string();
        assert_eq!(probe(&p("file")).outcome, ProbeOutcome::Reached);
        assert_eq!(probe(&p("empty")).outcome, ProbeOutcome::Blocked);
        assert_eq!(probe(&p("sub")).outcome, ProbeOutcome::Blocked, "empty dir = masked");
        assert_eq!(probe(&dir.display().to_string()).outcome, ProbeOutcome::Reached);
        assert_eq!(probe(&p("absent")).outcome, ProbeOutcome::Error);
        assert_eq!(probe("/dev/null").outcome, ProbeOutcome::Blocked);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

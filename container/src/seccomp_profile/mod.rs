//! Podman's default seccomp profile, read at run time and translated for our runtime and the peers.
//!
//! The profile is the one Debian's `golang-github-containers-common` ships at
//! [`DEFAULT_PROFILE_PATH`] (Docker's profile format: `defaultAction`, `archMap`, `syscalls` with
//! `includes`/`excludes` by capability, architecture and minimum kernel). It is used in two forms:
//! 1. [`Resolved`]: the rules that apply to a container with a given capability set on this
//!    architecture and kernel, selected the way Podman does (containers/common `setupSeccomp`):
//!    a rule is dropped when `excludes.arches` holds this arch, when `excludes.caps` holds any
//!    capability the container has, when `includes.arches` is set without this arch, when
//!    `includes.caps` names a capability the container lacks, or when `includes.minKernel` is newer
//!    than the running kernel. The architectures are this arch plus its `subArchitectures`.
//!    [`Resolved::to_oci`] is exactly what Podman puts in `linux.seccomp` for crun and runc.
//! 2. A BPF program ([`Compiled`]), compiled with **libseccomp** (the `libseccomp` crate, the
//!    library crun and runc use for the same job). seccompiler cannot express this profile without
//!    hand-kept tables: it has no public syscall-name table (the profile names ~400 syscalls, some
//!    only on other arches), no sub-architectures (x86, x32), and one match action per filter while
//!    the profile mixes `ALLOW`, `ERRNO(EPERM)`, `ERRNO(EINVAL)` and a default `ERRNO(ENOSYS)`.
//!    libseccomp resolves names per arch and orders mixed-action rules as crun and runc get them.
//!
//! One difference from crun and runc, with the same effect: the BPF leaves out the x32 sub-architecture
//! when the kernel does not run x32 system calls (probed once, [`crate::sys::kernel_runs_x32`]; most
//! distribution kernels have it off). Such calls then get the profile's default errno from the filter
//! (its bad-architecture action is set to the default action) instead of ENOSYS from the kernel; the
//! filter is a third smaller and cheaper to install at every container start (about 50 us of 250 on
//! this project's hosts). The peers' `config.json` keeps the profile's architectures.
//!
//! Unknown syscall names (ones this libseccomp does not know) are skipped and listed in
//! [`ProfileInfo::unknown_names_skipped`], as runc does; they never widen the filter (the default
//! action, an errno, applies to them). Compiling is done once per process and profile
//! ([`load`] caches), never per launch, and never in the cloned child.
use caps::Capability;
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

mod compile;
mod resolve;

use resolve::running_kernel;
pub use resolve::{host_arch, kernel_version};

/// Where Debian's `golang-github-containers-common` installs Podman's default profile.
pub const DEFAULT_PROFILE_PATH: &str = "/usr/share/containers/seccomp.json";
/// The Debian package that ships [`DEFAULT_PROFILE_PATH`].
pub const PROFILE_PACKAGE: &str = "golang-github-containers-common";

/// Errors reading, parsing or compiling a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The profile file is not there.
    #[error(
        "seccomp profile {path} is missing: install Debian's {PROFILE_PACKAGE} (apt-get install {PROFILE_PACKAGE}; scripts/setup-host does)"
    )]
    Missing {
        /// Path.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("seccomp profile {path}: cannot read: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The JSON does not fit the profile format.
    #[error("seccomp profile {path}: at JSON path `{json_path}`: {reason}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Where in the document (e.g. `syscalls[3].action`).
        json_path: String,
        /// What was wrong.
        reason: String,
    },
    /// The profile has no entry for this machine's architecture.
    #[error("seccomp profile {path}: no architecture entry for this host's {arch}")]
    NoArch {
        /// Path.
        path: PathBuf,
        /// This host's arch (`SCMP_ARCH_*`).
        arch: &'static str,
    },
    /// libseccomp refused a rule or the export.
    #[error("seccomp profile {path}: libseccomp: {what}: {reason}")]
    Compile {
        /// Path.
        path: PathBuf,
        /// The rule or step.
        what: String,
        /// libseccomp's message.
        reason: String,
    },
}

/// What a profile is, for run.json and the report (see the attack-surface contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    /// The profile file.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Distinct syscalls (known to libseccomp) that at least one applicable rule allows, possibly
    /// only for some argument values; everything else gets an errno.
    pub syscalls_allowed: u32,
    /// Syscall names of applicable rules that libseccomp does not know: skipped (sorted, unique).
    pub unknown_names_skipped: Vec<String>,
}

/// One `includes`/`excludes` block.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities ("CAP_SYS_ADMIN").
    #[serde(default)]
    pub caps: Vec<String>,
    /// Go architecture names ("amd64", "arm64", "x32").
    #[serde(default)]
    pub arches: Vec<String>,
    /// Minimum kernel ("5.8").
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// One argument comparison (for `SCMP_CMP_MASKED_EQ`, `value` is the mask and `valueTwo` the datum,
/// as in runc and crun).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArgRule {
    /// Argument index, 0..=5.
    pub index: u32,
    /// Value (the mask for MASKED_EQ).
    pub value: u64,
    /// Second value (the datum for MASKED_EQ).
    #[serde(default)]
    pub value_two: u64,
    /// Comparison.
    pub op: LinuxSeccompOperator,
}

/// One `syscalls[]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// Syscall names.
    #[serde(default)]
    pub names: Vec<String>,
    /// What happens when the rule matches.
    pub action: LinuxSeccompAction,
    /// errno for `SCMP_ACT_ERRNO` (EPERM when absent, as in libseccomp users).
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Name of that errno (informational).
    #[serde(default)]
    pub errno: Option<String>,
    /// Argument conditions (all must hold).
    #[serde(default)]
    pub args: Option<Vec<ArgRule>>,
    /// Applies only if all of these hold.
    #[serde(default)]
    pub includes: Filter,
    /// Does not apply if any of these holds.
    #[serde(default)]
    pub excludes: Filter,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// One `archMap` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArchEntry {
    /// `SCMP_ARCH_*`.
    pub architecture: String,
    /// Further `SCMP_ARCH_*` filtered alongside.
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

/// A profile file as written (Docker/Podman format).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileFile {
    /// Action for syscalls no rule matches.
    pub default_action: LinuxSeccompAction,
    /// errno of the default action.
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Name of that errno (informational).
    #[serde(default)]
    pub default_errno: Option<String>,
    /// Plain architecture list (used when there is no `archMap`).
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Per native arch, the arches filtered.
    #[serde(default)]
    pub arch_map: Vec<ArchEntry>,
    /// Rules in order.
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
    /// Filter flags (passed on to the peers).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Listener path (unsupported: must be absent).
    #[serde(default)]
    pub listener_path: Option<String>,
}

/// A rule that applies here.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Names.
    pub names: Vec<String>,
    /// Action.
    pub action: LinuxSeccompAction,
    /// errno.
    pub errno_ret: Option<u32>,
    /// Conditions.
    pub args: Vec<ArgRule>,
}

/// The rules of a profile that apply to one container here (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Default action.
    pub default_action: LinuxSeccompAction,
    /// Its errno.
    pub default_errno_ret: Option<u32>,
    /// `SCMP_ARCH_*` names, native first.
    pub architectures: Vec<String>,
    /// Rules in profile order.
    pub rules: Vec<Rule>,
}

/// Parse a profile; errors name `path` and the JSON path.
pub fn parse(path: &Path, text: &str) -> Result<ProfileFile, ProfileError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let file: ProfileFile = serde_path_to_error::deserialize(de).map_err(|e| ProfileError::Parse {
        path: path.into(),
        json_path: e.path().to_string(),
        reason: e.inner().to_string(),
    })?;
    if file.listener_path.is_some() {
        return Err(ProfileError::Parse {
            path: path.into(),
            json_path: "listenerPath".into(),
            reason: "seccomp notify listeners are not supported".into(),
        });
    }
    for (i, r) in file.syscalls.iter().enumerate() {
        if r.names.is_empty() {
            return Err(ProfileError::Parse {
                path: path.into(),
                json_path: format!("syscalls[{i}].names"),
                reason: "a rule needs at least one syscall name".into(),
            });
        }
        for (j, a) in r.args.iter().flatten().enumerate() {
            if a.index > 5 {
                return Err(ProfileError::Parse {
                    path: path.into(),
                    json_path: format!("syscalls[{i}].args[{j}].index"),
                    reason: format!("{} is not a syscall argument index (0 to 5)", a.index),
                });
            }
        }
    }
    Ok(file)
}

/// A compiled profile: the BPF program our init installs, and what it is.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The program (one filter; installed after no_new_privs).
    pub bpf: Arc<seccompiler::BpfProgram>,
    /// Path, hash, counts.
    pub info: ProfileInfo,
    /// The rules (also what the peers get, see [`Resolved::to_oci`]); the BPF may leave out the x32
    /// architecture (see the module doc).
    pub resolved: Resolved,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

type CacheKey = (PathBuf, String, u64);

fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<Compiled>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<Compiled>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Read, resolve for `caps` on this host, and compile the profile at `path`; cached per process by
/// (path, file hash, capability set), so runtimes after the first pay one file read and one hash.
pub fn load(path: &Path, caps: &[Capability]) -> Result<Arc<Compiled>, ProfileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ProfileError::Missing { path: path.into() }),
        Err(source) => return Err(ProfileError::Read { path: path.into(), source }),
    };
    let sha = sha256_hex(&bytes);
    let mask = caps.iter().fold(0u64, |m, c| m | c.bitmask());
    let key = (path.to_path_buf(), sha.clone(), mask);
    if let Some(c) = cache().lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let text = String::from_utf8_lossy(&bytes);
    let resolved = parse(path, &text)?.resolve(path, caps, host_arch(), running_kernel())?;
    let mut for_bpf = resolved.clone();
    if !crate::sys::kernel_runs_x32() {
        for_bpf.architectures.retain(|a| a != "SCMP_ARCH_X32");
    }
    let mut compiled = for_bpf.compile(path, &sha)?;
    compiled.resolved = resolved;
    let compiled = Arc::new(compiled);
    cache().lock().unwrap_or_else(|p| p.into_inner()).insert(key, compiled.clone());
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/seccomp-small.json");
    const X86: (&str, &str) = ("SCMP_ARCH_X86_64", "amd64");

    fn resolved(caps: &[Capability]) -> Resolved {
        parse(Path::new("fixture.json"), FIXTURE)
            .unwrap()
            .resolve(Path::new("fixture.json"), caps, X86, Some((6, 1)))
            .unwrap()
    }

    #[test]
    fn fixture_resolves_by_caps_arch_and_kernel() {
        let r = resolved(&[Capability::CAP_CHOWN]);
        assert_eq!(r.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
        let names: Vec<&str> = r.rules.iter().flat_map(|r| r.names.iter().map(String::as_str)).collect();
        // includes.caps CAP_SYS_ADMIN: dropped; its excludes twin (errno) kept.
        assert_eq!(r.rules.iter().filter(|x| x.names == ["mount"]).count(), 1);
        assert_eq!(r.rules.iter().find(|x| x.names == ["mount"]).unwrap().action, LinuxSeccompAction::ScmpActErrno);
        // includes.arches arm/arm64 only: dropped; minKernel 99.0: dropped; minKernel 5.0: kept.
        assert!(!names.contains(&"arm_fadvise64_64"));
        assert!(!names.contains(&"getppid"));
        assert!(names.contains(&"getpid"));
        let admin = resolved(&[Capability::CAP_SYS_ADMIN]);
        let m: Vec<_> = admin.rules.iter().filter(|x| x.names == ["mount"]).collect();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].action, LinuxSeccompAction::ScmpActAllow);
        let old = parse(Path::new("f"), FIXTURE).unwrap().resolve(Path::new("f"), &[], X86, Some((4, 19))).unwrap();
        assert!(!old.rules.iter().any(|x| x.names.contains(&"getpid".to_string())));
        let arm = parse(Path::new("f"), FIXTURE).unwrap();
        let arm = arm.resolve(Path::new("f"), &[], ("SCMP_ARCH_AARCH64", "arm64"), Some((6, 1))).unwrap();
        assert_eq!(arm.architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
        assert!(arm.rules.iter().any(|x| x.names == ["arm_fadvise64_64"]));
        let e =
            parse(Path::new("f"), FIXTURE).unwrap().resolve(Path::new("f"), &[], ("SCMP_ARCH_S390X", "s390x"), None);
        assert!(matches!(e, Err(ProfileError::NoArch { .. })));
    }

    #[test]
    fn fixture_compiles_with_unknown_names_counted() {
        let c = resolved(&[Capability::CAP_CHOWN]).compile(Path::new("fixture.json"), "abc").unwrap();
        assert_eq!(c.info.unknown_names_skipped, ["not_a_real_syscall"]);
        // read, write, close, exit, exit_group, getpid, personality (arg rule), getpriority (arg rule).
        assert_eq!(c.info.syscalls_allowed, 8);
        let rets: BTreeSet<u32> = c.bpf.iter().filter(|i| i.code == 0x06).map(|i| i.k).collect();
        let errno = |e: i32| 0x0005_0000 | e as u32;
        assert!(rets.contains(&0x7fff_0000), "ALLOW in {rets:x?}");
        assert!(rets.contains(&errno(libc::ENOSYS)), "default ENOSYS in {rets:x?}");
        assert!(rets.contains(&errno(libc::EPERM)), "mount's EPERM in {rets:x?}");
        assert!(rets.contains(&errno(libc::EINVAL)), "getpriority's errnoRet 22 in {rets:x?}");
    }

    /// Runs `nr(args)` for each call in a child under `bpf`; the errno each returned (0: success).
    fn errnos_in_child(bpf: &seccompiler::BpfProgram, calls: &[(libc::c_long, [u64; 3])]) -> Vec<i32> {
        use crate::sys::{self, Sys};
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (r, w) = sys::pipe().unwrap();
        let mut out = vec![0i32; calls.len()];
        // SAFETY: the child only makes raw system calls (no allocation) and ends in exit_child.
        match unsafe { sys::clone_fork(0) }.unwrap() {
            None => {
                if sys::Real.no_new_privs().is_err() || sys::Real.seccomp(bpf).is_err() {
                    sys::exit_child(3);
                }
                for (i, (nr, a)) in calls.iter().enumerate() {
                    // SAFETY: the calls are harmless queries or fail on their arguments/filter.
                    let rc = unsafe { libc::syscall(*nr, a[0], a[1], a[2]) };
                    out[i] = if rc < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) } else { 0 };
                }
                // SAFETY: `out` is a live buffer of the length given.
                unsafe { libc::write(w.as_raw_fd(), out.as_ptr().cast(), out.len() * 4) };
                sys::exit_child(0);
            }
            Some(child) => {
                drop(w);
                let mut b = Vec::new();
                std::fs::File::from(r).read_to_end(&mut b).unwrap();
                assert_eq!(sys::waitpid(child.pid, false).unwrap(), Some(sys::WaitStatus::Exited(0)));
                b.chunks_exact(4).map(|c| i32::from_ne_bytes(c.try_into().unwrap())).collect()
            }
        }
    }

    #[test]
    fn fixture_filter_behaves_in_a_child() {
        // Needs no privilege: no_new_privs lets any process install a filter.
        let c = resolved(&[Capability::CAP_CHOWN]).compile(Path::new("fixture.json"), "abc").unwrap();
        let calls = [
            (libc::SYS_getpid, [0, 0, 0]),
            (libc::SYS_mount, [0, 0, 0]),
            (libc::SYS_gettid, [0, 0, 0]),
            (libc::SYS_getppid, [0, 0, 0]),
            (libc::SYS_personality, [0xffff_ffff, 0, 0]),
            (libc::SYS_personality, [0, 0, 0]),
            (libc::SYS_getpriority, [16, 0, 0]),
            (libc::SYS_getpriority, [libc::PRIO_PROCESS as u64, 0, 0]),
        ];
        let e = [0, libc::EPERM, libc::ENOSYS, libc::ENOSYS, 0, libc::ENOSYS, libc::EINVAL, 0];
        assert_eq!(errnos_in_child(&c.bpf, &calls), e);
    }

    #[test]
    fn to_oci_keeps_rules_errno_and_args() {
        let r = resolved(&[Capability::CAP_CHOWN]);
        let v = serde_json::to_value(r.to_oci()).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 38);
        assert_eq!(v["architectures"], serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
        let sock = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"] == serde_json::json!(["getpriority"]))
            .unwrap();
        assert_eq!(sock["errnoRet"], 22);
        assert_eq!(sock["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(sock["args"][0]["valueTwo"], 16);
        assert_eq!(v["syscalls"].as_array().unwrap().len(), r.rules.len());
    }

    #[test]
    fn parse_errors_name_file_and_json_path() {
        let bad = FIXTURE.replacen("\"SCMP_ACT_ALLOW\"", "\"SCMP_ACT_MAYBE\"", 1);
        let e = parse(Path::new("/x/p.json"), &bad).unwrap_err().to_string();
        assert!(e.contains("/x/p.json") && e.contains("syscalls[0].action"), "{e}");
        let e = parse(Path::new("/x/p.json"), "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 9, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]}]}").unwrap_err().to_string();
        assert!(e.contains("syscalls[0].args[0].index"), "{e}");
        let e = load(Path::new("/nonexistent/seccomp.json"), &[]).unwrap_err().to_string();
        assert!(e.contains(PROFILE_PACKAGE) && e.contains("/nonexistent/seccomp.json"), "{e}");
    }

    #[test]
    fn podmans_profile_compiles_when_installed() {
        let p = Path::new(DEFAULT_PROFILE_PATH);
        if !p.exists() {
            eprintln!("skip: {DEFAULT_PROFILE_PATH} not installed ({PROFILE_PACKAGE})");
            return;
        }
        let c = load(p, crate::security::DEFAULT_CAPS).unwrap();
        assert!(c.info.syscalls_allowed > 300, "{:?}", c.info);
        assert_eq!(c.info.sha256.len(), 64);
        assert!(c.bpf.len() < 4096);
        eprintln!("podman profile: {} BPF instructions, {:?}", c.bpf.len(), c.info);
        assert_eq!(c.resolved.architectures.len(), 3, "the peers keep x86_64, x86, x32");
        // Cached: the same Arc.
        assert!(Arc::ptr_eq(&c, &load(p, crate::security::DEFAULT_CAPS).unwrap()));
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        // In a child: allowed, explicit errno (bpf needs CAP_SYS_ADMIN: EPERM), default (ENOSYS), and
        // the x32 form of getpid (allowed where the kernel runs x32, else the default errno). All
        // harmless: bpf and io_uring_setup get invalid arguments.
        let x32_getpid = 0x4000_0000 | libc::SYS_getpid;
        let calls = [
            (libc::SYS_getpid, [0, 0, 0]),
            (libc::SYS_bpf, [u64::MAX, 0, 0]),
            (libc::SYS_io_uring_setup, [0, 0, 0]),
            (x32_getpid, [0, 0, 0]),
        ];
        let x32 = if crate::sys::kernel_runs_x32() { 0 } else { libc::ENOSYS };
        assert_eq!(errnos_in_child(&c.bpf, &calls), [0, libc::EPERM, libc::ENOSYS, x32]);
    }
}

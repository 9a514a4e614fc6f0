//! What to start: the profile (Docker's defaults, `--privileged`, a user namespace), the container's
//! spec (id, arguments, environment, limits, stdio) and the checks and fds derived from it.
use crate::limits::Limits;
use crate::runtime::RuntimeError;
use crate::sys;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Security/isolation profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// What `docker run` / `podman run` give by default: all namespaces but user, Docker's default
    /// capabilities, no_new_privs, Podman's default seccomp profile
    /// ([`crate::seccomp_profile::DEFAULT_PROFILE_PATH`]), the default device rules ([`crate::devices::DEFAULT_RULES`]),
    /// masked and read-only paths ([`crate::security::masked_paths`], [`crate::security::READONLY_PATHS`]), sysfs
    /// read-only.
    Default,
    /// Docker's `--privileged`: no user namespace, all capabilities, all devices, no seccomp, no
    /// no_new_privs, no masked paths, sysfs read-write.
    Privileged,
    /// Default plus a user namespace (root in the container is uid [`crate::USERNS_BASE`] on the host).
    Userns,
}

impl Profile {
    /// Name ("default", "privileged", "userns").
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Privileged => "privileged",
            Profile::Userns => "userns",
        }
    }

    /// One line saying what the profile applies (for run.json and the report).
    pub fn describe(self) -> &'static str {
        match self {
            Profile::Default => {
                "default: Docker/Podman defaults (device cgroup rules, masked and read-only paths, containers-common seccomp, Docker's capabilities, no_new_privs)"
            }
            Profile::Privileged => "privileged: like docker run --privileged (all capabilities and devices, no seccomp, no masked paths)",
            Profile::Userns => {
                "userns: default plus a user namespace (container root is an unprivileged host uid)"
            }
        }
    }

    /// Whether Docker's default confinement (devices, masks, seccomp) applies.
    pub fn confined(self) -> bool {
        self != Profile::Privileged
    }
}

/// Where a container's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// /dev/null.
    Null,
    /// A pipe; take the read end with [`crate::Container::take_stdout`] / [`crate::Container::take_stderr`].
    Pipe,
    /// Append to a file (created if missing).
    File(PathBuf),
    /// stderr only: wherever stdout goes.
    SameAsStdout,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Unique id: cgroup, state dir and hostname; `[A-Za-z0-9_.-]`, at most 64 bytes.
    pub id: String,
    /// Arguments after the image's entry point.
    pub args: Vec<String>,
    /// Extra environment (after the image's).
    pub env: Vec<(String, String)>,
    /// Limits.
    pub limits: Limits,
    /// stdout.
    pub stdout: Output,
    /// stderr.
    pub stderr: Output,
    /// Give the container a terminal: a pty opened by the init in the container's own devpts (so
    /// `tty` and `/dev/pts` inside see it) whose peer is its stdin, stdout, stderr and controlling
    /// terminal (`stdout`/`stderr` are then ignored); take the master with [`crate::Container::take_terminal`].
    pub terminal: bool,
    /// The process's user (an image config's `User`, resolved in the image); None: root with the
    /// runtime's groups, as before. See [`ProcessUser`].
    pub user: Option<ProcessUser>,
}

/// The user the container's process runs as: OCI `process.user` (`uid`, `gid`, `additionalGids`).
///
/// The init switches to it last before dropping to the profile's capabilities, as runc does
/// (`setgroups`, `setresgid`, `setresuid`). A non-zero `uid` keeps no effective, permitted or
/// inheritable capabilities (the bounding set stays the profile's): what Docker gives a non-root
/// `--user` (moby `oci.SetCapabilities`) and what the kernel does on `setuid` from 0 without
/// `PR_SET_KEEPCAPS`. Under [`Profile::Userns`] the ids are inside the user namespace: container id `n`
/// is host id [`crate::USERNS_BASE`]` + n`, for `n <` [`crate::USERNS_SIZE`] (else the start fails with
/// [`RuntimeError::BadUser`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (replace the runtime's own; empty: none).
    pub groups: Vec<u32>,
}

impl ContainerSpec {
    /// A spec with no limits, stdout piped and stderr merged into it.
    pub fn new(id: impl Into<String>, args: Vec<String>) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            args,
            env: Vec::new(),
            limits: Limits::default(),
            stdout: Output::Pipe,
            stderr: Output::SameAsStdout,
            terminal: false,
            user: None,
        }
    }
}

/// Under [`Profile::Userns`], every id of `user` must be inside the namespace's map.
pub(crate) fn check_user(id: &str, profile: Profile, user: Option<&ProcessUser>) -> Result<(), RuntimeError> {
    let Some(u) = user else { return Ok(()) };
    if profile != Profile::Userns {
        return Ok(());
    }
    let ids = [u.uid, u.gid].into_iter().chain(u.groups.iter().copied());
    match ids.into_iter().find(|n| *n >= crate::USERNS_SIZE) {
        Some(n) => Err(RuntimeError::BadUser {
            id: id.into(),
            reason: format!(
                "id {n} is outside the user namespace's map (0..{}, host {}..{})",
                crate::USERNS_SIZE,
                crate::USERNS_BASE,
                crate::USERNS_BASE + crate::USERNS_SIZE
            ),
        }),
        None => Ok(()),
    }
}

pub(crate) fn check_id(id: &str) -> Result<(), RuntimeError> {
    let bad = |reason| Err(RuntimeError::BadId { id: id.into(), reason });
    if id.is_empty() || id.len() > 64 {
        return bad("must be 1 to 64 bytes");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) || id.starts_with('.') {
        return bad("only letters, digits, '_', '.', '-' are allowed (and no leading '.')");
    }
    Ok(())
}

/// (child end, parent end) for one output.
pub(crate) fn open_output(o: &Output, stdout_child: Option<&OwnedFd>) -> std::io::Result<(OwnedFd, Option<OwnedFd>)> {
    match o {
        Output::Null => Ok((std::fs::OpenOptions::new().write(true).open("/dev/null")?.into(), None)),
        Output::Pipe => {
            let (r, w) = sys::pipe()?;
            Ok((w, Some(r)))
        }
        Output::File(p) => Ok((std::fs::OpenOptions::new().create(true).append(true).open(p)?.into(), None)),
        Output::SameAsStdout => match stdout_child {
            Some(fd) => Ok((fd.try_clone()?, None)),
            None => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "stdout cannot be SameAsStdout")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("vmct-1.a_b").is_ok());
        for bad in ["", "a/b", "..", "x y", &"a".repeat(65)] {
            assert!(matches!(check_id(bad), Err(RuntimeError::BadId { .. })), "{bad}");
        }
    }

    #[test]
    fn userns_users_must_be_inside_the_map() {
        let u = |uid, gid, groups: Vec<u32>| ProcessUser { uid, gid, groups };
        let inside = u(1000, 1000, vec![crate::USERNS_SIZE - 1]);
        assert!(check_user("c", Profile::Userns, Some(&inside)).is_ok());
        assert!(check_user("c", Profile::Userns, None).is_ok());
        for bad in [u(crate::USERNS_SIZE, 0, vec![]), u(0, 70_000, vec![]), u(1, 1, vec![2, crate::USERNS_SIZE])] {
            let e = check_user("c", Profile::Userns, Some(&bad)).unwrap_err();
            assert!(matches!(&e, RuntimeError::BadUser { .. }) && e.to_string().contains("outside"), "{e}");
            // Without a user namespace any id is the host's own.
            assert!(check_user("c", Profile::Default, Some(&bad)).is_ok());
        }
    }
}

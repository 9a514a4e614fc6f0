//! The runtime: prepares a container (state dirs, cgroup, plan), clones the init and drives it over
//! the typed channel ([`crate::channel`]), then hands over the [`Container`] handle.
//!
//! Parent side of the start sequence, one function per [`LaunchStage`] (the child's side is in
//! [`crate::init`]):
//! 1. [`LaunchStage::Prepare`]: private dirs `<state>/<id>/{upper,work,rootfs}` (chowned to the mapped
//!    root with a user namespace), the channel, stdio, the init plan ([`crate::rootfs`] for its mounts).
//! 2. [`LaunchStage::Cgroup`]: create the cgroup and write its limits.
//! 3. [`LaunchStage::Clone`]: `clone3` with new pid, mount, uts, ipc, net (and user) namespaces, a
//!    `CLONE_FILES` (no pidfd: [`crate::Container::wait`] opens one); the child's ends sit in [`crate::fdslots`] until the init reports that it
//!    has its own fd table (only the fds below the slots copied, however many the process holds).
//! 4. [`LaunchStage::Attach`]: write the uid/gid maps (user namespace), put the child in its cgroup, set
//!    up the veth (bridge network), send `Go`.
//! 5. [`LaunchStage::Exec`]: read the child's stage reports until the channel closes on exec (or a
//!    failure arrives); the child's last report comes right before `execve`, so EOF after it means exec
//!    succeeded.
use crate::cgroup::{self, Cgroups};
use crate::devices::{self, DeviceRule};
use crate::image::Image;
use crate::limits::LimitError;
use crate::net::{Bridge, NetError, NetMode};
use crate::seccomp_profile::{self, ProfileError, ProfileInfo};
use crate::security::{self, CapsPlan, HostPaths, SecurityError};
use crate::sys::WaitStatus;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod start;

pub use crate::handle::{Container, Exit, Timings};
pub use crate::rootfs::build_ops;
pub use crate::spec::{ContainerSpec, Output, ProcessUser, Profile};

/// Where containers' private dirs live by default. World-traversable on purpose: a user-namespaced
/// container's root (a mapped uid) must be able to reach its overlay dirs.
pub const DEFAULT_STATE_ROOT: &str = "/var/tmp/vmct/containers";

/// First host uid/gid of the user namespace mapping (`container-userns`): container ids 0..65535 map
/// to host ids USERNS_BASE..USERNS_BASE+65535.
pub const USERNS_BASE: u32 = 1_000_000;
/// Size of the mapping.
pub const USERNS_SIZE: u32 = 65_536;

/// Errors starting or running a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The id is unusable.
    #[error("container: bad id '{id}': {reason}")]
    BadId {
        /// Id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// The process user does not fit the profile (an id outside the user namespace's map).
    #[error("container {id}: bad user: {reason}")]
    BadUser {
        /// Id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Bad limits.
    #[error("container {id}: {source}")]
    Limits {
        /// Id.
        id: String,
        /// Cause.
        source: LimitError,
    },
    /// cgroup failure.
    #[error("container {id}: {source}")]
    Cgroup {
        /// Id.
        id: String,
        /// Cause.
        source: cgroup::CgroupError,
    },
    /// Security profile failure.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The seccomp profile could not be read or compiled.
    #[error("container runtime: {0}")]
    Seccomp(#[from] ProfileError),
    /// Network failure.
    #[error("container {id}: {source}")]
    Net {
        /// Id.
        id: String,
        /// Cause.
        source: NetError,
    },
    /// A host-side operation failed.
    #[error("container {id}: {what} {path}: {source}")]
    Io {
        /// Id.
        id: String,
        /// What was done.
        what: &'static str,
        /// Path or object.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The container's state dir exists already.
    #[error("container {id}: state dir {path} exists (id in use, or a leftover: run `vmct gc`)")]
    InUse {
        /// Id.
        id: String,
        /// Path.
        path: PathBuf,
    },
    /// The init reported a failure.
    #[error("container {id}: init failed in stage '{stage}': {what}: {err}")]
    Init {
        /// Id.
        id: String,
        /// Stage name.
        stage: &'static str,
        /// The step.
        what: String,
        /// errno text.
        err: String,
    },
    /// The init died without reporting.
    #[error("container {id}: init ended before exec without a report ({status:?})")]
    InitDied {
        /// Id.
        id: String,
        /// Its wait status.
        status: Option<WaitStatus>,
    },
    /// The init stopped reporting before exec (it is killed and removed).
    #[error("container {id}: init reported nothing for {secs} s after stage '{last}': killed")]
    StartTimeout {
        /// Id.
        id: String,
        /// The last stage reached.
        last: &'static str,
        /// Seconds waited.
        secs: u64,
    },
}

/// How long the parent waits for each stage report of a starting container.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A runtime for one image and profile; cheap to share (`start` takes `&self`).
#[derive(Debug)]
pub struct Runtime {
    image: Image,
    profile: Profile,
    state_root: PathBuf,
    cgroups: Arc<dyn Cgroups>,
    caps: Option<CapsPlan>,
    seccomp: Arc<Vec<seccompiler::BpfProgram>>,
    seccomp_info: Option<ProfileInfo>,
    paths: HostPaths,
    net: NetMode,
    bridge: Option<Arc<Bridge>>,
}

impl Runtime {
    /// A runtime for `image` with `profile`, cgroups auto-detected, state under [`DEFAULT_STATE_ROOT`].
    /// Confined profiles read and compile the seccomp profile at
    /// [`seccomp_profile::DEFAULT_PROFILE_PATH`] here (once per process, see [`seccomp_profile::load`]).
    pub fn new(image: Image, profile: Profile) -> Result<Runtime, RuntimeError> {
        Runtime::with_seccomp_profile(image, profile, Path::new(seccomp_profile::DEFAULT_PROFILE_PATH))
    }

    /// [`Runtime::new`] with the seccomp profile read from `path` (ignored by `Privileged`).
    pub fn with_seccomp_profile(image: Image, profile: Profile, path: &Path) -> Result<Runtime, RuntimeError> {
        let cgroups: Arc<dyn Cgroups> =
            Arc::from(cgroup::detect().map_err(|source| RuntimeError::Cgroup { id: "-".into(), source })?);
        let (caps, seccomp, seccomp_info, paths) = if profile.confined() {
            let compiled = seccomp_profile::load(path, security::DEFAULT_CAPS)?;
            let info = compiled.info.clone();
            (
                Some(security::caps_plan(security::DEFAULT_CAPS)?),
                vec![(*compiled.bpf).clone()],
                Some(info),
                HostPaths::detect(),
            )
        } else {
            (None, Vec::new(), None, HostPaths::default())
        };
        // Before the process holds an fd per instance: the slots must be low numbers.
        crate::fdslots::reserve().map_err(|e| RuntimeError::Io {
            id: "-".into(),
            what: "reserve",
            path: "fd slots".into(),
            source: std::io::Error::other(e),
        })?;
        // The shared sysfs namespace is made now, not on the first launch (see `crate::sysfs_netns`).
        if profile == Profile::Default {
            let _ = crate::sysfs_netns::netns();
        }
        let rt = Runtime {
            image,
            profile,
            state_root: PathBuf::from(DEFAULT_STATE_ROOT),
            cgroups,
            caps,
            seccomp: Arc::new(seccomp),
            seccomp_info,
            paths,
            net: NetMode::Private,
            bridge: None,
        };
        rt.ensure_state_root()?;
        Ok(rt)
    }

    /// The seccomp profile in force (None for `Privileged`).
    pub fn seccomp_info(&self) -> Option<&ProfileInfo> {
        self.seccomp_info.as_ref()
    }

    /// The device cgroup rules in force (None for `Privileged`: all devices, as `--privileged`).
    pub fn device_rules(&self) -> Option<&'static [DeviceRule]> {
        self.profile.confined().then_some(devices::DEFAULT_RULES)
    }

    /// Keep container state under `dir` instead (must be traversable by the mapped root for `Userns`).
    pub fn with_state_root(mut self, dir: impl Into<PathBuf>) -> Result<Runtime, RuntimeError> {
        self.state_root = dir.into();
        self.ensure_state_root()?;
        Ok(self)
    }

    /// Networking: [`NetMode::Private`] (default: loopback only) or [`NetMode::Bridge`] (a veth into a
    /// project-owned bridge namespace, created now).
    pub fn with_network(mut self, net: NetMode) -> Result<Runtime, RuntimeError> {
        if net == NetMode::Bridge && self.bridge.is_none() {
            let b =
                Bridge::create(crate::NAME_PREFIX).map_err(|source| RuntimeError::Net { id: "-".into(), source })?;
            self.bridge = Some(Arc::new(b));
        }
        self.net = net;
        Ok(self)
    }

    fn ensure_state_root(&self) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.state_root).map_err(|source| RuntimeError::Io {
            id: "-".into(),
            what: "create state root",
            path: self.state_root.display().to_string(),
            source,
        })
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The cgroup layout in use.
    pub fn cgroup_version(&self) -> cgroup::CgroupVersion {
        self.cgroups.version()
    }
}

/// The parent's stages of a start, in order; their names are the parent's marks in [`Timings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchStage {
    /// State dirs, channel, stdio, init plan.
    Prepare,
    /// cgroup created with its limits.
    Cgroup,
    /// The init cloned into its namespaces.
    Clone,
    /// Maps written, cgroup joined, veth set up, `Go` sent.
    Attach,
    /// The entry point was exec'd.
    Exec,
}

impl LaunchStage {
    /// Name as used in phases ("prepare", "cgroup", "clone", "attach", "exec").
    pub fn name(self) -> &'static str {
        match self {
            LaunchStage::Prepare => "prepare",
            LaunchStage::Cgroup => "cgroup",
            LaunchStage::Clone => "clone",
            LaunchStage::Attach => "attach",
            LaunchStage::Exec => "exec",
        }
    }
}

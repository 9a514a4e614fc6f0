//! vmct's container runtime: images of read-only layers with a copy-on-write overlayfs rootfs per
//! container, new pid/mount/uts/ipc/net/cgroup (and optionally user) namespaces, cgroups v1/v2/hybrid
//! limits, pivot_root, dropped capabilities, no_new_privs, Docker/Podman's defaults (device cgroup
//! rules, masked and read-only paths, Podman's seccomp profile), private or bridged networking,
//! captured output, and cleanup of every object it creates.
//!
//! ```no_run
//! use container::{ContainerSpec, Image, Profile, Runtime};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let image = Image::open(vec!["/var/tmp/vmct/images/base".into()], vec!["/bin/vmct-workload".into()])?;
//! let rt = Runtime::new(image, Profile::Default)?;           // detects cgroups, compiles seccomp
//! let mut c = rt.start(&ContainerSpec::new("vmct-demo", vec!["ready".into()]))?;
//! let _stdout = c.take_stdout();                            // the workload protocol
//! let exit = c.stop(std::time::Duration::from_secs(5))?;    // removes cgroup and private dirs
//! assert!(!exit.oom_killed);
//! # Ok(()) }
//! ```
//!
//! Module map: [`image`] (layers), [`commit`] and [`fsmeta`] (layers from a container's changes),
//! [`spec`] (profile and container spec), [`runtime`] (parent side of the start sequence as named
//! stages), [`handle`] (the [`Container`] handle), [`channel`] (the typed parent/child start channel),
//! [`init`] (the child's named stages), [`fdslots`] (the low fd numbers a starting init keeps),
//! [`rootfs`] (the rootfs mount plan), [`sysfs_netns`] (the network namespace whose sysfs default
//! containers share), [`cgroup`] (v1/v2 behind one
//! trait), [`security`] (caps, masked paths), [`seccomp_profile`] (Podman's profile, libseccomp),
//! [`devices`] (device cgroup rules, v2 BPF program), [`net`], [`limits`], [`oci`] (configs for
//! crun/runc), [`mod@gc`], and [`sys`] (the `unsafe` system calls; the other `unsafe` blocks are the call of
//! [`sys::clone_fork`] in [`runtime`] and the overlay xattr and whiteout calls in [`commit`]).
pub mod cgroup;
pub mod channel;
pub mod commit;
pub mod devices;
pub mod fdslots;
pub mod fsmeta;
pub mod gc;
pub mod handle;
pub mod image;
pub mod init;
pub mod limits;
pub mod net;
pub mod oci;
pub mod rootfs;
pub mod runtime;
pub mod seccomp_profile;
pub mod security;
pub mod spec;
pub mod sys;
pub mod sysfs_netns;

pub use gc::{find_in, find_in_except, gc, gc_in, GcPlan, GcReport, Leftover};
pub use image::{Image, ImageError};
pub use limits::{LimitError, Limits};
pub use net::NetMode;
pub use runtime::{
    Container, ContainerSpec, Exit, Output, ProcessUser, Profile, Runtime, RuntimeError, Timings, DEFAULT_STATE_ROOT,
    USERNS_BASE, USERNS_SIZE,
};

/// Name prefix of every object the runtime creates for the harness (bridge namespace, veths).
pub const NAME_PREFIX: &str = "vmct";

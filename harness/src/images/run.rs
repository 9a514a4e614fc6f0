//! An image's own process as the workload (`vmct run --image NAME [--ready RULE] [-- CMD ARGS]`,
//! `vmct compare --image NAME --ready RULE`).
//!
//! [`ImageRun`] is what the user asked for: the image record (`crate::images::ImageRecord`, filled by
//! `vmct build` or `vmct images import`), argv = Entrypoint ++ (the command after `--`, else Cmd), its
//! environment, working directory and user, and a readiness rule. [`ImageBackend`] wraps any backend
//! so the experiments (which launch scenarios through the [`Backend`] trait) run the image instead:
//!
//! | scenario asked | what runs |
//! |---|---|
//! | `ready` (startup), `idle` (density) | the image's process, ready when the rule is met |
//! | `probe` (isolation) | the vmct probes at [`PROBE_PATH`], from the vmct layer stacked on top of the image's layers, so they run beside the image's own files (a linux guest runs them from its /init inside the image's root) |
//! | anything else (overhead, snapshot, blast) | nothing: "not applicable to an image" |
//!
//! Containers get the image's layers plus the vmct layer ([`vmct_layer`]: the mount points and the
//! probe binary) as overlay lower dirs, and the harness applies the rule from outside
//! ([`super::ready::ReadyInstance`]). Linux guests get the layers flattened into a read-only root disk
//! ([`super::rootdisk`]) and apply the rule inside. The bare guest and the process baseline have no
//! root file system to run an image in and say so.
use super::ready::{Readiness, ReadyInstance};
use super::rootdisk::{self, RootDisk};
use super::ImageRecord;
use crate::backend::{Backend, BackendError, Instance, InstanceSpec};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use workloads::scenario::Scenario;

/// Where the vmct probe binary sits in an image's instances (in the vmct layer on top).
pub const PROBE_PATH: &str = "/.vmct/vmct-workload";
/// Docker's default PATH, for images whose environment sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// What a result says for a scenario that needs the vmct workload.
pub const NOT_APPLICABLE: &str = "not applicable to an image";
/// What the bare guest says.
pub const NEEDS_OS: &str =
    "unsupported: an image needs an OS (the bare guest has no kernel, file systems or processes)";

/// Errors turning an image and a command line into a run; each names the image.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Neither Entrypoint, Cmd nor a command after `--`.
    #[error(
        "image '{0}' has no entry point (Entrypoint) and no command (Cmd); give one after `--`, e.g. `vmct run --image {0} -- /bin/sh -c 'echo hi'`"
    )]
    NoCommand(String),
    /// The command is not in the image.
    #[error("image '{image}': command '{cmd}' not found in its layers (PATH {path})")]
    NotFound {
        /// The image.
        image: String,
        /// The command.
        cmd: String,
        /// The PATH searched.
        path: String,
    },
    /// The image's User cannot be resolved.
    #[error("image '{image}': user '{user}': {why}")]
    User {
        /// The image.
        image: String,
        /// The User value.
        user: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The working directory is in no layer.
    #[error("image '{image}': its working directory {cwd} is not a directory in any of its layers")]
    NoCwd {
        /// The image.
        image: String,
        /// WorkingDir.
        cwd: String,
    },
    /// The vmct layer cannot be built.
    #[error("image '{image}': cannot build the vmct layer {path}: {source}")]
    VmctLayer {
        /// The image.
        image: String,
        /// The layer.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// What one instance of an image runs, as a backend's [`Backend::launch_image`] gets it.
#[derive(Debug, Clone)]
pub struct ImageLaunch {
    /// The image's name.
    pub image: String,
    /// Overlay lower dirs, bottom first: the image's layers, then the vmct layer.
    pub layers: Vec<PathBuf>,
    /// The process: argv\[0\] is an absolute path inside the image.
    pub argv: Vec<String>,
    /// Its environment (the image's, with a PATH).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
    /// The image's User as given (for a linux guest's /init, which resolves it in the image).
    pub user: String,
    /// The user resolved in the image's /etc/passwd and /etc/group: (uid, gid).
    pub uid_gid: (u32, u32),
    /// The readiness rule; None when the process speaks the vmct protocol itself (the probes).
    pub ready: Option<Readiness>,
    /// The root disk for linux guests, if built.
    pub rootdisk: Option<PathBuf>,
}

/// argv = entry ++ (`user_cmd` if not empty, else cmd); an error naming the image when both are empty.
pub fn argv_of(rec: &ImageRecord, user_cmd: &[String]) -> Result<Vec<String>, RunError> {
    let mut argv = rec.entry.clone().unwrap_or_default();
    if user_cmd.is_empty() {
        argv.extend(rec.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(user_cmd.iter().cloned());
    }
    if argv.is_empty() {
        return Err(RunError::NoCommand(rec.name.clone()));
    }
    Ok(argv)
}

/// The record's environment as pairs, with [`DEFAULT_PATH`] when it sets no PATH.
pub fn env_of(rec: &ImageRecord) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = rec
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// `cmd` as an absolute path inside the image made of `layers` (bottom first): a name without '/'
/// is looked up in each PATH directory, top layer first, like execvp in the container would.
pub fn resolve_command(cmd: &str, path: &str, layers: &[PathBuf]) -> Option<String> {
    let exists =
        |inside: &str| layers.iter().rev().any(|l| l.join(inside.trim_start_matches('/')).symlink_metadata().is_ok());
    if cmd.contains('/') {
        return exists(cmd).then(|| cmd.to_string());
    }
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
        .find(|p| exists(p))
}

fn read_in_layers(layers: &[PathBuf], inside: &str) -> String {
    layers.iter().rev().find_map(|l| std::fs::read_to_string(l.join(inside)).ok()).unwrap_or_default()
}

/// The vmct layer stacked on an image's layers: the mount points a container needs and the probe
/// binary at [`PROBE_PATH`], owned by the user-namespace root like every layer of the store. Built
/// once per workload binary under the image root (`layers/vmct-<hash>`). Hand-built rather than with
/// `container::image::build_layer`, which adds /bin and /etc directories that would hide an image's
/// own /bin symlink (merged-/usr images).
pub fn vmct_layer(workload: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(workload)?;
    let dest = crate::backend::container::image_root()
        .join("layers")
        .join(format!("vmct-{:016x}", crate::artifacts::content_hash(&bytes)));
    if dest.join(PROBE_PATH.trim_start_matches('/')).is_file() {
        return Ok(dest);
    }
    let tmp = container::image::temp_sibling(&dest);
    let fill = || -> std::io::Result<()> {
        let b = container::USERNS_BASE;
        for d in container::image::MOUNT_POINTS.iter().chain(&[".vmct"]) {
            std::fs::create_dir_all(tmp.join(d))?;
            std::os::unix::fs::lchown(tmp.join(d), Some(b), Some(b))?;
        }
        std::fs::set_permissions(tmp.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
        let bin = tmp.join(PROBE_PATH.trim_start_matches('/'));
        std::fs::write(&bin, &bytes)?;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::lchown(&bin, Some(b), Some(b))?;
        std::os::unix::fs::lchown(&tmp, Some(b), Some(b))?;
        std::fs::rename(&tmp, &dest)
    };
    let r = std::fs::create_dir_all(dest.parent().unwrap_or(Path::new("/"))).and_then(|_| fill());
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process built it meanwhile.
        if dest.join(PROBE_PATH.trim_start_matches('/')).is_file() {
            return Ok(dest);
        }
    }
    r.map(|_| dest)
}

/// An image run as the user asked for it.
#[derive(Debug)]
pub struct ImageRun {
    /// The image.
    pub record: ImageRecord,
    /// What a launch gets (argv, env, cwd, user, layers, rule); `rootdisk` filled on first use.
    pub launch: ImageLaunch,
    rootdisk: OnceLock<Result<RootDisk, String>>,
}

impl ImageRun {
    /// The run of `rec` with the user's command (`--` args, may be empty) and `ready` rule; `workload`
    /// is the vmct workload binary (for the vmct layer).
    pub fn new(rec: ImageRecord, user_cmd: &[String], ready: Readiness, workload: &Path) -> Result<ImageRun, RunError> {
        let argv = argv_of(&rec, user_cmd)?;
        let env = env_of(&rec);
        let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_default();
        let argv0 = resolve_command(&argv[0], &path, &rec.layers).ok_or_else(|| RunError::NotFound {
            image: rec.name.clone(),
            cmd: argv[0].clone(),
            path: path.clone(),
        })?;
        let user = rec.user.clone().unwrap_or_default();
        let uid_gid = workloads::image_run::resolve_user(
            &user,
            &read_in_layers(&rec.layers, "etc/passwd"),
            &read_in_layers(&rec.layers, "etc/group"),
        )
        .map_err(|why| RunError::User { image: rec.name.clone(), user: user.clone(), why })?;
        let vmct = vmct_layer(workload).map_err(|source| RunError::VmctLayer {
            image: rec.name.clone(),
            path: workload.to_path_buf(),
            source,
        })?;
        let cwd = rec.cwd.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "/".into());
        if !rec.layers.iter().any(|l| l.join(cwd.trim_start_matches('/')).is_dir()) {
            return Err(RunError::NoCwd { image: rec.name.clone(), cwd });
        }
        let mut layers = rec.layers.clone();
        layers.push(vmct);
        let launch = ImageLaunch {
            image: rec.name.clone(),
            layers,
            argv: std::iter::once(argv0).chain(argv[1..].iter().cloned()).collect(),
            env,
            cwd,
            user,
            uid_gid,
            ready: Some(ready),
            rootdisk: None,
        };
        Ok(ImageRun { record: rec, launch, rootdisk: OnceLock::new() })
    }

    /// The image's root disk for linux guests, built (or found in the cache) on first use.
    pub fn rootdisk(&self) -> Result<&RootDisk, String> {
        self.rootdisk
            .get_or_init(|| rootdisk::build(&self.record).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The root disk if it was built in this run.
    pub fn built_rootdisk(&self) -> Option<&RootDisk> {
        self.rootdisk.get().and_then(|r| r.as_ref().ok())
    }
}

/// How a backend runs an image, decided from its info (model and guest model), not its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSupport {
    /// A container: layers as lower dirs, the rule applied by the harness.
    Layers,
    /// A linux guest: a root disk, the rule applied by its /init.
    RootDisk,
    /// No root file system to run an image in (bare guest, process baseline).
    None(&'static str),
}

/// How `info`'s backend runs an image.
pub fn support(info: &results::BackendInfo) -> ImageSupport {
    use results::{GuestModel, IsolationModel};
    match (info.model, info.guest_model) {
        (IsolationModel::Container, _) => ImageSupport::Layers,
        (IsolationModel::UserSpaceKernel, _) => ImageSupport::None(
            "unsupported here: runsc runs an image's process behind its own network stack (the Sentry's), which \
             the harness's readiness check does not reach yet",
        ),
        (_, Some(GuestModel::Linux)) => ImageSupport::RootDisk,
        (_, Some(GuestModel::Bare)) => ImageSupport::None(NEEDS_OS),
        _ => ImageSupport::None(
            "unsupported: the process baseline has no root file system of its own to run an image in",
        ),
    }
}

/// A backend that runs an image's process for the scenarios the experiments launch (see the module docs).
pub struct ImageBackend {
    inner: Box<dyn Backend>,
    run: Arc<ImageRun>,
}

impl ImageBackend {
    /// Wrap `inner`.
    pub fn new(inner: Box<dyn Backend>, run: Arc<ImageRun>) -> ImageBackend {
        ImageBackend { inner, run }
    }

    /// The image launch for `scenario`, or why the scenario does not apply.
    fn launch_for(&self, scenario: &Scenario, support: ImageSupport) -> Result<ImageLaunch, String> {
        let mut l = self.run.launch.clone();
        match scenario {
            Scenario::Ready => {}
            Scenario::Idle { .. } if l.ready.as_ref().is_some_and(Readiness::holds_alive) => {}
            Scenario::Idle { .. } => {
                return Err(format!(
                    "{NOT_APPLICABLE} run with --ready exit: its process does not stay alive to be held"
                ))
            }
            Scenario::Probe => {
                l.argv = vec![PROBE_PATH.into(), "probe".into()];
                l.ready = None;
            }
            other => {
                let name = other.to_string();
                let name = name.split_whitespace().next().unwrap_or_default().to_string();
                return Err(format!("{NOT_APPLICABLE}: the {name} scenario needs the vmct workload"));
            }
        }
        if support == ImageSupport::RootDisk {
            l.rootdisk = Some(self.run.rootdisk()?.path.clone());
        }
        Ok(l)
    }
}

impl Backend for ImageBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn info(&self) -> results::BackendInfo {
        let mut i = self.inner.info();
        if let ImageSupport::None(why) = support(&i) {
            i.available = false;
            i.reason = Some(why.into());
        }
        i
    }

    fn check_spec(&self, spec: &InstanceSpec) -> Result<(), String> {
        self.inner.check_spec(spec)
    }

    fn attack_surface(&self) -> crate::backend::surface::BackendSurface {
        self.inner.attack_surface()
    }

    /// The wrapped backend's, less state saving: the snapshot experiment does not apply to an image.
    fn capabilities(&self) -> results::Capabilities {
        results::Capabilities { save_state: false, ..self.inner.capabilities() }
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        let launched_ns = crate::clock::mono_ns();
        let unavailable = |reason: String| BackendError::Unavailable { backend: self.name().into(), reason };
        let support = support(&self.inner.info());
        if let ImageSupport::None(why) = support {
            return Err(unavailable(why.into()));
        }
        let l = self.launch_for(&spec.scenario, support).map_err(unavailable)?;
        let inst = self.inner.launch_image(&l, spec)?;
        Ok(match (&l.ready, support) {
            (Some(rule), ImageSupport::Layers) => {
                Box::new(ReadyInstance::new(self.name(), inst, rule.clone(), launched_ns))
            }
            _ => inst,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn rec(entry: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageRecord {
        let v = |x: Option<&[&str]>| x.map(|a| a.iter().map(|s| s.to_string()).collect());
        ImageRecord {
            name: "web".into(),
            layers: vec![],
            from_container: String::new(),
            layer_tar_bytes: 0,
            whiteouts: 0,
            deleted_paths: 0,
            created_unix_s: 0.0,
            entry: v(entry),
            env: vec!["A=1".into()],
            cwd: None,
            spec: None,
            digest: None,
            cmd: v(cmd),
            user: None,
            exposed_ports: vec![],
            history: vec![],
            imported_from: None,
        }
    }

    #[test]
    fn argv_is_entry_then_the_users_command_else_cmd() {
        let user = vec!["-p".to_string(), "9090".to_string()];
        let r = rec(Some(&["busybox", "httpd", "-f"]), Some(&["-p", "8080"]));
        assert_eq!(argv_of(&r, &[]).unwrap(), ["busybox", "httpd", "-f", "-p", "8080"]);
        assert_eq!(argv_of(&r, &user).unwrap(), ["busybox", "httpd", "-f", "-p", "9090"]);
        assert_eq!(argv_of(&rec(None, Some(&["/bin/true"])), &[]).unwrap(), ["/bin/true"]);
        let e = argv_of(&rec(None, None), &[]).unwrap_err().to_string();
        assert!(e.contains("image 'web'") && e.contains("Entrypoint") && e.contains("Cmd") && e.contains("--"), "{e}");
        assert_eq!(env_of(&r), [("PATH".to_string(), DEFAULT_PATH.to_string()), ("A".into(), "1".into())]);
    }

    #[test]
    fn commands_are_found_on_the_images_path_top_layer_first() {
        let d = tempfile::tempdir().unwrap();
        let (lo, hi) = (d.path().join("lo"), d.path().join("hi"));
        std::fs::create_dir_all(lo.join("bin")).unwrap();
        std::fs::create_dir_all(hi.join("usr/bin")).unwrap();
        std::fs::write(lo.join("bin/busybox"), b"").unwrap();
        std::os::unix::fs::symlink("../../bin/busybox", hi.join("usr/bin/httpd")).unwrap();
        let layers = vec![lo, hi];
        assert_eq!(resolve_command("httpd", "/usr/bin:/bin", &layers).as_deref(), Some("/usr/bin/httpd"));
        assert_eq!(resolve_command("busybox", "/usr/bin:/bin", &layers).as_deref(), Some("/bin/busybox"));
        assert_eq!(resolve_command("/bin/busybox", "", &layers).as_deref(), Some("/bin/busybox"));
        assert_eq!(resolve_command("nginx", "/usr/bin:/bin", &layers), None);
    }

    /// An available backend `x` of `model` (and `guest` model), for tests deciding by model.
    pub(crate) fn info(model: &str, guest: Option<&str>) -> results::BackendInfo {
        results::BackendInfo {
            name: "x".into(),
            kind: results::BackendKind::Ours,
            model: model.parse().unwrap(),
            guest_model: guest.map(|g| g.parse().unwrap()),
            available: true,
            reason: None,
            version: None,
            isolation: None,
            emulated: false,
        }
    }

    #[test]
    fn backends_run_images_by_their_model() {
        assert_eq!(support(&info("container", None)), ImageSupport::Layers);
        assert_eq!(support(&info("microvm", Some("linux"))), ImageSupport::RootDisk);
        assert_eq!(support(&info("microvm", Some("bare"))), ImageSupport::None(NEEDS_OS));
        assert!(matches!(support(&info("process", None)), ImageSupport::None(_)));
    }
}

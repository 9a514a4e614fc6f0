//! `vmct shell`: an interactive container (pty, window size, Ctrl-C, exit status), like `docker run -it`.
use super::UsageError;
use crate::images;
use crate::shell::{self, ShellRequest};
use container::{Limits, Profile};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `vmct shell`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The container gets a new pty as its terminal; with a terminal on vmct's stdin it is put in raw \
mode, so Ctrl-C, Ctrl-Z and the arrow keys reach the container, and window resizes follow. \
vmct exits with the container's exit status.

The busybox layer (Debian's busybox-static: /bin/sh and the usual tools) is stacked on the image when \
busybox is installed; without it, give a command that is in the image.

Examples:
  vmct shell                                   # /bin/sh in the base image
  vmct shell --image my-image                  # the image's entry point, or /bin/sh
  vmct shell --backend container-userns -- /bin/sh -c 'id; cat /proc/self/uid_map'
  vmct shell -- /bin/vmct-workload ready"
)]
pub struct ShellArgs {
    /// Runtime profile: container, container-privileged or container-userns.
    #[arg(long, short, default_value = "container", value_parser = ["container", "container-privileged", "container-userns"])]
    pub backend: String,
    /// Start from this image (see `vmct images`; default: the base image).
    #[arg(long)]
    pub image: Option<String>,
    /// Do not stack the busybox layer.
    #[arg(long)]
    pub no_busybox: bool,
    /// Memory limit, e.g. 256MiB or 256M (powers of 1024; 256MB is 256 x 10^6 bytes); at least 1 MiB.
    #[arg(long)]
    pub mem: Option<String>,
    /// CPU quota in CPUs from 0.01 to the host's CPUs, e.g. 0.5; 0 = no limit.
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// Maximum processes, 1 to 4194304; -1, 0, max or unlimited = no limit.
    #[arg(long, allow_hyphen_values = true)]
    pub pids: Option<String>,
    /// Command and arguments (after `--`); default: the image's entry point, else /bin/sh.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Run the command.
pub fn run(a: ShellArgs) -> anyhow::Result<ExitCode> {
    let profile = match a.backend.as_str() {
        "container-privileged" => Profile::Privileged,
        "container-userns" => Profile::Userns,
        _ => Profile::Default,
    };
    let mem =
        a.mem.as_deref().map(crate::units::parse_mem).transpose().map_err(|e| UsageError(format!("--mem: {e}")))?;
    let cpus =
        a.cpus.as_deref().map(crate::units::parse_cpus).transpose().map_err(|e| UsageError(format!("--cpus: {e}")))?;
    let pids =
        a.pids.as_deref().map(crate::units::parse_pids).transpose().map_err(|e| UsageError(format!("--pids: {e}")))?;
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("vmct shell needs root (namespaces, cgroups, mounts); run it as root");
    }
    let image = a.image.as_deref().map(images::load).transpose().map_err(|e| UsageError(e.to_string()))?;
    let (mut layers, entry) = match &image {
        Some(rec) => (rec.layers.clone(), rec.entry.clone()),
        None => (super::images_cmd::base_layers()?, None),
    };
    let busybox = if a.no_busybox { None } else { Some(images::busybox::layer()) };
    match busybox {
        Some(Ok(l)) if layers.contains(&l) => {}
        Some(Ok(l)) => {
            // Below the image's own layers, so files of the image win over busybox's.
            let at = if a.image.is_some() { 1.min(layers.len()) } else { layers.len() };
            layers.insert(at, l);
        }
        Some(Err(e)) if a.command.is_empty() && entry.is_none() => {
            anyhow::bail!("vmct shell needs a shell in the image: {e}\n  or give a command: vmct shell -- /bin/vmct-workload ready")
        }
        _ => {}
    }
    let mut command =
        if !a.command.is_empty() { a.command.clone() } else { entry.unwrap_or_else(|| vec!["/bin/sh".into()]) };
    if !command[0].starts_with('/') {
        command[0] = resolve(&layers, &command[0]).ok_or_else(|| {
            UsageError(format!(
                "command '{}' is not in /bin or /usr/bin of the image; give an absolute path",
                command[0]
            ))
        })?;
    }
    let id = format!("vmct-shell-{}", std::process::id());
    // Held until the container is gone: no image removal deletes its layers meanwhile.
    let _in_use = images::usage::acquire(&images::usage::UsageRecord::new(&id, image.as_ref(), layers.clone()))
        .map_err(|e| UsageError(e.to_string()))?;
    let req = ShellRequest {
        id,
        layers,
        command,
        env: image.as_ref().map(|i| i.env.clone()).unwrap_or_default(),
        cwd: image.as_ref().and_then(|i| i.cwd.clone()),
        profile,
        limits: Limits { memory_bytes: mem, cpus: cpus.flatten(), pids: pids.flatten() },
    };
    let code = shell::run(&req)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// `/bin/NAME` or `/usr/bin/NAME` if some layer has it.
fn resolve(layers: &[PathBuf], name: &str) -> Option<String> {
    ["/bin", "/usr/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| layers.iter().any(|l| l.join(p.trim_start_matches('/')).symlink_metadata().is_ok()))
}

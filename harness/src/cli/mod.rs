//! The command line: parsing, dispatch and printing only. `main` prints `Error: {:#}` and exits 1 on
//! failure; usage errors (bad flags, unknown workload or backend, bad sizes) exit 2.
mod compare_cmd;
mod compare_image;
mod env_cmd;
mod gc_cmd;
mod images_cmd;
mod isolation_cmd;
mod kernel_cmd;
mod logs_cmd;
mod report_cmd;
mod run_cmd;
mod run_image;
mod shell_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// vmct: should this workload run in a container or in a microVM, and how many fit on a host?
///
/// vmct launches the same workload as a minimal KVM microVM (its own VMM), as a namespaced container
/// (its own runtime), as a plain host process (the baseline) and through peer runtimes (crun, runc),
/// measures startup, memory density, steady-state overhead and isolation, and writes a run directory
/// with CSVs and a self-contained HTML report.
#[derive(Debug, Parser)]
#[command(name = "vmct", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every experiment on every available backend and write a report (the main job).
    Compare(compare_cmd::CompareArgs),
    /// Run the isolation probes and the noisy-neighbour experiment on every backend.
    Isolation(isolation_cmd::IsolationArgs),
    /// Launch one instance on one backend and print its messages and timings.
    Run(run_cmd::RunArgs),
    /// Show what this host supports: KVM flavour, cgroup layout, backends and why some cannot run.
    Env(env_cmd::EnvArgs),
    /// Print the output of an instance started by `vmct run` (running or finished); `--follow` tails it.
    Logs(logs_cmd::LogsArgs),
    /// Render (or re-render) the HTML report of a run directory.
    Report(report_cmd::ReportArgs),
    /// Capacity planner: how many instances of each model fit a host, and which meets a startup SLO.
    Plan(report_cmd::PlanArgs),
    /// Build or locate the linux guest model's kernel.
    Kernel(kernel_cmd::KernelArgs),
    /// Save a running container's filesystem changes as a new image (a layer on top of its image).
    Commit(images_cmd::CommitArgs),
    /// List images with their layers, sizes and bytes shared between them (`--rm` removes, `import`
    /// imports a docker-archive or OCI layout, `history` shows what made each layer).
    Images(images_cmd::ImagesArgs),
    /// Build an image from a spec file (base image, files to add, entry point), cached by content hash.
    Build(images_cmd::BuildArgs),
    /// Start a container with a terminal (pty): a shell, or a command, like `docker run -it`.
    Shell(shell_cmd::ShellArgs),
    /// Remove leftovers (processes, cgroups, mounts, network namespaces) of a killed vmct run.
    Gc(gc_cmd::GcArgs),
}

/// A usage error: printed like clap's and exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Entry point of the `vmct` binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The VMM re-exec path is hot (it is part of microVM launch): dispatch before any parsing.
    if args.get(1).map(String::as_str) == Some("__vmm") {
        return crate::backend::microvm::vmm_main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("__vmm-linux") {
        return crate::backend::microvm_linux::vmm_linux_main(&args[2..]);
    }
    // Like other Unix tools, end quietly when a reader such as `head` closes the pipe while the
    // arguments are parsed (help text); from then on [`crate::interrupt`] handles SIGPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    crate::interrupt::install();
    crate::hostlimit::raise_nofile();
    // A write to a closed stdout (`vmct ... | head`) panics in `println!` once SIGPIPE no longer ends the
    // process: unwind (Drop guards clean up) and end quietly with 141, like the default action would.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if crate::interrupt::signal() != Some(libc::SIGPIPE) {
            default_hook(info);
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(cli, &args)));
    let result = match result {
        Ok(r) => r,
        Err(panic) => match crate::interrupt::signal() {
            Some(_) => Err(crate::interrupt::Interrupted.into()),
            None => std::panic::resume_unwind(panic),
        },
    };
    match result {
        // Commands without instances (build, commit, report, ...) finish their work first: a signal
        // during them ends vmct right after, with the signal's exit code.
        Ok(code) => match crate::interrupt::signal() {
            Some(sig) => {
                if sig != libc::SIGPIPE && !crate::interrupt::reported() {
                    eprintln!("vmct: {}", crate::interrupt::Interrupted);
                }
                ExitCode::from(crate::interrupt::exit_code(sig))
            }
            None => code,
        },
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("error: {u}\n\nFor more information, try '--help'.");
                return ExitCode::from(2);
            }
            if let Some(sig) = crate::interrupt::signal() {
                // Stopped by a signal: say so (not when the reader of our output went away) and exit
                // 128 + signal, as a shell reports it.
                if sig != libc::SIGPIPE {
                    eprintln!("vmct: {}", crate::interrupt::Interrupted);
                    if !e.chain().any(|c| c.is::<crate::interrupt::Interrupted>()) {
                        eprintln!("  (while stopping: {})", chain(&e));
                    }
                }
                return ExitCode::from(crate::interrupt::exit_code(sig));
            }
            eprintln!("Error: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}

fn dispatch(cli: Cli, args: &[String]) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Compare(a) => compare_cmd::run(a, args),
        Command::Run(a) => run_cmd::run(a),
        Command::Isolation(a) => isolation_cmd::run(a, args),
        Command::Env(a) => env_cmd::run(a),
        Command::Gc(a) => gc_cmd::run(a),
        Command::Report(a) => report_cmd::report(a),
        Command::Logs(a) => logs_cmd::run(a),
        Command::Commit(a) => images_cmd::commit(a),
        Command::Images(a) => images_cmd::list(a),
        Command::Build(a) => images_cmd::build(a),
        Command::Shell(a) => shell_cmd::run(a),
        Command::Kernel(a) => kernel_cmd::run(a),
        Command::Plan(a) => report_cmd::plan(a),
    }
}

/// An error and its causes joined by ": " like `{:#}`, leaving out a cause whose text the message
/// already shows (many errors put their source in their own message, which `{:#}` then repeats).
pub fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The static workload binary and a working directory for the process backend.
pub(crate) fn workload_and_workdir() -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let w = crate::artifacts::workload_path()?;
    let dir = crate::artifacts::cache_dir().join("work");
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    Ok((w, dir))
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_chains_do_not_repeat_their_sources() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        #[derive(Debug, thiserror::Error)]
        #[error("images: /x: {source}")]
        struct E {
            source: std::io::Error,
        }
        let e = anyhow::Error::from(E { source: io }).context("building x");
        assert_eq!(super::chain(&e), format!("building x: images: /x: {text}"));
        let plain = anyhow::anyhow!("a").context("b");
        assert_eq!(super::chain(&plain), "b: a");
    }
}

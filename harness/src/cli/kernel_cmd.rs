//! `vmct kernel build`: the linux guest model's kernel, built from the distro's source package.
use crate::kernel::{self, BuildOptions, Progress};
use std::io::IsTerminal;
use std::process::ExitCode;

/// Arguments of `vmct kernel`.
#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: KernelCommand,
}

/// Kernel subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KernelCommand {
    /// Build the guest kernel from the config kept in the repository (cached by config hash).
    Build {
        /// Kernel source tarball (Debian's linux-source package).
        #[arg(long, default_value = kernel::DEFAULT_TARBALL)]
        tarball: std::path::PathBuf,
        /// Parallel make jobs (default: CPUs).
        #[arg(long, short)]
        jobs: Option<usize>,
        /// Rebuild even if a kernel for this config is cached.
        #[arg(long)]
        force: bool,
        /// Print every line of make's output.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Print the cached kernel's path (exit 1 if none).
    Path,
}

/// Run the command.
pub fn run(a: KernelArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        KernelCommand::Path => match kernel::cached() {
            Some(p) => {
                println!("{}", p.display());
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no cached kernel for config {}: run `vmct kernel build`", kernel::config_hash());
                Ok(ExitCode::from(1))
            }
        },
        KernelCommand::Build { tarball, jobs, force, verbose } => {
            let opts = BuildOptions { tarball, jobs, nice: true, force };
            let tty = std::io::stderr().is_terminal();
            let bar = tty.then(indicatif::ProgressBar::new_spinner);
            let mut lines = 0u64;
            let t0 = std::time::Instant::now();
            let path = kernel::build(&opts, &mut |p: Progress<'_>| match p {
                Progress::Step(s) => {
                    if let Some(b) = &bar {
                        b.set_prefix(s);
                    }
                    eprintln!("kernel: {s} ({:.0}s)", t0.elapsed().as_secs_f64());
                }
                Progress::Line(l) => {
                    lines += 1;
                    if verbose {
                        eprintln!("{l}");
                    } else if let Some(b) = &bar {
                        b.set_message(l.trim().to_string());
                        b.tick();
                    } else if lines.is_multiple_of(200) {
                        eprintln!("kernel: {lines} make lines, {:.0}s", t0.elapsed().as_secs_f64());
                    }
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

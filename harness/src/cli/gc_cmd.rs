//! `vmct gc`: remove what a killed vmct run left behind.
use crate::gc;
use std::process::ExitCode;

/// Arguments of `vmct gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run the command.
pub fn run(a: GcArgs) -> anyhow::Result<ExitCode> {
    let report = gc::collect(a.dry_run);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if report.removed.is_empty() {
            println!("nothing to remove: no leftovers of a dead vmct run found");
        }
        for r in &report.removed {
            println!("{} {r}", if a.dry_run { "would remove" } else { "removed" });
        }
        for k in &report.kept {
            println!("kept {k}");
        }
        for e in &report.errors {
            eprintln!("warning: {e}");
        }
    }
    Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

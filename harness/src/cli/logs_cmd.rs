//! `vmct logs`: the output of an instance started by `vmct run`, running or finished.
use super::UsageError;
use crate::logs::LogRecord;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

/// How often `vmct logs --follow` looks for new output.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Arguments of `vmct logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Instance id (as printed by `vmct run`); without it, list recent instances.
    pub id: Option<String>,
    /// Keep printing new output until the instance ends.
    #[arg(long, short)]
    pub follow: bool,
    /// List as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run the command.
pub fn run(a: LogsArgs) -> anyhow::Result<ExitCode> {
    let Some(id) = a.id else {
        let all = LogRecord::all();
        if a.json {
            println!("{}", serde_json::to_string_pretty(&all)?);
            return Ok(ExitCode::SUCCESS);
        }
        if all.is_empty() {
            println!("no instances yet: `vmct run` records its instances' logs in {}", crate::logs::dir().display());
        }
        for r in all.iter().rev().take(30).rev() {
            let state =
                if r.running() { "running".to_string() } else { r.exit.clone().unwrap_or_else(|| "ended".into()) };
            println!("{:<22} {:<22} {:<28} {}", r.id, r.backend, r.workload, state);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let rec = LogRecord::load(&id).ok_or_else(|| {
        UsageError(format!("no instance '{id}' in {}; `vmct logs` lists the known ones", crate::logs::dir().display()))
    })?;
    let mut f = std::fs::File::open(rec.log_path())?;
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    out.write_all(&buf)?;
    out.flush()?;
    if a.follow {
        let mut pos = f.stream_position()?;
        loop {
            let running = LogRecord::load(&id).is_some_and(|r| r.running());
            let len = f.metadata()?.len();
            if len > pos {
                f.seek(SeekFrom::Start(pos))?;
                buf.clear();
                f.read_to_end(&mut buf)?;
                out.write_all(&buf)?;
                out.flush()?;
                pos = len;
            } else if !running || crate::interrupt::requested() {
                break;
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! Instance logs for `vmct logs`: every instance started by `vmct run` writes its raw output to
//! `<cache>/logs/<id>.log` and a small `<id>.json` record (backend, workload, owner pid, exit), so
//! its logs can be read while it runs (`--follow`) and after it ended.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where logs go.
pub fn dir() -> PathBuf {
    crate::artifacts::cache_dir().join("logs")
}

/// The record beside each log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRecord {
    /// Instance id.
    pub id: String,
    /// Backend.
    pub backend: String,
    /// Workload words.
    pub workload: String,
    /// Pid of the vmct process that owns the instance.
    pub owner_pid: u32,
    /// Start, seconds since the epoch.
    pub started_unix_s: f64,
    /// End, seconds since the epoch, once ended.
    pub ended_unix_s: Option<f64>,
    /// How it ended, once ended.
    pub exit: Option<String>,
}

impl LogRecord {
    /// Path of the log file.
    pub fn log_path(&self) -> PathBuf {
        dir().join(format!("{}.log", self.id))
    }

    /// Save next to the log.
    pub fn save(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(dir())?;
        std::fs::write(dir().join(format!("{}.json", self.id)), serde_json::to_vec_pretty(self)?)
    }

    /// Load by instance id.
    pub fn load(id: &str) -> Option<LogRecord> {
        serde_json::from_slice(&std::fs::read(dir().join(format!("{id}.json"))).ok()?).ok()
    }

    /// Whether the instance is still running (not ended, and its owner is alive).
    pub fn running(&self) -> bool {
        self.ended_unix_s.is_none() && std::path::Path::new(&format!("/proc/{}", self.owner_pid)).exists()
    }

    /// All records, oldest first.
    pub fn all() -> Vec<LogRecord> {
        let mut v: Vec<LogRecord> = std::fs::read_dir(dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        v.sort_by(|a, b| a.started_unix_s.total_cmp(&b.started_unix_s));
        v
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

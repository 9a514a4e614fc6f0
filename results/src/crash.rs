//! `crash.csv`: crash containment (issue 15 item 3), measured on both sides under the same emulation.
//!
//! Two rows per run: N containers of our runtime inside ONE Linux guest under QEMU TCG (standing in for a
//! host) whose kernel is crashed with sysrq-c (model `container`), and N Linux-guest VMs under QEMU TCG
//! of which one crashes its kernel (model `microvm`). Survivors are counted from the heartbeats each
//! instance prints after the crash, not assumed. Survivor counts transfer to a VT-x/AMD-V host
//! ([`crate::Quantity::CrashContainment`]); the neighbours' slowdown is a time figure under emulation and
//! does not ([`crate::Quantity::Slowdown`]); each row's `detail` says so.
use crate::vocab::IsolationModel;
use serde::{Deserialize, Serialize};

/// One side of the crash-containment experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrashRow {
    /// Backend that ran the instances (`container` inside the guest; `qemu-tcg` for the VMs).
    pub backend: String,
    /// The isolation model whose containment the row measures.
    pub model: IsolationModel,
    /// Instances alive (heartbeating) before the crash.
    pub instances: u32,
    /// Kernels crashed (1: the shared guest kernel, or one VM's kernel).
    pub crashed: u32,
    /// Instances still heartbeating in the observation window after the crash (counted).
    pub survivors: u32,
    /// Survivors' median heartbeat rate before the crash over their median rate after it (> 1: slower
    /// after); None when nothing survived or no rate was seen on one side.
    pub victim_slowdown: Option<f64>,
    /// How it ran: emulation, N, CPU and memory allotment, observation window, transfer marks.
    pub detail: String,
}

impl crate::records::Record for CrashRow {
    const FILE: &'static str = "crash.csv";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Record;

    #[test]
    fn rows_round_trip_through_csv_with_an_empty_slowdown() {
        let rows = vec![
            CrashRow {
                backend: "container".into(),
                model: IsolationModel::Container,
                instances: 3,
                crashed: 1,
                survivors: 0,
                victim_slowdown: None,
                detail: "one guest".into(),
            },
            CrashRow {
                backend: "qemu-tcg".into(),
                model: IsolationModel::Microvm,
                instances: 3,
                crashed: 1,
                survivors: 2,
                victim_slowdown: Some(0.8),
                detail: "three guests".into(),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CrashRow::FILE);
        let mut w = csv::Writer::from_path(&path).unwrap();
        for r in &rows {
            w.serialize(r).unwrap();
        }
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("backend,model,instances,crashed,survivors,victim_slowdown,detail"), "{text}");
        let back: Vec<CrashRow> = csv::Reader::from_path(&path).unwrap().deserialize().map(Result::unwrap).collect();
        assert_eq!(back, rows);
    }
}

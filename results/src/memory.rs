//! The `memory` experiment's records (issue 18 item 3): memory over time and sharing, host view.
//!
//! - `memory_giveback.csv` ([`GiveBackRow`]): N instances each touch then free M MiB (the `burst`
//!   workload); the host memory each holds before, at the peak and after a window (60 s by default).
//! - `ksm.csv` ([`KsmRow`]): N instances each holding M MiB with the kernel's same-page merging (KSM,
//!   `/sys/kernel/mm/ksm/run=1`) on for a window: memory saved per instance and the CPU ksmd spent.
//!
//! "Held" is the per-instance host accounting the density experiment records: the cgroup's memory
//! usage for a container, else the RSS of the instance's host process (the VMM or QEMU, guest memory
//! included; the workload for the process baseline).
use serde::{Deserialize, Serialize};
use std::fmt;

/// How an instance's freed memory can go back to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GiveBack {
    /// Nothing returns it: a VM keeps every guest page it touched.
    #[serde(rename = "none")]
    None,
    /// The guest reports freed pages through virtio-balloon free-page reporting and the VMM discards
    /// them (QEMU `virtio-balloon-device,free-page-reporting=on`).
    #[serde(rename = "free-page-reporting")]
    FreePageReporting,
    /// A balloon the host inflates.
    #[serde(rename = "balloon")]
    Balloon,
    /// The workload's own munmap frees it on the host (process, container, user-space kernel).
    #[serde(rename = "process frees")]
    ProcessFrees,
}

impl GiveBack {
    /// Its CSV word.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveBack::None => "none",
            GiveBack::FreePageReporting => "free-page-reporting",
            GiveBack::Balloon => "balloon",
            GiveBack::ProcessFrees => "process frees",
        }
    }
}

impl fmt::Display for GiveBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend's give-back after a working-set burst. Bytes are per instance (mean over the
/// instances), host view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GiveBackRow {
    /// Backend name.
    pub backend: String,
    /// Instances alive together.
    pub instances: u32,
    /// Bytes each instance touched, then freed.
    pub burst_bytes: u64,
    /// Held once ready, before the burst.
    pub held_before_bytes: u64,
    /// Held while the burst's memory was touched (the largest reading).
    pub held_peak_bytes: u64,
    /// Held [`GiveBackRow::after_s`] after the burst was freed.
    pub held_after_bytes: u64,
    /// How freed memory could return to the host.
    pub mechanism: GiveBack,
    /// Seconds between the free and the `after` reading.
    pub after_s: f64,
    /// Fraction of the burst given back: (peak - after) / (peak - before); None when the burst did not
    /// show on the host (peak <= before).
    pub given_back_fraction: Option<f64>,
    /// Seconds after the free until the instances held at most half of the burst above `before`
    /// (None: never within the window).
    pub half_back_s: Option<f64>,
    /// What the figure covers, in words (accounting used, mechanism caveats).
    pub detail: String,
}
impl crate::records::Record for GiveBackRow {
    const FILE: &'static str = "memory_giveback.csv";
}

impl GiveBackRow {
    /// (peak - after) / (peak - before), None when the peak is not above `before`.
    pub fn fraction(before: u64, peak: u64, after: u64) -> Option<f64> {
        (peak > before).then(|| (peak as f64 - after as f64) / (peak - before) as f64)
    }
}

/// One backend under KSM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KsmRow {
    /// Backend name.
    pub backend: String,
    /// Instances alive together.
    pub instances: u32,
    /// Memory KSM saved, per instance: the rise of `/sys/kernel/mm/ksm/pages_sharing` over the window
    /// times the page size, divided by the instances.
    pub saved_bytes_per_instance: f64,
    /// CPU time ksmd spent over the window (user + system, from /proc/PID/stat), seconds.
    pub ksm_cpu_s: f64,
    /// Seconds KSM ran.
    pub window_s: f64,
    /// Bytes each instance touched and held.
    pub hold_bytes: u64,
    /// Per-instance host accounting (as in [`GiveBackRow`]) before KSM ran, mean, bytes.
    pub held_before_bytes: u64,
    /// The same at the end of the window, bytes.
    pub held_after_bytes: u64,
    /// Full scans ksmd completed over the window.
    pub full_scans: u64,
    /// Whether the instances' memory can be merged at all, and why, in words.
    pub mergeable: String,
}
impl crate::records::Record for KsmRow {
    const FILE: &'static str = "ksm.csv";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_are_their_words_and_the_fraction_is_of_the_burst() {
        for m in [GiveBack::None, GiveBack::FreePageReporting, GiveBack::Balloon, GiveBack::ProcessFrees] {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert_eq!(GiveBackRow::fraction(10, 110, 35), Some(0.75));
        assert_eq!(GiveBackRow::fraction(10, 110, 110), Some(0.0));
        assert_eq!(GiveBackRow::fraction(10, 10, 5), None);
    }
}

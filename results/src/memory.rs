//! The `memory` experiment's records (issue 18 item 3): memory over time and sharing, host view.
//!
//! - `memory_giveback.csv` ([`GiveBackRow`]): N instances each touch then free M MiB (the `burst`
//!   workload); the host memory each holds before, at the peak and after a window (60 s by default).
//! - `page_cache.csv` ([`PageCacheRow`]): N instances of one image reading the same file set of M
//!   MiB: host memory per instance = its private growth + the host page cache of the set counted
//!   once and shared by the N.
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

/// One backend's page-cache sharing: N instances of the same image each read the same file set
/// (the `read` workload, read() into a small buffer, so the data is page cache, not the instance's
/// own memory). Bytes, host view, after all N read the set. A backend that cannot run it has a row
/// whose figures are None and whose `how` says why ("not measured: ...").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageCacheRow {
    /// Backend name.
    pub backend: String,
    /// Instances reading the set together (N).
    pub instances: u32,
    /// Bytes of the file set each instance reads (M MiB).
    pub file_bytes: u64,
    /// Each instance's own memory holding the set, mean: the larger of
    /// [`PageCacheRow::private_growth_bytes_per_instance`] and [`PageCacheRow::copy_bytes_per_instance`].
    pub private_bytes_per_instance: Option<f64>,
    /// Growth of each instance's own memory from before its read until all N read, mean: the
    /// cgroup's usage less its page cache of files (containers, runsc) or the RSS of its host process
    /// (a VMM's includes the guest RAM where the guest caches its copy).
    pub private_growth_bytes_per_instance: Option<f64>,
    /// Bytes of distinct pages of the set found in the memory files (memfds) of each instance's host
    /// processes (a VM's guest RAM, runsc's Sentry memory file), mean; None when they hold none.
    pub copy_bytes_per_instance: Option<f64>,
    /// Host page cache of the file(s) the instances read through, counted once (mincore over the
    /// host file: the layer's file for containers and the baseline, the root disk for VMs).
    pub shared_host_cache_bytes: Option<u64>,
    /// `private_bytes_per_instance + shared_host_cache_bytes / instances`.
    pub host_bytes_per_instance: Option<f64>,
    /// What each accounting is, and for a backend without figures why it was not measured.
    pub how: String,
}
impl crate::records::Record for PageCacheRow {
    const FILE: &'static str = "page_cache.csv";
}

impl PageCacheRow {
    /// Private + shared / N.
    pub fn per_instance(private: f64, shared: u64, instances: u32) -> f64 {
        private + shared as f64 / f64::from(instances.max(1))
    }

    /// A row without figures: `why` it was not measured.
    pub fn not_measured(backend: &str, instances: u32, file_bytes: u64, why: &str) -> PageCacheRow {
        PageCacheRow {
            backend: backend.into(),
            instances,
            file_bytes,
            private_bytes_per_instance: None,
            private_growth_bytes_per_instance: None,
            copy_bytes_per_instance: None,
            shared_host_cache_bytes: None,
            host_bytes_per_instance: None,
            how: format!("not measured: {why}"),
        }
    }
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

    #[test]
    fn the_shared_cache_is_split_over_the_instances_and_unmeasured_rows_say_why() {
        assert_eq!(PageCacheRow::per_instance(1.0, 8, 4), 3.0);
        let r = PageCacheRow::not_measured("microvm", 4, 64 << 20, "the bare guest has no file system");
        assert!(r.host_bytes_per_instance.is_none() && r.how.starts_with("not measured: the bare guest"), "{r:?}");
    }
}

//! `crosscheck.csv`: the peer cross-check (issue 15 item 6), so a "x times crun" figure can be checked
//! against the peer's own command line.
//!
//! For each container backend (ours, crun, runc, runsc) the same `ready` workload (it announces `ready`
//! and exits at once, so the workload itself costs nothing) is timed on several clocks ([`CrossClock`]),
//! n times each. Each row is one (backend, clock) with its median, p10, p90 and MAD (unscaled) in
//! seconds, from [`crate::stats`]. The rows of a peer's own CLI (`peer-cli-run`) also carry the ratio of
//! ours (the `container` backend, default profile) to that peer on both clocks.
use crate::stats;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What was timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrossClock {
    /// The peer CLI's own whole-process run of the generated bundle: spawn of `<peer> run --bundle B ID`
    /// to its exit, plus `<peer> delete --force ID` when the container's state outlived the run.
    #[serde(rename = "peer-cli-run")]
    PeerCliRun,
    /// vmct's launch-to-ready inside one harness process (the startup experiment's clock).
    #[serde(rename = "vmct-launch-to-ready")]
    VmctLaunchToReady,
    /// Whole-process `vmct run --backend B --workload ready --json`: spawn to exit.
    #[serde(rename = "vmct-run")]
    VmctRun,
    /// vmct's own start within that: spawn of `vmct run` to the moment it launches the instance (host
    /// CLOCK_MONOTONIC, the launch stamp vmct prints).
    #[serde(rename = "vmct-run-start")]
    VmctRunStart,
    /// Whole-process `vmct run` less vmct's own start, per sample: launch, ready, exit and removal of
    /// the instance; the clock compared with a peer's `peer-cli-run`.
    #[serde(rename = "vmct-run-less-start")]
    VmctRunLessStart,
}

impl CrossClock {
    /// Its CSV word.
    pub fn as_str(self) -> &'static str {
        match self {
            CrossClock::PeerCliRun => "peer-cli-run",
            CrossClock::VmctLaunchToReady => "vmct-launch-to-ready",
            CrossClock::VmctRun => "vmct-run",
            CrossClock::VmctRunStart => "vmct-run-start",
            CrossClock::VmctRunLessStart => "vmct-run-less-start",
        }
    }
}

impl fmt::Display for CrossClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One (backend, clock) of the cross-check. Times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossCheckRow {
    /// Backend name (`container`, `crun`, `runc`, `runsc`).
    pub backend: String,
    /// What was timed.
    pub clock: CrossClock,
    /// The command or interval timed, in words.
    pub timed: String,
    /// Sample count.
    pub n: u32,
    /// Median, seconds.
    pub median_s: f64,
    /// 10th percentile, seconds.
    pub p10_s: f64,
    /// 90th percentile, seconds.
    pub p90_s: f64,
    /// Median absolute deviation (unscaled), seconds.
    pub mad_s: f64,
    /// On `peer-cli-run` rows: ours' median launch-to-ready in vmct over this peer's, both in vmct.
    pub ratio_ours_launch_to_ready: Option<f64>,
    /// On `peer-cli-run` rows: ours' median `vmct-run-less-start` over this peer's `peer-cli-run` median.
    pub ratio_ours_whole_process: Option<f64>,
}
impl crate::records::Record for CrossCheckRow {
    const FILE: &'static str = "crosscheck.csv";
}

impl CrossCheckRow {
    /// The row of `samples` (seconds), without ratios; None for no samples.
    pub fn of(backend: &str, clock: CrossClock, timed: &str, samples: &[f64]) -> Option<CrossCheckRow> {
        let s = stats::summarize(samples)?;
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(CrossCheckRow {
            backend: backend.into(),
            clock,
            timed: timed.into(),
            n: u32::try_from(s.n).unwrap_or(u32::MAX),
            median_s: s.median,
            p10_s: stats::percentile_sorted(&sorted, 10.0),
            p90_s: s.p90,
            mad_s: s.mad,
            ratio_ours_launch_to_ready: None,
            ratio_ours_whole_process: None,
        })
    }
}

/// Fill the ratios of every `peer-cli-run` row of `rows` from the rows of `ours` (the backend name of
/// our container backend) and of that peer: ours' `vmct-launch-to-ready` median over the peer's, and
/// ours' `vmct-run-less-start` median over the peer's `peer-cli-run` median. A ratio whose operands
/// are missing or zero stays None.
pub fn fill_ratios(rows: &mut [CrossCheckRow], ours: &str) {
    let median = |rows: &[CrossCheckRow], b: &str, c: CrossClock| {
        rows.iter().find(|r| r.backend == b && r.clock == c).map(|r| r.median_s).filter(|m| *m > 0.0)
    };
    let ours_ready = median(rows, ours, CrossClock::VmctLaunchToReady);
    let ours_whole = median(rows, ours, CrossClock::VmctRunLessStart);
    let peers: Vec<(usize, Option<f64>)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.clock == CrossClock::PeerCliRun)
        .map(|(i, r)| (i, median(rows, &r.backend, CrossClock::VmctLaunchToReady)))
        .collect();
    for (i, peer_ready) in peers {
        let cli = Some(rows[i].median_s).filter(|m| *m > 0.0);
        rows[i].ratio_ours_launch_to_ready = ours_ready.zip(peer_ready).map(|(a, b)| a / b);
        rows[i].ratio_ours_whole_process = ours_whole.zip(cli).map(|(a, b)| a / b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_summarise_samples_and_ratios_are_ours_over_the_peer() {
        let ms = |v: &[f64]| v.iter().map(|x| x * 1e-3).collect::<Vec<f64>>();
        let mut rows = vec![
            CrossCheckRow::of("container", CrossClock::VmctLaunchToReady, "l2r", &ms(&[4.0, 5.0, 6.0])).unwrap(),
            CrossCheckRow::of("container", CrossClock::VmctRunLessStart, "run", &ms(&[7.0, 8.0, 9.0, 30.0])).unwrap(),
            CrossCheckRow::of("crun", CrossClock::VmctLaunchToReady, "l2r", &ms(&[10.0, 20.0, 12.0])).unwrap(),
            CrossCheckRow::of("crun", CrossClock::PeerCliRun, "crun run", &ms(&[16.0, 14.0, 18.0, 15.0, 17.0]))
                .unwrap(),
            CrossCheckRow::of("runc", CrossClock::PeerCliRun, "runc run", &ms(&[40.0])).unwrap(),
        ];
        fill_ratios(&mut rows, "container");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let r = &rows[3];
        assert_eq!(r.n, 5);
        assert!(close(r.median_s, 16e-3) && close(r.p10_s, 14.4e-3) && close(r.p90_s, 17.6e-3), "{r:?}");
        assert!(close(r.mad_s, 1e-3), "{r:?}");
        assert!(close(rows[1].median_s, 8.5e-3), "{:?}", rows[1]);
        assert!(close(r.ratio_ours_launch_to_ready.unwrap(), 5.0 / 12.0), "{r:?}");
        assert!(close(r.ratio_ours_whole_process.unwrap(), 8.5 / 16.0), "{r:?}");
        // runc ran no vmct launches: no launch-to-ready ratio; rows of other clocks carry none.
        assert_eq!(rows[4].ratio_ours_launch_to_ready, None);
        assert!(close(rows[4].ratio_ours_whole_process.unwrap(), 8.5 / 40.0));
        assert!(rows[..3].iter().all(|r| r.ratio_ours_whole_process.is_none()));
        assert!(CrossCheckRow::of("crun", CrossClock::PeerCliRun, "x", &[]).is_none());
    }
}

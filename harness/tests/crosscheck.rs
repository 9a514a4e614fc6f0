#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The peer cross-check experiment (issue 15 item 6) run through `vmct compare`'s registry on our
//! container backend and crun with n = 3: every clock of both yields a row of 3 samples with positive
//! figures, and crun's CLI row carries both ratios. Needs root and Debian's `crun` (skips without them
//! unless `VMCT_REQUIRE_PRIVILEGED=1`).
use harness::compare::Settings;
use harness::privileged::{gate, required, Need};
use harness::progress::Mode;
use results::{CrossCheckRow, CrossClock, ExperimentId, RunDir};

#[test]
fn crosscheck_of_crun_yields_rows_of_n_samples_with_positive_figures() {
    let test = "crosscheck_of_crun_yields_rows_of_n_samples_with_positive_figures";
    if !gate(test, &[Need::Root]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let w = harness::artifacts::workload_path().unwrap();
    let all = harness::backend::registry::all(&w, d.path());
    let backends = harness::backend::registry::select(all, &["container".into(), "crun".into()]).unwrap();
    for b in &backends {
        let info = b.info();
        if !info.available {
            assert!(!required(), "{} unavailable and VMCT_REQUIRE_PRIVILEGED=1: {:?}", b.name(), info.reason);
            eprintln!("skipped {test}: {} unavailable: {:?}", b.name(), info.reason);
            return;
        }
    }
    assert!(harness::experiments::crosscheck::vmct_bin().is_some(), "the vmct binary is built beside the tests");
    let mut s = Settings::quick(8 << 30);
    s.experiments = vec![ExperimentId::CrossCheck];
    s.startup.runs = 3;
    let out = d.path().join("run");
    let host = results::HostEnv::capture();
    let o = harness::compare::run(&backends, &s, out.clone(), vec!["vmct".into()], host, Mode::Quiet).unwrap();
    assert!(o.failures.is_empty(), "{:?}", o.failures);
    let rows: Vec<CrossCheckRow> = RunDir::open(&out).unwrap().read_csv().unwrap();
    let clocks = |b: &str| rows.iter().filter(|r| r.backend == b).map(|r| r.clock).collect::<Vec<_>>();
    let vmct_clocks =
        [CrossClock::VmctLaunchToReady, CrossClock::VmctRun, CrossClock::VmctRunStart, CrossClock::VmctRunLessStart];
    assert_eq!(clocks("container"), vmct_clocks.to_vec(), "{rows:?}");
    let mut crun = vmct_clocks.to_vec();
    crun.insert(1, CrossClock::PeerCliRun);
    assert_eq!(clocks("crun"), crun, "{rows:?}");
    for r in &rows {
        assert_eq!(r.n, 3, "{r:?}");
        assert!(r.median_s > 0.0 && r.p10_s > 0.0 && r.p90_s >= r.median_s && r.mad_s >= 0.0, "{r:?}");
    }
    let cli = rows.iter().find(|r| r.clock == CrossClock::PeerCliRun).unwrap();
    assert!(cli.ratio_ours_launch_to_ready.is_some_and(|x| x > 0.0), "{cli:?}");
    assert!(cli.ratio_ours_whole_process.is_some_and(|x| x > 0.0), "{cli:?}");
}

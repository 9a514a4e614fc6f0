#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! A container whose init fails before it reads its start byte must come back as the init's own error,
//! with the harness alive even though it keeps SIGPIPE's default action (as `vmct` does, to end quietly
//! in a closed pipeline). Its own test binary: SIGPIPE's disposition is process-wide.
use harness::privileged::{gate, Need};

#[test]
fn an_init_that_dies_before_go_is_reported_not_fatal_to_the_harness() {
    if !gate("an_init_that_dies_before_go_is_reported_not_fatal_to_the_harness", &[Need::Root]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layer = t.path().join("layer");
    for d in container::image::MOUNT_POINTS.iter().chain(&["bin"]) {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::copy(harness::artifacts::workload_path().unwrap(), layer.join("bin/w")).unwrap();
    let img = container::Image::open(vec![layer.clone()], vec!["/bin/w".into()]).unwrap();
    let rt = container::Runtime::new(img, container::Profile::Default).unwrap();
    // The layer vanishes after the image was checked: the init's overlay mount fails before GO.
    std::fs::remove_dir_all(&layer).unwrap();
    // SAFETY: setting a signal disposition has no preconditions; this binary runs only this test.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    for i in 0..20 {
        let spec = container::ContainerSpec::new(format!("vmct-t{}-early-{i}", std::process::id()), vec![]);
        let e = rt.start(&spec).unwrap_err().to_string();
        assert!(e.contains("stage 'rootfs'"), "{e}");
    }
    let state = std::path::Path::new(container::DEFAULT_STATE_ROOT);
    let left: Vec<_> = std::fs::read_dir(state)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&format!("vmct-t{}-early", std::process::id())))
        .collect();
    assert!(left.is_empty(), "failed starts leave nothing behind: {left:?}");
}

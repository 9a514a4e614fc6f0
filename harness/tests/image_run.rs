#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! An image's own process as the workload (`vmct run --image NAME --ready RULE [-- CMD]`, `vmct compare
//! --image`): images are records the tests write (as `vmct images import` fills them: Entrypoint, Cmd,
//! no digest or one) over Debian's busybox-static layer. Needs root (containers) and, for the linux
//! guest, QEMU and the guest kernel; skips without them unless `VMCT_REQUIRE_PRIVILEGED=1`.
mod common;

use common::vmct;
use harness::images::ImageRecord;
use harness::privileged::{gate, required, Need};
use std::process::{Command, Output};

/// An image record `name` over the busybox layer with `entry` and `cmd`, written into the store;
/// removed (with its root disk) when dropped.
struct TestImage {
    name: String,
}

impl TestImage {
    fn new(tag: &str, entry: Option<&[&str]>, cmd: Option<&[&str]>) -> TestImage {
        Self::with_user(tag, entry, cmd, None)
    }

    fn with_user(tag: &str, entry: Option<&[&str]>, cmd: Option<&[&str]>, user: Option<&str>) -> TestImage {
        let name = format!("vmct-test-{tag}-{}", std::process::id());
        let v = |x: Option<&[&str]>| x.map(|a| a.iter().map(|s| s.to_string()).collect());
        let layer = harness::images::busybox::layer().expect("busybox-static installed (scripts/setup-host)");
        let rec = ImageRecord {
            name: name.clone(),
            layers: vec![layer],
            from_container: String::new(),
            layer_tar_bytes: 0,
            whiteouts: 0,
            deleted_paths: 0,
            created_unix_s: harness::logs::unix_now(),
            entry: v(entry),
            env: vec!["GREETING=hello".into()],
            cwd: Some("/tmp".into()),
            spec: None,
            digest: None,
            cmd: v(cmd),
            user: user.map(String::from),
            exposed_ports: vec!["8080/tcp".into()],
            history: vec![],
            imported_from: None,
        };
        let dir = harness::images::store().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("image.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
        TestImage { name }
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new(vmct()).args(["images", "--rm", &self.name]).output();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(vmct()).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn containers(test: &str) -> bool {
    if !gate(test, &[Need::Root]) {
        return false;
    }
    if harness::images::busybox::find().is_err() {
        assert!(!required(), "{test}: busybox-static missing; scripts/setup-host installs it");
        eprintln!("skipped {test}: busybox-static not installed");
        return false;
    }
    true
}

const HTTPD: &[&str] = &["httpd", "-f", "-p", "8080"];

#[test]
fn a_web_server_image_reaches_ready_by_tcp_on_our_container_and_runc() {
    if !containers("a_web_server_image_reaches_ready_by_tcp_on_our_container_and_runc") {
        return;
    }
    let img = TestImage::new("httpd", Some(&["busybox"]), Some(HTTPD));
    for backend in ["container", "runc"] {
        let o = run(&["run", "--image", &img.name, "--backend", backend, "--ready", "tcp:8080", "--json"]);
        assert!(o.status.success(), "{backend}: {}", text(&o));
        let j = json(&o);
        assert_eq!(j["argv"], serde_json::json!(["/bin/busybox", "httpd", "-f", "-p", "8080"]), "{backend}");
        assert!(j["launch_to_ready_s"].as_f64().unwrap() > 0.0, "{backend}: {j}");
        assert_eq!(j["ready_rule"], "tcp:8080");
    }
    // A server that never listens on the port misses its deadline, and says which rule.
    let o = run(&["run", "--image", &img.name, "--ready", "tcp:8081", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("tcp:8081"), "{}", text(&o));
}

#[test]
fn exit_and_log_rules_report_the_status_and_the_matching_line() {
    if !containers("exit_and_log_rules_report_the_status_and_the_matching_line") {
        return;
    }
    let img = TestImage::new("tools", None, Some(&["/bin/true"]));
    // The image's env and cwd reach the process; its exit status is reported.
    for backend in ["container", "crun"] {
        let o = run(&[
            "run",
            "--image",
            &img.name,
            "--backend",
            backend,
            "--ready",
            "exit",
            "--json",
            "--",
            "/bin/sh",
            "-c",
            "test \"$GREETING $(pwd)\" = 'hello /tmp' && exit 3",
        ]);
        assert_eq!(o.status.code(), Some(1), "{backend}: {}", text(&o));
        let j = json(&o);
        assert_eq!(j["exit_status"], 3, "{backend}: {j}");
        assert_eq!(j["phases"][0][0], "to_exit", "{backend}: {j}");
    }
    // Cmd alone runs when no command is given.
    let o = run(&["run", "--image", &img.name, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o)["exit_status"], 0);
    let o = run(&[
        "run",
        "--image",
        &img.name,
        "--ready",
        "log:^listening on [0-9]+$",
        "--json",
        "--",
        "/bin/sh",
        "-c",
        "echo starting; echo listening on 42; sleep 30",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(json(&o)["launch_to_ready_s"].as_f64().unwrap() > 0.0);
    // The image's User: every container backend runs the process as it, with only that group and, like
    // Docker for a non-root user, no effective or permitted capabilities (the bounding set stays).
    let img_user = TestImage::with_user("user", None, Some(&["/bin/true"]), Some("1000:1001"));
    let id = "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) $(grep -E '^Cap(Inh|Prm|Eff)' /proc/self/status | tr -s '\t' ' ')";
    let want =
        "uid=1000 gid=1001 groups=1001 CapInh: 0000000000000000 CapPrm: 0000000000000000 CapEff: 0000000000000000";
    let logs = tempfile::tempdir().unwrap();
    for backend in ["container", "container-userns", "container-privileged", "runc"] {
        let log_dir = logs.path().join(backend);
        let dir = log_dir.to_str().unwrap();
        let o =
            run(&["run", "--image", &img_user.name, "--backend", backend, "--log-dir", dir, "--", "/bin/sh", "-c", id]);
        assert!(o.status.success(), "{backend}: {}", text(&o));
        let out: String =
            std::fs::read_dir(&log_dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
        assert!(out.lines().any(|l| l == want), "{backend}: want '{want}' in its output:\n{out}");
    }
    // A process that ends before its line appears is an error naming the rule.
    let o = run(&["run", "--image", &img.name, "--ready", "log:never", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("log:never"), "{}", text(&o));
}

#[test]
fn usage_errors_name_the_image_or_the_valid_rules() {
    // No root needed: these fail before anything starts.
    if harness::images::busybox::find().is_err() {
        return;
    }
    let img = TestImage::new("empty", None, None);
    let o = run(&["run", "--image", &img.name]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains(&format!("image '{}'", img.name)) && t.contains("Entrypoint") && t.contains("Cmd"), "{t}");
    for bad in ["tcp:0", "http:80", "log:(", "exit:1"] {
        let o = run(&["run", "--image", &img.name, "--ready", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        let t = text(&o);
        assert!(t.contains(bad) && (t.contains("tcp:PORT") || t.contains("regular expression")), "{t}");
        let o = run(&["compare", "--image", &img.name, "--ready", bad, "--quick"]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
    }
    let o = run(&["run", "--image", &img.name, "--", "no-such-command"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("'no-such-command' not found"), "{}", text(&o));
    let o = run(&["compare", "--image", &img.name, "--quick"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("needs --ready"), "{}", text(&o));
}

#[test]
fn compare_with_an_image_records_it_and_what_does_not_apply() {
    if !containers("compare_with_an_image_records_it_and_what_does_not_apply") {
        return;
    }
    let img = TestImage::new("cmp", Some(&["busybox"]), Some(HTTPD));
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let o = Command::new(vmct())
        .args(["compare", "--image", &img.name, "--ready", "tcp:8080", "--quick", "--quiet"])
        .args(["--backends", "container,microvm", "--experiments", "startup,overhead", "--runs-per-backend", "2"])
        .args(["--warmup", "0"])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let info = results::image::read(&dir).unwrap().expect("image.json");
    assert_eq!(info.name, img.name);
    assert_eq!(info.ready_rule, "tcp:8080");
    assert!(info
        .not_applicable
        .iter()
        .any(|n| n.experiment == "overhead" && n.reason.contains("not applicable to an image")));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let bare = meta["backends"].as_array().unwrap().iter().find(|b| b["name"] == "microvm").unwrap();
    assert!(bare["reason"].as_str().unwrap().contains("an image needs an OS"), "{bare}");
    let startup = std::fs::read_to_string(dir.join("startup_summary.csv")).unwrap();
    assert!(startup.lines().any(|l| l.starts_with("container,")), "{startup}");
    assert!(!dir.join("overhead.csv").exists());
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains(&format!("<h1>vmct report: image {}", img.name)), "first line names the image");
}

#[test]
fn a_web_server_image_reaches_ready_in_the_linux_guest_under_qemu_tcg() {
    let test = "a_web_server_image_reaches_ready_in_the_linux_guest_under_qemu_tcg";
    if !containers(test) {
        return;
    }
    if harness::backend::peers::which(harness::backend::qemu_tcg::QEMU_BIN).is_none() {
        assert!(!required(), "{test}: QEMU missing; scripts/setup-host installs qemu-system-x86");
        eprintln!("skipped {test}: QEMU missing");
        return;
    }
    if !harness::kernel::cached_bzimage_path().is_file() {
        if !required() {
            eprintln!("skipped {test}: no guest kernel (run `vmct kernel build`)");
            return;
        }
        // As the qemu_tcg tests do: one build per config, locked, shared with them.
        harness::kernel::build(&harness::kernel::BuildOptions::default(), &mut |_| {}).expect("guest kernel builds");
    }
    let img = TestImage::new("guest", Some(&["busybox"]), Some(HTTPD));
    let o = run(&["run", "--image", &img.name, "--backend", "qemu-tcg", "--ready", "tcp:8080", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j = json(&o);
    assert!(j["launch_to_ready_s"].as_f64().unwrap() > 0.0, "{j}");
    let disk = &j["rootdisk"];
    assert_eq!(disk["fs"], "ext4", "{j}");
    assert!(disk["bytes"].as_u64().unwrap() > 0 && disk["build_s"].as_f64().unwrap() > 0.0, "{j}");
    // The exit rule: the guest's /init forwards the process's status; env and cwd arrive.
    let o = run(&[
        "run",
        "--image",
        &img.name,
        "--backend",
        "qemu-tcg",
        "--ready",
        "exit",
        "--json",
        "--",
        "/bin/sh",
        "-c",
        "test \"$GREETING $(pwd)\" = 'hello /tmp' && exit 4",
    ]);
    assert_eq!(json(&o)["exit_status"], 4, "{}", text(&o));
    // The bare guest says plainly that it cannot run an image.
    let o = run(&["run", "--image", &img.name, "--backend", "microvm"]);
    assert!(o.status.success() && text(&o).contains("an image needs an OS"), "{}", text(&o));
}

#[test]
fn a_root_disk_applies_whiteouts_and_opaque_dirs_and_shifts_owners_back() {
    use container::fsmeta::{make_special, makedev, set_xattrs, Kind};
    if !gate("a_root_disk_applies_whiteouts_and_opaque_dirs_and_shifts_owners_back", &[Need::Root]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    for d in [lower.join("opq"), upper.join("opq")] {
        std::fs::create_dir_all(d).unwrap();
    }
    for f in ["gone", "keep", "opq/old"] {
        std::fs::write(lower.join(f), f).unwrap();
    }
    let base = container::USERNS_BASE;
    std::os::unix::fs::lchown(lower.join("keep"), Some(base + 33), Some(base + 34)).unwrap();
    make_special(&upper.join("gone"), Kind::CharDevice, makedev(0, 0)).unwrap();
    set_xattrs(&upper.join("opq"), &[("trusted.overlay.opaque".into(), b"y".to_vec())]).unwrap();
    std::fs::write(upper.join("opq/new"), "new").unwrap();
    let rec: ImageRecord = serde_json::from_value(serde_json::json!({
        "name": "vmct-test-rootdisk", "layers": [lower, upper], "layer_tar_bytes": 0, "whiteouts": 1,
        "created_unix_s": 0.0, "digest": format!("sha256:0000test{}", std::process::id()),
    }))
    .unwrap();
    let disk = harness::images::rootdisk::build(&rec).unwrap();
    assert!(!disk.cached && disk.bytes > 0 && disk.build_s > 0.0, "{disk:?}");
    let debugfs = |cmd: &str| {
        let o = Command::new("debugfs").args(["-R", cmd]).arg(&disk.path).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let root = debugfs("ls -p /");
    assert!(root.contains("/keep/") && root.contains("/opq/") && !root.contains("/gone/"), "{root}");
    let opq = debugfs("ls -p /opq");
    assert!(opq.contains("/new/") && !opq.contains("/old/"), "the opaque dir hides the lower one: {opq}");
    // ls -p: /inode/mode/uid/gid/name/size/
    let keep = root.lines().find(|l| l.contains("/keep/")).unwrap();
    assert!(keep.contains("/33/34/keep/"), "owners shifted back: {keep}");
    assert!(harness::images::rootdisk::build(&rec).unwrap().cached);
    assert!(harness::images::rootdisk::remove_for(&rec) > 0);
    assert!(!disk.path.exists());
}

#[test]
fn gc_finds_the_root_disk_of_a_removed_image() {
    if !gate("gc_finds_the_root_disk_of_a_removed_image", &[Need::Root]) {
        return;
    }
    let dir = harness::images::rootdisk::dir();
    std::fs::create_dir_all(&dir).unwrap();
    let orphan = dir.join(format!("sha256-vmct-test-orphan-{}.ext4", std::process::id()));
    std::fs::write(&orphan, b"").unwrap();
    let o = run(&["gc", "--dry-run"]);
    let found = text(&o).contains(&format!("root disk {}", orphan.display()));
    std::fs::remove_file(&orphan).unwrap();
    assert!(found, "{}", text(&o));
}

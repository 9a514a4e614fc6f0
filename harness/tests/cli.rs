#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The CLI as a user meets it: exit codes, clear errors, JSON output, a quick compare.
use assert_cmd::Command;
use predicates::prelude::*;

fn vmct() -> Command {
    Command::cargo_bin("vmct").unwrap()
}

#[test]
fn help_explains_the_commands() {
    vmct().arg("--help").assert().success().stdout(
        predicate::str::contains("compare")
            .and(predicate::str::contains("microVM"))
            .and(predicate::str::contains("gc")),
    );
}

#[test]
fn bad_arguments_exit_2_with_a_clear_error() {
    vmct().args(["run", "--bogus"]).assert().code(2).stderr(predicate::str::contains("unexpected argument '--bogus'"));
    vmct().args(["run", "--workload", "frobnicate"]).assert().code(2).stderr(
        predicate::str::contains("unknown workload 'frobnicate'")
            .and(predicate::str::contains("valid workloads: ready, idle, cpu")),
    );
    for bad in ["0", "-5", "99999999999999"] {
        vmct()
            .args(["run", "--workload", "mem", "--mib", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("invalid value '{bad}' for '--mib'")));
    }
    vmct()
        .args(["run", "--backend", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown backend 'nope'; valid backends: process"));
    vmct().args(["run", "--mem", "64Q"]).assert().code(2).stderr(predicate::str::contains("invalid size '64Q'"));
    vmct()
        .args(["compare", "--experiments", "startup,teleport"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown experiment 'teleport'"));
}

#[test]
fn run_prints_a_json_result_for_the_process_backend() {
    let out = vmct()
        .args(["run", "--backend", "process", "--workload", "cpu", "--iters", "1000", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "process");
    assert!(v["launch_to_ready_s"].as_f64().unwrap() > 0.0);
    let r = v["results"].as_array().unwrap();
    assert!(r
        .iter()
        .any(|x| x["name"] == "cpu.sha256" && x["unit"] == "blocks/s" && x["value"].as_f64().unwrap() > 0.0));
    assert_eq!(v["exit_status"], 0);
}

#[test]
fn unwritable_output_dir_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("f");
    std::fs::write(&file, "").unwrap();
    vmct()
        .args(["compare", "--quick", "--backends", "process", "--experiments", "startup", "--out"])
        .arg(file.join("run"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot write").and(predicate::str::contains("f/run")));
}

#[test]
fn quick_compare_on_the_process_backend_writes_a_run_dir() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    vmct()
        .args(["compare", "--quick", "--quiet", "--backends", "process", "--density-max", "5", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("launch-to-ready"));
    let rd = results::RunDir::open(&out).unwrap();
    let meta = rd.read_meta().unwrap();
    assert_eq!(meta.backends[0].name, "process");
    // run.json carries the transfer mark of every (backend, quantity) the run measured (issue 15 item 5).
    assert_eq!(meta.transfer, results::transfer::marks(&meta));
    for q in [results::Quantity::Startup, results::Quantity::HostMemory, results::Quantity::Throughput] {
        let m = meta.transfer.iter().find(|m| m.backend == "process" && m.quantity == q);
        assert_eq!(m.map(|m| m.transfer), Some(results::Transfer::Transfers), "{q:?} in {:?}", meta.transfer);
    }
    let sums: Vec<results::StartupSummary> = rd.read_csv().unwrap();
    let seq = sums.iter().find(|s| s.mode == results::StartupMode::Sequential).unwrap();
    assert_eq!(seq.n, 30);
    assert!(seq.median_s > 0.0 && seq.p99_s >= seq.median_s);
    let fits: Vec<results::DensityFit> = rd.read_csv().unwrap();
    assert_eq!(fits[0].instances, 5);
    let over: Vec<results::OverheadRow> = rd.read_csv().unwrap();
    assert!(over.iter().any(|r| r.metric == "syscall.getpid" && r.ratio_to_process == Some(1.0)));
}

#[test]
fn several_runs_merge_into_one_page() {
    let d = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["a", "b", "c"].iter().map(|n| d.path().join(n)).collect();
    for dir in &dirs {
        report::fixture::write(dir).unwrap();
    }
    let out = d.path().join("merged");
    vmct()
        .arg("compare")
        .args(&dirs)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("merged report of 3 runs"));
    let html = std::fs::read_to_string(out.join("merged.html")).unwrap();
    assert!(html.contains("3 runs merged") && html.contains("merged_startup.svg"));
    let json = vmct().args(["report", "--merge", "--json"]).args(&dirs[..2]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    assert!(v["rows"].as_array().unwrap().iter().any(|r| r["section"] == "density"));
    vmct().arg("report").args(&dirs[..2]).assert().code(2).stderr(predicate::str::contains("add --merge"));
    vmct().arg("compare").arg(&dirs[0]).assert().code(2).stderr(predicate::str::contains("two or more"));
    vmct()
        .args(["report", "--merge", "--out"])
        .arg(d.path().join("x.html"))
        .arg(&dirs[0])
        .arg(d.path().join("nope"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope"));
}

/// `vmct report --pair C:VM` picks the verdict table's pair; a bad pair is a usage error naming the valid backends.
#[test]
fn report_pair_picks_the_verdict_pair_or_exits_2() {
    let d = tempfile::tempdir().unwrap();
    report::fixture::write(d.path()).unwrap();
    vmct().args(["report", "--pair", "crun:microvm"]).arg(d.path()).assert().success();
    let html = std::fs::read_to_string(d.path().join("report.html")).unwrap();
    assert!(html.contains("the pair chosen with <code>--pair</code>: <b>crun vs microvm</b>"), "crun is the main pair");
    assert!(html.contains("<summary>container vs microvm</summary>"), "the default pair is folded below");
    vmct()
        .args(["report", "--pair", "microvm:crun"])
        .arg(d.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a container backend"))
        .stderr(predicate::str::contains("container backends of"))
        .stderr(predicate::str::contains("container, container-privileged, crun"))
        .stderr(predicate::str::contains("VM backends: microvm, microvm-linux"));
    vmct()
        .args(["report", "--pair", "container"])
        .arg(d.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected CONTAINER:VM"));
}

/// `vmct report RUN --out PATH` writes the page (and its charts) where asked, a directory or an .html file,
/// and leaves the run directory untouched; it was refused without --merge.
#[test]
fn report_out_writes_one_runs_page_where_asked() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    report::fixture::write(&run).unwrap();
    let file = d.path().join("pages/one.html");
    vmct()
        .arg("report")
        .arg(&run)
        .arg("--out")
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("one.html"));
    assert!(std::fs::read_to_string(&file).unwrap().contains("<h1>vmct report</h1>"));
    assert!(d.path().join("pages/startup_cdf.svg").exists(), "charts beside the page");
    let dir = d.path().join("dir");
    vmct().arg("report").arg(&run).arg("--out").arg(&dir).assert().success();
    assert!(dir.join("report.html").exists());
    assert!(!run.join("report.html").exists(), "the run directory is left as it was");
}

/// `vmct plan` plans the pair it is given (issue 15 item 7), names the binding limit (issue 18 item 6), takes
/// merged runs, and refuses bad input with exit 2.
#[test]
fn plan_takes_a_pair_merged_runs_and_refuses_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    report::fixture::write(&a).unwrap();
    report::fixture::write(&b).unwrap();
    let out = vmct()
        .args(["plan", "--json", "--host-mem", "64GiB", "--cores", "16", "--pair", "crun:microvm", "--merge"])
        .arg(&b)
        .arg(&a)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["pair"]["container"].as_str(), v["pair"]["vm"].as_str()), (Some("crun"), Some("microvm")));
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    assert!(v.get("recommended").is_none(), "no best-of pick");
    assert_eq!(v["input"]["cpu_per_instance"], 0.01, "the stated default");
    vmct().args(["plan", "--cores", "4", "--host-mem", "8GiB"]).arg(&a).assert().success().stdout(
        predicate::str::contains("Capacity plan for the pair container vs microvm")
            .and(predicate::str::contains("microvm (microVM (bare guest)): binding limit: ")),
    );
    for (args, want) in [
        (vec!["--cores", "0"], "--host-mem and --cores must be above 0"),
        (vec!["--cpu-per-instance", "-0.5"], "--cpu-per-instance -0.5: give the cores each instance needs, 0 or more"),
        (vec!["--pair", "container:nosuchvm"], "pair side \"nosuchvm\": not a VM backend of this run; valid: microvm"),
        (vec!["--pair", "container"], "expected CONTAINER:VM"),
        (vec!["--burst", "lots"], "--burst"),
    ] {
        vmct().arg("plan").args(&args).arg(&a).assert().code(2).stderr(predicate::str::contains(want));
    }
    vmct().arg("plan").arg(&a).arg("--merge").arg(d.path().join("nope")).assert().code(2);
}

#[test]
fn env_reports_kvm_and_guest_models() {
    let out = vmct().args(["env", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["host"]["kvm"].is_string());
    let models = v["guest_models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    if v["host"]["kvm"] == "kvm_pvm" {
        assert_eq!(models[1]["available"], false);
        assert!(models[1]["reason"].as_str().unwrap().contains("kvm_pvm cannot run guest userspace"));
    }
}

#[test]
fn commit_a_running_container_and_start_from_the_image() {
    if !harness::privileged::gate(
        "commit_a_running_container_and_start_from_the_image",
        &[harness::privileged::Need::Root],
    ) {
        return;
    }
    let bin = assert_cmd::cargo::cargo_bin("vmct");
    let mut idle = std::process::Command::new(&bin)
        .args(["run", "--backend", "container", "--workload", "idle", "--hold-for", "20s", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The id is the newest `vmct logs` record owned by that process.
    let id = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            harness::logs::LogRecord::all().into_iter().rev().find(|r| r.owner_pid == idle.id()).map(|r| r.id)
        })
        .expect("the idle container is recorded");
    let name = format!("vmct-test-img-{}", std::process::id());
    vmct().args(["commit", &id, &name]).assert().success().stdout(predicate::str::contains(format!("as image {name}")));
    vmct().args(["images"]).assert().success().stdout(predicate::str::contains(&name));
    vmct().args(["commit", &id, &name]).assert().code(2).stderr(predicate::str::contains("exists already"));
    vmct().args(["commit", "vmct-nope", "x"]).assert().code(2).stderr(predicate::str::contains("no running container"));
    // SIGTERM: `vmct run` stops its container, cleans up (SIGKILL would leave it to `vmct gc`) and
    // exits 128 + 15, as a shell reports it.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(idle.id() as i32, libc::SIGTERM) };
    assert_eq!(idle.wait().unwrap().code(), Some(143));
    vmct().args(["run", "--backend", "container", "--image", &name, "--workload", "ready"]).assert().success();
    // An image built on the committed one keeps it from being removed until it is removed itself.
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("child.toml");
    std::fs::write(&spec, format!("name = \"{name}-child\"\nfrom = \"{name}\"\n")).unwrap();
    vmct().arg("build").arg(&spec).assert().success();
    vmct().args(["images", "--rm", &name]).assert().code(2).stderr(predicate::str::contains("remove '"));
    vmct().args(["images", "--rm", &format!("{name}-child"), &name]).assert().success();
    assert!(harness::images::load(&name).is_err());
}

#[test]
fn compare_plan_replays_a_recorded_run_and_rejects_bad_plans() {
    let d = tempfile::tempdir().unwrap();
    // Bad path, bad JSON, an old run.json: exit 2 naming the file.
    let garbage = d.path().join("garbage.json");
    std::fs::write(&garbage, "{not json").unwrap();
    let old = d.path().join("old");
    report::fixture::write(&old).unwrap();
    let cases = [
        (d.path().join("missing/run.json"), "missing/run.json", "cannot read"),
        (garbage, "garbage.json", "not a vmct run.json"),
        (old.clone(), "old/run.json", "older vmct"),
    ];
    for (path, file, why) in cases {
        vmct()
            .args(["compare", "--plan"])
            .arg(&path)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(file).and(predicate::str::contains(why)));
    }
    // A flag that changes the plan cannot be combined with it: exit 2 naming the flag.
    for flag in [&["--quick"][..], &["--backends", "process"], &["--runs-per-backend", "3"]] {
        vmct()
            .args(["compare", "--plan"])
            .arg(&old)
            .args(flag)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("cannot be used with").and(predicate::str::contains(flag[0])));
    }

    // A real replay (process backend, startup only): the new run records the same plan, except the
    // density safety floor, which is recomputed for the host the replay runs on.
    let first = d.path().join("first");
    vmct()
        .args(["compare", "--quick", "--quiet", "--no-report", "--backends", "process", "--experiments", "startup"])
        .args(["--runs-per-backend", "3", "--warmup", "1", "--out"])
        .arg(&first)
        .assert()
        .success();
    let again = d.path().join("again");
    vmct()
        .args(["compare", "--quiet", "--no-report", "--plan"])
        .arg(first.join("run.json"))
        .arg("--out")
        .arg(&again)
        .assert()
        .success();
    let plan_of = |dir: &std::path::Path| {
        let mut p = results::RunDir::open(dir).unwrap().read_meta().unwrap().full_plan.unwrap();
        p["density"].as_object_mut().unwrap().remove("floor_bytes").unwrap();
        p
    };
    assert_eq!(plan_of(&again), plan_of(&first));
    assert_eq!(plan_of(&first)["startup"]["runs"], 3);
    let sums: Vec<results::StartupSummary> = results::RunDir::open(&again).unwrap().read_csv().unwrap();
    assert_eq!(sums.iter().find(|s| s.mode == results::StartupMode::Sequential).unwrap().n, 3);

    // A run of an image records the image, its ready rule and command; replaying it where the image is
    // not in the store is a usage error naming the image (not an unknown field, not the vmct workload).
    let json = first.join("run.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let image = serde_json::json!({ "name": "vmct-test-no-such-image", "ready": "exit", "command": ["true"] });
    meta["full_plan"]["image"] = image;
    let imaged = d.path().join("imaged.json");
    std::fs::write(&imaged, serde_json::to_vec(&meta).unwrap()).unwrap();
    vmct().args(["compare", "--quiet", "--no-report", "--plan"]).arg(&imaged).assert().code(2).stderr(
        predicate::str::contains("imaged.json")
            .and(predicate::str::contains("'vmct-test-no-such-image' (--ready exit)"))
            .and(predicate::str::contains("no image 'vmct-test-no-such-image'")),
    );
}

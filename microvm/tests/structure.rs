#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! The crate's layering, checked on its sources (issue 16 item 4): one VM builder, one `sys` module,
//! the run loop and VM core independent of snapshots, no oversized files.
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (path below src/, text) of every source file.
fn src() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(&root).unwrap().to_string_lossy().into_owned(), text)
        })
        .collect()
}

/// The code of a file without its `#[cfg(test)] mod tests` (test-only lines do not count).
fn code(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests").map_or(text, |i| &text[..i])
}

#[test]
fn no_source_file_has_more_than_500_lines_of_code() {
    let big: Vec<String> = src()
        .iter()
        .filter(|(_, t)| code(t).lines().count() > 500)
        .map(|(n, t)| format!("{n}: {} lines", code(t).lines().count()))
        .collect();
    assert!(big.is_empty(), "split these: {big:?}");
}

#[test]
fn vcpus_are_created_in_one_place_the_builder() {
    let files = src();
    let sites: Vec<&str> =
        files.iter().filter(|(_, t)| code(t).contains(".create_vcpu(")).map(|(n, _)| n.as_str()).collect();
    assert_eq!(sites, ["builder.rs"]);
}

#[test]
fn vms_and_memory_slots_are_made_by_the_builder_only() {
    for (name, text) in src() {
        let code = code(&text);
        if name != "builder.rs" {
            assert!(!code.contains(".create_vm()"), "{name} creates a VM itself");
        }
        if name != "builder.rs" && name != "sys.rs" {
            assert!(!code.contains("set_memory_slot("), "{name} registers guest memory itself");
        }
    }
}

#[test]
fn the_vm_core_does_not_depend_on_snapshots() {
    let core = ["vm.rs", "vcpu.rs", "error.rs", "builder.rs", "observe.rs", "sys.rs", "loader.rs", "arch.rs"];
    for (name, text) in src() {
        if core.contains(&name.as_str()) {
            assert!(!code(&text).contains("snapshot::"), "{name} uses the snapshot module");
        }
    }
}

#[test]
fn one_sys_module_and_one_watchdog() {
    let files = src();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).filter(|n| n.ends_with("sys.rs")).collect();
    assert_eq!(names, ["sys.rs"]);
    for (name, text) in &files {
        if name != "sys.rs" {
            assert!(!code(text).contains("sigaction("), "{name} installs a signal handler itself");
            assert!(!code(text).contains("pthread_kill"), "{name} kicks a vCPU thread itself");
        }
    }
}

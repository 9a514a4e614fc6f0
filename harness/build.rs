//! Builds the artifacts that `vmct` embeds:
//! - `vmct-workload`: the static Linux build (glibc, `+crt-static`). crt-static must not reach
//!   proc-macro crates, so the build passes an explicit `--target`, which keeps RUSTFLAGS off host crates.
//! - `vmct-vmm`: the static VMM launcher of the microvm backend (one VM per process), built with the
//!   workload in the same invocation.
//! - `vmct-guest`: the bare microVM guest, a freestanding ELF that needs `panic = "abort"`; it is its
//!   own workspace (`workloads/guest`) so the workspace's test build never compiles it.
//!
//! They go to `target/vmct-artifacts` and `target/vmct-guest` (separate target dirs, so the outer
//! cargo's lock is not contended).
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn cargo(dir: &Path, target_dir: &Path, args: &[&str], rustflags: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Start from a clean cargo environment: the outer build's variables would leak its settings.
    for (k, _) in std::env::vars() {
        if (k.starts_with("CARGO") && k != "CARGO_HOME")
            || k.starts_with("RUSTC")
            || k.starts_with("__CARGO")
            || k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS"
            || k.starts_with("DEP_")
            || k == "TARGET"
            || k == "HOST"
            || k == "OUT_DIR"
            || k == "PROFILE"
            || k == "OPT_LEVEL"
            || k == "DEBUG"
            || k == "NUM_JOBS"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .args(["--release", "--target", TARGET, "--quiet"])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", rustflags);
    // vmct-crash-init runs alone in a guest without shared libraries: libseccomp must be linked
    // statically (a dylib kind would also turn crt-static off). Debian's libseccomp-dev ships the .a.
    if let Some(dir) = static_lib_dir("libseccomp.a") {
        cmd.env("LIBSECCOMP_LINK_TYPE", "static").env("LIBSECCOMP_LIB_PATH", dir);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("vmct build: cannot run cargo: {e}"));
    if !out.status.success() {
        panic!(
            "vmct build: `cargo {}` in {} failed:\n{}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The directory of static library `name` as the C compiler finds it (`cc -print-file-name`).
fn static_lib_dir(name: &str) -> Option<PathBuf> {
    let out = Command::new("cc").arg(format!("-print-file-name={name}")).output().ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (path.is_absolute() && path.is_file()).then(|| path.parent().map(Path::to_path_buf)).flatten()
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = root.join("target/vmct-artifacts");

    for p in [
        "workloads/src",
        "workloads/Cargo.toml",
        "workloads/guest/src",
        "workloads/guest/Cargo.toml",
        "workloads/guest/build.rs",
        "workloads/guest/guest.ld",
        "workloads/guest/.cargo/config.toml",
        "microvm/src",
        "guest-abi/src",
        "guest-abi/Cargo.toml",
        "microvm/Cargo.toml",
        "container/src",
        "container/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=VMCT_SKIP_ARTIFACTS");

    // 1. The static Linux workload and the static one-VM-per-process VMM (`vmct-vmm`, crate microvm).
    cargo(
        &root,
        &target_dir,
        &[
            "build",
            "-p",
            "workloads",
            "--bin",
            "vmct-workload",
            "-p",
            "microvm",
            "--bin",
            "vmct-vmm",
            "-p",
            "container",
            "--bin",
            "vmct-crash-init",
        ],
        "-C target-feature=+crt-static -C strip=debuginfo",
    );
    for bin in ["vmct-workload", "vmct-vmm", "vmct-crash-init"] {
        let built = target_dir.join(TARGET).join("release").join(bin);
        std::fs::copy(&built, out.join(bin)).unwrap_or_else(|e| panic!("vmct build: copy {}: {e}", built.display()));
    }

    // 2. The bare guest (its own workspace; present once the microvm guest exists).
    let guest_dir = root.join("workloads/guest");
    let guest_out = out.join("vmct-guest");
    if guest_dir.join("Cargo.toml").exists() {
        let guest_target = root.join("target/vmct-guest");
        // relocation-model=static: a non-PIE image at a fixed address (see workloads/guest/build.rs).
        cargo(&guest_dir, &guest_target, &["build"], "-C relocation-model=static");
        let built = guest_target.join(TARGET).join("release/vmct-guest");
        std::fs::copy(&built, &guest_out).unwrap_or_else(|e| panic!("vmct build: copy {}: {e}", built.display()));
    } else {
        std::fs::write(&guest_out, b"").unwrap();
    }

    // The git commit the binary was built from, for run.json.
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=VMCT_GIT_COMMIT={commit}");
}

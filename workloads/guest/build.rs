//! Link the guest as a freestanding, static, non-PIE ELF at the address the VMM loads it (guest.ld).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-Wl,-z,norelro"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/guest.ld");
    println!("cargo:rerun-if-changed=guest.ld");
    }

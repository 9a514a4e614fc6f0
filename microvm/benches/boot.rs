#![allow(missing_docs)] // criterion_group!/criterion_main! generate undocumented items
//! Boot benchmarks of the bare-guest microVM, in process (no VMM process spawn; the harness's
//! launch-to-ready adds that): VM create, guest memory setup, and the full boot of the bare guest to
//! its exit with the `ready` scenario (ready is the guest's first message; exit follows one port
//! exit later). Needs /dev/kvm; the full boot also needs the guest ELF (built by harness/build.rs into
//! target/vmct-guest, or `VMCT_GUEST=PATH`).
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use microvm::loader::Image;
use microvm::vm::{CollectHost, Vm, VmConfig};
use std::path::PathBuf;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const MEM: u64 = 64 << 20;

fn guest_image() -> Option<Vec<u8>> {
    let path = std::env::var_os("VMCT_GUEST").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/vmct-guest/x86_64-unknown-linux-gnu/release/vmct-guest")
    });
    std::fs::read(&path).map_err(|e| eprintln!("skipping boot_to_ready: {}: {e}", path.display())).ok()
}

fn boot(c: &mut Criterion) {
    let kvm = match microvm::vm::open_kvm() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("skipping microvm benches: {e}");
            return;
        }
    };
    c.bench_function("vm_create", |b| b.iter(|| kvm.create_vm().unwrap()));
    c.bench_function("memory_setup_64mib", |b| {
        b.iter_batched(
            || kvm.create_vm().unwrap(),
            |vm| {
                let file = microvm::sys::memfd(c"vmct-guest", MEM).unwrap();
                let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
                    GuestAddress(0),
                    usize::try_from(MEM).expect("64 MiB fits in usize"),
                    Some(FileOffset::new(file, 0)),
                )])
                .unwrap();
                let host = mem.get_host_address(GuestAddress(0)).unwrap();
                microvm::sys::set_memory_slot(&vm, 0, 0, MEM, host).unwrap();
                (vm, mem)
            },
            BatchSize::SmallInput,
        )
    });
    let exit_7: &[u8] = &[0xb8, 7, 0, 0, 0, 0x66, 0xba, 0x01, 0x06, 0xef];
    c.bench_function("boot_raw_to_exit", |b| {
        b.iter(|| {
            let mut vm = Vm::boot(VmConfig::new("ready"), Image::Raw(exit_7)).unwrap();
            vm.run(&mut CollectHost::default()).unwrap()
        })
    });
    if let Some(image) = guest_image() {
        c.bench_function("boot_bare_guest_ready", |b| {
            b.iter(|| {
                let mut vm = Vm::boot(VmConfig::new("ready"), Image::Elf(&image)).unwrap();
                let mut host = CollectHost::default();
                let status = vm.run(&mut host).unwrap();
                assert!(host.output.starts_with("@vmct ready\n"));
                status
            })
        });
    }
}

criterion_group!(benches, boot);
criterion_main!(benches);

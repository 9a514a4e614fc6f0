//! The bare guest's run driver: the vCPU loop ([`crate::vcpu`]) plus what is served outside it,
//! the snapshot requests ([`crate::snapshot`]). The one module that knows both.
use crate::error::VmError;
use crate::observe::Host;
use crate::snapshot;
use crate::vcpu::VcpuEvent;
use crate::vm::Vm;

impl Vm {
    /// Run vCPU 0 until the guest exits through [`crate::layout::ports::EXIT`] (returns its status)
    /// or ends abnormally (a typed [`VmError`]). Must be called on the thread that will run the vCPU
    /// (the watchdog signals this thread).
    pub fn run(&mut self, host: &mut dyn Host) -> Result<u32, VmError> {
        self.run_with(host, &mut |_| Ok(()))
    }

    /// [`Vm::run`], calling `before_guest` once on this thread right before the first `KVM_RUN` (see
    /// [`Vm::start`]). A snapshot the host asks for is saved between two [`Vm::run_once`] calls and
    /// answered with its `@vmct result snapshot.*` lines, or one `@vmct failed snapshot` line: a failed
    /// save does not end the VM.
    pub fn run_with(
        &mut self,
        host: &mut dyn Host,
        before_guest: &mut dyn FnMut(&mut dyn Host) -> Result<(), VmError>,
    ) -> Result<u32, VmError> {
        let mut run = self.start(host, before_guest)?;
        loop {
            match self.run_once(&mut run, host)? {
                VcpuEvent::Handled => {}
                VcpuEvent::Exited(status) => return Ok(status),
                VcpuEvent::SnapshotRequested(dir) => {
                    let lines = match self.save_snapshot(&dir) {
                        Ok(info) => info.protocol_lines(),
                        Err(e) => snapshot::failure_line(&e),
                    };
                    host.output(&lines);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::layout;
    use crate::loader::Image;
    use crate::observe::{CollectHost, Phase};
    use crate::vm::{Vm, VmConfig, VmError};
    use std::time::Duration;

    /// Tests needing /dev/kvm: skip with a reason, or fail when `VMCT_REQUIRE_PRIVILEGED=1` (CI).
    fn kvm_gate(test: &str) -> bool {
        match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
            Ok(_) => true,
            Err(e) if std::env::var("VMCT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") => {
                panic!("{test}: needs /dev/kvm ({e}), and VMCT_REQUIRE_PRIVILEGED=1 forbids skipping")
            }
            Err(e) => {
                eprintln!(
                    "skipped {test}: needs /dev/kvm ({e}) (set VMCT_REQUIRE_PRIVILEGED=1 to make this a failure)"
                );
                false
            }
        }
    }

    fn run_raw(code: &[u8], watchdog_ms: u64) -> (Result<u32, VmError>, CollectHost) {
        let mut c = VmConfig::new("ready");
        c.mem_bytes = 8 << 20;
        c.watchdog = Some(Duration::from_millis(watchdog_ms));
        let mut vm = Vm::boot(c, Image::Raw(code)).unwrap();
        let mut host = CollectHost::default();
        (vm.run(&mut host), host)
    }

    const EXIT_7: &[u8] = &[0xb8, 7, 0, 0, 0, 0x66, 0xba, 0x01, 0x06, 0xef]; // mov eax,7; mov dx,0x601; out dx,eax

    #[test]
    fn raw_guest_exits_through_the_exit_port_with_phases() {
        if !kvm_gate("raw_guest_exits_through_the_exit_port_with_phases") {
            return;
        }
        let (r, host) = run_raw(EXIT_7, 5000);
        assert_eq!(r.unwrap(), 7);
        let names: Vec<_> = host.phases.iter().map(|p| p.0).collect();
        assert_eq!(names, [Phase::FirstExit, Phase::Done]);
    }

    #[test]
    fn misbehaving_raw_guests_end_with_typed_errors() {
        if !kvm_gate("misbehaving_raw_guests_end_with_typed_errors") {
            return;
        }
        let ud2 = [0x0f, 0x0b];
        match run_raw(&ud2, 5000).0 {
            Err(VmError::GuestException { vector: 6, rip, cpl: 3, .. }) => assert_eq!(rip, layout::IMAGE_BASE),
            other => panic!("ud2: {other:?}"),
        }
        let port = [0x66, 0xba, 0x04, 0x06, 0xee]; // mov dx,0x604; out dx,al
        match run_raw(&port, 5000).0 {
            Err(VmError::UnknownPort { port: 0x604, dir: "out", .. }) => {}
            other => panic!("port: {other:?}"),
        }
        let mut unmapped = vec![0x48, 0xa1]; // movabs rax, [0x40_0000_0000]
        unmapped.extend_from_slice(&0x40_0000_0000u64.to_le_bytes());
        match run_raw(&unmapped, 5000).0 {
            Err(VmError::GuestException { vector: 14, cr2: 0x40_0000_0000, .. }) => {}
            other => panic!("unmapped: {other:?}"),
        }
        let mut mmio = vec![0xa2]; // movabs [8 MiB], al: the MMIO window above 8 MiB of RAM
        mmio.extend_from_slice(&(8u64 << 20).to_le_bytes());
        match run_raw(&mmio, 5000).0 {
            Err(VmError::Mmio { addr, dir: "write", .. }) => assert_eq!(addr, 8 << 20),
            other => panic!("mmio: {other:?}"),
        }
        let t = std::time::Instant::now();
        match run_raw(&[0xeb, 0xfe], 200).0 {
            Err(VmError::Watchdog { rip, .. }) => assert_eq!(rip, layout::IMAGE_BASE),
            other => panic!("loop: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(3), "watchdog took {:?}", t.elapsed());
    }
}

//! One Linux guest: build the VM, then run it to an [`Outcome`].
//!
//! The recipe ([`LinuxVm::new`]), in Firecracker's order:
//! 1. open /dev/kvm, create the VM, set the TSS address, create the irqchip and the PIT;
//! 2. guest memory (a memfd, so /proc/PID/smaps tells guest memory from VMM overhead) in slot 0;
//! 3. load the kernel (ELF vmlinux at its physical address, or a bzImage via its 64-bit entry);
//! 4. initramfs at the top of RAM, command line, zero page, GDT/IDT, identity page tables;
//! 5. the 8250 serial console (vm-superio) with an irqfd on GSI 4;
//! 6. one vCPU configured for the 64-bit entry ([`super::cpu::configure`]).
//!
//! Steps 1, 2 and the vCPU of 6 are the shared [`crate::builder`] (as for the bare model).
//!
//! [`LinuxVm::run`] then loops on `KVM_RUN`, emulating the serial port, the boot-timer port and the
//! i8042 reset, reporting phases and console lines to a [`Console`] observer, under the shared vCPU
//! watchdog ([`crate::sys::Watchdog`]).
use super::{boot, cpu, layout, layout::ports, LinuxError};
use crate::builder::{Machine, VmBuilder};
use crate::observe::Timeline;
use crate::sys::{self, Watchdog};
use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::VcpuExit;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Name of the guest-memory memfd (`/memfd:vmct-linux-guest` in smaps).
pub const GUEST_MEMFD_NAME: &str = "vmct-linux-guest";

/// Longest console line kept (longer lines are split).
const MAX_LINE: usize = 4096;

/// What to boot.
#[derive(Debug, Clone)]
pub struct LinuxVmConfig {
    /// Kernel: an ELF vmlinux or a bzImage.
    pub kernel: PathBuf,
    /// Initramfs (cpio newc), if any.
    pub initramfs: Option<Vec<u8>>,
    /// Guest memory, bytes.
    pub mem_bytes: u64,
    /// Kernel command line (see [`boot::cmdline`]).
    pub cmdline: String,
    /// Watchdog: the VM is stopped after this long in [`LinuxVm::run`].
    pub timeout: Duration,
}

/// Boot milestones, host CLOCK_MONOTONIC: the linux model's [`Phase::VmmSetup`],
/// [`Phase::KernelEntry`], [`Phase::FirstConsoleByte`] and [`Phase::InitStart`].
pub use crate::observe::{Observer, Phase};

/// Whether to keep running after a console line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Continue,
    /// Stop the VM now ([`Outcome::Stopped`]).
    Stop,
}

/// Receives what the guest does, as it happens: its milestones ([`Observer`]) and console lines.
pub trait Console: Observer {
    /// A complete console line (without the line end); `mono_ns` is when its newline arrived.
    fn console_line(&mut self, mono_ns: u64, line: &str) -> Control;
}

/// How a run ended (VMM failures are [`LinuxError`]s instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reset the machine through the i8042 (`reboot`, or poweroff's fallback): a normal end.
    Reset,
    /// The guest kernel panicked (the banner line); the VM ended at the panic's reset or the watchdog.
    Panic {
        /// The `Kernel panic - not syncing: ...` line.
        line: String,
    },
    /// Triple fault (`KVM_EXIT_SHUTDOWN`).
    TripleFault,
    /// The vCPU halted with interrupts off (only without an in-kernel irqchip; kept for completeness).
    Halted,
    /// KVM could not run the guest further (`KVM_EXIT_INTERNAL_ERROR`, e.g. an instruction kvm_pvm's
    /// interpreter lacks).
    KvmInternalError,
    /// The watchdog stopped the VM.
    Watchdog {
        /// The timeout.
        after: Duration,
    },
    /// The observer asked to stop.
    Stopped,
}

/// What a run produced besides its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Milestones reached, in order.
    pub phases: Vec<(Phase, u64)>,
    /// Console bytes written by the guest.
    pub console_bytes: u64,
    /// The last console lines (up to 20), for error messages.
    pub last_lines: Vec<String>,
    /// VM exits handled.
    pub exits: u64,
}

/// The serial interrupt: an eventfd wired to GSI 4 with an irqfd.
pub struct IrqTrigger(EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The serial output side: collects bytes into lines and remembers when the first byte came.
#[derive(Debug, Default)]
pub struct ConsoleBuf {
    first_byte_ns: Option<u64>,
    bytes: u64,
    partial: Vec<u8>,
    lines: Vec<(u64, String)>,
}

impl ConsoleBuf {
    fn take_lines(&mut self) -> Vec<(u64, String)> {
        std::mem::take(&mut self.lines)
    }

    fn flush_partial(&mut self, now: u64) {
        let line = String::from_utf8_lossy(&self.partial).trim_end_matches('\r').to_string();
        self.partial.clear();
        self.lines.push((now, line));
    }
}

impl std::io::Write for ConsoleBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let now = sys::mono_ns();
        self.first_byte_ns.get_or_insert(now);
        self.bytes += buf.len() as u64;
        for &b in buf {
            if b == b'\n' || self.partial.len() >= MAX_LINE {
                self.flush_partial(now);
                if b == b'\n' {
                    continue;
                }
            }
            self.partial.push(b);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The guest's serial port.
pub type SerialDevice = Serial<IrqTrigger, vm_superio::serial::NoEvents, ConsoleBuf>;

/// A handle that types into the guest console (another thread may hold it).
#[derive(Clone)]
pub struct ConsoleInput(Arc<Mutex<SerialDevice>>);

impl ConsoleInput {
    /// Queue `bytes` as serial input; returns how many fit in the UART's FIFO.
    pub fn send(&self, bytes: &[u8]) -> usize {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

/// A built, not yet started, Linux guest.
pub struct LinuxVm {
    /// One vCPU, VM, KVM and guest memory (in drop order).
    machine: Machine,
    serial: Arc<Mutex<SerialDevice>>,
    timeout: Duration,
    setup_done_ns: u64,
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> LinuxError {
    move |source| LinuxError::Kvm { what, source }
}

impl LinuxVm {
    /// Build the VM (steps 1-6 above).
    pub fn new(cfg: &LinuxVmConfig) -> Result<LinuxVm, LinuxError> {
        boot::check_mem(cfg.mem_bytes)?;
        // 1. VM, TSS, irqchip, PIT.
        let mut builder = VmBuilder::new(&mut Timeline::default())?;
        let vm = builder.vm();
        vm.set_tss_address(layout::KVM_TSS_ADDRESS).map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip().map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        // 2. Guest memory.
        let name = std::ffi::CString::new(GUEST_MEMFD_NAME).expect("no NUL in the memfd name");
        let mem = builder.memfd_memory(&name, cfg.mem_bytes)?;
        // 3. Kernel.
        let (entry, kernel_end, header) = load_kernel(mem, &cfg.kernel)?;
        // 4. Initramfs, command line, zero page, GDT, IDT, page tables.
        let initrd = match &cfg.initramfs {
            Some(cpio) => {
                let len = cpio.len() as u64; // usize to u64: lossless on x86_64
                let addr = boot::initrd_address(cfg.mem_bytes, kernel_end, len)?;
                mem.write_slice(cpio, GuestAddress(addr)).map_err(LinuxError::guest_write("initramfs"))?;
                Some((addr, len))
            }
            None => None,
        };
        if cfg.cmdline.len() + 1 > layout::CMDLINE_MAX_BYTES {
            return Err(boot::BootError::CmdlineTooLong {
                len: cfg.cmdline.len() + 1,
                max: layout::CMDLINE_MAX_BYTES,
                cmdline: cfg.cmdline.clone(),
            }
            .into());
        }
        let mut cmdline = cfg.cmdline.as_bytes().to_vec();
        cmdline.push(0);
        mem.write_slice(&cmdline, GuestAddress(layout::CMDLINE_START)).map_err(LinuxError::guest_write("cmdline"))?;
        let zp = boot::zero_page(cfg.mem_bytes, cfg.cmdline.len(), initrd, header);
        mem.write_obj(zp, GuestAddress(layout::ZERO_PAGE_START)).map_err(LinuxError::guest_write("zero page"))?;
        for (i, e) in (0u64..).zip(boot::GDT.iter()) {
            mem.write_obj(*e, GuestAddress(layout::GDT_START + i * 8)).map_err(LinuxError::guest_write("GDT"))?;
        }
        mem.write_obj(0u64, GuestAddress(layout::IDT_START)).map_err(LinuxError::guest_write("IDT"))?;
        for (addr, v) in boot::page_table_writes() {
            mem.write_obj(v, GuestAddress(addr)).map_err(LinuxError::guest_write("page tables"))?;
        }
        // 5. Serial console with its interrupt.
        let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| LinuxError::Serial { source })?;
        builder.vm().register_irqfd(&evt, ports::COM1_IRQ).map_err(kvm_err("KVM_IRQFD (serial)"))?;
        let serial = Serial::new(IrqTrigger(evt), ConsoleBuf::default());
        // 6. One vCPU.
        let machine = builder.vcpus(1)?;
        cpu::configure(&machine.kvm, &machine.vcpus[0], 0, entry)?;
        Ok(LinuxVm {
            machine,
            serial: Arc::new(Mutex::new(serial)),
            timeout: cfg.timeout,
            setup_done_ns: sys::mono_ns(),
        })
    }

    /// A handle for typing into the guest console while it runs.
    pub fn console_input(&self) -> ConsoleInput {
        ConsoleInput(self.serial.clone())
    }

    /// Run the guest until it resets, panics, faults, the observer stops it, or the watchdog fires.
    pub fn run(mut self, obs: &mut dyn Console) -> Result<RunReport, LinuxError> {
        let mut report = RunReport {
            outcome: Outcome::Stopped,
            phases: Vec::new(),
            console_bytes: 0,
            last_lines: Vec::new(),
            exits: 0,
        };
        let mark = |report: &mut RunReport, obs: &mut dyn Console, p: Phase, ns: u64| {
            if !report.phases.iter().any(|(q, _)| *q == p) {
                report.phases.push((p, ns));
                obs.phase(p, ns);
            }
        };
        mark(&mut report, obs, Phase::VmmSetup, self.setup_done_ns);
        let mut watchdog = Watchdog::for_current_thread(self.timeout).map_err(LinuxError::Watchdog)?;
        watchdog.arm().map_err(LinuxError::Watchdog)?;
        let mut panic_line: Option<String> = None;
        let vcpu = &mut self.machine.vcpus[0];
        let mut eagain = sys::EagainStreak::default();
        let result = loop {
            let exit = vcpu.run();
            let now = sys::mono_ns();
            if !matches!(&exit, Err(e) if e.errno() == libc::EAGAIN) {
                eagain.reset();
            }
            let exit = match exit {
                Ok(e) => e,
                Err(e) if e.errno() == libc::EAGAIN => {
                    if let Err(stuck) = eagain.again(now) {
                        break Err(LinuxError::Stuck(stuck));
                    }
                    continue;
                }
                Err(e) if e.errno() == libc::EINTR => {
                    if watchdog.expired() {
                        break Ok(Outcome::Watchdog { after: self.timeout });
                    }
                    continue;
                }
                Err(source) => break Err(LinuxError::Kvm { what: "KVM_RUN", source }),
            };
            report.exits += 1;
            if report.exits == 1 {
                mark(&mut report, obs, Phase::KernelEntry, now);
            }
            let mut serial_out = false;
            let end = match exit {
                VcpuExit::IoOut(port, data) if (ports::COM1..ports::COM1 + ports::COM1_LEN).contains(&port) => {
                    let mut s = self.serial.lock().unwrap_or_else(|e| e.into_inner());
                    // A failed interrupt injection only delays output; the guest polls as a fallback.
                    let _ = s.write(com1_offset(port), data[0]);
                    serial_out = true;
                    None
                }
                VcpuExit::IoOut(ports::BOOT_TIMER, data) if data.first() == Some(&ports::BOOT_TIMER_VALUE) => {
                    mark(&mut report, obs, Phase::InitStart, now);
                    None
                }
                VcpuExit::IoOut(port, data) if boot::is_reset(port, data) => Some(Ok(())),
                VcpuExit::IoOut(..) => None,
                VcpuExit::IoIn(port, data) => {
                    if (ports::COM1..ports::COM1 + ports::COM1_LEN).contains(&port) {
                        let mut s = self.serial.lock().unwrap_or_else(|e| e.into_inner());
                        data[0] = s.read(com1_offset(port));
                    } else if port == ports::I8042_COMMAND {
                        data.fill(0); // status: input buffer empty, so a reset is sent at once
                    } else {
                        data.fill(0xff); // nothing there
                    }
                    None
                }
                VcpuExit::MmioRead(_, data) => {
                    data.fill(0);
                    None
                }
                VcpuExit::MmioWrite(..) | VcpuExit::Intr => None,
                VcpuExit::Hlt => Some(Err(Outcome::Halted)),
                VcpuExit::Shutdown => Some(Err(Outcome::TripleFault)),
                VcpuExit::SystemEvent(..) => Some(Ok(())),
                VcpuExit::FailEntry(reason, _) => break Err(LinuxError::FailEntry { reason }),
                VcpuExit::InternalError => Some(Err(Outcome::KvmInternalError)),
                other => break Err(LinuxError::UnexpectedExit(format!("{other:?}"))),
            };
            if serial_out {
                let (first, lines, bytes) = {
                    let mut s = self.serial.lock().unwrap_or_else(|e| e.into_inner());
                    let w = s.writer_mut();
                    (w.first_byte_ns, w.take_lines(), w.bytes)
                };
                report.console_bytes = bytes;
                if let Some(ns) = first {
                    mark(&mut report, obs, Phase::FirstConsoleByte, ns);
                }
                let mut stop = false;
                for (ns, line) in lines {
                    if panic_line.is_none() && boot::is_panic_line(&line) {
                        panic_line = Some(line.clone());
                    }
                    stop |= obs.console_line(ns, &line) == Control::Stop;
                    report.last_lines.push(line);
                    if report.last_lines.len() > 20 {
                        report.last_lines.remove(0);
                    }
                }
                if stop {
                    break Ok(Outcome::Stopped);
                }
            }
            match end {
                Some(Ok(())) => break Ok(Outcome::Reset),
                Some(Err(o)) => break Ok(o),
                None => {}
            }
        };
        drop(watchdog);
        // Lines still in the buffer (a partial last line) go to the observer too.
        {
            let mut s = self.serial.lock().unwrap_or_else(|e| e.into_inner());
            let w = s.writer_mut();
            if !w.partial.is_empty() {
                w.flush_partial(sys::mono_ns());
            }
            for (ns, line) in w.take_lines() {
                obs.console_line(ns, &line);
                report.last_lines.push(line);
            }
        }
        let outcome = result?;
        report.outcome = match (outcome, panic_line) {
            (
                Outcome::Reset | Outcome::Watchdog { .. } | Outcome::TripleFault | Outcome::KvmInternalError,
                Some(line),
            ) => Outcome::Panic { line },
            (o, _) => o,
        };
        Ok(report)
    }
}

/// The register offset of a port in the COM1 range (0..8).
fn com1_offset(port: u16) -> u8 {
    u8::try_from(port - ports::COM1).expect("a port in the 8-port COM1 range")
}

/// Load an ELF vmlinux or a bzImage; returns (64-bit entry, end of the image, bzImage setup header).
fn load_kernel(
    mem: &GuestMemoryMmap,
    path: &std::path::Path,
) -> Result<(u64, u64, Option<linux_loader::loader::bootparam::setup_header>), LinuxError> {
    let mut f = std::fs::File::open(path)
        .map_err(|source| LinuxError::Kernel { path: path.into(), reason: source.to_string() })?;
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut f, &mut magic).map_err(|source| LinuxError::Kernel {
        path: path.into(),
        reason: format!("cannot read its header: {source}"),
    })?;
    let himem = Some(GuestAddress(layout::HIMEM_START));
    let bad = |e: linux_loader::loader::Error| LinuxError::Kernel { path: path.into(), reason: e.to_string() };
    if magic == *b"\x7fELF" {
        let r = Elf::load(mem, None, &mut f, himem).map_err(bad)?;
        Ok((r.kernel_load.0, r.kernel_end, None))
    } else {
        let r = BzImage::load(mem, None, &mut f, himem).map_err(bad)?;
        Ok((r.kernel_load.0 + layout::BZIMAGE_64BIT_ENTRY_OFFSET, r.kernel_end, r.setup_header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn console_buffer_splits_lines_and_notes_the_first_byte() {
        let mut c = ConsoleBuf::default();
        assert!(c.first_byte_ns.is_none());
        c.write_all(b"[    0.000000] Linux version 6.1\r\n@vmct rea").unwrap();
        c.write_all(b"dy\n").unwrap();
        assert!(c.first_byte_ns.is_some());
        let lines: Vec<String> = c.take_lines().into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines, ["[    0.000000] Linux version 6.1", "@vmct ready"]);
        assert_eq!(c.bytes, 46);
        c.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        assert_eq!(c.take_lines().len(), 1);
    }
}

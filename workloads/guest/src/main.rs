//! The bare microVM guest: the vmct workload with no OS underneath.
//!
//! The VMM (crate `microvm`) loads this ELF at `IMAGE_BASE`, builds identity-mapped page tables and
//! starts it at CPL3. Everything the guest needs from the host goes through the port map of
//! `guest_abi::layout` (a crate both sides depend on, so they share one definition):
//! protocol lines are written into the mailbox and announced with one doorbell `out`; the scenario
//! words, TSC frequency and heap bounds come from the boot-info block. The scenario itself runs through
//! the same `workloads::runner` as every other platform.
#![no_std]
#![no_main]

use guest_abi::layout;
mod mem;
mod probes;

use core::arch::{asm, global_asm};
use core::fmt::Write;
use layout::{hooks, ports, BootInfo};
use workloads::protocol::Message;
use workloads::runner::{self, Platform, ScenarioError};
use workloads::scenario::Scenario;

global_asm!(
    ".section .text._start,\"ax\"",
    ".global _start",
    "_start:",
    // RSI: 0 on vCPU 0 (entered through the VMM's trampoline), the vCPU index on a secondary vCPU,
    // which the VMM starts here with its own stack (microvm/src/smp.rs).
    "test rsi, rsi",
    "jnz 2f",
    "mov rsp, {stack}",
    "xor ebp, ebp",
    "call {main}",
    "ud2",
    "2:",
    "xor ebp, ebp",
    "mov rdi, rsi",
    "call {secondary}",
    "ud2",
    stack = const layout::USER_STACK_TOP,
    main = sym guest_main,
    secondary = sym secondary_main,
);

extern "C" {
    /// End of the image (linker script): the heap starts at or above it.
    static __image_end: u8;
}

/// OUT `value` to `port`.
pub fn outl(port: u16, value: u32) {
    // SAFETY: port I/O only exits to the VMM; it touches no guest memory. No `nomem`: the VMM reads
    // the mailbox during this exit, so earlier stores must not be moved past it.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags)) };
}

/// IN from `port`.
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `outl`.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nostack, preserves_flags)) };
    v
}

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc reads the time-stamp counter; it is allowed at CPL3 (CR4.TSD clear).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (hi as u64) << 32 | lo as u64
}

fn boot_info() -> &'static BootInfo {
    // SAFETY: the VMM writes a BootInfo at BOOT_INFO_ADDR before the guest starts; the guest only reads
    // it (the probe area is accessed with volatile operations in `probes`).
    unsafe { &*(layout::BOOT_INFO_ADDR as *const BootInfo) }
}

/// The mailbox: a u32 byte count at MAILBOX_ADDR (cleared by the VMM when it forwards the text), then
/// the text.
struct Mailbox;

impl Mailbox {
    fn len_ptr() -> *mut u32 {
        layout::MAILBOX_ADDR as *mut u32
    }

    fn len() -> usize {
        // SAFETY: MAILBOX_ADDR is mapped user read/write; the VMM changes it only during our port exits.
        unsafe { core::ptr::read_volatile(Self::len_ptr()) as usize }
    }

    /// Append `bytes`, ringing the doorbell first if they do not fit.
    fn append(bytes: &[u8]) {
        let cap = usize::try_from(layout::MAILBOX_CAPACITY).expect("32 KiB");
        let bytes = &bytes[..bytes.len().min(cap)];
        if Self::len() + bytes.len() > cap {
            Self::flush();
        }
        let len = Self::len();
        // SAFETY: len + bytes.len() <= capacity, so the copy stays inside the mailbox.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), (layout::MAILBOX_TEXT as *mut u8).add(len), bytes.len());
            core::ptr::write_volatile(Self::len_ptr(), u32::try_from(len + bytes.len()).expect("at most the capacity"));
        }
    }

    /// Have the VMM forward what is in the mailbox (one port exit).
    fn flush() {
        if Self::len() > 0 {
            outl(ports::DOORBELL, u32::try_from(Self::len()).expect("the mailbox length is a u32"));
        }
    }
}

/// A line being formatted on the stack (protocol lines are short).
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    /// An empty line.
    pub fn new() -> Line {
        Line { buf: [0; 512], len: 0 }
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for Line {
    fn default() -> Line {
        Line::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Truncate rather than fail: a long detail must not lose the whole line.
        let n = s.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The guest platform for the shared runner.
pub struct Guest {
    tsc_khz: u64,
    heap_start: u64,
    heap_end: u64,
    /// Bytes of heap handed out by `memory` (the memory a snapshot must keep intact).
    held: usize,
    /// Checksum of the held memory recorded when a snapshot was prepared.
    saved_sum: Option<u64>,
}

impl Guest {
    fn new(info: &BootInfo) -> Guest {
        // Only the symbol's address is used (taking it is safe).
        let image_end = core::ptr::addr_of!(__image_end) as u64;
        let heap_start = layout::align_up(info.heap_start.max(image_end), layout::PAGE_SIZE);
        Guest { tsc_khz: info.tsc_khz.max(1), heap_start, heap_end: info.heap_end, held: 0, saved_sum: None }
    }

    /// Checksum of the held memory (four FNV-1a style lanes over 64-bit words, so it runs at memory
    /// speed rather than at the latency of one multiply chain).
    fn held_checksum(&self) -> u64 {
        const P: u64 = 0x0000_0100_0000_01b3;
        let mut lanes = [0xcbf2_9ce4_8422_2325u64; 4];
        // SAFETY: heap_start..heap_start+held was handed out by `memory` and is guest RAM; the
        // runner's borrow of it has ended (we are waiting for stop).
        let buf = unsafe { core::slice::from_raw_parts(self.heap_start as *const u8, self.held) };
        let mut chunks = buf.chunks_exact(32);
        for c in &mut chunks {
            for (i, lane) in lanes.iter_mut().enumerate() {
                let mut w = [0u8; 8];
                w.copy_from_slice(&c[i * 8..i * 8 + 8]);
                *lane = (*lane ^ u64::from_le_bytes(w)).wrapping_mul(P);
            }
        }
        let mut h = lanes.iter().fold(self.held as u64, |a, l| (a ^ l).wrapping_mul(P));
        for b in chunks.remainder() {
            h = (h ^ *b as u64).wrapping_mul(P);
        }
        h
    }

    /// Send one message: buffered in the mailbox; `ready` is forwarded at once (startup is measured
    /// to it), everything else with the next doorbell or the exit.
    pub fn send(&mut self, msg: &Message<'_>) {
        let mut line = Line::new();
        let _ = msg.encode(&mut line);
        if line.as_bytes().last() != Some(&b'\n') {
            line.len = line.len.min(line.buf.len() - 1);
            line.buf[line.len] = b'\n';
            line.len += 1;
        }
        Mailbox::append(line.as_bytes());
        if matches!(msg, Message::Ready) {
            Mailbox::flush();
        }
    }
}

impl Platform for Guest {
    fn now_ns(&mut self) -> u64 {
        u64::try_from(u128::from(rdtsc()) * 1_000_000 / u128::from(self.tsc_khz)).unwrap_or(u64::MAX)
    }

    fn emit(&mut self, msg: &Message<'_>) {
        self.send(msg);
    }

    fn memory(&mut self, bytes: usize) -> Result<&mut [u8], &'static str> {
        if bytes as u64 > self.heap_end.saturating_sub(self.heap_start) {
            return Err("guest memory too small for this size: give the microVM more memory");
        }
        self.held = self.held.max(bytes);
        // SAFETY: heap_start..heap_start+bytes is guest RAM above the image, mapped user read/write,
        // and used by nothing else; the runner holds at most one borrow at a time.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.heap_start as *mut u8, bytes) })
    }

    /// Wait on the stop port until it says stop; in between, take part in snapshots (see
    /// `layout::wait`): record a checksum of held memory before one is saved, and after a restore
    /// report `ready` again, then `restore.memory_ok` (1 if the held memory is intact).
    fn wait_for_stop(&mut self) {
        loop {
            Mailbox::flush();
            match inl(ports::WAIT_STOP) {
                layout::wait::SNAPSHOT_PREPARE => self.saved_sum = Some(self.held_checksum()),
                layout::wait::SNAPSHOT_DONE => {}
                layout::wait::RESTORED => {
                    self.send(&Message::Ready);
                    let ok = self.saved_sum == Some(self.held_checksum());
                    let value = if ok { 1.0 } else { 0.0 };
                    self.send(&Message::Result { name: "restore.memory_ok", value, unit: "bool" });
                    self.send(&Message::Result { name: "restore.held_bytes", value: self.held as f64, unit: "bytes" });
                }
                _ => return,
            }
        }
    }

    /// Messages wait in the mailbox until a doorbell: ring it.
    fn flush(&mut self) {
        Mailbox::flush();
    }

    fn run_platform(&mut self, scenario: &Scenario) -> Result<(), ScenarioError> {
        match scenario {
            Scenario::Probe => {
                probes::run(self);
                Ok(())
            }
            _ => Err(ScenarioError::Unsupported("unsupported on bare guest: no OS, so no system calls and no filesystem")),
        }
    }
}

/// Forward the mailbox and end the VM with `status`.
pub fn exit(status: u32) -> ! {
    outl(ports::EXIT, status);
    // The VMM never resumes after EXIT; if it did, stop here.
    loop {
        core::hint::spin_loop();
    }
}

/// Misbehave on purpose (VMM tests of typed exit errors).
fn run_hook(hook: u32, info: &BootInfo) {
    match hook {
        hooks::FAULT_UD => {
            // SAFETY: ud2 raises #UD, which the VMM reports; nothing after it runs.
            unsafe { asm!("ud2", options(nomem, nostack)) };
        }
        hooks::LOOP_FOREVER => loop {
            core::hint::spin_loop();
        },
        hooks::UNKNOWN_PORT => outl(ports::FIRST_UNMAPPED, 0x42),
        hooks::UNMAPPED_READ => {
            // SAFETY: deliberately reads an unmapped address (256 GiB): a page fault the VMM reports.
            let _ = unsafe { core::ptr::read_volatile(0x40_0000_0000 as *const u64) };
        }
        hooks::MMIO_WRITE => {
            let addr = layout::align_up(info.mem_bytes, layout::HUGE_PAGE_SIZE);
            // SAFETY: deliberately writes into the MMIO window above RAM: an MMIO exit.
            unsafe { core::ptr::write_volatile(addr as *mut u64, 0x42) };
        }
        _ => {}
    }
}

extern "C" fn guest_main() -> ! {
    let info = boot_info();
    if info.magic != layout::BOOT_MAGIC {
        exit(90);
    }
    let mut guest = Guest::new(info);
    let args_len = (info.args_len as usize).min(layout::ARGS_CAPACITY);
    let args = core::str::from_utf8(&info.args[..args_len]).unwrap_or("");
    if info.test_hook != hooks::NONE {
        guest.send(&Message::Ready);
        run_hook(info.test_hook, info);
        exit(91);
    }
    let status = match Scenario::parse(args.split_whitespace()) {
        Ok(scenario) => runner::run(&scenario, &mut guest),
        Err(e) => {
            let mut line = Line::new();
            let _ = writeln!(line, "vmct-guest: bad scenario '{args}': {e}");
            Mailbox::append(line.as_bytes());
            2
        }
    };
    exit(status as u32)
}

/// A secondary vCPU (index >= 1): runs the `cpu` scenario's kernel loop for the same number of
/// blocks as vCPU 0, silently (vCPU 0 owns the mailbox), then ends this vCPU with an OUT to EXIT,
/// which the VMM's secondary loop takes as "this vCPU is done" (the VM goes on). Any other scenario
/// ends the vCPU at once (the VMM starts secondaries for `cpu` only).
extern "C" fn secondary_main(_index: u64) -> ! {
    let info = boot_info();
    let args_len = (info.args_len as usize).min(layout::ARGS_CAPACITY);
    let args = core::str::from_utf8(&info.args[..args_len]).unwrap_or("");
    if let Ok(Scenario::Cpu { iters }) = Scenario::parse(args.split_whitespace()) {
        core::hint::black_box(workloads::kernels::cpu_sha256_chain(iters));
    }
    outl(ports::EXIT, 0);
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut line = Line::new();
    let _ = writeln!(line, "vmct-guest: panic: {info}");
    Mailbox::append(line.as_bytes());
    exit(101)
}

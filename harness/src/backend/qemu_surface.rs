//! Layer (b) of `qemu-tcg`'s attack surface, measured rather than typed in: what QEMU's device model
//! handles for the guest, read from QEMU's own monitor for the command line vmct builds.
//!
//! [`census`] starts QEMU with that command line plus `-S` (the guest CPU never starts) and the HMP
//! monitor on stdio (the serial console goes to `null` instead), asks `info mtree -f` (the flat views
//! of the I/O and memory address spaces: every port range and MMIO range some device model answers)
//! and `info qtree` (the device models), then `quit`. It takes about 0.2 s. Parsing is in
//! [`parse_flat_views`] and [`parse_qtree_devices`], tested on QEMU 7.2's output.
//!
//! What this does not count: under TCG QEMU also translates every guest instruction (the TCG
//! front end is surface too), and the CPU's own local APIC is a per-CPU device, listed as its MMIO
//! window (`apic-msi`).
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the device model could not be enumerated.
#[derive(Debug, thiserror::Error)]
pub enum QemuSurfaceError {
    /// QEMU could not be started or talked to.
    #[error("qemu-tcg surface: cannot run {qemu} with the monitor: {source}")]
    Spawn {
        /// The QEMU binary.
        qemu: String,
        /// The cause.
        source: std::io::Error,
    },
    /// QEMU did not answer within the time limit.
    #[error("qemu-tcg surface: {qemu} did not answer `info mtree` within {0:?}", TIMEOUT)]
    Timeout {
        /// The QEMU binary.
        qemu: String,
    },
    /// The monitor's answer had no address-space views or no devices.
    #[error("qemu-tcg surface: QEMU's monitor answered without {what}; its output began: {head}")]
    Unparsed {
        /// What was missing.
        what: &'static str,
        /// The first lines of the output (and stderr).
        head: String,
    },
}

/// Longest the census waits for QEMU.
const TIMEOUT: Duration = Duration::from_secs(20);

/// One address range a device model answers (first, last inclusive) and the region's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// First address (port or guest-physical).
    pub first: u64,
    /// Last address, inclusive.
    pub last: u64,
    /// QEMU's name of the memory region (`serial`, `virtio-mmio`, ...).
    pub name: String,
}

/// QEMU's device model for one command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceModel {
    /// Device model types from `info qtree`, sorted, without repeats.
    pub devices: Vec<String>,
    /// I/O port ranges of device models (the I/O address space's flat view, minus the `io` root that
    /// answers unassigned ports).
    pub io_ports: Vec<Region>,
    /// MMIO ranges of device models (the memory address space's flat view, `i/o` regions only; RAM
    /// and ROM are left out).
    pub mmio: Vec<Region>,
}

/// The `-serial stdio` of `args` replaced by `-serial null`, plus `-S -monitor stdio`.
pub fn monitor_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 3);
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if a == "-serial" && it.peek().map(|s| s.as_str()) == Some("stdio") {
            it.next();
            out.extend(["-serial".to_string(), "null".to_string()]);
            continue;
        }
        out.push(a.clone());
    }
    out.extend(["-S", "-monitor", "stdio"].map(String::from));
    out
}

/// Run `qemu` with `args` (a guest command line as [`super::qemu_tcg::QemuArgs::to_args`] builds it)
/// stopped before the guest's first instruction, and read its device model from the monitor.
///
/// # Errors
/// [`QemuSurfaceError`] when QEMU cannot start, does not answer in time, or answers without views
/// or devices.
pub fn census(qemu: &Path, args: &[String]) -> Result<DeviceModel, QemuSurfaceError> {
    let name = qemu.display().to_string();
    let mut child = Command::new(qemu)
        .args(monitor_args(args))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| QemuSurfaceError::Spawn { qemu: name.clone(), source })?;
    let write = child.stdin.take().map(|mut i| i.write_all(b"info mtree -f\ninfo qtree\nquit\n"));
    if let Some(Err(source)) = write {
        let _ = child.kill();
        let _ = child.wait();
        return Err(QemuSurfaceError::Spawn { qemu: name, source });
    }
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Err(QemuSurfaceError::Timeout { qemu: name });
            }
        }
    }
    let text = reader.join().unwrap_or_default();
    let head = || text.lines().take(6).collect::<Vec<_>>().join(" | ");
    let (io_ports, mmio) = parse_flat_views(&text);
    if io_ports.is_empty() && mmio.is_empty() {
        return Err(QemuSurfaceError::Unparsed { what: "address-space views", head: head() });
    }
    let devices = parse_qtree_devices(&text);
    if devices.is_empty() {
        return Err(QemuSurfaceError::Unparsed { what: "devices", head: head() });
    }
    Ok(DeviceModel { devices, io_ports, mmio })
}

/// The device regions of `info mtree -f` output: (I/O port ranges, MMIO ranges).
pub fn parse_flat_views(text: &str) -> (Vec<Region>, Vec<Region>) {
    let (mut io, mut mmio) = (Vec::new(), Vec::new());
    let mut spaces: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("FlatView #") {
            spaces.clear();
        } else if let Some(rest) = t.strip_prefix("AS \"") {
            spaces.push(rest.split('"').next().unwrap_or("").to_string());
        } else if let Some(r) = parse_region(t) {
            let (region, kind) = r;
            if kind != "i/o" {
                continue; // ram, rom, romd: memory, not a device model
            }
            if spaces.iter().any(|s| s == "I/O") {
                // The root `io` region (and its `io @offset` pieces) answers unassigned ports.
                if region.name != "io" && !region.name.starts_with("io @") {
                    io.push(region);
                }
            } else if spaces.iter().any(|s| s == "memory") {
                mmio.push(region);
            }
        }
    }
    (io, mmio)
}

/// `0000000000000020-0000000000000021 (prio 0, i/o): pic` -> (region, kind).
fn parse_region(t: &str) -> Option<(Region, &str)> {
    let (range, rest) = t.split_once(' ')?;
    let (a, b) = range.split_once('-')?;
    let first = u64::from_str_radix(a, 16).ok()?;
    let last = u64::from_str_radix(b, 16).ok()?;
    let rest = rest.strip_prefix("(prio ")?;
    let (attrs, name) = rest.split_once("): ")?;
    let kind = attrs.split_once(", ")?.1;
    Some((Region { first, last, name: name.trim().to_string() }, kind))
}

/// Device model types in `info qtree` output (`dev: TYPE, id "..."`), sorted, without repeats.
pub fn parse_qtree_devices(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("dev: "))
        .filter_map(|r| r.split(',').next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

impl DeviceModel {
    /// As the attack-surface declaration: the device models (what the guest's accesses reach; no exit
    /// kinds: under TCG there are no VM exits), port and MMIO ranges, and a source text naming every region.
    pub fn to_surface(&self, syscalls_allowed: u32) -> super::surface::VmmSurfaceInfo {
        let port = |r: &Region| -> (u16, u16) {
            (u16::try_from(r.first).unwrap_or(u16::MAX), u16::try_from(r.last).unwrap_or(u16::MAX))
        };
        super::surface::VmmSurfaceInfo {
            exit_kinds: Vec::new(),
            device_models: Some(self.devices.clone()),
            io_ports: self.io_ports.iter().map(port).collect(),
            mmio_ranges: self.mmio.iter().map(|r| (r.first, r.last)).collect(),
            syscalls_allowed,
            source: None,
        }
    }

    /// One line naming what was measured: the device models and each range with its region name.
    pub fn describe(&self) -> String {
        let names =
            |v: &[Region]| v.iter().map(|r| format!("{:#x}-{:#x} {}", r.first, r.last, r.name)).collect::<Vec<_>>();
        format!(
            "measured from QEMU's monitor (`info qtree`, `info mtree -f`) for the command line vmct builds, with \
             the io scenario's virtio-blk disk: {} device models [{}]; ports [{}]; mmio [{}]; under TCG QEMU also \
             translates every guest instruction, which these counts leave out",
            self.devices.len(),
            self.devices.join(","),
            names(&self.io_ports).join(","),
            names(&self.mmio).join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from QEMU 7.2's answer for `-M microvm` with a virtio-blk disk on this host.
    const MTREE: &str = "(qemu) info mtree -f\n\
FlatView #0\n AS \"memory\", root: system\n AS \"cpu-memory-0\", root: system\n Root memory region: system\n\
  0000000000000000-00000000000effff (prio 0, ram): ram\n\
  00000000000f0000-00000000000fffff (prio 0, ram): pc.bios\n\
  00000000feb00000-00000000feb001ff (prio 0, i/o): virtio-mmio\n\
  00000000feb00200-00000000feb003ff (prio 0, i/o): virtio-mmio\n\
  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic\n\
  00000000fee00000-00000000feefffff (prio 4096, i/o): apic-msi\n\
  00000000ffff0000-00000000ffffffff (prio 0, ram): pc.bios\n\n\
FlatView #1\n AS \"I/O\", root: io\n Root memory region: io\n\
  0000000000000000-000000000000001f (prio 0, i/o): io\n\
  0000000000000020-0000000000000021 (prio 0, i/o): pic\n\
  0000000000000022-000000000000003f (prio 0, i/o): io @0000000000000022\n\
  00000000000003f8-00000000000003ff (prio 0, i/o): serial\n\
  0000000000000510-0000000000000511 (prio 0, i/o): fwcfg\n\n\
(qemu) info qtree\nbus: main-system-bus\n  type System\n  dev: virtio-mmio, id \"\"\n    bus: virtio-mmio-bus.7\n\
      dev: virtio-blk-device, id \"\"\n  dev: virtio-mmio, id \"\"\n  dev: ioapic, id \"\"\n    bus: isa.0\n\
      dev: isa-serial, id \"\"\n";

    #[test]
    fn flat_views_give_device_ports_and_mmio_but_not_ram_or_the_unassigned_root() {
        let (io, mmio) = parse_flat_views(MTREE);
        let n = |v: &[Region]| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(n(&io), ["pic", "serial", "fwcfg"]);
        assert_eq!((io[1].first, io[1].last), (0x3f8, 0x3ff));
        assert_eq!(n(&mmio), ["virtio-mmio", "virtio-mmio", "ioapic", "apic-msi"]);
        assert_eq!(parse_qtree_devices(MTREE), ["ioapic", "isa-serial", "virtio-blk-device", "virtio-mmio"]);
        let m = DeviceModel { devices: parse_qtree_devices(MTREE), io_ports: io, mmio };
        let s = m.to_surface(7);
        assert_eq!((s.device_models.as_ref().map(Vec::len), s.io_ports.len(), s.mmio_ranges.len()), (Some(4), 3, 4));
        assert!(s.exit_kinds.is_empty(), "QEMU's devices are not counted as exit kinds");
        assert!(m.describe().contains("0x3f8-0x3ff serial"), "{}", m.describe());
    }

    #[test]
    fn the_monitor_replaces_the_serial_console_and_stops_the_cpu() {
        let a: Vec<String> = ["-nographic", "-serial", "stdio", "-smp", "2"].map(String::from).into();
        assert_eq!(monitor_args(&a), ["-nographic", "-serial", "null", "-smp", "2", "-S", "-monitor", "stdio"]);
    }
}

//! Device access rules for a container's cgroup: Docker's and the OCI runtime's defaults, as v1
//! `devices.deny`/`devices.allow` lines and as a cgroup v2 `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! Source of the default list: runc `libcontainer/specconv` `AllowedDevices` (what Docker and Podman
//! containers get): deny everything, then allow `mknod` of any character or block device (`c *:* m`,
//! `b *:* m`: creating a node is allowed, opening it is not), and read/write/mknod of null 1:3,
//! zero 1:5, full 1:7, random 1:8, urandom 1:9, tty 5:0, console 5:1, ptmx 5:2 and the ptys 136:*.
//! (runc 1.2 dropped /dev/net/tun 10:200 from the list; so does this one.)
//!
//! The v2 program is emitted here by hand (about 40 instructions of six kinds, [`Insn`]). Crates were
//! weighed: aya and libbpf-rs load programs compiled to BPF ELF objects, which need a BPF toolchain
//! (clang or bpf-linker) this project's hosts and CI do not have; youki's `libcgroups` builds the same
//! program but comes as its whole cgroup manager (systemd/D-Bus clients and its own v1/v2 drivers that
//! would duplicate [`crate::cgroup`]); `rbpf`'s instruction builder is an interpreter crate whose
//! builder would still leave the program logic to us. The logic follows runc's `devicefilter`:
//! rules are tested last-first, the first match returns its verdict, nothing matched denies.
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType};

/// Which devices a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Every device (`a`).
    All,
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
}

/// Access bits: mknod, read, write (`m`, `r`, `w`; the kernel's `BPF_DEVCG_ACC_*` values).
pub mod access {
    /// mknod(2).
    pub const MKNOD: u8 = 1;
    /// open for reading.
    pub const READ: u8 = 2;
    /// open for writing.
    pub const WRITE: u8 = 4;
    /// All three.
    pub const RWM: u8 = MKNOD | READ | WRITE;
}

/// One device cgroup rule (`[allow|deny] TYPE MAJOR:MINOR ACCESS`; `None` is the `*` wildcard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// Device kind.
    pub kind: DeviceKind,
    /// Major number, or any.
    pub major: Option<u32>,
    /// Minor number, or any.
    pub minor: Option<u32>,
    /// [`access`] bits.
    pub access: u8,
}

const fn allow(kind: DeviceKind, major: Option<u32>, minor: Option<u32>, access: u8) -> DeviceRule {
    DeviceRule { allow: true, kind, major, minor, access }
}

/// Docker's/runc's default rules, in order (see the module doc).
pub const DEFAULT_RULES: &[DeviceRule] = &[
    DeviceRule { allow: false, kind: DeviceKind::All, major: None, minor: None, access: access::RWM },
    allow(DeviceKind::Char, None, None, access::MKNOD),
    allow(DeviceKind::Block, None, None, access::MKNOD),
    allow(DeviceKind::Char, Some(1), Some(3), access::RWM),
    allow(DeviceKind::Char, Some(1), Some(5), access::RWM),
    allow(DeviceKind::Char, Some(1), Some(7), access::RWM),
    allow(DeviceKind::Char, Some(1), Some(8), access::RWM),
    allow(DeviceKind::Char, Some(1), Some(9), access::RWM),
    allow(DeviceKind::Char, Some(5), Some(0), access::RWM),
    allow(DeviceKind::Char, Some(5), Some(1), access::RWM),
    allow(DeviceKind::Char, Some(5), Some(2), access::RWM),
    allow(DeviceKind::Char, Some(136), None, access::RWM),
];

impl DeviceRule {
    /// The v1 line, e.g. `c 1:3 rwm` (written to `devices.allow` or `devices.deny`).
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let acc: String = [(access::READ, 'r'), (access::WRITE, 'w'), (access::MKNOD, 'm')]
            .iter()
            .filter(|(b, _)| self.access & b != 0)
            .map(|(_, c)| *c)
            .collect();
        format!("{kind} {}:{} {acc}", num(self.major), num(self.minor))
    }

    /// The OCI `linux.resources.devices[]` entry.
    pub fn to_oci(&self) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(self.allow)
            .access(self.v1_line().rsplit(' ').next().unwrap_or("").to_string());
        b = b.typ(match self.kind {
            DeviceKind::All => LinuxDeviceType::A,
            DeviceKind::Char => LinuxDeviceType::C,
            DeviceKind::Block => LinuxDeviceType::B,
        });
        if let Some(m) = self.major {
            b = b.major(i64::from(m));
        }
        if let Some(m) = self.minor {
            b = b.minor(i64::from(m));
        }
        b.build().expect("every field of a device rule is set")
    }
}

/// The v1 writes for `rules`, in order: (file, value). A leading deny-all becomes `devices.deny` `a`.
pub fn v1_writes(rules: &[DeviceRule]) -> Vec<(&'static str, String)> {
    rules
        .iter()
        .map(|r| {
            let file = if r.allow { "devices.allow" } else { "devices.deny" };
            let all = r.kind == DeviceKind::All && r.major.is_none() && r.minor.is_none() && r.access == access::RWM;
            (file, if all { "a".to_string() } else { r.v1_line() })
        })
        .collect()
}

/// One eBPF instruction (`struct bpf_insn`: opcode, dst and src registers, offset, immediate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// dst register in the low nibble, src in the high one.
    pub regs: u8,
    /// Jump or memory offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

/// Opcodes used (linux/bpf.h: class | op | source).
pub mod op {
    /// `dst = *(u32 *)(src + off)`: BPF_LDX | BPF_MEM | BPF_W.
    pub const LDX_W: u8 = 0x61;
    /// `dst32 &= imm`: BPF_ALU | BPF_AND | BPF_K.
    pub const AND32_K: u8 = 0x54;
    /// `dst32 >>= imm`: BPF_ALU | BPF_RSH | BPF_K.
    pub const RSH32_K: u8 = 0x74;
    /// `dst32 = src32`: BPF_ALU | BPF_MOV | BPF_X.
    pub const MOV32_X: u8 = 0xbc;
    /// `dst = imm`: BPF_ALU64 | BPF_MOV | BPF_K.
    pub const MOV64_K: u8 = 0xb7;
    /// `if dst != imm goto +off`: BPF_JMP | BPF_JNE | BPF_K.
    pub const JNE_K: u8 = 0x55;
    /// `if dst != src goto +off`: BPF_JMP | BPF_JNE | BPF_X.
    pub const JNE_X: u8 = 0x5d;
    /// return r0: BPF_JMP | BPF_EXIT.
    pub const EXIT: u8 = 0x95;
}

/// `bpf_cgroup_dev_ctx.access_type` low half: `BPF_DEVCG_DEV_BLOCK`, `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

/// The `BPF_PROG_TYPE_CGROUP_DEVICE` program for `rules`. Registers: r1 = `struct bpf_cgroup_dev_ctx
/// { u32 access_type; u32 major; u32 minor; }`; r2 = device type, r3 = requested access, r4 = major,
/// r5 = minor; returns 1 (allow) or 0 (deny, the kernel answers EPERM).
pub fn cgroup_device_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(op::LDX_W, 2, 1, 0, 0),
        insn(op::AND32_K, 2, 0, 0, 0xffff),
        insn(op::LDX_W, 3, 1, 0, 0),
        insn(op::RSH32_K, 3, 0, 0, 16),
        insn(op::LDX_W, 4, 1, 4, 0),
        insn(op::LDX_W, 5, 1, 8, 0),
    ];
    // Later rules take precedence (as successive v1 writes do): test them first.
    for r in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        // Each "skip" jump targets the end of the block; its offset is patched below.
        match r.kind {
            DeviceKind::All => {}
            DeviceKind::Char => block.push(insn(op::JNE_K, 2, 0, 0, DEV_CHAR)),
            DeviceKind::Block => block.push(insn(op::JNE_K, 2, 0, 0, DEV_BLOCK)),
        }
        if r.access & access::RWM != access::RWM {
            // Match only if the requested access is a subset of the rule's: (r3 & access) == r3.
            block.push(insn(op::MOV32_X, 1, 3, 0, 0));
            block.push(insn(op::AND32_K, 1, 0, 0, i32::from(r.access)));
            block.push(insn(op::JNE_X, 1, 3, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(insn(op::JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(op::JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(op::MOV64_K, 0, 0, 0, i32::from(r.allow)));
        block.push(insn(op::EXIT, 0, 0, 0, 0));
        let n = block.len();
        let mut conditional = false;
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == op::JNE_K || ins.code == op::JNE_X {
                ins.off = i16::try_from(n - i - 1).expect("a rule's block is a handful of instructions");
                conditional = true;
            }
        }
        p.extend(block);
        if !conditional {
            // It matches everything: whatever follows would be unreachable, which the verifier
            // rejects ("unreachable insn").
            return p;
        }
    }
    p.push(insn(op::MOV64_K, 0, 0, 0, 0));
    p.push(insn(op::EXIT, 0, 0, 0, 0));
    p
}

/// Runs `prog` the way the kernel would for one access: a tiny interpreter of the six opcodes
/// [`cgroup_device_program`] emits, for tests and for checking a program before loading it.
/// Returns r0, or None for an opcode it does not know or a jump out of the program.
#[allow(clippy::cast_possible_truncation)] // eBPF's 32-bit ALU operations use the low 32 bits of a register
pub fn evaluate(prog: &[Insn], kind: DeviceKind, major: u32, minor: u32, acc: u8) -> Option<u64> {
    let dev = match kind {
        DeviceKind::Block => DEV_BLOCK as u32,
        DeviceKind::Char => DEV_CHAR as u32,
        DeviceKind::All => 0,
    };
    let ctx = [dev | (u32::from(acc) << 16), major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog.get(pc)?;
        let (d, s) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        pc += 1;
        match i.code {
            op::LDX_W => r[d] = u64::from(*ctx.get(usize::try_from(i.off).ok()? / 4)?),
            op::AND32_K => r[d] = u64::from((r[d] as u32) & (i.imm as u32)),
            op::RSH32_K => r[d] = u64::from((r[d] as u32) >> i.imm),
            op::MOV32_X => r[d] = u64::from(r[s] as u32),
            op::MOV64_K => r[d] = i.imm as i64 as u64,
            op::JNE_K | op::JNE_X => {
                let other = if i.code == op::JNE_K { i.imm as i64 as u64 } else { r[s] };
                if r[d] != other {
                    pc = pc.checked_add_signed(isize::from(i.off))?;
                }
            }
            op::EXIT => return Some(r[0]),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// runc's AllowedDevices (libcontainer/specconv/spec_linux.go), as `devices.list` would show it.
    const RUNC_DEFAULTS: &[&str] = &[
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:1 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
    ];

    #[test]
    fn default_rules_are_docker_and_runcs() {
        let w = v1_writes(DEFAULT_RULES);
        assert_eq!(w[0], ("devices.deny", "a".to_string()));
        let allowed: Vec<&str> = w[1..]
            .iter()
            .map(|(f, v)| {
                assert_eq!(*f, "devices.allow");
                v.as_str()
            })
            .collect();
        assert_eq!(allowed, RUNC_DEFAULTS);
        assert!(!allowed.contains(&"c 10:200 rwm"), "tun was dropped by runc 1.2");
    }

    #[test]
    fn oci_entries_match() {
        let v = serde_json::to_value(DEFAULT_RULES.iter().map(DeviceRule::to_oci).collect::<Vec<_>>()).unwrap();
        assert_eq!(v[0], serde_json::json!({"allow": false, "type": "a", "access": "rwm"}));
        assert_eq!(v[3], serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
        assert_eq!(v[1], serde_json::json!({"allow": true, "type": "c", "access": "m"}));
        assert_eq!(v[11], serde_json::json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    }

    #[test]
    fn v2_program_allows_the_list_and_denies_the_rest() {
        let p = cgroup_device_program(DEFAULT_RULES);
        let ev = |k, ma, mi, a| evaluate(&p, k, ma, mi, a).unwrap();
        use access::{MKNOD, READ, WRITE};
        use DeviceKind::{Block, Char};
        for (ma, mi) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, 0), (136, 7)] {
            assert_eq!(ev(Char, ma, mi, READ | WRITE), 1, "c {ma}:{mi} rw");
        }
        // What the issue found open: tty0, loop-control, fuse, net/tun; and mem, kmsg, a disk.
        for (ma, mi) in [(4, 0), (10, 237), (10, 229), (10, 200), (1, 1), (1, 11)] {
            assert_eq!(ev(Char, ma, mi, READ), 0, "c {ma}:{mi} r");
            assert_eq!(ev(Char, ma, mi, WRITE), 0, "c {ma}:{mi} w");
            assert_eq!(ev(Char, ma, mi, MKNOD), 1, "c {ma}:{mi} mknod is allowed, as in Docker");
        }
        assert_eq!(ev(Block, 8, 0, READ), 0);
        assert_eq!(ev(Block, 8, 0, MKNOD), 1);
        assert_eq!(ev(Block, 1, 3, READ), 0, "b 1:3 is not c 1:3");
        assert_eq!(ev(Char, 1, 3, MKNOD | READ), 1);
        // Every jump stays inside the program; the program ends in exit.
        for (pc, i) in p.iter().enumerate() {
            if i.code == op::JNE_K || i.code == op::JNE_X {
                let t = pc as i64 + 1 + i64::from(i.off);
                assert!(t > pc as i64 && usize::try_from(t).is_ok_and(|t| t < p.len()), "jump at {pc}");
            }
        }
        assert_eq!(p.last().unwrap().code, op::EXIT);
        // The leading deny-all is the last block and ends the program (no unreachable default).
        assert_eq!(p[p.len() - 2], insn(op::MOV64_K, 0, 0, 0, 0));
        assert_eq!(p.iter().filter(|i| i.code == op::EXIT).count(), DEFAULT_RULES.len());
        // No rules: deny all.
        assert_eq!(evaluate(&cgroup_device_program(&[]), Char, 1, 3, READ), Some(0));
    }

    /// The kernel's verifier accepts the program and enforces it on a cgroup v2 directory. This works
    /// on hybrid hosts too: cgroup BPF programs attach to the unified hierarchy whatever controllers
    /// it has. Harmless: the child only opens /dev/zero and /dev/null.
    #[test]
    fn v2_program_loads_and_enforces_on_a_cgroup2_directory() {
        use crate::sys;
        use std::os::fd::AsRawFd;
        let required = std::env::var("VMCT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let v2 = crate::cgroup::parse_mountinfo(&mi).into_iter().find(|m| m.v2);
        let (Some(v2), true) = (v2, nix::unistd::geteuid().is_root()) else {
            assert!(!required, "needs root and a cgroup2 mount");
            eprintln!("skip: needs root and a cgroup2 mount");
            return;
        };
        let own = crate::cgroup::own_path(&std::fs::read_to_string("/proc/self/cgroup").unwrap(), None).unwrap();
        let dir = v2.point.join(own.trim_start_matches('/')).join(format!("vmct-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        struct Rm(std::path::PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = crate::cgroup::remove_dir(&self.0);
            }
        }
        let _rm = Rm(dir.clone());
        let rules = [DEFAULT_RULES[0], allow(DeviceKind::Char, Some(1), Some(5), access::RWM)];
        let prog = sys::bpf_load_cgroup_device(&cgroup_device_program(&rules)).unwrap();
        let cg = std::fs::File::open(&dir).unwrap();
        sys::bpf_attach_cgroup_device(cg.as_raw_fd(), prog.as_raw_fd()).unwrap();
        drop(prog);
        let procs = std::ffi::CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap();
        let (r, w) = sys::pipe().unwrap();
        // SAFETY: the child makes raw system calls only (no allocation) and ends in exit_child.
        match unsafe { sys::clone_fork(0) }.unwrap() {
            None => {
                let mut out = [0i32; 2];
                // SAFETY: C strings and buffers below are live; the calls have no memory effects.
                unsafe {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        sys::exit_child(3);
                    }
                    for (i, dev) in [c"/dev/zero", c"/dev/null"].iter().enumerate() {
                        let fd = libc::open(dev.as_ptr(), libc::O_RDONLY);
                        out[i] = if fd < 0 { *libc::__errno_location() } else { 0 };
                    }
                    libc::write(w.as_raw_fd(), out.as_ptr().cast(), 8);
                }
                sys::exit_child(0);
            }
            Some(child) => {
                drop(w);
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut b).unwrap();
                assert_eq!(sys::waitpid(child.pid, false).unwrap(), Some(sys::WaitStatus::Exited(0)));
                let got: Vec<i32> = b.chunks_exact(4).map(|c| i32::from_ne_bytes(c.try_into().unwrap())).collect();
                assert_eq!(got, [0, libc::EPERM], "/dev/zero allowed, /dev/null denied by the program");
            }
        }
    }
}

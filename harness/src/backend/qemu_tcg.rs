//! The `qemu-tcg` backend: the linux guest model (the same kernel and initramfs as `microvm-linux`,
//! the static workload as /init) booted by Debian's QEMU with TCG, i.e. with the guest CPU emulated.
//! It stands in for `microvm-linux` on hosts where KVM cannot run a Linux guest (kvm_pvm here,
//! shared/HOST-NOTES.md). Emulation makes its startup and CPU figures meaningless for a KVM host
//! ([`results::BackendInfo::emulated`]); the guest kernel's memory, its isolation (the container
//! probe list runs inside) and its crash behaviour are the guest's own.
//!
//! One QEMU process per VM (see [`QemuArgs`], shared with the `--peer qemu=PATH` backend, which uses
//! KVM instead):
//! 1. `-accel tcg -M microvm,x-option-roms=off,rtc=off,acpi=off -nodefaults -no-user-config
//!    -nographic -serial stdio -no-reboot`: the microvm machine without ACPI (the guest kernel has
//!    none; QEMU then announces its virtio-mmio slots on the kernel command line);
//! 2. guest RAM in a memfd (`-object memory-backend-memfd,id=vmct-guest-ram`) so the guest memory
//!    QEMU touched is its own mapping in /proc/PID/smaps, apart from QEMU's and TCG's overhead
//!    ([`tcg_stats`]);
//! 3. `-kernel bzImage -initrd initramfs -append ...` with `reboot=t` (the guest's reboot at the end of
//!    the workload triple-faults, and `-no-reboot` turns that into QEMU's exit), the scenario in
//!    `vmct.workload=...`, and the instance's environment (probe canaries) as `KEY=value` words, which
//!    Linux hands to /init as environment;
//! 4. for the `io` scenario only, a virtio-blk disk: an ext4 image made with `mkfs.ext4 -d` (Debian's
//!    e2fsprogs) under the containers' state root (the file system of their upper dirs), which /init
//!    mounts and the scenario writes to; removed with the instance.
//!
//! 5. for the `burst` scenario (the memory experiment's give-back), when the guest kernel has
//!    [`BALLOON_CONFIG`], a virtio-balloon with free-page reporting
//!    (`-device virtio-balloon-device,free-page-reporting=on`): the guest reports the pages it freed
//!    and QEMU discards them from the guest RAM memfd, so they return to the host.
//!
//! Phases: `kernel_start` (first kernel console line, so QEMU start, firmware and kernel
//! decompression), `init_start` (`Run /init`), then `to_ready`. The kernel log is on for these marks.
use super::child::ChildInstance;
use super::{Backend, BackendError, Event, ExitInfo, Instance, InstanceSpec, InstanceStats, Ready};
use crate::kernel;
use microvm::linux::boot::{cmdline, CmdlineOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use workloads::scenario::Scenario;

/// Backend name.
pub const NAME: &str = "qemu-tcg";
/// The QEMU binary, looked up in PATH.
pub const QEMU_BIN: &str = "qemu-system-x86_64";
/// The Debian package with [`QEMU_BIN`].
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// The Debian package with `mkfs.ext4` (the io scenario's disk).
pub const MKFS_PACKAGE: &str = "e2fsprogs";
/// QEMU object id of the guest RAM backend (`-object memory-backend-memfd,id=...`).
pub const GUEST_RAM_ID: &str = "vmct-guest-ram";
/// The name QEMU gives the memfd of a `memory-backend-memfd` (shows as `/memfd:NAME` in smaps).
pub const GUEST_RAM_MEMFD: &str = "memory-backend-memfd";
/// Guest kernel options the io scenario's disk needs (checked in the cached kernel's config).
pub const DISK_CONFIG: &[&str] =
    &["CONFIG_VIRTIO_MMIO=y", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_EXT4_FS=y"];
/// Guest kernel options free-page reporting needs (checked in the cached kernel's config).
pub const BALLOON_CONFIG: &[&str] = &["CONFIG_VIRTIO_BALLOON=y", "CONFIG_PAGE_REPORTING=y"];
/// The QEMU device giving freed guest pages back to the host (virtio-mmio balloon, free-page reporting).
pub const BALLOON_DEVICE: &str = "virtio-balloon-device,free-page-reporting=on";
/// Console lines that mark startup phases (text the line contains, phase name).
pub const CONSOLE_PHASES: &[(&str, &str)] = &[("Linux version", "kernel_start"), ("Run /init", "init_start")];

/// How QEMU runs the guest CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM with the host CPU model (the `--peer qemu=PATH` backend).
    Kvm,
    /// TCG, the guest CPU emulated (this backend).
    Tcg,
}

/// A QEMU microvm command line for the linux guest model.
#[derive(Debug, Clone)]
pub struct QemuArgs<'a> {
    /// Accelerator.
    pub accel: Accel,
    /// Kernel (bzImage, or a vmlinux with the PVH note).
    pub kernel: &'a Path,
    /// Initramfs.
    pub initrd: &'a Path,
    /// Kernel command line.
    pub append: &'a str,
    /// Guest memory, MiB.
    pub mem_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Raw disk image attached as a virtio-mmio block device, if any.
    pub disk: Option<&'a Path>,
    /// `-sandbox` options (QEMU's own seccomp filter), e.g. [`LIBVIRT_SANDBOX`]; None: no `-sandbox`.
    pub sandbox: Option<&'a str>,
    /// Attach [`BALLOON_DEVICE`].
    pub balloon: bool,
}

/// The `-sandbox` options libvirt starts every QEMU with by default (qemu.conf `seccomp_sandbox = 1`,
/// the default for QEMU >= 2.11; the command line as libvirt's own test data for it shows): QEMU's
/// seccomp filter with obsolete calls, privilege changes (setuid...), spawning (fork/exec) and
/// resource control (sched_setaffinity...) denied. Source: libvirt src/qemu/qemu.conf.in and the
/// `-sandbox` line of libvirt's tests/qemuxmlconfdata/*.args.
pub const LIBVIRT_SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// Whether `qemu` accepts `-sandbox opts` (a QEMU built without seccomp refuses it: "seccomp support is
/// disabled"): QEMU is started with no machine and told `quit` on its monitor. Err carries QEMU's
/// message. Cached per binary and options in this process.
pub fn sandbox_support(qemu: &Path, opts: &str) -> Result<(), String> {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Mutex;
    /// Per (binary, options): the answer.
    type Answers = HashMap<(PathBuf, String), Result<(), String>>;
    static CACHE: Mutex<Option<Answers>> = Mutex::new(None);
    let key = (qemu.to_path_buf(), opts.to_string());
    let mut g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = g.as_ref().and_then(|m| m.get(&key)) {
        return r.clone();
    }
    let run = || -> Result<(), String> {
        let mut child = Command::new(qemu)
            .args(["-sandbox", opts, "-M", "none", "-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-monitor", "stdio"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", qemu.display()))?;
        // A QEMU that refused the option has exited already: the broken pipe is not an error here.
        let _ = child.stdin.take().map(|mut i| i.write_all(b"quit\n"));
        let out = child.wait_with_output().map_err(|e| format!("{}: {e}", qemu.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(format!("{} -sandbox {opts}: {} ({err})", qemu.display(), out.status))
    };
    let r = run();
    g.get_or_insert_with(HashMap::new).insert(key, r.clone());
    r
}

impl<'a> QemuArgs<'a> {
    /// A TCG command line for instance `spec`: its vCPUs (at least 1) and the guest memory its limit and
    /// scenario need ([`super::microvm_linux::guest_mem_bytes`]).
    pub fn tcg(
        kernel: &'a Path,
        initrd: &'a Path,
        append: &'a str,
        spec: &InstanceSpec,
        disk: Option<&'a Path>,
    ) -> Self {
        QemuArgs {
            accel: Accel::Tcg,
            kernel,
            initrd,
            append,
            mem_mib: super::microvm_linux::guest_mem_bytes(spec.mem_limit_bytes, &spec.scenario) >> 20,
            vcpus: spec.vcpus.max(1),
            disk,
            sandbox: None,
            balloon: false,
        }
    }

    /// With QEMU's seccomp filter: `-sandbox opts`.
    pub fn with_sandbox(mut self, opts: Option<&'a str>) -> Self {
        self.sandbox = opts;
        self
    }

    /// The arguments after the binary.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        match self.accel {
            Accel::Kvm => {
                push(&["-M", "microvm", "-enable-kvm", "-cpu", "host"]);
                push(&["-m", &format!("{}M", self.mem_mib)]);
            }
            Accel::Tcg => {
                let ram = format!("memory-backend-memfd,id={GUEST_RAM_ID},size={}M,share=on", self.mem_mib);
                let machine = format!("microvm,x-option-roms=off,rtc=off,acpi=off,memory-backend={GUEST_RAM_ID}");
                push(&["-accel", "tcg", "-M", &machine, "-object", &ram, "-m", &format!("{}M", self.mem_mib)]);
            }
        }
        push(&["-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot"]);
        push(&["-smp", &self.vcpus.to_string()]);
        push(&["-kernel", &self.kernel.to_string_lossy(), "-initrd", &self.initrd.to_string_lossy()]);
        push(&["-append", self.append]);
        if let Some(s) = self.sandbox {
            push(&["-sandbox", s]);
        }
        if let Some(d) = self.disk {
            let drive = format!("file={},format=raw,if=none,id=vmct-disk,cache=none,aio=threads", d.display());
            push(&["-drive", &drive, "-device", "virtio-blk-device,drive=vmct-disk"]);
        }
        if self.balloon {
            push(&["-device", BALLOON_DEVICE]);
        }
        a
    }
}

/// The guest kernel command line: the scenario, `reboot=t` (see the module docs) and the instance's
/// environment as `KEY=value` words (Linux passes words with `=` and no `.` in the key to /init as
/// environment). The owner variable stays on the host. Errors name the word that cannot travel.
pub fn guest_cmdline(spec: &InstanceSpec, kernel_log: bool) -> Result<String, String> {
    let args: Vec<String> = spec.scenario.to_string().split_whitespace().map(String::from).collect();
    let mut extra = vec!["reboot=t".to_string()];
    for (k, v) in spec.env.iter().filter(|(k, _)| k != super::OWNER_ENV) {
        if k.is_empty() || k.contains(['.', '=', ' ', '"']) || v.contains(|c: char| c.is_whitespace() || c == '"') {
            return Err(format!("environment {k}={v:?} cannot be passed on the kernel command line"));
        }
        extra.push(format!("{k}={v}"));
    }
    cmdline(&CmdlineOptions { workload_args: args, kernel_log, extra, ..Default::default() }).map_err(|e| e.to_string())
}

/// Longest kernel command line x86 Linux keeps (COMMAND_LINE_SIZE); longer ones are cut silently.
pub const MAX_CMDLINE: usize = 2048;

/// [`guest_cmdline`] plus an image's run as `workloads::image_run` parameters (percent-encoded argv,
/// environment, working directory, user and readiness rule); an error when it would not fit.
pub fn image_cmdline(spec: &InstanceSpec, l: &crate::images::run::ImageLaunch) -> Result<String, String> {
    use workloads::image_run::{self as ir, encode};
    let mut c = guest_cmdline(spec, true)?;
    let enc = |s: &str| {
        let mut o = String::new();
        encode(s, &mut o).expect("writing to a String");
        o
    };
    let list = |v: &mut dyn Iterator<Item = String>| v.map(|s| enc(&s)).collect::<Vec<_>>().join(",");
    let env = list(&mut l.env.iter().map(|(k, v)| format!("{k}={v}")));
    c.push_str(&format!(" {}=1 {}={}", ir::PARAM_IMAGE, ir::PARAM_ARGV, list(&mut l.argv.iter().cloned())));
    if !env.is_empty() {
        c.push_str(&format!(" {}={env}", ir::PARAM_ENV));
    }
    c.push_str(&format!(" {}={}", ir::PARAM_CWD, enc(&l.cwd)));
    if !l.user.is_empty() {
        c.push_str(&format!(" {}={}", ir::PARAM_USER, enc(&l.user)));
    }
    if let Some(r) = &l.ready {
        c.push_str(&format!(" {}={}", ir::PARAM_READY, enc(&r.to_string())));
    }
    if c.len() >= MAX_CMDLINE {
        return Err(format!(
            "image '{}': its command, environment and readiness rule make a kernel command line of {} bytes;              Linux keeps {MAX_CMDLINE} at most",
            l.image,
            c.len()
        ));
    }
    Ok(c)
}

/// Why a kernel cannot be booted by QEMU, if it cannot: QEMU's `-kernel` takes a bzImage (boot
/// protocol header `HdrS` at offset 0x202) or an ELF vmlinux with the PVH note (CONFIG_PVH=y).
pub fn check_qemu_kernel(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 0x206];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("cannot read the guest kernel {}: {e}", path.display()))?;
    if &head[0x202..0x206] == b"HdrS" {
        return Ok(());
    }
    Err(format!(
        "{} is not a bzImage: QEMU boots a bzImage or a vmlinux built with CONFIG_PVH=y; \
         run `vmct kernel build` (it builds the bzImage) or point VMCT_KERNEL at a bzImage",
        path.display()
    ))
}

/// The kernel QEMU boots: `$VMCT_KERNEL` if set, else the cached build's bzImage.
pub fn qemu_kernel() -> Result<PathBuf, String> {
    let path = match std::env::var_os(kernel::KERNEL_ENV).filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let bz = kernel::cached_bzimage_path();
            if !bz.is_file() {
                return Err(super::microvm_linux::NO_KERNEL_REASON.into());
            }
            bz
        }
    };
    check_qemu_kernel(&path)?;
    Ok(path)
}

/// Why the guest kernel cannot mount the io scenario's disk, if it cannot: the first of
/// [`DISK_CONFIG`] missing from `config` (the kernel's .config), or no config known.
pub fn disk_unsupported(config: Option<&str>) -> Option<String> {
    let Some(config) = config else {
        return Some(
            "the guest kernel's config is unknown (VMCT_KERNEL): cannot tell whether it has virtio-blk".into(),
        );
    };
    let missing = kernel::missing_options(&DISK_CONFIG.join("\n"), config);
    (!missing.is_empty()).then(|| format!("the guest kernel lacks {} (virtio-blk disk with ext4)", missing.join(", ")))
}

/// Why the guest kernel cannot report freed pages to QEMU, if it cannot: [`BALLOON_CONFIG`] options
/// missing from `config` (the kernel's .config), or no config known.
pub fn balloon_unsupported(config: Option<&str>) -> Option<String> {
    let Some(config) = config else {
        return Some(
            "the guest kernel's config is unknown (VMCT_KERNEL): cannot tell whether it reports free pages".into(),
        );
    };
    let missing = kernel::missing_options(&BALLOON_CONFIG.join("\n"), config);
    (!missing.is_empty()).then(|| format!("the guest kernel lacks {} (free-page reporting)", missing.join(", ")))
}

/// Memory of a QEMU process: guest RAM touched (the memfd mapping's Rss) apart from QEMU's own
/// overhead (TCG translation cache, QEMU's heap and code), from /proc/PID/smaps.
pub fn tcg_stats(pid: u32) -> InstanceStats {
    let name = format!("/memfd:{GUEST_RAM_MEMFD}");
    super::microvm::split_guest_memory(pid, |h| h.contains(&name))
}

/// What every launch needs, found once.
#[derive(Debug, Clone)]
struct Setup {
    qemu: PathBuf,
    version: String,
    kernel: PathBuf,
    /// Why the io scenario gets no disk, if it does not.
    no_disk: Option<String>,
    /// Why the burst scenario gets no free-page-reporting balloon, if it does not.
    no_balloon: Option<String>,
    /// [`LIBVIRT_SANDBOX`] when this QEMU supports it ([`sandbox_support`]), else why not.
    sandbox: Result<&'static str, String>,
}

impl Setup {
    /// The `-sandbox` options every instance runs with, if this QEMU supports them.
    fn sandbox(&self) -> Option<&'static str> {
        self.sandbox.as_ref().ok().copied()
    }

    /// The backend's profile: the guest model and QEMU's own confinement.
    fn profile(&self) -> String {
        let conf = match &self.sandbox {
            Ok(o) => format!("QEMU confined as libvirt starts it by default: -sandbox {o}"),
            Err(e) => format!(
                "QEMU without -sandbox: this QEMU cannot run libvirt's default -sandbox {LIBVIRT_SANDBOX} ({e})"
            ),
        };
        format!("linux guest under QEMU TCG (emulated): its own kernel and initramfs; {conf}")
    }
}

/// The `qemu-tcg` backend.
pub struct QemuTcgBackend {
    workload: PathBuf,
    setup: OnceLock<Result<Setup, String>>,
    initramfs: OnceLock<Result<PathBuf, String>>,
    /// QEMU's device model for our command line (layer b of the attack surface), measured once.
    device_model: OnceLock<Result<super::qemu_surface::DeviceModel, String>>,
}

/// The backend; `workload` is the static workload binary packed as /init.
pub fn backend(workload: &Path) -> Box<dyn Backend> {
    Box::new(QemuTcgBackend::new(workload))
}

impl QemuTcgBackend {
    /// The backend for `workload`.
    pub fn new(workload: &Path) -> QemuTcgBackend {
        QemuTcgBackend {
            workload: workload.into(),
            setup: OnceLock::new(),
            initramfs: OnceLock::new(),
            device_model: OnceLock::new(),
        }
    }

    fn setup(&self) -> &Result<Setup, String> {
        self.setup.get_or_init(|| {
            let qemu = super::peers::which(QEMU_BIN).ok_or_else(|| {
                format!(
                    "{QEMU_BIN} not found in PATH; install Debian's {QEMU_PACKAGE}: apt-get install -y {QEMU_PACKAGE}"
                )
            })?;
            let out = Command::new(&qemu).arg("--version").output().map_err(|e| format!("{}: {e}", qemu.display()))?;
            let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string();
            let kernel = qemu_kernel()?;
            let config = match std::env::var_os(kernel::KERNEL_ENV).filter(|p| !p.is_empty()) {
                Some(_) => None,
                None => std::fs::read_to_string(kernel.with_file_name("config")).ok(),
            };
            let mut no_disk = disk_unsupported(config.as_deref());
            if no_disk.is_none() && super::peers::which("mkfs.ext4").is_none() {
                no_disk = Some(format!("mkfs.ext4 not found; install Debian's {MKFS_PACKAGE}"));
            }
            let sandbox = sandbox_support(&qemu, LIBVIRT_SANDBOX).map(|()| LIBVIRT_SANDBOX);
            let no_balloon = balloon_unsupported(config.as_deref());
            Ok(Setup { qemu, version, kernel, no_disk, no_balloon, sandbox })
        })
    }

    /// QEMU's device model for the command line a guest with the io scenario's disk gets (2 vCPUs,
    /// 64 MiB; a 1 MiB sparse stand-in for the disk image), read from QEMU's monitor once
    /// ([`super::qemu_surface::census`]).
    pub fn device_model(&self) -> Result<super::qemu_surface::DeviceModel, String> {
        self.device_model
            .get_or_init(|| {
                let s = self.setup().clone()?;
                let initrd = self.initramfs()?;
                // Where the io scenario's disks go (`vmct gc` knows the name), removed on drop.
                let dir = Disk {
                    dir: Path::new(container::DEFAULT_STATE_ROOT)
                        .join(format!("{}-disk", crate::experiments::next_id())),
                    image: PathBuf::new(),
                };
                std::fs::create_dir_all(&dir.dir).map_err(|e| format!("{}: {e}", dir.dir.display()))?;
                let disk = dir.dir.join("disk.raw");
                std::fs::File::create(&disk).and_then(|f| f.set_len(1 << 20)).map_err(|e| e.to_string())?;
                let args = QemuArgs {
                    accel: Accel::Tcg,
                    kernel: &s.kernel,
                    initrd: &initrd,
                    append: "console=ttyS0",
                    mem_mib: 64,
                    vcpus: 2,
                    disk: Some(&disk),
                    sandbox: s.sandbox(),
                    balloon: false,
                };
                super::qemu_surface::census(&s.qemu, &args.to_args()).map_err(|e| e.to_string())
            })
            .clone()
    }

    fn initramfs(&self) -> Result<PathBuf, String> {
        self.initramfs.get_or_init(|| super::microvm_linux::initramfs_for(&self.workload)).clone()
    }

    /// Launch, returning the concrete instance (tests read its disk).
    pub fn launch_tcg(&self, spec: &InstanceSpec) -> Result<QemuTcgInstance, BackendError> {
        let s = self.setup().clone().map_err(|reason| BackendError::Unavailable { backend: NAME.into(), reason })?;
        let fail = |reason: String| BackendError::Launch { backend: NAME.into(), reason };
        let initrd = self.initramfs().map_err(fail)?;
        let mut spec = spec.clone();
        let disk = match (&spec.scenario, &s.no_disk) {
            (Scenario::Io { mib }, None) => {
                let d = Disk::create(&spec.id, *mib).map_err(fail)?;
                spec.env.push((DISK_ENV.into(), "1".into()));
                Some(d)
            }
            _ => None,
        };
        let append = guest_cmdline(&spec, true).map_err(fail)?;
        let mut args = QemuArgs::tcg(&s.kernel, &initrd, &append, &spec, disk.as_ref().map(|d| d.image.as_path()))
            .with_sandbox(s.sandbox());
        args.balloon = matches!(spec.scenario, Scenario::Burst { .. }) && s.no_balloon.is_none();
        let mut cmd = Command::new(&s.qemu);
        cmd.args(args.to_args());
        let mut inner = ChildInstance::spawn(NAME, &spec, cmd)?
            .with_stats(tcg_stats)
            .with_text_phases(CONSOLE_PHASES)
            .with_confinement_measured();
        let disk_image = disk.as_ref().map(|d| d.image.clone());
        if let Some(d) = disk {
            inner = inner.with_cleanup(move || drop(d));
        }
        Ok(QemuTcgInstance { inner, disk_image })
    }
}

/// Environment word telling /init to mount the virtio-blk disk (`/dev/vda`, ext4) for the io scenario.
pub const DISK_ENV: &str = "VMCT_DISK";

/// The io scenario's disk image, removed on drop.
struct Disk {
    dir: PathBuf,
    image: PathBuf,
}

impl Disk {
    /// An ext4 image big enough for `mib` MiB of test data, under the containers' state root.
    fn create(id: &str, mib: u64) -> Result<Disk, String> {
        let dir = Path::new(container::DEFAULT_STATE_ROOT).join(format!("{id}-disk"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let disk = Disk { image: dir.join("disk.ext4"), dir };
        let root = disk.dir.join("root");
        std::fs::create_dir(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        // Test data plus the journal and metadata (ext4's default journal is 4 MiB below 128 MiB).
        let size_mib = (mib + mib / 4 + 16).max(32);
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "vmct", "-d"])
            .arg(&root)
            .arg(&disk.image)
            .arg(format!("{size_mib}M"))
            .output()
            .map_err(|e| format!("cannot run mkfs.ext4 (install {MKFS_PACKAGE}): {e}"))?;
        if !out.status.success() {
            return Err(format!("mkfs.ext4 {} failed: {}", disk.image.display(), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(disk)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Backend for QemuTcgBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn info(&self) -> results::BackendInfo {
        let s = self.setup();
        results::BackendInfo {
            isolation: s
                .as_ref()
                .ok()
                .map(|s| results::IsolationProfile { profile: s.profile(), ..Default::default() }),
            name: NAME.into(),
            kind: results::BackendKind::Peer,
            model: results::IsolationModel::Microvm,
            guest_model: Some(results::GuestModel::Linux),
            available: s.is_ok(),
            reason: s.as_ref().err().cloned(),
            version: s.as_ref().ok().map(|s| s.version.clone()),
            emulated: true,
        }
    }

    /// Free-page reporting when the guest kernel has it (the burst scenario attaches the balloon).
    fn give_back(&self) -> results::GiveBack {
        match self.setup() {
            Ok(s) if s.no_balloon.is_none() => results::GiveBack::FreePageReporting,
            _ => results::GiveBack::None,
        }
    }

    fn capabilities(&self) -> results::Capabilities {
        // As microvm-linux, with the guest CPU emulated by TCG.
        results::Capabilities {
            limits: true,
            linux_probes: true,
            own_kernel: true,
            emulated: true,
            ..results::Capabilities::default()
        }
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<Box<dyn Instance>, BackendError> {
        Ok(Box::new(self.launch_tcg(spec)?))
    }

    /// The image's root disk (read-only virtio-blk) and its run on the kernel command line
    /// ([`image_cmdline`]); the guest's /init applies the readiness rule and reports `ready`.
    fn launch_image(
        &self,
        l: &crate::images::run::ImageLaunch,
        spec: &InstanceSpec,
    ) -> Result<Box<dyn Instance>, BackendError> {
        let s = self.setup().clone().map_err(|reason| BackendError::Unavailable { backend: NAME.into(), reason })?;
        let fail = |reason: String| BackendError::Launch { backend: NAME.into(), reason };
        let disk = l.rootdisk.as_deref().ok_or_else(|| fail(format!("image '{}' has no root disk", l.image)))?;
        let initrd = self.initramfs().map_err(fail)?;
        let mut spec = spec.clone();
        // The image's own process is `ready` for the guest; without a rule the vmct workload runs the
        // scenario asked (probe, read) in the image's root.
        if l.ready.is_some() {
            spec.scenario = Scenario::Ready;
        }
        let append = image_cmdline(&spec, l).map_err(fail)?;
        let args = QemuArgs::tcg(&s.kernel, &initrd, &append, &spec, Some(disk)).with_sandbox(s.sandbox());
        // The cached disk is shared by every instance of the image: QEMU opens it read-only.
        let argv: Vec<String> = args
            .to_args()
            .into_iter()
            .map(|a| if a.starts_with("file=") { format!("{a},readonly=on") } else { a })
            .collect();
        let mut cmd = Command::new(&s.qemu);
        cmd.args(argv);
        let inner = ChildInstance::spawn(NAME, &spec, cmd)?
            .with_stats(tcg_stats)
            .with_text_phases(CONSOLE_PHASES)
            .with_confinement_measured();
        Ok(Box::new(QemuTcgInstance { inner, disk_image: None }))
    }

    /// Layer (b) measured from QEMU's monitor ([`QemuTcgBackend::device_model`]: the device models,
    /// port and MMIO ranges QEMU emulates for our command line); when that cannot run, layer (b) is
    /// not declared and the supervisor note says why. Layer (c) measured from the first live QEMU of
    /// this run ([`super::confinement`]); until one ran, declared from the command line: the whole
    /// table without `-sandbox`, not declared (None) with it.
    fn attack_surface(&self) -> super::surface::BackendSurface {
        use super::surface::{unfiltered_note, unfiltered_syscalls, BackendSurface};
        let setup = self.setup().as_ref().ok();
        let sandbox = setup.and_then(Setup::sandbox);
        let (mut supervisor_syscalls_allowed, mut supervisor_note) = match sandbox {
            Some(o) => (None, format!("the QEMU process runs with -sandbox {o} (libvirt's default)")),
            None => {
                (Some(unfiltered_syscalls()), unfiltered_note("the QEMU process (qemu-system-x86_64 without -sandbox)"))
            }
        };
        if let Some(Err(e)) = setup.map(|s| &s.sandbox) {
            supervisor_note.push_str(&format!("; this QEMU cannot run libvirt's default -sandbox: {e}"));
        }
        let vmm = match self.device_model() {
            Ok(m) => {
                let mut v = m.to_surface(supervisor_syscalls_allowed.unwrap_or(0));
                v.source = Some(m.describe());
                Some(v)
            }
            Err(e) => {
                supervisor_note
                    .push_str(&format!("; layer (b) not declared: QEMU's device model is not enumerated here ({e})"));
                None
            }
        };
        let mut surface = BackendSurface {
            profile: setup.map_or_else(
                || "linux guest under QEMU TCG (emulated): its own kernel and initramfs".into(),
                Setup::profile,
            ),
            seccomp_profile: None,
            vmm,
            supervisor_syscalls_allowed: supervisor_syscalls_allowed.take(),
            supervisor_note,
            user_kernel: None,
        };
        let who = match sandbox {
            Some(o) => format!("the QEMU process (qemu-system-x86_64 -sandbox {o})"),
            None => "the QEMU process (qemu-system-x86_64 without -sandbox)".into(),
        };
        super::confinement::apply(NAME, &who, &mut surface);
        if let (Some(v), Some(n)) = (surface.vmm.as_mut(), surface.supervisor_syscalls_allowed) {
            v.syscalls_allowed = n;
        }
        surface
    }
}

/// One QEMU process. Stopping writes `stop` to the guest console (the idle workload's stop line),
/// then closes QEMU's stdin; a guest that never reports ready is killed and the error carries its
/// last console lines.
pub struct QemuTcgInstance {
    inner: ChildInstance,
    disk_image: Option<PathBuf>,
}

impl QemuTcgInstance {
    /// Bytes the disk image occupies on the host now (allocated blocks), if the instance has a disk.
    pub fn disk_allocated_bytes(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.disk_image.as_ref()?).ok()?;
        Some(m.blocks() * 512)
    }

    /// The disk image, if any (removed when the instance stops).
    pub fn disk_image(&self) -> Option<&Path> {
        self.disk_image.as_deref()
    }
}

impl Instance for QemuTcgInstance {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }
    fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, BackendError> {
        match self.inner.wait_ready(timeout) {
            Err(BackendError::Timeout { backend, id, what, timeout, log }) => {
                let _ = self.inner.stop(Duration::ZERO);
                let log = format!("; QEMU killed{log}");
                Err(BackendError::Timeout { backend, id, what, timeout, log })
            }
            r => r,
        }
    }
    fn next_event(&mut self, timeout: Duration) -> Result<Option<(u64, Event)>, BackendError> {
        self.inner.next_event(timeout)
    }
    fn stats(&mut self) -> InstanceStats {
        self.inner.stats()
    }
    fn stop(&mut self, timeout: Duration) -> Result<ExitInfo, BackendError> {
        let _ = self.inner.send_line("stop");
        self.inner.stop(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: &[(&str, &str)]) -> InstanceSpec {
        let mut s = InstanceSpec::new("vmct-test-1", Scenario::Cpu { iters: 10 });
        s.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        s
    }

    #[test]
    fn tcg_command_line_backs_ram_with_a_memfd_and_attaches_the_disk() {
        let a = QemuArgs {
            accel: Accel::Tcg,
            kernel: Path::new("/k/bzImage"),
            initrd: Path::new("/k/initrd"),
            append: "console=ttyS0",
            mem_mib: 160,
            vcpus: 2,
            disk: Some(Path::new("/d/disk.ext4")),
            sandbox: Some(LIBVIRT_SANDBOX),
            balloon: false,
        }
        .to_args();
        let j = a.join(" ");
        assert!(j.starts_with("-accel tcg -M microvm,x-option-roms=off,rtc=off,acpi=off,memory-backend=vmct-guest-ram"));
        assert!(j.contains("-object memory-backend-memfd,id=vmct-guest-ram,size=160M,share=on -m 160M"), "{j}");
        assert!(j.contains("-nodefaults -no-user-config -nographic -serial stdio -no-reboot -smp 2"), "{j}");
        assert!(j.contains("-drive file=/d/disk.ext4,format=raw,if=none,id=vmct-disk"), "{j}");
        assert!(
            j.contains("-append console=ttyS0 -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"),
            "{j}"
        );
        assert!(j.ends_with("-device virtio-blk-device,drive=vmct-disk"), "{j}");
        assert!(!j.contains("kvm"));
        let kvm = QemuArgs {
            accel: Accel::Kvm,
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            append: "",
            mem_mib: 128,
            vcpus: 1,
            disk: None,
            sandbox: None,
            balloon: false,
        };
        let k = kvm.to_args().join(" ");
        assert!(k.starts_with("-M microvm -enable-kvm -cpu host -m 128M") && !k.contains("memfd"), "{k}");
        assert!(!k.contains("-sandbox"), "no -sandbox unless asked: {k}");
        assert!(!j.contains("balloon") && !k.contains("balloon"));
        let b = QemuArgs { balloon: true, ..kvm }.to_args().join(" ");
        assert!(b.ends_with("-device virtio-balloon-device,free-page-reporting=on"), "{b}");
    }

    #[test]
    fn free_page_reporting_needs_the_balloon_and_page_reporting_options() {
        assert_eq!(balloon_unsupported(Some("CONFIG_VIRTIO_BALLOON=y\nCONFIG_PAGE_REPORTING=y\n")), None);
        let e = balloon_unsupported(Some("CONFIG_VIRTIO_BALLOON=y\n")).unwrap();
        assert!(e.contains("CONFIG_PAGE_REPORTING=y") && !e.contains("BALLOON=y"), "{e}");
        assert!(balloon_unsupported(None).unwrap().contains("unknown"));
    }

    #[test]
    fn environment_travels_on_the_kernel_command_line() {
        let c =
            guest_cmdline(&spec(&[("VMCT_CANARY_FILE", "/var/tmp/x.txt"), ("VMCT_CANARY_ADDR", "127.0.0.1:5")]), false)
                .unwrap();
        assert!(c.contains(" reboot=t "), "{c}");
        assert!(c.contains("vmct.workload=cpu,--iters,10"), "{c}");
        assert!(c.ends_with("VMCT_CANARY_FILE=/var/tmp/x.txt VMCT_CANARY_ADDR=127.0.0.1:5"), "{c}");
        assert!(!c.contains(super::super::OWNER_ENV), "the owner variable stays on the host: {c}");
        let e = guest_cmdline(&spec(&[("A", "two words")]), false).unwrap_err();
        assert!(e.contains("A=\"two words\"") && e.contains("kernel command line"), "{e}");
        assert!(guest_cmdline(&spec(&[("a.b", "1")]), false).is_err());
    }

    #[test]
    fn a_vmlinux_without_pvh_is_refused_naming_the_option() {
        let d = tempfile::tempdir().unwrap();
        let elf = d.path().join("vmlinux");
        let mut bytes = vec![0u8; 0x400];
        bytes[..4].copy_from_slice(b"\x7fELF");
        std::fs::write(&elf, &bytes).unwrap();
        let e = check_qemu_kernel(&elf).unwrap_err();
        assert!(e.contains("CONFIG_PVH") && e.contains("bzImage"), "{e}");
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&elf, &bytes).unwrap();
        check_qemu_kernel(&elf).unwrap();
        assert!(check_qemu_kernel(&d.path().join("none")).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn a_kernel_without_virtio_blk_gets_no_disk_and_says_which_option() {
        let all = DISK_CONFIG.join("\n");
        assert_eq!(disk_unsupported(Some(&all)), None);
        let without = all.replace("CONFIG_VIRTIO_BLK=y", "# CONFIG_VIRTIO_BLK is not set");
        assert!(disk_unsupported(Some(&without)).unwrap().contains("CONFIG_VIRTIO_BLK=y"));
        assert!(disk_unsupported(None).unwrap().contains("unknown"));
        // The repository's guest kernel config has what the disk needs.
        for o in DISK_CONFIG {
            assert!(kernel::CONFIG_FRAGMENT.lines().any(|l| l.trim() == *o), "{o} missing from the fragment");
        }
    }

    #[test]
    fn info_is_an_emulated_linux_guest_peer() {
        let i = QemuTcgBackend::new(Path::new("/nonexistent")).info();
        assert_eq!(
            (i.name.as_str(), i.model.as_str(), i.guest_model.map(|g| g.as_str())),
            (NAME, "microvm", Some("linux"))
        );
        assert!(i.emulated);
        assert_eq!(i.available, i.reason.is_none());
        if super::super::peers::which(QEMU_BIN).is_none() {
            assert!(i.reason.unwrap().contains(QEMU_PACKAGE));
        }
    }
}

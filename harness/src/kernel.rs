//! `vmct kernel build`: the linux guest model's kernel, built from the distro's kernel source package
//! with the config kept in the repository (`microvm/guest-kernel/config.fragment`) and cached under
//! `cache_dir()/kernels/<config-hash>/{vmlinux,bzImage}`: our VMM boots the ELF vmlinux, QEMU (the
//! `qemu-tcg` backend) the bzImage (QEMU refuses a vmlinux without the PVH ELF note).
//!
//! The build, in order:
//! 1. reuse `kernels/<hash>/vmlinux` and `bzImage` if present (the hash covers the fragment and the source
//!    package);
//! 2. check the source tarball (`/usr/src/linux-source-6.1.tar.xz`) and the build tools;
//! 3. extract it once to `kernels/src/` (a marker file records a complete extraction);
//! 4. `make tinyconfig`, `merge_config.sh -m` the fragment, `make olddefconfig` in `kernels/build-<hash>/`
//!    (out of tree, one build directory per config and an exclusive lock on `kernels/build-<hash>.lock`:
//!    the cache is shared by every vmct of the user, and two builds in one directory break each other);
//! 5. check that every `=y` / `is not set` line of the fragment survived Kconfig;
//! 6. `make -jN vmlinux bzImage` (under `nice -n 19` by default; the bzImage takes seconds after the
//!    vmlinux), streaming make's lines to the caller;
//! 7. copy `bzImage`, `.config` and `vmlinux` into `kernels/<hash>/`, the vmlinux last and atomically
//!    (write, then rename), so its presence means a complete entry.
use crate::artifacts;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The guest kernel config fragment (applied on top of `make tinyconfig`).
pub const CONFIG_FRAGMENT: &str = include_str!("../../microvm/guest-kernel/config.fragment");
/// The Debian package with the kernel source.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
/// Where Debian puts its tarball.
pub const DEFAULT_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// Environment override for the kernel used by the linux guest model (a user's vmlinux or bzImage).
pub const KERNEL_ENV: &str = "VMCT_KERNEL";

/// Errors building the guest kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The source package is not installed.
    #[error(
        "kernel: no kernel source at {0}; install {SOURCE_PACKAGE}: apt-get install -y {SOURCE_PACKAGE} flex bison bc libelf-dev"
    )]
    SourceMissing(PathBuf),
    /// A build tool is missing.
    #[error("kernel: {tool} not found; install the build tools: apt-get install -y {package}")]
    ToolMissing {
        /// Tool or header.
        tool: &'static str,
        /// Debian packages providing it.
        package: &'static str,
    },
    /// A stop was requested by signal while a build step ran: the step's process group was ended; the
    /// build directory (a cache make resumes from) stays, nothing half-installed.
    #[error("kernel: {0} (the build stopped; `vmct kernel build` resumes it)")]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// A command failed.
    #[error("kernel: `{command}` failed ({status}){tail}")]
    Command {
        /// The command.
        command: String,
        /// Exit description.
        status: String,
        /// Last lines of its error output, prefixed with ":\n".
        tail: String,
    },
    /// Kconfig dropped options of the fragment (dependencies not met in this source).
    #[error("kernel: the config fragment's options did not survive Kconfig: {}", .0.join(", "))]
    ConfigMismatch(Vec<String>),
    /// File system error.
    #[error("kernel: {context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KernelError {
    let path = path.to_path_buf();
    move |source| KernelError::Io { context, path, source }
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The kernel source tarball.
    pub tarball: PathBuf,
    /// `make -j`; None = the number of CPUs.
    pub jobs: Option<usize>,
    /// Run make under `nice -n 19` (spares other work on the machine).
    pub nice: bool,
    /// Rebuild even if the cache has this config's kernel.
    pub force: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { tarball: DEFAULT_TARBALL.into(), jobs: None, nice: true, force: false }
    }
}

/// Progress of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<'a> {
    /// A step starts (`extract`, `configure`, `compile`, `install`).
    Step(&'static str),
    /// A line of make's output (`  CC      kernel/fork.o`).
    Line(&'a str),
}

/// The cache key of the kernel: the fragment and the source package.
pub fn config_hash() -> String {
    format!("{:016x}", artifacts::content_hash(format!("{SOURCE_PACKAGE}\n{CONFIG_FRAGMENT}").as_bytes()))
}

/// `cache_dir()/kernels`.
pub fn kernels_dir() -> PathBuf {
    artifacts::cache_dir().join("kernels")
}

/// Path of this config's kernel in the cache (whether or not it exists).
pub fn cached_path() -> PathBuf {
    kernels_dir().join(config_hash()).join("vmlinux")
}

/// Path of this config's bzImage in the cache (whether or not it exists).
pub fn cached_bzimage_path() -> PathBuf {
    kernels_dir().join(config_hash()).join(BZIMAGE)
}

/// File name of the compressed kernel (x86 boot protocol) beside the vmlinux.
pub const BZIMAGE: &str = "bzImage";

/// The kernel to boot: `$VMCT_KERNEL` if set, else this config's cached kernel if built.
pub fn cached() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(KERNEL_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    Some(cached_path()).filter(|p| p.is_file())
}

/// Build (or reuse) the guest kernel; returns the path of its vmlinux.
pub fn build(opts: &BuildOptions, progress: &mut dyn FnMut(Progress<'_>)) -> Result<PathBuf, KernelError> {
    // 1. Cache.
    let out = cached_path();
    if out.is_file() && cached_bzimage_path().is_file() && !opts.force {
        return Ok(out);
    }
    // 2. Source and tools.
    if !opts.tarball.is_file() {
        return Err(KernelError::SourceMissing(opts.tarball.clone()));
    }
    for (tool, package) in
        [("make", "make"), ("gcc", "gcc"), ("flex", "flex"), ("bison", "bison"), ("bc", "bc"), ("tar", "tar")]
    {
        if !in_path(tool) {
            return Err(KernelError::ToolMissing { tool, package });
        }
    }
    if !Path::new("/usr/include/gelf.h").is_file() {
        return Err(KernelError::ToolMissing { tool: "gelf.h (for objtool)", package: "libelf-dev" });
    }
    // 3. Extract once.
    let dir = kernels_dir();
    let src_parent = dir.join("src");
    let name = opts.tarball.file_name().and_then(|n| n.to_str()).unwrap_or(SOURCE_PACKAGE);
    let src = src_parent.join(name.split(".tar").next().unwrap_or(SOURCE_PACKAGE));
    let marker = src.join(".vmct-extracted");
    if !marker.is_file() {
        progress(Progress::Step("extract"));
        std::fs::create_dir_all(&src_parent).map_err(io("create", &src_parent))?;
        let mut tar = Command::new("tar");
        tar.arg("xf").arg(&opts.tarball).arg("-C").arg(&src_parent);
        run(tar, opts.nice, progress)?;
        std::fs::write(&marker, b"").map_err(io("write", &marker))?;
    }
    // 4. Configure, holding the lock of this config's build directory; another vmct may have built it
    //    while we waited.
    let lock_path = dir.join(format!("build-{}.lock", config_hash()));
    let lock_file = std::fs::File::create(&lock_path).map_err(io("create", &lock_path))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io("lock", &lock_path)(e.into()))?;
    if out.is_file() && cached_bzimage_path().is_file() && !opts.force {
        return Ok(out);
    }
    progress(Progress::Step("configure"));
    let build = dir.join(format!("build-{}", config_hash()));
    std::fs::create_dir_all(&build).map_err(io("create", &build))?;
    let fragment = build.join("vmct.fragment");
    std::fs::write(&fragment, CONFIG_FRAGMENT).map_err(io("write", &fragment))?;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C").arg(&src).arg(format!("O={}", build.display())).args(args);
        c
    };
    run(make(&["tinyconfig"]), opts.nice, progress)?;
    let mut merge = Command::new(src.join("scripts/kconfig/merge_config.sh"));
    merge.current_dir(&src).args(["-m", "-O"]).arg(&build).arg(build.join(".config")).arg(&fragment);
    run(merge, opts.nice, progress)?;
    run(make(&["olddefconfig"]), opts.nice, progress)?;
    // 5. Check.
    let config_path = build.join(".config");
    let config = std::fs::read_to_string(&config_path).map_err(io("read", &config_path))?;
    let missing = missing_options(CONFIG_FRAGMENT, &config);
    if !missing.is_empty() {
        return Err(KernelError::ConfigMismatch(missing));
    }
    // 6. Compile.
    progress(Progress::Step("compile"));
    let jobs = opts.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    run(make(&[&format!("-j{jobs}"), "vmlinux", BZIMAGE]), opts.nice, progress)?;
    // 7. Install into the cache.
    progress(Progress::Step("install"));
    let dest = out.parent().expect("cached path has a parent");
    std::fs::create_dir_all(dest).map_err(io("create", dest))?;
    let bz = dest.join(BZIMAGE);
    let bz_tmp = dest.join("bzImage.tmp");
    std::fs::copy(build.join("arch/x86/boot").join(BZIMAGE), &bz_tmp).map_err(io("copy bzImage to", &bz_tmp))?;
    std::fs::rename(&bz_tmp, &bz).map_err(io("rename", &bz))?;
    let tmp = dest.join("vmlinux.tmp");
    std::fs::copy(build.join("vmlinux"), &tmp).map_err(io("copy vmlinux to", &tmp))?;
    std::fs::copy(&config_path, dest.join("config")).map_err(io("copy .config to", dest))?;
    std::fs::rename(&tmp, &out).map_err(io("rename", &out))?;
    Ok(out)
}

/// Fragment lines (`CONFIG_X=y`, `# CONFIG_X is not set`) that the final .config contradicts.
pub fn missing_options(fragment: &str, config: &str) -> Vec<String> {
    let set: std::collections::HashSet<&str> = config.lines().map(str::trim).collect();
    let mut missing = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if line.starts_with("CONFIG_") {
            if !set.contains(line) {
                missing.push(line.to_string());
            }
        } else if let Some(opt) = line.strip_prefix("# ").and_then(|l| l.strip_suffix(" is not set")) {
            if opt.starts_with("CONFIG_") && set.contains(format!("{opt}=y").as_str()) {
                missing.push(line.to_string());
            }
        }
    }
    missing
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
}

/// Run `cmd` (optionally under `nice -n 19`), passing stdout lines to `progress`, keeping the error tail.
fn run(cmd: Command, nice: bool, progress: &mut dyn FnMut(Progress<'_>)) -> Result<(), KernelError> {
    let mut cmd = if nice {
        let mut n = Command::new("nice");
        n.args(["-n", "19"]).arg(cmd.get_program()).args(cmd.get_args());
        if let Some(d) = cmd.get_current_dir() {
            n.current_dir(d);
        }
        n
    } else {
        cmd
    };
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so a stop request (SIGTERM to vmct, or Ctrl-C, which vmct catches) ends make
    // and every compiler it started, not vmct alone: a 10-minute build must not outlive the request.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| KernelError::Command {
        command: shown.clone(),
        status: format!("cannot start: {e}"),
        tail: String::new(),
    })?;
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if crate::interrupt::requested() {
                    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
                    return;
                }
                std::thread::sleep(crate::interrupt::POLL_SLICE);
            }
        })
    };
    let stderr = child.stderr.take().expect("stderr is piped");
    let err_thread = std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tail.len() == 20 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail.into_iter().collect::<Vec<_>>()
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        progress(Progress::Line(&line));
    }
    let status = child.wait().map_err(|e| KernelError::Command {
        command: shown.clone(),
        status: format!("wait failed: {e}"),
        tail: String::new(),
    })?;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watcher.join();
    let tail = err_thread.join().unwrap_or_default();
    crate::interrupt::check()?;
    if status.success() {
        return Ok(());
    }
    Err(KernelError::Command {
        command: shown,
        status: status.to_string(),
        tail: if tail.is_empty() { String::new() } else { format!(":\n{}", tail.join("\n")) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_is_firecracker_style() {
        for want in [
            "CONFIG_SERIAL_8250_CONSOLE=y",
            "CONFIG_BLK_DEV_INITRD=y",
            "CONFIG_KVM_GUEST=y",
            "# CONFIG_MODULES is not set",
            "# CONFIG_PCI is not set",
            "# CONFIG_JUMP_LABEL is not set",
            "# CONFIG_KPROBES is not set",
            "# CONFIG_FTRACE is not set",
        ] {
            assert!(CONFIG_FRAGMENT.lines().any(|l| l.trim() == want), "{want} missing from the fragment");
        }
    }

    #[test]
    fn config_check_finds_dropped_and_forced_options() {
        let frag = "# comment\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n# CONFIG_D is not set\n";
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n";
        assert_eq!(missing_options(frag, config), ["CONFIG_B=y", "# CONFIG_C is not set"]);
    }

    #[test]
    fn missing_source_says_what_to_install() {
        let opts =
            BuildOptions { tarball: "/nonexistent/linux-source-6.1.tar.xz".into(), force: true, ..Default::default() };
        let e = build(&opts, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("apt-get install -y linux-source-6.1"), "{e}");
    }

    #[test]
    fn hash_is_stable_and_names_the_cache_path() {
        assert_eq!(config_hash(), config_hash());
        assert!(cached_path().ends_with(format!("kernels/{}/vmlinux", config_hash())));
        assert!(cached_bzimage_path().ends_with(format!("kernels/{}/bzImage", config_hash())));
    }

    /// The real build: minutes of CPU. `cargo test -p harness --lib -- --ignored kernel_builds`.
    #[test]
    #[ignore]
    fn kernel_builds() {
        let started = std::time::Instant::now();
        let mut lines = 0usize;
        let path = build(&BuildOptions { force: true, ..Default::default() }, &mut |p| {
            if let Progress::Step(s) = p {
                eprintln!("kernel build: {s}");
            }
            lines += 1;
        })
        .unwrap();
        eprintln!("kernel build: {} in {:.0?} ({lines} progress lines)", path.display(), started.elapsed());
        let head = std::fs::read(&path).unwrap();
        assert_eq!(&head[..4], b"\x7fELF");
        // QEMU (the qemu-tcg backend) boots the bzImage: the x86 boot protocol header.
        let bz = std::fs::read(cached_bzimage_path()).unwrap();
        assert_eq!(&bz[0x202..0x206], b"HdrS");
        assert_eq!(cached(), Some(path));
    }
}

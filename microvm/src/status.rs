//! What this host's KVM is and which guest models it can run (for `vmct env` and backend availability).
use std::path::Path;

/// The KVM implementation behind /dev/kvm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Intel VT-x.
    Intel,
    /// AMD-V.
    Amd,
    /// `kvm_pvm` (nested, shadow paging, no VT-x): guest CPL3 runs natively, CPL0 is interpreted.
    Pvm,
    /// /dev/kvm works but the module is unknown.
    Unknown,
}

impl Flavour {
    /// Module-style name: `kvm_intel`, `kvm_amd`, `kvm_pvm`, `kvm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Intel => "kvm_intel",
            Flavour::Amd => "kvm_amd",
            Flavour::Pvm => "kvm_pvm",
            Flavour::Unknown => "kvm",
        }
    }
}

/// Detect the flavour from /sys/module and /proc/cpuinfo (`root` is `/` except in tests).
pub fn flavour_at(root: &Path) -> Flavour {
    let module = |m: &str| root.join("sys/module").join(m).exists();
    let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
    let flag =
        |f: &str| cpuinfo.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|w| w == f));
    if module("kvm_pvm") && !flag("vmx") && !flag("svm") {
        Flavour::Pvm
    } else if module("kvm_intel") {
        Flavour::Intel
    } else if module("kvm_amd") {
        Flavour::Amd
    } else if module("kvm_pvm") {
        Flavour::Pvm
    } else {
        Flavour::Unknown
    }
}

/// Availability of each guest model on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmStatus {
    /// KVM flavour, None if /dev/kvm is unusable.
    pub flavour: Option<Flavour>,
    /// `Ok(())` if the bare guest model can run, else why not.
    pub bare: Result<(), String>,
    /// `Ok(())` if the linux guest model can run, else why not.
    pub linux: Result<(), String>,
}

impl KvmStatus {
    /// One line per model, e.g. `microvm/bare available` / `microvm/linux unavailable: ...`.
    pub fn lines(&self) -> Vec<String> {
        let line = |m: &str, r: &Result<(), String>| match r {
            Ok(()) => format!("microvm/{m} available"),
            Err(why) => format!("microvm/{m} unavailable: {why}"),
        };
        vec![
            format!("kvm {}", self.flavour.map_or("unusable", |f| f.as_str())),
            line("bare", &self.bare),
            line("linux", &self.linux),
        ]
    }
}

/// Check /dev/kvm (open, API version, capabilities) and the flavour.
pub fn kvm_status() -> KvmStatus {
    match crate::vm::open_kvm() {
        Err(e) => {
            let why = e.to_string();
            KvmStatus { flavour: None, bare: Err(why.clone()), linux: Err(why) }
        }
        Ok(_) => {
            let flavour = flavour_at(Path::new("/"));
            let linux = match flavour {
                Flavour::Intel | Flavour::Amd => Err("the linux guest model is not implemented yet".to_string()),
                Flavour::Pvm => Err("kvm_pvm cannot run guest userspace (guest kernel code is interpreted, \
                                     system calls do not reach the guest kernel)"
                    .to_string()),
                Flavour::Unknown => Err("unknown KVM flavour: hardware virtualization not confirmed".to_string()),
            };
            KvmStatus { flavour: Some(flavour), bare: Ok(()), linux }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_pvm_and_vtx_from_a_fake_root() {
        let d = std::env::temp_dir().join(format!("vmct-flavour-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sys/module/kvm_pvm")).unwrap();
        std::fs::create_dir_all(d.join("proc")).unwrap();
        std::fs::write(d.join("proc/cpuinfo"), "flags\t: fpu sse2\n").unwrap();
        assert_eq!(flavour_at(&d), Flavour::Pvm);
        std::fs::create_dir_all(d.join("sys/module/kvm_intel")).unwrap();
        std::fs::write(d.join("proc/cpuinfo"), "flags\t: fpu vmx sse2\n").unwrap();
        assert_eq!(flavour_at(&d), Flavour::Intel);
        std::fs::remove_dir_all(&d).unwrap();
        let s = KvmStatus { flavour: Some(Flavour::Pvm), bare: Ok(()), linux: Err("no".into()) };
        assert_eq!(s.lines(), ["kvm kvm_pvm", "microvm/bare available", "microvm/linux unavailable: no"]);
    }
}

//! Selecting a profile's rules for a capability set, architecture and kernel (Podman's way, see
//! [`super`]).
use super::*;

impl ProfileFile {
    /// The rules for a container holding `caps`, on arch (`SCMP_ARCH_*`, Go name) and `kernel`.
    pub fn resolve(
        &self,
        path: &Path,
        caps: &[Capability],
        arch: (&'static str, &'static str),
        kernel: Option<(u32, u32)>,
    ) -> Result<Resolved, ProfileError> {
        let (scmp_arch, go_arch) = arch;
        let architectures = if self.arch_map.is_empty() {
            self.architectures.clone()
        } else {
            let e = self
                .arch_map
                .iter()
                .find(|e| e.architecture == scmp_arch)
                .ok_or(ProfileError::NoArch { path: path.into(), arch: scmp_arch })?;
            std::iter::once(e.architecture.clone()).chain(e.sub_architectures.iter().cloned()).collect()
        };
        let has = |c: &String| caps.iter().any(|k| k.to_string() == *c);
        let rules = self
            .syscalls
            .iter()
            .filter(|r| {
                let ex = &r.excludes;
                let inc = &r.includes;
                let too_old = inc.min_kernel.as_deref().is_some_and(|m| match (kernel_version(m), kernel) {
                    (Some(want), Some(have)) => have < want,
                    _ => true,
                });
                let excluded = ex.arches.iter().any(|a| a == go_arch) || ex.caps.iter().any(has);
                let included = (inc.arches.is_empty() || inc.arches.iter().any(|a| a == go_arch))
                    && inc.caps.iter().all(has)
                    && !too_old;
                included && !excluded
            })
            .map(|r| Rule {
                names: r.names.clone(),
                action: r.action,
                errno_ret: r.errno_ret,
                args: r.args.clone().unwrap_or_default(),
            })
            .collect();
        Ok(Resolved {
            default_action: self.default_action,
            default_errno_ret: self.default_errno_ret,
            architectures,
            rules,
        })
    }
}

/// This machine's arch as (`SCMP_ARCH_*`, Go name used by `includes.arches`).
pub fn host_arch() -> (&'static str, &'static str) {
    #[cfg(target_arch = "aarch64")]
    return ("SCMP_ARCH_AARCH64", "arm64");
    #[cfg(not(target_arch = "aarch64"))]
    ("SCMP_ARCH_X86_64", "amd64")
}

/// `(major, minor)` of a kernel release string ("6.1.0-18-amd64" -> (6, 1)).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

pub(super) fn running_kernel() -> Option<(u32, u32)> {
    kernel_version(nix::sys::utsname::uname().ok()?.release().to_str()?)
}

//! OCI runtime-spec `config.json` for the peer runtimes (crun, runc), built with the `oci-spec` crate
//! and matching what our runtime does and what Podman gives crun and runc by default: the same
//! namespaces and mounts, Docker's default capabilities, no_new_privs, Podman's default seccomp profile
//! (resolved for those capabilities as Podman does, [`crate::seccomp_profile`]), the default device
//! rules ([`crate::devices`]), the masked and read-only paths ([`crate::security`]), limits, and an
//! absolute `cgroupsPath`.
use crate::devices::{self, DeviceKind, DeviceRule};
use crate::image::Image;
use crate::limits::{Limits, CPU_PERIOD_US};
use crate::runtime::Profile;
use crate::seccomp_profile::{self, ProfileError};
use crate::security;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};
use std::collections::HashSet;
use std::path::Path;

/// Errors building a config.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The seccomp profile could not be read or resolved.
    #[error("OCI config: {0}")]
    Seccomp(#[from] ProfileError),
    /// oci-spec refused a value.
    #[error("OCI config: {what}: {reason}")]
    Build {
        /// Which part.
        what: &'static str,
        /// oci-spec's message.
        reason: String,
    },
}

/// Inputs of a config.
#[derive(Debug, Clone)]
pub struct OciInputs<'a> {
    /// The image (entry point, env, cwd).
    pub image: &'a Image,
    /// Arguments after the entry point.
    pub args: &'a [String],
    /// Extra environment.
    pub env: &'a [(String, String)],
    /// Hostname.
    pub hostname: &'a str,
    /// Limits.
    pub limits: Limits,
    /// Absolute cgroupsPath (e.g. "/process_api/abc/vmct-1").
    pub cgroups_path: &'a str,
    /// root.path (absolute, or relative to the bundle).
    pub rootfs: &'a str,
    /// Profile: privileged keeps all caps and devices and drops seccomp and the masks.
    pub profile: Profile,
}

fn build<T, E: std::fmt::Display>(what: &'static str, r: Result<T, E>) -> Result<T, OciError> {
    r.map_err(|e| OciError::Build { what, reason: e.to_string() })
}

fn oci_caps(names: &[String]) -> Result<HashSet<Capability>, OciError> {
    names
        .iter()
        .map(|n| build("capability", serde_json::from_value::<Capability>(serde_json::Value::String(n.clone()))))
        .collect()
}

/// The config with Podman's default seccomp profile from [`seccomp_profile::DEFAULT_PROFILE_PATH`].
pub fn config(i: &OciInputs<'_>) -> Result<Spec, OciError> {
    config_with_profile(i, Path::new(seccomp_profile::DEFAULT_PROFILE_PATH))
}

/// The config with the seccomp profile read from `profile_path` (unused for `Privileged`).
pub fn config_with_profile(i: &OciInputs<'_>, profile_path: &Path) -> Result<Spec, OciError> {
    let mut args: Vec<String> = i.image.entry.clone();
    args.extend(i.args.iter().cloned());
    let env: Vec<String> = i.image.env.iter().chain(i.env.iter()).map(|(k, v)| format!("{k}={v}")).collect();
    let confined = i.profile.confined();
    let cap_names: Vec<String> = if confined {
        security::default_cap_names()
    } else {
        caps::all().iter().map(|c| c.to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
    };
    let caps = oci_caps(&cap_names)?;
    let process = build(
        "process",
        ProcessBuilder::default()
            .terminal(false)
            .user(build("user", UserBuilder::default().uid(0u32).gid(0u32).build())?)
            .args(args)
            .env(env)
            .cwd(i.image.cwd.clone())
            .capabilities(build(
                "capabilities",
                // Inheritable and ambient empty, as Docker writes them since CVE-2022-24769 (moby
                // 20.10.14); left unset, oci-spec's default would fill both with three capabilities.
                LinuxCapabilitiesBuilder::default()
                    .bounding(caps.clone())
                    .effective(caps.clone())
                    .permitted(caps)
                    .inheritable(HashSet::new())
                    .ambient(HashSet::new())
                    .build(),
            )?)
            .no_new_privileges(confined)
            .rlimits(Vec::new())
            .build(),
    )?;
    let mount = |dest: &str, typ: &str, opts: &[&str]| {
        build(
            "mount",
            MountBuilder::default()
                .destination(dest)
                .typ(typ)
                .source(typ)
                .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>())
                .build(),
        )
    };
    let sys_flags: &[&str] =
        if confined { &["nosuid", "noexec", "nodev", "ro"] } else { &["nosuid", "noexec", "nodev"] };
    let mounts = vec![
        mount("/proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount("/dev/pts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"])?,
        mount("/sys", "sysfs", sys_flags)?,
        mount("/tmp", "tmpfs", &["nosuid", "nodev", "mode=1777"])?,
    ];
    let mut res = LinuxResourcesBuilder::default();
    if let Some(m) = i.limits.memory_bytes {
        res = res.memory(build("memory", LinuxMemoryBuilder::default().limit(m as i64).build())?);
    }
    if let Some(q) = i.limits.cpu_quota_us() {
        res = res.cpu(build("cpu", LinuxCpuBuilder::default().quota(q as i64).period(CPU_PERIOD_US).build())?);
    }
    if let Some(p) = i.limits.pids {
        res = res.pids(build("pids", LinuxPidsBuilder::default().limit(p as i64).build())?);
    }
    // Docker --privileged: every device ("a *:* rwm" allowed).
    let all =
        [DeviceRule { allow: true, kind: DeviceKind::All, major: None, minor: None, access: devices::access::RWM }];
    let rules: &[DeviceRule] = if confined { devices::DEFAULT_RULES } else { &all };
    res = res.devices(rules.iter().map(DeviceRule::to_oci).collect::<Vec<_>>());
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .map(|t| build("namespace", LinuxNamespaceBuilder::default().typ(t).build()))
    .collect::<Result<Vec<_>, _>>()?;
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(i.cgroups_path)
        .resources(build("resources", res.build())?)
        .devices(Vec::new());
    if confined {
        let profile = seccomp_profile::load(profile_path, security::DEFAULT_CAPS)?;
        linux = linux
            .seccomp(profile.resolved.to_oci())
            .masked_paths(security::masked_paths().map(String::from).collect::<Vec<_>>())
            .readonly_paths(strings(security::READONLY_PATHS));
    } else {
        linux = linux.masked_paths(Vec::new()).readonly_paths(Vec::new());
    }
    build(
        "spec",
        SpecBuilder::default()
            .version("1.0.2")
            .process(process)
            .root(build("root", RootBuilder::default().path(i.rootfs).readonly(false).build())?)
            .hostname(i.hostname)
            .mounts(mounts)
            .annotations(std::collections::HashMap::new())
            .linux(build("linux", linux.build())?)
            .build(),
    )
}

/// The config as JSON text (what goes into the bundle's config.json).
pub fn config_json(i: &OciInputs<'_>) -> Result<String, OciError> {
    build("serialize", serde_json::to_string(&config(i)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn image() -> Image {
        Image {
            layers: vec!["/l".into()],
            entry: vec!["/bin/w".into()],
            env: vec![("PATH".into(), "/bin".into())],
            cwd: "/".into(),
        }
    }

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seccomp-small.json");

    #[test]
    fn config_has_the_essentials_and_docker_defaults() {
        let img = image();
        let args = vec!["cpu".to_string(), "--iters".into(), "10".into()];
        let env = vec![("VMCT_OWNER".to_string(), "1".to_string())];
        let i = OciInputs {
            image: &img,
            args: &args,
            env: &env,
            hostname: "vmct-1",
            limits: Limits { memory_bytes: Some(64 << 20), cpus: Some(0.5), pids: Some(16) },
            cgroups_path: "/process_api/x/vmct-1",
            rootfs: "rootfs",
            profile: Profile::Default,
        };
        let c: Value = serde_json::to_value(config_with_profile(&i, Path::new(FIXTURE)).unwrap()).unwrap();
        assert_eq!(c["process"]["args"], json!(["/bin/w", "cpu", "--iters", "10"]));
        assert_eq!(c["process"]["env"], json!(["PATH=/bin", "VMCT_OWNER=1"]));
        assert_eq!(c["linux"]["cgroupsPath"], "/process_api/x/vmct-1");
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 16);
        let ns: Vec<&str> =
            c["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount", "cgroup"]);
        assert_eq!(c["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        // Docker since CVE-2022-24769: nothing inheritable, nothing ambient.
        assert_eq!(c["process"]["capabilities"]["inheritable"], json!([]));
        assert_eq!(c["process"]["capabilities"]["ambient"], json!([]));
        assert_eq!(c["process"]["noNewPrivileges"], true);
        // The profile's rules, resolved for the default capabilities (the CAP_SYS_ADMIN mount allow is gone).
        assert_eq!(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(c["linux"]["seccomp"]["defaultErrnoRet"], 38);
        let sc = c["linux"]["seccomp"]["syscalls"].as_array().unwrap();
        let mounts: Vec<&Value> = sc.iter().filter(|s| s["names"] == json!(["mount"])).collect();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0]["action"], "SCMP_ACT_ERRNO");
        let strs =
            |v: &Value| v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(strs(&c["linux"]["maskedPaths"]), security::masked_paths().collect::<Vec<_>>());
        assert_eq!(strs(&c["linux"]["readonlyPaths"]), security::READONLY_PATHS);
        let devs = c["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(devs.len(), devices::DEFAULT_RULES.len());
        assert_eq!(devs[0], json!({"allow": false, "type": "a", "access": "rwm"}));
        assert!(c["process"].get("rlimits").is_none_or(|r| r == &json!([])));

        let p = serde_json::to_value(
            config_with_profile(
                &OciInputs { profile: Profile::Privileged, limits: Limits::default(), ..i },
                Path::new("/nonexistent"),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(p["linux"].get("seccomp").is_none());
        assert!(p["process"]["capabilities"]["bounding"].as_array().unwrap().len() > 30);
        assert_eq!(p["linux"]["resources"]["devices"], json!([{"allow": true, "type": "a", "access": "rwm"}]));
        assert!(p["linux"].get("maskedPaths").is_none_or(|m| m == &json!([])));
    }

    #[test]
    fn a_missing_profile_names_the_package() {
        let img = image();
        let i = OciInputs {
            image: &img,
            args: &[],
            env: &[],
            hostname: "h",
            limits: Limits::default(),
            cgroups_path: "/x",
            rootfs: "rootfs",
            profile: Profile::Default,
        };
        let e = config_with_profile(&i, Path::new("/nonexistent/seccomp.json")).unwrap_err().to_string();
        assert!(e.contains(seccomp_profile::PROFILE_PACKAGE), "{e}");
    }
}

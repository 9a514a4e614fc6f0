//! OCI runtime-spec `config.json` generation for the peer runtimes (crun, runc), matching what our
//! runtime does: same namespaces, mounts, default capabilities, no_new_privs, the same seccomp
//! deny-list, limits, and an absolute `cgroupsPath`.
use crate::image::Image;
use crate::limits::{Limits, CPU_PERIOD_US};
use crate::runtime::Profile;
use crate::security::{self, DENIED_SYSCALLS};
use serde_json::{json, Value};

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
    /// Profile: privileged keeps all caps and drops seccomp.
    pub profile: Profile,
}

fn seccomp() -> Value {
    let names: Vec<&str> = DENIED_SYSCALLS.iter().map(|(n, _)| *n).collect();
    let mut syscalls = vec![
        json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
    ];
    for f in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
    ] {
        syscalls.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": f as u64, "valueTwo": f as u64, "op": "SCMP_CMP_MASKED_EQ"}]
        }));
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": syscalls})
}

/// The config.json value.
pub fn config(i: &OciInputs<'_>) -> Value {
    let mut args: Vec<String> = i.image.entry.clone();
    args.extend(i.args.iter().cloned());
    let env: Vec<String> = i.image.env.iter().chain(i.env.iter()).map(|(k, v)| format!("{k}={v}")).collect();
    let privileged = i.profile == Profile::Privileged;
    let caps: Vec<String> = if privileged {
        caps::all().iter().map(|c| c.to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
    } else {
        security::default_cap_names()
    };
    let mut resources = json!({});
    if let Some(m) = i.limits.memory_bytes {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(q) = i.limits.cpu_quota_us() {
        resources["cpu"] = json!({"quota": q, "period": CPU_PERIOD_US});
    }
    if let Some(p) = i.limits.pids {
        resources["pids"] = json!({"limit": p});
    }
    let sys_flags =
        if privileged { vec!["nosuid", "noexec", "nodev"] } else { vec!["nosuid", "noexec", "nodev", "ro"] };
    let mut linux = json!({
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
        "cgroupsPath": i.cgroups_path,
        "resources": resources,
    });
    if !privileged {
        linux["seccomp"] = seccomp();
        linux["maskedPaths"] = json!(["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"]);
        linux["readonlyPaths"] = json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]);
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": env,
            "cwd": i.image.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": !privileged,
        },
        "root": {"path": i.rootfs, "readonly": false},
        "hostname": i.hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_flags},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": linux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Image {
        Image {
            layers: vec!["/l".into()],
            entry: vec!["/bin/w".into()],
            env: vec![("PATH".into(), "/bin".into())],
            cwd: "/".into(),
        }
    }

    #[test]
    fn config_has_the_essentials() {
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
        let c = config(&i);
        assert_eq!(c["process"]["args"], json!(["/bin/w", "cpu", "--iters", "10"]));
        assert_eq!(c["process"]["env"], json!(["PATH=/bin", "VMCT_OWNER=1"]));
        assert_eq!(c["linux"]["cgroupsPath"], "/process_api/x/vmct-1");
        assert!(c["linux"]["cgroupsPath"].as_str().unwrap().starts_with('/'));
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 16);
        let ns: Vec<&str> =
            c["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount", "cgroup"]);
        assert_eq!(c["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        let p = config(&OciInputs { profile: Profile::Privileged, limits: Limits::default(), ..i });
        assert!(p["linux"].get("seccomp").is_none());
        assert!(p["process"]["capabilities"]["bounding"].as_array().unwrap().len() > 30);
        assert_eq!(p["linux"]["resources"], json!({}));
    }
}

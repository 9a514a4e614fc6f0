//! `vmct env`: what this host supports and why some backends cannot run.
use crate::backend::registry;
use results::HostEnv;
use std::process::ExitCode;

/// Arguments of `vmct env`.
#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The host with its peers filled in from the backends.
pub fn host_env(backends: &[Box<dyn crate::backend::Backend>]) -> HostEnv {
    let mut host = HostEnv::capture();
    for b in backends {
        let i = b.info();
        if i.kind == results::BackendKind::Peer && i.available {
            host.peers.push(results::env::PeerInfo {
                name: i.name.clone(),
                path: String::new(),
                version: i.version.clone().unwrap_or_default(),
            });
        }
    }
    host
}

/// Run the command.
pub fn run(a: EnvArgs) -> anyhow::Result<ExitCode> {
    let (workload, work_dir) = super::workload_and_workdir()?;
    let backends = registry::all(&workload, &work_dir);
    let host = host_env(&backends);
    let infos: Vec<_> = backends.iter().map(|b| b.info()).collect();
    let guest_models = guest_models(&host);
    if a.json {
        let v = serde_json::json!({
            "host": host, "caveats": host.caveats(), "backends": infos,
            "guest_models": guest_models.iter().map(|(m, ok, why)| serde_json::json!({"model": m, "available": ok, "reason": why})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "host      {} ({} cores, {})",
        host.cpu_model,
        host.cores,
        crate::units::human_bytes(host.mem_total_bytes as f64)
    );
    println!("kernel    {}", host.kernel);
    println!("kvm       {}", host.kvm.as_str());
    println!("cgroups   {}", host.cgroup.as_str());
    if let Some(g) = &host.cpufreq_governor {
        println!("cpufreq   {g}");
    }
    println!("\nmicroVM guest models:");
    for (m, ok, why) in &guest_models {
        println!("  {:<8} {}", m, if *ok { "available".to_string() } else { format!("unavailable: {why}") });
    }
    for i in infos.iter().filter(|i| i.emulated) {
        let what = if i.available {
            "available".to_string()
        } else {
            format!("unavailable: {}", i.reason.clone().unwrap_or_default())
        };
        println!("  linux under emulation (backend {}): {what}; startup and CPU figures are emulation-bound", i.name);
    }
    println!("\nbackends:");
    for i in &infos {
        let what = match (&i.available, &i.reason, &i.version) {
            (true, _, Some(v)) => format!("available ({v})"),
            (true, _, None) => "available".into(),
            (false, r, _) => format!("unavailable: {}", r.clone().unwrap_or_default()),
        };
        let model = if i.emulated { format!("{} (emulated)", i.model) } else { i.model.to_string() };
        println!("  {:<22} {:<18} {}", i.name, model, what);
    }
    let cav = host.caveats();
    if !cav.is_empty() {
        println!("\ncaveats:");
        for c in cav {
            println!("  - {c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// (model, available, reason) for the bare and linux guest models.
pub fn guest_models(host: &HostEnv) -> Vec<(results::GuestModel, bool, String)> {
    use results::KvmFlavour;
    let bare = match host.kvm {
        KvmFlavour::None => {
            (false, "no usable /dev/kvm (load kvm_intel/kvm_amd or run as a user in the kvm group)".to_string())
        }
        _ => (true, String::new()),
    };
    let linux = match host.kvm {
        KvmFlavour::KvmIntel | KvmFlavour::KvmAmd => (true, String::new()),
        KvmFlavour::KvmPvm => (
            false,
            format!(
                "kvm_pvm cannot run guest userspace (guest kernel code is interpreted, syscalls do not reach the guest kernel; {})",
                match microvm::linux::pvm::check() {
                    Ok(abi) => abi.describe(),
                    Err(e) => e.to_string(),
                }
            ),
        ),
        KvmFlavour::KvmUnknown => (false, "unknown KVM flavour: hardware virtualization not confirmed".to_string()),
        KvmFlavour::None => (false, "no usable /dev/kvm".to_string()),
    };
    vec![(results::GuestModel::Bare, bare.0, bare.1), (results::GuestModel::Linux, linux.0, linux.1)]
}

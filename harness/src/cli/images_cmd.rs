//! `vmct commit` and `vmct images`: container state saved as layers.
use super::UsageError;
use crate::images;
use std::process::ExitCode;

/// Arguments of `vmct commit`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  vmct run --backend container --workload idle --hold-for 60s &   # note its instance id\n  vmct commit vmct-1234-0 my-image\n  vmct run --backend container --image my-image --workload ready"
)]
pub struct CommitArgs {
    /// Id of a running container started by `vmct run` (see `vmct logs`).
    pub id: String,
    /// Name of the new image.
    pub name: String,
    /// The image the container was started from (default: the one vmct recorded when it started the
    /// container, else the base image); must agree with the recorded one.
    #[arg(long)]
    pub from: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `vmct images`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImagesArgs {
    /// Import an image archive, or show an image's history (without one: list images).
    #[command(subcommand)]
    pub command: Option<ImagesCommand>,
    /// Remove these images (and build layers no other image uses) instead of listing.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub rm: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `vmct images` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Import a `docker save` tar or an OCI image layout (directory or tar) as an image.
    Import(ImportArgs),
    /// Show what made each layer of an image, newest first (like `docker history`).
    History(HistoryArgs),
}

/// Arguments of `vmct images import`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Formats:
  docker-archive     `docker save IMAGE -o img.tar` (manifest.json, config, layer tars; newer docker
                     writes them inside an OCI layout in the same tar)
  OCI image layout   `skopeo copy docker://IMAGE oci:DIR:TAG` (a directory), or a tar of one such as
                     `podman save --format oci-archive -o img.tar IMAGE`

Layers may be plain, gzip or zstd tars; every digest (manifest, config, blobs, diff-IDs) is checked
before the image is stored. Layers are stored once per diff-ID and shared with every image that has
them (`vmct images` shows the shared bytes). No registry is contacted: fetch the image on a machine
that has one, copy the archive here.

Example:
  docker save redis:7.2 -o redis.tar        # on a machine with docker and a registry
  vmct images import redis.tar              # image `redis-7.2`
  vmct images history redis-7.2")]
pub struct ImportArgs {
    /// The archive (a tar file) or OCI layout directory.
    pub path: std::path::PathBuf,
    /// Name of the new image (default: from the archive's tag, `repo:tag` -> `repo-tag`, `:latest` dropped).
    #[arg(long)]
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `vmct images history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The image.
    pub name: String,
    /// Print JSON (newest first, like the table).
    #[arg(long)]
    pub json: bool,
}

/// `vmct images import`.
pub fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    use images::import::ImportError;
    let t0 = std::time::Instant::now();
    let done = images::import::import(&a.path, a.name.as_deref()).map_err(|e| match e {
        ImportError::Store(images::ImagesError::Io { .. }) | ImportError::Interrupted(_) => anyhow::Error::from(e),
        other => UsageError(other.to_string()).into(),
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rec = &done.image;
    let from = rec.imported_from.as_ref().expect("an imported record says where from");
    println!(
        "imported {} as image {} in {}: {} layer{} ({} new, {} already stored), {} unpacked from {} of blobs",
        a.path.display(),
        rec.name,
        crate::units::human_secs(t0.elapsed().as_secs_f64()),
        rec.layers.len(),
        if rec.layers.len() == 1 { "" } else { "s" },
        done.layers_new,
        done.layers_reused,
        crate::units::human_bytes(done.layer_tar_bytes as f64),
        crate::units::human_bytes(done.blob_bytes as f64),
    );
    let show = |v: &Option<Vec<String>>| v.as_ref().map_or("(none)".to_string(), |v| format!("{v:?}"));
    println!(
        "  {} {}, config sha256:{}\n  entrypoint {}, cmd {}, workdir {}, user {}, ports {}",
        from.format,
        from.platform,
        rec.digest.as_deref().map_or("", |d| &d[..d.len().min(12)]),
        show(&rec.entry),
        show(&rec.cmd),
        rec.cwd.as_deref().unwrap_or("/"),
        rec.user.as_deref().unwrap_or("(root)"),
        if rec.exposed_ports.is_empty() { "(none)".to_string() } else { rec.exposed_ports.join(" ") },
    );
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    if from.platform != format!("linux/{host}") {
        println!(
            "  note: the image is for {}, this host is linux/{host}; its programs may not run here",
            from.platform
        );
    }
    if rec.entry.is_none() && rec.cmd.is_none() {
        println!("  note: the image sets neither Entrypoint nor Cmd; give a command when running it");
    }
    Ok(ExitCode::SUCCESS)
}

/// `vmct images history`.
pub fn history(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let rec = images::load(&a.name).map_err(|e| UsageError(e.to_string()))?;
    let mut h = images::history::of(&rec);
    h.reverse();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<14} {:<20} {:<10} {:>10}  CREATED BY", "LAYER", "CREATED (UTC)", "ORIGIN", "SIZE");
    for e in &h {
        let layer = e.layer.as_ref().map_or("<none>".to_string(), |l| {
            let n = l.file_name().unwrap_or_default().to_string_lossy().into_owned();
            // `sha256-<hex>` layers by their digest; a committed image's own layer by its image.
            match n.strip_prefix("sha256-") {
                Some(hex) => hex[..hex.len().min(12)].to_string(),
                None => l.parent().and_then(|p| p.file_name()).unwrap_or_default().to_string_lossy().into_owned(),
            }
        });
        let mut by = e.created_by.replace('\n', " ");
        if let Some(c) = &e.comment {
            by.push_str(&format!("  ({c})"));
        }
        println!(
            "{:<14} {:<20} {:<10} {:>10}  {}",
            layer,
            e.created_unix_s.map_or("-".to_string(), images::history::format_utc),
            e.origin.as_str(),
            crate::units::human_bytes(e.size_bytes as f64),
            by
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `vmct build`.
#[derive(Debug, clap::Args)]
#[command(after_help = "A spec file (TOML):

  name = \"hello\"                       # the image's name
  from = \"base\"                        # \"base\" (default: the workload image) or another image
  busybox = true                       # stack the busybox layer (needs busybox-static)
  entry = [\"/bin/sh\", \"-c\", \"cat /etc/greeting\"]   # what `vmct shell --image hello` runs
  env = [\"GREETING=hello\"]             # added to the parent image's environment
  cwd = \"/srv\"                         # working directory (default: the parent image's, else /)

  [[add]]                              # repeat for more files or directories
  src = \"greeting.txt\"                 # relative to the spec's directory
  dest = \"/etc/greeting\"

Added files keep their mode (setuid, setgid, sticky), hard links, symlinks, xattrs, fifos and device \
nodes; owners are stored shifted into the user-namespace range (root's files belong to the container's \
root). The new layer is cached by a SHA-256 of its inputs (parent layers, every added file's name, mode, \
owner, xattrs, links and bytes, the entry point): building unchanged inputs again reuses it.

Example:
  vmct build hello.toml && vmct shell --image hello")]
pub struct BuildArgs {
    /// The spec file.
    pub spec: std::path::PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `vmct build`.
pub fn build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    use crate::images::build::BuildError;
    let t0 = std::time::Instant::now();
    let built = images::build::build(&a.spec, base_layers()?).map_err(|e| match e {
        BuildError::Io { .. } | BuildError::Store(images::ImagesError::Io { .. }) => anyhow::Error::from(e),
        other => UsageError(other.to_string()).into(),
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&built)?);
    } else {
        println!(
            "{} image {} in {}: layer sha256:{} ({}), {} layers in all",
            if built.cached { "cached" } else { "built" },
            built.image.name,
            crate::units::human_secs(t0.elapsed().as_secs_f64()),
            &built.digest[..12],
            crate::units::human_bytes(built.image.layer_tar_bytes as f64),
            built.image.layers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The base image's layers.
pub(crate) fn base_layers() -> anyhow::Result<Vec<std::path::PathBuf>> {
    let (workload, _) = super::workload_and_workdir()?;
    let b = crate::backend::container::by_name("container", &workload).expect("container backend exists");
    b.base_layers().map_err(|e| anyhow::anyhow!("the base image is unavailable: {e}"))
}

/// `vmct commit`.
pub fn commit(a: CommitArgs) -> anyhow::Result<ExitCode> {
    use images::ImagesError;
    let usage = |e: ImagesError| anyhow::Error::from(UsageError(e.to_string()));
    let parent =
        images::Parent::of(&a.id, a.from.as_deref(), || base_layers().map_err(|e| format!("{e:#}"))).map_err(usage)?;
    let t0 = std::time::Instant::now();
    let done = images::commit(&a.id, &a.name, parent).map_err(|e| match e {
        ImagesError::Io { .. } | ImagesError::Commit(_) => anyhow::Error::from(e),
        other => usage(other),
    })?;
    for s in &done.skipped {
        eprintln!("note: {s} is a socket (it belongs to a running process) and was not committed");
    }
    let rec = &done.image;
    if a.json {
        println!("{}", serde_json::to_string_pretty(rec)?);
    } else {
        println!(
            "committed {} as image {} in {}: new layer {} ({} deleted path{}), {} layers in all",
            a.id,
            rec.name,
            crate::units::human_secs(t0.elapsed().as_secs_f64()),
            crate::units::human_bytes(rec.layer_tar_bytes as f64),
            rec.deleted_paths,
            if rec.deleted_paths == 1 { "" } else { "s" },
            rec.layers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vmct images`.
pub fn list(a: ImagesArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        Some(ImagesCommand::Import(i)) => return import(i),
        Some(ImagesCommand::History(h)) => return history(h),
        None => {}
    }
    if !a.rm.is_empty() {
        for name in &a.rm {
            let r = images::remove(name).map_err(|e| match e {
                images::ImagesError::Io { .. } => anyhow::Error::from(e),
                other => UsageError(other.to_string()).into(),
            })?;
            let what = if r.incomplete { "incomplete image (no image.json)" } else { "image" };
            println!("removed {what} {name} ({} freed)", crate::units::human_bytes(r.freed_bytes as f64));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let base = base_layers()?;
    let imgs = images::list();
    let mut uses: std::collections::BTreeMap<std::path::PathBuf, usize> = Default::default();
    for l in base.iter().chain(imgs.iter().flat_map(|i| i.layers.iter())) {
        *uses.entry(l.clone()).or_default() += 1;
    }
    let sizes: std::collections::BTreeMap<_, _> = uses.keys().map(|l| (l.clone(), images::dir_bytes(l))).collect();
    let rows: Vec<serde_json::Value> = std::iter::once(("base".to_string(), base.clone()))
        .chain(imgs.iter().map(|i| (i.name.clone(), i.layers.clone())))
        .map(|(name, layers)| {
            let total: u64 = layers.iter().map(|l| sizes[l]).sum();
            let shared: u64 = layers.iter().filter(|l| uses[*l] > 1).map(|l| sizes[l]).sum();
            serde_json::json!({"name": name, "layers": layers, "bytes": total, "shared_bytes": shared})
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<24} {:>7} {:>12} {:>14}", "IMAGE", "LAYERS", "SIZE", "SHARED");
    for r in &rows {
        println!(
            "{:<24} {:>7} {:>12} {:>14}",
            r["name"].as_str().unwrap_or(""),
            r["layers"].as_array().map_or(0, |l| l.len()),
            crate::units::human_bytes(r["bytes"].as_u64().unwrap_or(0) as f64),
            crate::units::human_bytes(r["shared_bytes"].as_u64().unwrap_or(0) as f64)
        );
    }
    let unique: u64 = sizes.values().sum();
    println!(
        "\non disk: {} in {} distinct layers (shared layers counted once)",
        crate::units::human_bytes(unique as f64),
        sizes.len()
    );
    Ok(ExitCode::SUCCESS)
}

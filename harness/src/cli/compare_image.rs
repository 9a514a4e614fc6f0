//! `vmct compare --image NAME --ready RULE [-- CMD ARGS]`: the plan's backends run the image's own
//! process (`crate::images::run::ImageBackend`). Startup, density and isolation apply; the
//! experiments that need the vmct workload (overhead, snapshot, the blast radius) are left out and
//! recorded as "not applicable to an image" in the run's `image.json`, which the report reads.
use super::UsageError;
use crate::backend::Backend;
use crate::compare::Settings;
use crate::images::ready::Readiness;
use crate::images::run::{support, ImageBackend, ImageRun, ImageSupport, NOT_APPLICABLE};
use results::image::{ImageBuildCost, ImageRunInfo, NotApplicable};
use results::ExperimentId;
use std::path::Path;
use std::sync::Arc;

/// Experiments that run with an image.
pub const IMAGE_EXPERIMENTS: &[ExperimentId] = &[ExperimentId::Startup, ExperimentId::Density, ExperimentId::Isolation];

/// The image run for `--image NAME --ready RULE -- CMD`, and the plan narrowed to what applies to an
/// image (the rest is returned as not applicable).
pub fn prepare(
    image: &str,
    ready: Option<&str>,
    command: &[String],
    workload: &Path,
    s: &mut Settings,
) -> Result<(Arc<ImageRun>, Vec<NotApplicable>), UsageError> {
    let ready = ready.ok_or_else(|| {
        UsageError(format!("--image {image} needs --ready RULE: {}", workloads::image_run::RULE_FORMS))
    })?;
    let rule = Readiness::parse(ready).map_err(|e| UsageError(e.to_string()))?;
    let rec = crate::images::load(image).map_err(|e| UsageError(e.to_string()))?;
    let run = ImageRun::new(rec, command, rule, workload).map_err(|e| UsageError(e.to_string()))?;
    let mut na = Vec::new();
    for e in s.experiments.iter().filter(|e| !IMAGE_EXPERIMENTS.contains(e)) {
        na.push(NotApplicable {
            experiment: e.to_string(),
            reason: format!("{NOT_APPLICABLE}: the {e} experiment measures the vmct workload's own scenarios"),
        });
    }
    s.experiments.retain(|e| IMAGE_EXPERIMENTS.contains(e));
    if s.experiments.contains(&ExperimentId::Isolation) && s.blast.take().is_some() {
        na.push(NotApplicable {
            experiment: "blast".into(),
            reason: format!("{NOT_APPLICABLE}: the blast radius runs the vmct workload's victim and hogs"),
        });
    }
    if s.experiments.is_empty() {
        return Err(UsageError(format!(
            "--image: none of the chosen experiments applies to an image; those that do: {}",
            IMAGE_EXPERIMENTS.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok((Arc::new(run), na))
}

/// Every backend wrapped to run the image; a linux guest's root disk is built here, before any
/// launch is timed.
pub fn wrap(backends: Vec<Box<dyn Backend>>, run: &Arc<ImageRun>) -> anyhow::Result<Vec<Box<dyn Backend>>> {
    let needs_disk = backends.iter().any(|b| {
        let i = b.info();
        i.available && support(&i) == ImageSupport::RootDisk
    });
    if needs_disk {
        run.rootdisk().map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(backends.into_iter().map(|b| Box::new(ImageBackend::new(b, run.clone())) as Box<dyn Backend>).collect())
}

/// Record the image in the run directory (`image.json`).
pub fn record(run_dir: &Path, run: &ImageRun, not_applicable: Vec<NotApplicable>) -> std::io::Result<()> {
    let rec = &run.record;
    let info = ImageRunInfo {
        name: rec.name.clone(),
        digest: rec.digest.clone(),
        size_bytes: rec.layers.iter().map(|l| crate::images::dir_bytes(l)).sum(),
        layers: rec.layers.len(),
        argv: run.launch.argv.clone(),
        ready_rule: run.launch.ready.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        container_image_build: "none beyond the layers (mounted as overlayfs lower dirs)".into(),
        vm_image_build: run.built_rootdisk().map(|d| ImageBuildCost {
            fs: d.fs.clone(),
            build_s: d.build_s,
            bytes: d.bytes,
            size_bytes: d.size_bytes,
            content_bytes: d.content_bytes,
            cached: d.cached,
        }),
        not_applicable,
    };
    results::image::write(run_dir, &info)
}

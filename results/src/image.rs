//! `image.json` in a run directory: the image a run measured (`vmct compare --image NAME`), so the
//! report names it on its first line and says every verdict is about it. Runs of the built-in
//! workload have no such file.
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name inside the run directory.
pub const FILE: &str = "image.json";

/// The image a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRunInfo {
    /// Image name.
    pub name: String,
    /// Content digest (`sha256:...` or hex), if the image has one.
    pub digest: Option<String>,
    /// Bytes of its layers on disk (allocated blocks).
    pub size_bytes: u64,
    /// Number of layers.
    pub layers: usize,
    /// The process run: Entrypoint ++ command (argv\[0\] as found in the image).
    pub argv: Vec<String>,
    /// The readiness rule (`tcp:PORT`, `log:REGEX`, `exit`).
    pub ready_rule: String,
    /// What the container side needs beyond the layers to start the image (nothing).
    pub container_image_build: String,
    /// The VM side's image-build cost: the layers turned into a root disk, if a linux guest ran.
    pub vm_image_build: Option<ImageBuildCost>,
    /// Experiments and scenarios that did not run because they need the vmct workload.
    pub not_applicable: Vec<NotApplicable>,
}

/// Turning an image's layers into a linux guest's root disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBuildCost {
    /// File system of the disk (`ext4`).
    pub fs: String,
    /// Host seconds to flatten the layers and make the file system (n = 1).
    pub build_s: f64,
    /// Bytes the disk image occupies on the host (allocated blocks).
    pub bytes: u64,
    /// The disk's size as the guest sees it, bytes.
    pub size_bytes: u64,
    /// Bytes of the flattened files in it.
    pub content_bytes: u64,
    /// It came from the cache (built by an earlier run): `build_s` is that build's.
    pub cached: bool,
}

/// An experiment that does not apply to an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotApplicable {
    /// Experiment id (`overhead`, `snapshot`, `blast`).
    pub experiment: String,
    /// Why, in words ("not applicable to an image: ...").
    pub reason: String,
}

impl ImageRunInfo {
    /// The report's first line: `image NAME (DIGEST, SIZE)`.
    pub fn headline(&self) -> String {
        let digest = self.digest.as_deref().map(short_digest).unwrap_or_else(|| "no digest".into());
        format!(
            "image {} ({digest}, {:.1} MiB in {} layers)",
            self.name,
            self.size_bytes as f64 / 1048576.0,
            self.layers
        )
    }
}

fn short_digest(d: &str) -> String {
    let hex = d.trim_start_matches("sha256:");
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

/// Write `info` into run directory `dir`.
pub fn write(dir: &Path, info: &ImageRunInfo) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(info).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(FILE), text)
}

/// Read the image of run directory `dir`: None when the run measured the built-in workload;
/// an error when the file exists but cannot be read.
pub fn read(dir: &Path) -> std::io::Result<Option<ImageRunInfo>> {
    match std::fs::read(dir.join(FILE)) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headline_names_the_image_digest_and_size_and_reads_back() {
        let i = ImageRunInfo {
            name: "web".into(),
            digest: Some("sha256:0123456789abcdef0123".into()),
            size_bytes: 3 << 20,
            layers: 2,
            argv: vec!["/bin/busybox".into(), "httpd".into()],
            ready_rule: "tcp:8080".into(),
            container_image_build: "none beyond the layers".into(),
            vm_image_build: None,
            not_applicable: vec![],
        };
        assert_eq!(i.headline(), "image web (sha256:0123456789ab, 3.0 MiB in 2 layers)");
        let d = std::env::temp_dir().join(format!("vmct-image-json-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(read(&d).unwrap(), None);
        write(&d, &i).unwrap();
        assert_eq!(read(&d).unwrap(), Some(i));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

//! Finding the image in an archive: `manifest.json` (docker-archive) or `index.json` -> manifest
//! (OCI layout; an index of several platforms: the host's), with the digest and size of every
//! manifest and index checked; one image per archive.
use super::archive::{self, Archive};
use super::{check_digest, Format, ImportError, JSON_LIMIT};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

/// One layer to import.
#[derive(Debug, Clone)]
pub(super) struct LayerRef {
    /// Member name in the archive.
    pub(super) member: String,
    /// The manifest's media type (OCI), or None (docker-archive).
    pub(super) media_type: Option<String>,
    /// Expected digest of the blob (hex), when the archive gives one.
    pub(super) blob_digest: Option<String>,
    /// Expected size of the blob, bytes (OCI descriptors).
    pub(super) size: Option<u64>,
}

/// The image an archive holds, before its layers are read.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) format: Format,
    pub(super) config_member: String,
    pub(super) config_digest: Option<String>,
    pub(super) layers: Vec<LayerRef>,
    pub(super) reference: Option<String>,
    pub(super) manifest_digest: Option<String>,
}

/// `manifest.json` of a docker-archive (one entry per image).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    pub(super) layers: Vec<String>,
}

/// The hex part of a `sha256:` digest, if it is one (64 lower-case hex digits).
pub(super) fn sha256_hex(d: &str) -> Option<String> {
    let h = d.strip_prefix("sha256:")?;
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then(|| h.to_string())
}

/// The digest a member's name shows: `blobs/sha256/<hex>` or `<hex>.json` (docker's config name).
fn digest_of_name(member: &str) -> Option<String> {
    let base = member.rsplit('/').next()?;
    let hexpart = base.strip_suffix(".json").unwrap_or(base);
    let in_blobs = member.contains("sha256/") || base != hexpart;
    sha256_hex(&format!("sha256:{hexpart}")).filter(|_| in_blobs)
}

fn blob_member(d: &Descriptor) -> Result<(String, String), String> {
    let dg = d.digest();
    if dg.algorithm().as_ref() != "sha256" {
        return Err(format!("digest algorithm '{}' is not supported (sha256 is)", dg.algorithm()));
    }
    let hex = sha256_hex(dg.as_ref()).ok_or_else(|| format!("digest '{dg}' is not a sha256 digest"))?;
    Ok((format!("blobs/sha256/{hex}"), hex))
}

impl Plan {
    /// Find the image in `a` (see the module doc).
    pub(super) fn find(a: &Archive) -> Result<Plan, ImportError> {
        if a.has("manifest.json") {
            Self::docker(a)
        } else if a.has("oci-layout") && a.has("index.json") {
            Self::oci(a)
        } else {
            Err(ImportError::UnknownFormat { path: a.path().into() })
        }
    }

    fn docker(a: &Archive) -> Result<Plan, ImportError> {
        let invalid =
            |why: String| ImportError::Invalid { archive: a.path().into(), member: "manifest.json".into(), why };
        let bytes = a.read_small("manifest.json", JSON_LIMIT)?;
        let mut m: Vec<DockerManifest> = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if m.len() != 1 {
            let refs: Vec<String> = m.iter().flat_map(|e| e.repo_tags.clone().unwrap_or_default()).collect();
            if m.is_empty() {
                return Err(invalid("lists no image".into()));
            }
            return Err(ImportError::Several { archive: a.path().into(), count: m.len(), refs: refs.join(", ") });
        }
        let m = m.remove(0);
        let mut layers = Vec::new();
        for l in &m.layers {
            let member =
                archive::normalize(l).ok_or_else(|| invalid(format!("layer path '{l}' leaves the archive")))?;
            layers.push(LayerRef { blob_digest: digest_of_name(&member), member, media_type: None, size: None });
        }
        let config_member = archive::normalize(&m.config)
            .ok_or_else(|| invalid(format!("config path '{}' leaves the archive", m.config)))?;
        Ok(Plan {
            format: Format::DockerArchive,
            config_digest: digest_of_name(&config_member),
            config_member,
            layers,
            reference: m.repo_tags.and_then(|t| t.into_iter().next()),
            manifest_digest: None,
        })
    }

    fn oci(a: &Archive) -> Result<Plan, ImportError> {
        let invalid =
            |member: &str, why: String| ImportError::Invalid { archive: a.path().into(), member: member.into(), why };
        let layout: serde_json::Value = serde_json::from_slice(&a.read_small("oci-layout", JSON_LIMIT)?)
            .map_err(|e| invalid("oci-layout", e.to_string()))?;
        if layout["imageLayoutVersion"].as_str().is_none_or(|v| !v.starts_with("1.")) {
            return Err(invalid(
                "oci-layout",
                format!("imageLayoutVersion {} is not 1.x", layout["imageLayoutVersion"]),
            ));
        }
        let index = ImageIndex::from_reader(&a.read_small("index.json", JSON_LIMIT)?[..])
            .map_err(|e| invalid("index.json", e.to_string()))?;
        let manifests: Vec<&Descriptor> = index.manifests().iter().collect();
        let name_of = |d: &Descriptor| -> Option<String> {
            let ann = d.annotations().as_ref()?;
            ann.get("io.containerd.image.name").or_else(|| ann.get(oci_spec::image::ANNOTATION_REF_NAME)).cloned()
        };
        let desc = match manifests.as_slice() {
            [one] => *one,
            [] => return Err(invalid("index.json", "lists no image".into())),
            many => {
                let refs: Vec<String> =
                    many.iter().map(|d| name_of(d).unwrap_or_else(|| d.digest().to_string())).collect();
                return Err(ImportError::Several {
                    archive: a.path().into(),
                    count: many.len(),
                    refs: refs.join(", "),
                });
            }
        };
        let reference = name_of(desc);
        let (mut member, mut hex) = blob_member(desc).map_err(|why| invalid("index.json", why))?;
        let mut bytes = verified_blob(a, &member, &hex, Some(desc.size()))?;
        if *desc.media_type() == MediaType::ImageIndex
            || desc.media_type().to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
        {
            // A multi-platform index: the host's platform.
            let inner = ImageIndex::from_reader(&bytes[..]).map_err(|e| invalid(&member, e.to_string()))?;
            let want_arch = oci_spec::image::Arch::default();
            let pick = inner
                .manifests()
                .iter()
                .find(|d| {
                    d.platform()
                        .as_ref()
                        .is_some_and(|p| *p.architecture() == want_arch && p.os().to_string() == "linux")
                })
                .ok_or_else(|| invalid(&member, format!("no manifest for linux/{want_arch} in this index")))?;
            (member, hex) = blob_member(pick).map_err(|why| invalid("index.json", why))?;
            bytes = verified_blob(a, &member, &hex, Some(pick.size()))?;
        }
        let manifest = ImageManifest::from_reader(&bytes[..]).map_err(|e| invalid(&member, e.to_string()))?;
        let (config_member, config_hex) = blob_member(manifest.config()).map_err(|why| invalid(&member, why))?;
        let mut layers = Vec::new();
        for d in manifest.layers() {
            let (lm, lh) = blob_member(d).map_err(|why| invalid(&member, why))?;
            layers.push(LayerRef {
                member: lm,
                media_type: Some(d.media_type().to_string()),
                blob_digest: Some(lh),
                size: Some(d.size()),
            });
        }
        Ok(Plan {
            format: Format::OciLayout,
            config_member,
            config_digest: Some(config_hex),
            layers,
            reference,
            manifest_digest: Some(hex),
        })
    }
}

/// A small blob (manifest, index, config), its digest (and size, when given) checked.
fn verified_blob(a: &Archive, member: &str, hex: &str, size: Option<u64>) -> Result<Vec<u8>, ImportError> {
    let bytes = a.read_small(member, JSON_LIMIT)?;
    check_digest(a, member, "its digest", hex, &archive::sha256_hex(&bytes))?;
    if let Some(s) = size.filter(|s| *s != bytes.len() as u64) {
        return Err(ImportError::Invalid {
            archive: a.path().into(),
            member: member.into(),
            why: format!("the descriptor says {s} bytes, the blob has {}", bytes.len()),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_platform_index_yields_the_hosts_manifest() {
        let t = tempfile::tempdir().unwrap();
        let put = |bytes: &[u8]| {
            let hex = archive::sha256_hex(bytes);
            std::fs::create_dir_all(t.path().join("blobs/sha256")).unwrap();
            std::fs::write(t.path().join("blobs/sha256").join(&hex), bytes).unwrap();
            (format!("sha256:{hex}"), bytes.len())
        };
        let manifest = |layer: &str| {
            let m = serde_json::json!({"schemaVersion": 2,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "c".repeat(64)), "size": 2},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", layer.repeat(64)), "size": 9}]});
            put(&serde_json::to_vec(&m).unwrap())
        };
        let (arm, arm_n) = manifest("a");
        let (amd, amd_n) = manifest("b");
        let desc = |d: &str, n: usize, arch: &str| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d, "size": n, "platform": {"architecture": arch, "os": "linux"}})
        };
        let inner = serde_json::json!({"schemaVersion": 2, "manifests": [desc(&arm, arm_n, "arm64"), desc(&amd, amd_n, "amd64")]});
        let (idx, idx_n) = put(&serde_json::to_vec(&inner).unwrap());
        std::fs::write(t.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let top = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": idx, "size": idx_n, "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
        std::fs::write(t.path().join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        let plan = Plan::find(&Archive::open(t.path()).unwrap()).unwrap();
        assert_eq!(plan.format, Format::OciLayout);
        assert_eq!(plan.reference.as_deref(), Some("multi"));
        let want = if cfg!(target_arch = "x86_64") { "b" } else { "a" };
        assert_eq!(plan.layers[0].blob_digest.as_deref(), Some(want.repeat(64).as_str()));
        assert_eq!(plan.manifest_digest.as_deref(), Some(&amd[7..]).filter(|_| want == "b").or(Some(&arm[7..])));
    }

    #[test]
    fn digests_in_member_names() {
        let h = "a".repeat(64);
        assert_eq!(digest_of_name(&format!("blobs/sha256/{h}")), Some(h.clone()));
        assert_eq!(digest_of_name(&format!("{h}.json")), Some(h.clone()));
        assert_eq!(digest_of_name(&format!("{h}/layer.tar")), None);
        assert_eq!(digest_of_name("blobs/sha256/xyz"), None);
        assert_eq!(sha256_hex(&format!("sha256:{}", "A".repeat(64))), None, "upper case is not canonical");
    }
}

//! `vmct images import PATH [--name NAME]`: an image from a `docker save` tar (docker-archive:
//! `manifest.json`, the config, layer tars; newer docker writes them inside an OCI layout in the same
//! tar) or an OCI image layout (a directory or a tar of one: `oci-layout`, `index.json`,
//! `blobs/sha256/...`, as `skopeo copy ... oci:DIR:TAG` or `podman save --format oci-archive` write).
//!
//! The recipe:
//! 1. Open the archive ([`archive`]): a directory, or a tar indexed in one pass (members are read
//!    in place).
//! 2. Find the image ([`plan`]): `manifest.json` (docker-archive) or `index.json` -> manifest (an index of
//!    several platforms: the host's); one image per archive.
//! 3. Read the config (oci-spec's `ImageConfiguration`) after checking its digest: Entrypoint, Cmd,
//!    Env, WorkingDir, User, ExposedPorts, history, and `rootfs.diff_ids`.
//! 4. For each layer: its compression from the media type and the first bytes (plain, gzip, zstd),
//!    the blob's digest and size checked while it streams through the decompressor into an overlay
//!    lower dir ([`layer`]), the uncompressed stream's digest checked against the diff-ID. A layer
//!    the store holds already (`<image root>/layers/sha256-<diff-ID>`, shared with every image that
//!    has it) is only hashed, not unpacked again.
//! 5. Under the store lock: the new layers renamed into place, then the image record. Until then
//!    everything is in temporary directories (`.tmp-<pid>-...`) removed on error, panic and signal
//!    (drop guards); `vmct gc` removes those of a killed import.
pub mod archive;
pub mod layer;
pub mod plan;

use super::history::{HistoryEntry, Origin};
use super::{store, ImageRecord, ImagesError};
use archive::{Archive, Hashing};
use oci_spec::image::{ImageConfiguration, MediaType};
use plan::{sha256_hex, LayerRef, Plan};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// The largest JSON member read (manifests, configs, indexes), bytes.
const JSON_LIMIT: u64 = 16 << 20;

/// Layer media types this import understands, for the error that names an unknown one.
const LAYER_TYPES: &str = "application/vnd.oci.image.layer.v1.tar, ...tar+gzip, ...tar+zstd, \
application/vnd.docker.image.rootfs.diff.tar, ...diff.tar.gzip";

/// Errors of an import; each names the archive and, where there is one, the member.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The path cannot be read.
    #[error("import: cannot read {path}: {source}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a tar.
    #[error("import: {path} is not a tar archive ({why}); give a `docker save` tar, an OCI archive or an OCI layout directory")]
    NotArchive {
        /// The path given.
        path: PathBuf,
        /// What the tar reader said.
        why: String,
    },
    /// The archive is compressed as a whole.
    #[error(
        "import: {path} is {kind}-compressed; decompress it first (`docker save` and `podman save` write plain tars)"
    )]
    CompressedArchive {
        /// The path given.
        path: PathBuf,
        /// The compression.
        kind: &'static str,
    },
    /// Neither layout.
    #[error("import: {path} is neither a docker-archive (no manifest.json) nor an OCI image layout (no oci-layout and index.json)")]
    UnknownFormat {
        /// The path given.
        path: PathBuf,
    },
    /// A member the image names is not in the archive.
    #[error("import: {archive}: {member} is missing from the archive")]
    Missing {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
    },
    /// A member cannot be read.
    #[error("import: {archive}: cannot read {member}: {source}")]
    Read {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A member is malformed.
    #[error("import: {archive}: {member}: {why}")]
    Invalid {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// What is wrong.
        why: String,
    },
    /// A digest differs from the content.
    #[error("import: {archive}: {member}: digest mismatch: {what} is sha256:{expected}, the content is sha256:{actual}; the archive is damaged or was changed")]
    Digest {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// Which digest (the blob's, the layer's diff-ID).
        what: &'static str,
        /// The expected hex digest.
        expected: String,
        /// The content's hex digest.
        actual: String,
    },
    /// A layer's media type is not a layer this import reads.
    #[error("import: {archive}: layer {member}: unsupported media type '{media_type}' (supported: {LAYER_TYPES})")]
    MediaType {
        /// The archive.
        archive: PathBuf,
        /// The layer.
        member: String,
        /// Its media type.
        media_type: String,
    },
    /// A layer's compression is not supported.
    #[error("import: {archive}: layer {member}: {what}; supported: plain tar, gzip, zstd")]
    Compression {
        /// The archive.
        archive: PathBuf,
        /// The layer.
        member: String,
        /// What was found.
        what: String,
    },
    /// A layer entry cannot be unpacked safely.
    #[error("import: {archive}: layer {member}: entry '{entry}': {why}; nothing was imported")]
    BadEntry {
        /// The archive.
        archive: PathBuf,
        /// The layer.
        member: String,
        /// The entry.
        entry: String,
        /// What is wrong.
        why: String,
    },
    /// Unpacking a layer failed on the file system.
    #[error("import: {archive}: layer {member}: entry '{entry}': {source}")]
    Unpack {
        /// The archive.
        archive: PathBuf,
        /// The layer.
        member: String,
        /// The entry.
        entry: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The archive names no image and no --name was given.
    #[error("import: {archive} names no image (no RepoTags in manifest.json, no ref.name annotation in index.json); give one with --name NAME")]
    NoName {
        /// The archive.
        archive: PathBuf,
    },
    /// The name from the archive or --name is not a valid store name.
    #[error("import: image name '{name}' ({from}) is not valid: use letters, digits, '-', '_' and '.' (at most 64); give one with --name NAME")]
    BadName {
        /// The name.
        name: String,
        /// Where it came from.
        from: String,
    },
    /// The archive holds several images.
    #[error("import: {archive} holds {count} images ({refs}); save one image per archive (`docker save IMAGE`, `skopeo copy ... oci:DIR:TAG`)")]
    Several {
        /// The archive.
        archive: PathBuf,
        /// How many.
        count: usize,
        /// Their references.
        refs: String,
    },
    /// A signal stopped the import.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// The store refused (name taken, I/O).
    #[error(transparent)]
    Store(#[from] ImagesError),
}

/// The two archive layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `docker save`: `manifest.json` with `Config`, `RepoTags`, `Layers`.
    DockerArchive,
    /// OCI image layout: `oci-layout`, `index.json`, `blobs/`.
    OciLayout,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::DockerArchive => "docker-archive",
            Format::OciLayout => "OCI layout",
        })
    }
}

/// Where an imported image came from (kept in its record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedFrom {
    /// The archive or directory imported.
    pub archive: PathBuf,
    /// Its layout.
    pub format: Format,
    /// The reference the archive gave the image (`repo:tag`, an OCI ref name), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The manifest's digest (OCI layouts; hex), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The image config's OS/architecture (e.g. `linux/amd64`).
    pub platform: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// The new image.
    pub image: ImageRecord,
    /// Layers unpacked by this import.
    pub layers_new: usize,
    /// Layers the store held already (shared with other images; only their digest was checked).
    pub layers_reused: usize,
    /// Bytes of the layers' uncompressed tars.
    pub layer_tar_bytes: u64,
    /// Bytes of the blobs read from the archive (compressed size).
    pub blob_bytes: u64,
}

pub(super) fn check_digest(
    a: &Archive,
    member: &str,
    what: &'static str,
    expected: &str,
    actual: &str,
) -> Result<(), ImportError> {
    if expected == actual {
        return Ok(());
    }
    Err(ImportError::Digest {
        archive: a.path().into(),
        member: member.into(),
        what,
        expected: expected.into(),
        actual: actual.into(),
    })
}

/// The store name of an image reference: the last path component of the repository, then `-TAG`
/// unless the tag is `latest` (`docker.io/library/redis:7.2` -> `redis-7.2`, `nginx:latest` ->
/// `nginx`); a bare OCI ref name (`skopeo copy ... oci:DIR:TAG`) is taken as it is.
pub fn name_from_reference(reference: &str) -> String {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    match last.split_once(':') {
        Some((repo, "latest")) => repo.to_string(),
        Some((repo, tag)) => format!("{repo}-{tag}"),
        None => last.to_string(),
    }
}

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Plain,
    Gzip,
    Zstd,
}

/// The compression of a layer from its media type (when the archive gives one) and its first bytes.
fn compression(a: &Archive, l: &LayerRef, head: &[u8]) -> Result<Compression, ImportError> {
    let sniffed = archive::sniff(head);
    let from_bytes = match sniffed {
        Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => {
            return Err(ImportError::Compression {
                archive: a.path().into(),
                member: l.member.clone(),
                what: format!("compressed with {other}, which is not supported"),
            })
        }
        _ => Compression::Plain,
    };
    let Some(mt) = &l.media_type else { return Ok(from_bytes) };
    let declared = match MediaType::from(mt.as_str()) {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Compression::Plain,
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Compression::Gzip,
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Compression::Zstd,
        _ => match mt.as_str() {
            "application/vnd.docker.image.rootfs.diff.tar" => Compression::Plain,
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
            _ => {
                return Err(ImportError::MediaType {
                    archive: a.path().into(),
                    member: l.member.clone(),
                    media_type: mt.clone(),
                })
            }
        },
    };
    // A compressed media type over bytes that are not: the blob is not what the manifest says. A
    // plain type over compressed bytes is what some tools write; the bytes decide then.
    if declared != Compression::Plain && declared != from_bytes {
        return Err(ImportError::Compression {
            archive: a.path().into(),
            member: l.member.clone(),
            what: format!("the media type {mt} says {declared:?}, but the blob's first bytes are not {declared:?}"),
        });
    }
    Ok(from_bytes)
}

/// A layer stream after decompression.
enum Decoded<R: BufRead> {
    Plain(R),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: BufRead> Decoded<R> {
    fn into_inner(self) -> R {
        match self {
            Decoded::Plain(r) => r,
            Decoded::Gzip(r) => r.into_inner(),
            Decoded::Zstd(r) => r.finish(),
        }
    }
}

/// What reading one layer found.
#[derive(Debug)]
struct LayerRead {
    diff_id: String,
    tar_bytes: u64,
    blob_bytes: u64,
    unpacked: layer::Unpacked,
}

/// Stream layer `l` through its digests and decompressor, unpacking into `into` when given (else only
/// reading its entries: a layer the store holds). Checks the blob digest, size and `diff_id`.
fn read_layer(a: &Archive, l: &LayerRef, diff_id: &str, into: Option<&Path>) -> Result<LayerRead, ImportError> {
    let rd = |source| ImportError::Read { archive: a.path().into(), member: l.member.clone(), source };
    let (raw, size) = a.open_member(&l.member)?;
    if let Some(s) = l.size.filter(|s| *s != size) {
        return Err(ImportError::Invalid {
            archive: a.path().into(),
            member: l.member.clone(),
            why: format!("the manifest says {s} bytes, the blob has {size}"),
        });
    }
    let mut head = [0u8; 8];
    let n = a.open_member(&l.member)?.0.read(&mut head).map_err(rd)?;
    let comp = compression(a, l, &head[..n])?;
    // A plain layer's blob is its tar: one hash serves as blob digest and diff-ID.
    let plain = comp == Compression::Plain;
    let blob =
        std::io::BufReader::with_capacity(1 << 20, if plain { Hashing::counting(raw) } else { Hashing::new(raw) });
    let decoded = match comp {
        Compression::Plain => Decoded::Plain(blob),
        Compression::Gzip => Decoded::Gzip(flate2::bufread::MultiGzDecoder::new(blob)),
        Compression::Zstd => Decoded::Zstd(zstd::stream::read::Decoder::with_buffer(blob).map_err(rd)?),
    };
    // A plain layer's diff-ID is its blob digest: hash it once.
    let mut diff = Hashing::new(decoded);
    let unpacked = match into {
        Some(dir) => layer::unpack(&mut diff, dir, is_root()),
        None => layer::scan(&mut diff),
    };
    let entry_error = |e| match e {
        layer::EntryError::Bad { entry, why } => {
            ImportError::BadEntry { archive: a.path().into(), member: l.member.clone(), entry, why }
        }
        layer::EntryError::Io { entry, source } => {
            ImportError::Unpack { archive: a.path().into(), member: l.member.clone(), entry, source }
        }
        layer::EntryError::Interrupted => crate::interrupt::Interrupted.into(),
    };
    let unpacked = match unpacked {
        Ok(u) => u,
        Err(layer::EntryError::Interrupted) => return Err(crate::interrupt::Interrupted.into()),
        // A layer that does not unpack may be a damaged blob: a digest mismatch is the root cause
        // then, reported before what the tar reader tripped over.
        Err(e) => {
            if let Ok((diff_hex, _, decoded)) = diff.finish() {
                if let Ok((blob_hex, _, _)) = decoded.into_inner().into_inner().finish() {
                    let blob_hex = if plain { diff_hex.clone() } else { blob_hex };
                    if let Some(expected) = &l.blob_digest {
                        check_digest(a, &l.member, "the blob's digest (its name or descriptor)", expected, &blob_hex)?;
                    }
                }
                check_digest(a, &l.member, "the config's diff_id for it", diff_id, &diff_hex)?;
            }
            return Err(entry_error(e));
        }
    };
    let (diff_hex, tar_bytes, decoded) = diff.finish().map_err(|e| {
        let why = format!("the layer's {comp:?} stream is damaged: {e}").to_lowercase();
        ImportError::Invalid { archive: a.path().into(), member: l.member.clone(), why }
    })?;
    let (mut blob_hex, blob_bytes, _) = decoded.into_inner().into_inner().finish().map_err(rd)?;
    if plain {
        blob_hex.clone_from(&diff_hex);
    }
    if let Some(expected) = &l.blob_digest {
        check_digest(a, &l.member, "the blob's digest (its name or descriptor)", expected, &blob_hex)?;
    }
    check_digest(a, &l.member, "the config's diff_id for it", diff_id, &diff_hex)?;
    Ok(LayerRead { diff_id: diff_hex, tar_bytes, blob_bytes, unpacked })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Where the store keeps the layer of diff-ID `hex`.
pub fn layer_dir(hex: &str) -> PathBuf {
    store::root().join("layers").join(format!("sha256-{hex}"))
}

/// Import the image in `path` as `name` (default: from the archive's tag). See the module doc.
pub fn import(path: &Path, name: Option<&str>) -> Result<Imported, ImportError> {
    let a = Archive::open(path)?;
    let plan = Plan::find(&a)?;
    let (name, from) = match (name, &plan.reference) {
        (Some(n), _) => (n.to_string(), "given with --name".to_string()),
        (None, Some(r)) => (name_from_reference(r), format!("from the archive's tag '{r}'")),
        (None, None) => return Err(ImportError::NoName { archive: path.into() }),
    };
    if !super::valid(&name) {
        return Err(ImportError::BadName { name, from });
    }
    let image_dir = super::store().join(&name);
    if image_dir.symlink_metadata().is_ok() {
        return Err(ImagesError::Exists(name).into());
    }
    let config_bytes = a.read_small(&plan.config_member, JSON_LIMIT)?;
    if let Some(hex) = &plan.config_digest {
        check_digest(&a, &plan.config_member, "its digest", hex, &archive::sha256_hex(&config_bytes))?;
    }
    let invalid = |why: String| ImportError::Invalid { archive: path.into(), member: plan.config_member.clone(), why };
    let config = ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| invalid(e.to_string()))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != plan.layers.len() {
        return Err(invalid(format!(
            "rootfs.diff_ids lists {} layers, the manifest {}",
            diff_ids.len(),
            plan.layers.len()
        )));
    }
    let mut diff_hex = Vec::new();
    for d in diff_ids {
        diff_hex.push(sha256_hex(d).ok_or_else(|| invalid(format!("diff_id '{d}' is not a sha256 digest")))?);
    }

    // Layers: unpacked into temporary dirs beside their final place, or only hashed if stored.
    let mut temps: Vec<(store::TempDir, PathBuf)> = Vec::new();
    let mut reads = Vec::new();
    for (l, hex) in plan.layers.iter().zip(&diff_hex) {
        crate::interrupt::check()?;
        let dest = layer_dir(hex);
        let pending = temps.iter().any(|(_, d)| *d == dest);
        if dest.is_dir() || pending {
            reads.push(read_layer(&a, l, hex, None)?);
            continue;
        }
        let tmp = store::TempDir::new(&dest)?;
        if is_root() {
            let base = Some(container::USERNS_BASE);
            std::os::unix::fs::lchown(tmp.path(), base, base)
                .map_err(|source| ImagesError::Io { path: tmp.path().into(), source })?;
        }
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|source| ImagesError::Io { path: tmp.path().into(), source })?;
        reads.push(read_layer(&a, l, hex, Some(tmp.path()))?);
        temps.push((tmp, dest));
    }

    let c = config.config().clone().unwrap_or_default();
    let platform = format!("{}/{}", config.os(), config.architecture());
    let history = history_entries(&config, &diff_hex, &reads);
    let rec = ImageRecord {
        name: name.clone(),
        layers: diff_hex.iter().map(|h| layer_dir(h)).collect(),
        from_container: String::new(),
        layer_tar_bytes: reads.iter().map(|r| r.tar_bytes).sum(),
        whiteouts: reads.iter().map(|r| r.unpacked.whiteouts + r.unpacked.opaque).sum(),
        deleted_paths: 0,
        created_unix_s: crate::logs::unix_now(),
        entry: c.entrypoint().clone(),
        env: c.env().clone().unwrap_or_default(),
        cwd: c.working_dir().clone().filter(|w| !w.is_empty()),
        spec: None,
        digest: plan.config_digest.clone().or_else(|| Some(archive::sha256_hex(&config_bytes))),
        cmd: c.cmd().clone(),
        user: c.user().clone().filter(|u| !u.is_empty()),
        exposed_ports: {
            let mut p = c.exposed_ports().clone().unwrap_or_default();
            p.sort();
            p
        },
        history,
        imported_from: Some(ImportedFrom {
            archive: std::path::absolute(path).unwrap_or_else(|_| path.into()),
            format: plan.format,
            reference: plan.reference.clone(),
            manifest_digest: plan.manifest_digest.clone(),
            platform,
        }),
    };
    let layers_new = temps.len();
    let img_tmp = store::TempDir::new(&image_dir)?;
    store::write_atomic(&img_tmp.path().join("config.json"), &config_bytes)?;
    store::write_atomic(&img_tmp.path().join("image.json"), &serde_json::to_vec_pretty(&rec).expect("serializable"))?;

    // Publish under the lock: the name is checked first, so a refusal leaves no layer behind.
    crate::interrupt::check()?;
    let _lock = store::lock(store::LockMode::Exclusive)?;
    if image_dir.symlink_metadata().is_ok() {
        return Err(ImagesError::Exists(name).into());
    }
    let mut published = Vec::new();
    let undo = |published: &[PathBuf]| {
        for p in published {
            let _ = store::discard(p);
        }
    };
    for (tmp, dest) in temps {
        if dest.is_dir() {
            continue; // Another import stored the same layer meanwhile: drop ours.
        }
        if let Err(e) = tmp.publish(&dest) {
            undo(&published);
            return Err(e.into());
        }
        published.push(dest);
    }
    if let Some(missing) = rec.layers.iter().find(|l| !l.is_dir()) {
        undo(&published);
        return Err(ImagesError::MissingLayer { image: name, layer: missing.clone() }.into());
    }
    if let Err(e) = img_tmp.publish(&image_dir) {
        undo(&published);
        return Err(e.into());
    }
    Ok(Imported {
        layers_new,
        layers_reused: rec.layers.len() - layers_new,
        layer_tar_bytes: rec.layer_tar_bytes,
        blob_bytes: reads.iter().map(|r| r.blob_bytes).sum(),
        image: rec,
    })
}

/// The image's history, oldest first: the config's entries, the ones that made a layer paired with
/// the layers in order (fewer entries than layers: the rest get "(no history entry)").
fn history_entries(config: &ImageConfiguration, diff_hex: &[String], reads: &[LayerRead]) -> Vec<HistoryEntry> {
    let mut out = Vec::new();
    let mut next = 0;
    for h in config.history().iter().flatten() {
        let empty = h.empty_layer().unwrap_or(false);
        let layer = (!empty && next < diff_hex.len()).then(|| {
            next += 1;
            next - 1
        });
        out.push(HistoryEntry {
            origin: Origin::Imported,
            created_by: h.created_by().clone().unwrap_or_default(),
            created_unix_s: h.created().as_deref().and_then(super::history::parse_rfc3339),
            layer: layer.map(|i| layer_dir(&diff_hex[i])),
            size_bytes: layer.map_or(0, |i| reads[i].tar_bytes),
            comment: h.comment().clone().filter(|c| !c.is_empty()),
        });
    }
    for i in next..diff_hex.len() {
        out.push(HistoryEntry {
            origin: Origin::Imported,
            created_by: "(no history entry)".into(),
            created_unix_s: config.created().as_deref().and_then(super::history::parse_rfc3339),
            layer: Some(layer_dir(&diff_hex[i])),
            size_bytes: reads[i].tar_bytes,
            comment: None,
        });
    }
    debug_assert!(reads.iter().zip(diff_hex).all(|(r, h)| r.diff_id == *h));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_references() {
        assert_eq!(name_from_reference("docker.io/library/redis:7.2"), "redis-7.2");
        assert_eq!(name_from_reference("nginx:latest"), "nginx");
        assert_eq!(name_from_reference("localhost/web"), "web");
        assert_eq!(name_from_reference("busybox"), "busybox");
        assert_eq!(name_from_reference("reg:5000/team/api:1.0@sha256:ab"), "api-1.0");
        assert!(!super::super::valid(&name_from_reference("x:tag+meta")), "an invalid result is caught by the caller");
    }
}

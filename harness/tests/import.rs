#![allow(clippy::tests_outside_test_module)] // an integration-test crate is test-only by construction
//! `vmct images import` and `vmct images history` on archives this suite makes itself (offline): a
//! docker-archive and an OCI layout (directory and tar) of Debian's busybox-static, gzip and zstd
//! layers, a whiteout and an opaque directory across two layers, and bad archives, each of which must
//! fail with an error naming the file and leave nothing in the store. Every test uses its own store
//! (`XDG_CACHE_HOME` in a temporary directory), so it sees only what its own imports made.
use harness::privileged::{gate, required, Need};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A private store for one test.
struct Store {
    cache: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let cache = tempfile::tempdir().unwrap();
        // The store must be reachable by a user-namespaced root (see `image_root`).
        std::fs::set_permissions(cache.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Store { cache }
    }

    fn vmct(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("vmct"));
        c.env("XDG_CACHE_HOME", self.cache.path()).stdin(Stdio::null());
        c
    }

    fn root(&self) -> PathBuf {
        self.cache.path().join("vmct/images")
    }

    /// Every path under the store but its lock file, sorted.
    fn tree(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.root()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.file_name().is_some_and(|n| n == ".lock") {
                    continue;
                }
                out.push(p.strip_prefix(self.root()).unwrap().display().to_string());
                if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    fn import(&self, path: &Path, extra: &[&str]) -> Output {
        self.vmct().args(["images", "import"]).arg(path).args(extra).output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One entry of a test layer.
enum Ent<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Link(&'a str, &'a str),
}

/// A layer tar; names are written as raw bytes (so a hostile `../` name is possible).
fn layer(entries: &[Ent]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (name, data): (&str, &[u8]) = match e {
            Ent::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"")
            }
            Ent::File(n, d, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (n, d)
            }
            Ent::Link(n, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).unwrap();
                (n, b"")
            }
        };
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// The busybox layer: /bin/busybox, /bin/sh, and the usual mount points.
fn busybox_layer() -> Option<Vec<u8>> {
    let bb = harness::images::busybox::find().ok()?;
    let bytes = std::fs::read(bb).ok()?;
    Some(layer(&[
        Ent::Dir("bin/"),
        Ent::File("bin/busybox", &bytes, 0o755),
        Ent::Link("bin/sh", "/bin/busybox"),
        Ent::Dir("etc/"),
        Ent::File("etc/motd", b"hello\n", 0o644),
        Ent::File("etc/keep", b"kept\n", 0o644),
        Ent::Dir("var/"),
        Ent::Dir("var/cache/"),
        Ent::File("var/cache/old", b"old\n", 0o644),
        Ent::Dir("proc/"),
        Ent::Dir("dev/"),
        Ent::Dir("sys/"),
        Ent::Dir("tmp/"),
    ]))
}

#[derive(Clone, Copy, PartialEq)]
enum Comp {
    Plain,
    Gzip,
    Zstd,
}

fn compress(tar: &[u8], c: Comp) -> Vec<u8> {
    match c {
        Comp::Plain => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(tar, 1).unwrap(),
    }
}

/// An image: its layers (uncompressed tars) and config fields.
struct Image {
    layers: Vec<Vec<u8>>,
    config: Value,
}

impl Image {
    fn new(layers: Vec<Vec<u8>>) -> Image {
        let history: Vec<Value> = (0..layers.len())
            .map(|i| json!({"created": "2024-02-29T12:30:15Z", "created_by": format!("/bin/sh -c #(nop) ADD layer{i}")}))
            .chain([json!({"created": "2024-02-29T12:31:00Z", "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]", "empty_layer": true})])
            .collect();
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/busybox"], "Cmd": ["sh"], "Env": ["PATH=/bin", "GREETING=hi"],
                       "WorkingDir": "/tmp", "User": "0:0", "ExposedPorts": {"8080/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{}", sha(l))).collect::<Vec<_>>()},
            "history": history,
        });
        Image { layers, config }
    }

    /// `docker save` form: manifest.json, `<hex>.json`, `<n>/layer.tar`.
    fn docker_archive(&self, path: &Path, tag: Option<&str>, comp: Comp) {
        self.docker_archive_as(path, tag, comp, false)
    }

    /// `docker save` form; `blobs`: as docker 25 and later write it (config and layers under
    /// `blobs/sha256/`, named by digest).
    fn docker_archive_as(&self, path: &Path, tag: Option<&str>, comp: Comp, blobs: bool) {
        let config = serde_json::to_vec(&self.config).unwrap();
        let config_name =
            if blobs { format!("blobs/sha256/{}", sha(&config)) } else { format!("{}.json", sha(&config)) };
        let mut files: Vec<(String, Vec<u8>)> = vec![(config_name.clone(), config.clone())];
        let mut names = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let blob = compress(l, comp);
            let n = if blobs { format!("blobs/sha256/{}", sha(&blob)) } else { format!("layer{i}/layer.tar") };
            names.push(n.clone());
            files.push((n, blob));
        }
        let mut m = json!([{"Config": config_name, "Layers": names}]);
        if let Some(t) = tag {
            m[0]["RepoTags"] = json!([t]);
        }
        files.insert(0, ("manifest.json".into(), serde_json::to_vec(&m).unwrap()));
        write_tar(path, &files);
    }

    /// OCI layout files (relative path, bytes) with the layers compressed as `comp` under `media`.
    fn oci_files(&self, ref_name: &str, comp: Comp, media: Option<&str>) -> Vec<(String, Vec<u8>)> {
        let config = serde_json::to_vec(&self.config).unwrap();
        let mut files = vec![("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())];
        let mut descs = Vec::new();
        let suffix = match comp {
            Comp::Plain => "",
            Comp::Gzip => "+gzip",
            Comp::Zstd => "+zstd",
        };
        for l in &self.layers {
            let blob = compress(l, comp);
            let mt = media.map_or(format!("application/vnd.oci.image.layer.v1.tar{suffix}"), String::from);
            descs.push(json!({"mediaType": mt, "digest": format!("sha256:{}", sha(&blob)), "size": blob.len()}));
            files.push((format!("blobs/sha256/{}", sha(&blob)), blob));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(&config)), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", sha(&manifest)),
            "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": ref_name}}]});
        files.push((format!("blobs/sha256/{}", sha(&config)), config));
        files.push((format!("blobs/sha256/{}", sha(&manifest)), manifest));
        files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
        files
    }
}

fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (n, d) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, n, &d[..]).unwrap();
    }
    b.finish().unwrap();
}

fn write_dir(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (n, d) in files {
        let p = dir.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, d).unwrap();
    }
}

/// Root (imports shift owners and mount overlays) and busybox-static.
fn ready(test: &str) -> Option<Vec<u8>> {
    if !gate(test, &[Need::Root]) {
        return None;
    }
    match busybox_layer() {
        Some(l) => Some(l),
        None => {
            assert!(!required(), "{test}: busybox-static is not installed (apt-get install busybox-static)");
            eprintln!("skip {test}: busybox-static is not installed");
            None
        }
    }
}

fn images_json(s: &Store) -> Vec<Value> {
    let o = s.vmct().args(["images", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn docker_archive_and_oci_layouts_import_and_share_layers() {
    let Some(bb) = ready("docker_archive_and_oci_layouts_import_and_share_layers") else { return };
    let s = Store::new();
    let t = tempfile::tempdir().unwrap();
    let img = Image::new(vec![bb.clone()]);
    let da = t.path().join("bbox.tar");
    img.docker_archive(&da, Some("example.org/team/bbox:1.0"), Comp::Plain);
    let o = s.import(&da, &["--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let done: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(done["image"]["name"], "bbox-1.0", "the name comes from the tag");
    assert_eq!((done["layers_new"].as_u64(), done["layers_reused"].as_u64()), (Some(1), Some(0)));
    let rec = &done["image"];
    assert_eq!(rec["entry"], json!(["/bin/busybox"]));
    assert_eq!(rec["cmd"], json!(["sh"]));
    assert_eq!(rec["env"], json!(["PATH=/bin", "GREETING=hi"]));
    assert_eq!((rec["cwd"].as_str(), rec["user"].as_str()), (Some("/tmp"), Some("0:0")));
    assert_eq!(rec["exposed_ports"], json!(["8080/tcp"]));
    let layer = PathBuf::from(rec["layers"][0].as_str().unwrap());
    assert_eq!(layer, s.root().join(format!("layers/sha256-{}", sha(&bb))), "stored by diff-ID");
    assert_eq!(std::fs::read(layer.join("bin/busybox")).unwrap().len(), std::fs::read("/bin/busybox").unwrap().len());

    // The same layer again, as an OCI layout directory (zstd) and an OCI archive (gzip).
    let dir = t.path().join("oci");
    write_dir(&dir, &img.oci_files("bbox-oci", Comp::Zstd, None));
    let o = s.import(&dir, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("as image bbox-oci") && text(&o).contains("0 new, 1 already stored"), "{}", text(&o));
    let oci_tar = t.path().join("oci.tar");
    write_tar(&oci_tar, &img.oci_files("localhost/bbox:gz", Comp::Gzip, None));
    let o = s.import(&oci_tar, &[]);
    assert!(o.status.success() && text(&o).contains("as image bbox-gz"), "{}", text(&o));
    // Importing under a taken name is refused.
    let o = s.import(&da, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("'bbox-1.0' exists already"), "{}", text(&o));

    let rows = images_json(&s);
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap_or_else(|| panic!("{n} listed: {rows:?}")).clone();
    for n in ["bbox-1.0", "bbox-oci", "bbox-gz"] {
        let r = row(n);
        assert!(r["bytes"].as_u64().unwrap() > 1_000_000 && r["bytes"] == r["shared_bytes"], "{n}: {r}");
    }
    // Docker 25's form (blobs named by digest, beside an OCI index the import does not need).
    let d25 = t.path().join("d25.tar");
    img.docker_archive_as(&d25, Some("bbox:25"), Comp::Plain, true);
    let o = s.import(&d25, &[]);
    assert!(o.status.success() && text(&o).contains("as image bbox-25"), "{}", text(&o));
    let layers = || std::fs::read_dir(s.root().join("layers")).unwrap().flatten().count();
    assert_eq!(layers(), 1, "four imports of one layer store it once");
    // Removal keeps the layer while another image has it, then removes it with the last one.
    for (n, left) in [("bbox-1.0", 1), ("bbox-oci", 1), ("bbox-gz", 1), ("bbox-25", 0)] {
        let o = s.vmct().args(["images", "--rm", n]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(layers(), left, "after removing {n}");
    }
}

/// Mounts `lower` (top first) read-only with overlayfs; unmounts when dropped.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(lower: &[PathBuf], at: &Path) -> Overlay {
        std::fs::create_dir_all(at).unwrap();
        let dirs: Vec<String> = lower.iter().map(|l| l.display().to_string()).collect();
        let o = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &format!("lowerdir={}", dirs.join(":"))])
            .arg(at)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount: {}", text(&o));
        Overlay(at.into())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn whiteouts_and_opaque_dirs_apply_across_layers() {
    let Some(bb) = ready("whiteouts_and_opaque_dirs_apply_across_layers") else { return };
    let s = Store::new();
    let t = tempfile::tempdir().unwrap();
    let top = layer(&[
        Ent::Dir("etc/"),
        Ent::File("etc/.wh.motd", b"", 0o644),
        Ent::Dir("var/cache/"),
        Ent::File("var/cache/.wh..wh..opq", b"", 0o644),
        Ent::File("var/cache/new", b"new\n", 0o644),
    ]);
    let img = Image::new(vec![bb, top]);
    for (comp, name) in [(Comp::Gzip, "wh-gzip"), (Comp::Zstd, "wh-zstd")] {
        let dir = t.path().join(name);
        write_dir(&dir, &img.oci_files(name, comp, None));
        let o = s.import(&dir, &["--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let rec: Value = serde_json::from_slice::<Value>(&o.stdout).unwrap()["image"].clone();
        assert_eq!(rec["whiteouts"], 2, "one whiteout, one opaque dir");
        let mut lower: Vec<PathBuf> =
            rec["layers"].as_array().unwrap().iter().map(|l| PathBuf::from(l.as_str().unwrap())).collect();
        lower.reverse();
        let mnt = t.path().join(format!("mnt-{name}"));
        let _m = Overlay::mount(&lower, &mnt);
        let ls = |d: &str| {
            let mut v: Vec<String> = std::fs::read_dir(mnt.join(d))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into())
                .collect();
            v.sort();
            v
        };
        assert_eq!(ls("etc"), vec!["keep"], "{name}: the whiteout hides etc/motd");
        assert_eq!(ls("var/cache"), vec!["new"], "{name}: the opaque dir hides var/cache/old");
        assert!(mnt.join("bin/busybox").is_file());
    }
}

#[test]
fn a_container_sees_the_merged_rootfs() {
    let Some(bb) = ready("a_container_sees_the_merged_rootfs") else { return };
    let s = Store::new();
    let t = tempfile::tempdir().unwrap();
    let top = layer(&[Ent::Dir("etc/"), Ent::File("etc/.wh.motd", b"", 0o644), Ent::File("etc/added", b"a\n", 0o644)]);
    let da = t.path().join("two.tar");
    Image::new(vec![bb, top]).docker_archive(&da, Some("merged:latest"), Comp::Plain);
    let o = s.import(&da, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = s
        .vmct()
        .args(["shell", "--backend", "container", "--image", "merged", "--", "/bin/busybox", "ls", "/etc"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("added") && out.contains("keep") && !out.contains("motd"), "{out}");
}

#[test]
fn history_lists_imported_and_built_layers_newest_first() {
    let Some(bb) = ready("history_lists_imported_and_built_layers_newest_first") else { return };
    let s = Store::new();
    let t = tempfile::tempdir().unwrap();
    let da = t.path().join("h.tar");
    Image::new(vec![bb]).docker_archive(&da, None, Comp::Plain);
    let o = s.import(&da, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("names no image") && text(&o).contains("--name"), "{}", text(&o));
    let o = s.import(&da, &["--name", "hist"]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(t.path().join("greeting"), "hi\n").unwrap();
    let spec = t.path().join("b.toml");
    std::fs::write(
        &spec,
        "name = \"hist-built\"\nfrom = \"hist\"\n[[add]]\nsrc = \"greeting\"\ndest = \"/etc/greeting\"\n",
    )
    .unwrap();
    let o = s.vmct().arg("build").arg(&spec).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let built: Value =
        serde_json::from_slice(&std::fs::read(s.root().join("committed/hist-built/image.json")).unwrap()).unwrap();
    assert_eq!((&built["cmd"], &built["user"]), (&json!(["sh"]), &json!("0:0")), "the imported config carries over");
    assert_eq!(built["exposed_ports"], json!(["8080/tcp"]));
    let o = s.vmct().args(["images", "history", "hist-built", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let h: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let by: Vec<(&str, &str)> =
        h.iter().map(|e| (e["origin"].as_str().unwrap(), e["created_by"].as_str().unwrap())).collect();
    assert_eq!(by.len(), 3, "{by:?}");
    assert_eq!(by[0].0, "built");
    assert!(by[0].1.contains("b.toml"), "{by:?}");
    assert_eq!(by[1], ("imported", "/bin/sh -c #(nop) CMD [\"sh\"]"), "newest first; an empty layer has no layer");
    assert!(h[1]["layer"].is_null() && h[2]["layer"].is_string());
    assert_eq!(by[2], ("imported", "/bin/sh -c #(nop) ADD layer0"));
    assert_eq!(h[2]["created_unix_s"], 1_709_209_815.0);
    let o = s.vmct().args(["images", "history", "hist"]).output().unwrap();
    assert!(o.status.success() && text(&o).contains("2024-02-29 12:30:15"), "{}", text(&o));
    // The built image shares the imported layer.
    let rows = images_json(&s);
    let built = rows.iter().find(|r| r["name"] == "hist-built").unwrap();
    assert!(built["shared_bytes"].as_u64().unwrap() > 1_000_000, "{built}");
    let o = s.vmct().args(["images", "history", "no-such-image"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Each bad archive: exit 2, an error naming the file and what is wrong, nothing left in the store.
#[test]
fn bad_archives_are_refused_and_leave_nothing() {
    let Some(bb) = ready("bad_archives_are_refused_and_leave_nothing") else { return };
    let s = Store::new();
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n);
    let img = Image::new(vec![bb.clone()]);
    let mut cases: Vec<(PathBuf, Vec<&str>)> = Vec::new();

    std::fs::write(p("notes.txt"), "this is not an image\n".repeat(40)).unwrap();
    cases.push((p("notes.txt"), vec!["notes.txt", "is not a tar archive"]));
    std::fs::write(p("img.tar.gz"), compress(b"whatever", Comp::Gzip)).unwrap();
    cases.push((p("img.tar.gz"), vec!["img.tar.gz", "gzip-compressed"]));
    write_tar(&p("empty.tar"), &[("readme".into(), b"x".to_vec())]);
    cases.push((p("empty.tar"), vec!["empty.tar", "neither a docker-archive (no manifest.json)"]));
    // A manifest naming a layer the tar lacks.
    let mut files = img.oci_files("x", Comp::Plain, None);
    files.retain(|(n, d)| n != &format!("blobs/sha256/{}", sha(d)) || !d.starts_with(&bb[..512]));
    write_tar(&p("missing-layer.tar"), &files);
    cases.push((p("missing-layer.tar"), vec!["missing-layer.tar", "is missing from the archive"]));
    // A layer blob changed after its digest was taken (OCI) and one whose diff-ID is wrong (docker).
    let mut files = img.oci_files("x", Comp::Plain, None);
    for (n, d) in &mut files {
        if n.starts_with("blobs/") && d.len() == bb.len() {
            d[600] ^= 1;
        }
    }
    write_tar(&p("corrupt.tar"), &files);
    cases.push((p("corrupt.tar"), vec!["corrupt.tar", "digest mismatch"]));
    let mut wrong = Image::new(vec![bb.clone()]);
    wrong.config["rootfs"]["diff_ids"] = json!([format!("sha256:{}", "0".repeat(64))]);
    wrong.docker_archive(&p("diffid.tar"), Some("x:1"), Comp::Plain);
    cases.push((p("diffid.tar"), vec!["diffid.tar", "layer0/layer.tar", "digest mismatch", "diff_id"]));
    // Unsupported media type and compression.
    write_dir(&p("bzip-oci"), &img.oci_files("x", Comp::Plain, Some("application/vnd.oci.image.layer.v1.tar+bzip2")));
    cases.push((p("bzip-oci"), vec!["bzip-oci", "unsupported media type", "tar+bzip2"]));
    let bz = Image { layers: vec![b"BZh91AY&SY not really".to_vec()], config: img.config.clone() };
    let mut bzf = vec![("manifest.json".to_string(), Vec::new())];
    bzf[0].1 = serde_json::to_vec(&json!([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}])).unwrap();
    bzf.push(("c.json".into(), serde_json::to_vec(&bz.config).unwrap()));
    bzf.push(("l.tar".into(), bz.layers[0].clone()));
    write_tar(&p("bzip2.tar"), &bzf);
    cases.push((
        p("bzip2.tar"),
        vec!["bzip2.tar", "l.tar", "compressed with bzip2", "supported: plain tar, gzip, zstd"],
    ));
    // Hostile layers: '../' and an absolute symlink written through.
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dotdot = Image::new(vec![layer(&[Ent::File("../../escaped", b"x", 0o644)])]);
    dotdot.docker_archive(&p("dotdot.tar"), Some("x:1"), Comp::Plain);
    cases.push((p("dotdot.tar"), vec!["dotdot.tar", "../../escaped", "'..'"]));
    let link = Image::new(vec![layer(&[
        Ent::Link("evil", outside.to_str().unwrap()),
        Ent::File("evil/planted", b"x", 0o644),
    ])]);
    link.docker_archive(&p("symlink.tar"), Some("x:1"), Comp::Gzip);
    cases.push((p("symlink.tar"), vec!["symlink.tar", "evil/planted", "parent evil is a symlink"]));
    let wh =
        Image::new(vec![layer(&[Ent::Link("evil", outside.to_str().unwrap()), Ent::File("evil/.wh.x", b"", 0o644)])]);
    wh.docker_archive(&p("whiteout-link.tar"), Some("x:1"), Comp::Plain);
    cases.push((p("whiteout-link.tar"), vec!["whiteout-link.tar", "evil/.wh.x", "symlink"]));
    // Two images in one archive.
    let mut files = img.oci_files("one", Comp::Plain, None);
    let (_, index) = files.iter_mut().find(|(n, _)| n == "index.json").unwrap();
    let mut v: Value = serde_json::from_slice(index).unwrap();
    let mut second = v["manifests"][0].clone();
    second["annotations"]["org.opencontainers.image.ref.name"] = json!("two");
    v["manifests"].as_array_mut().unwrap().push(second);
    *index = serde_json::to_vec(&v).unwrap();
    write_dir(&p("two-images"), &files);
    cases.push((p("two-images"), vec!["two-images", "holds 2 images (one, two)"]));
    // A bad --name.
    img.docker_archive(&p("good.tar"), Some("x:1"), Comp::Plain);

    // The store's skeleton (its directories for layers and images) is not an import's leftover.
    std::fs::create_dir_all(s.root().join("layers")).unwrap();
    std::fs::create_dir_all(s.root().join("committed")).unwrap();
    let before = s.tree();
    for (path, wants) in &cases {
        let o = s.import(path, &[]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{}: {out}", path.display());
        for w in wants {
            assert!(out.contains(w), "{}: '{w}' missing from: {out}", path.display());
        }
        assert_eq!(s.tree(), before, "{}: the store is unchanged", path.display());
    }
    let o = s.import(&p("good.tar"), &["--name", "../etc"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("'../etc'") && text(&o).contains("--name"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was written outside a layer");
    assert!(!t.path().join("escaped").exists() && !Path::new("/escaped").exists());
    assert_eq!(s.tree(), before);

    // A config without Entrypoint and Cmd imports (a command is then needed at run time).
    let mut bare = Image::new(vec![bb]);
    bare.config["config"] = json!({"Env": ["PATH=/bin"]});
    bare.docker_archive(&p("bare.tar"), Some("bare:1"), Comp::Plain);
    let o = s.import(&p("bare.tar"), &[]);
    assert!(o.status.success() && text(&o).contains("neither Entrypoint nor Cmd"), "{}", text(&o));
}

/// A signal during an import removes its temporary layers; a killed import's are removed by gc.
#[test]
fn interrupted_imports_leave_nothing_after_gc() {
    let Some(bb) = ready("interrupted_imports_leave_nothing_after_gc") else { return };
    let s = Store::new();
    let t = tempfile::tempdir().unwrap();
    // 64 MiB of zeros: small compressed, long enough to unpack that the signal lands mid-import.
    let big = vec![0u8; 64 << 20];
    let img = Image::new(vec![bb, layer(&[Ent::File("big", &big, 0o644)])]);
    let dir = t.path().join("big");
    write_dir(&dir, &img.oci_files("big", Comp::Zstd, None));
    let layers = s.root().join("layers");
    let temp_appears = |child: &std::process::Child| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let n = std::fs::read_dir(&layers)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&format!(".tmp-{}-", child.id())))
                .count();
            if n > 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no temporary layer appeared");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    for (sig, code) in [(libc::SIGINT, Some(130)), (libc::SIGKILL, None)] {
        let child = s
            .vmct()
            .args(["images", "import"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        temp_appears(&child);
        // SAFETY: kill with a valid pid of our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = child.wait_with_output().unwrap();
        if let Some(c) = code {
            assert_eq!(o.status.code(), Some(c), "{}", text(&o));
            assert!(s.tree().iter().all(|p| !p.contains(".tmp-")), "SIGINT cleans up: {:?}", s.tree());
        }
    }
    assert!(s.tree().iter().any(|p| p.contains(".tmp-")), "SIGKILL leaves a temporary: {:?}", s.tree());
    let o = s.vmct().arg("gc").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(s.tree().iter().all(|p| !p.contains(".tmp-")), "gc removes it: {:?}", s.tree());
    assert!(std::fs::read_dir(s.root().join("committed")).into_iter().flatten().count() == 0);
}

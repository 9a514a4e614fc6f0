//! Packing: the upper dir walked into an OCI layer tar (whiteouts and opaque dirs converted to
//! their OCI form, hard links as link entries, special files as such).
use super::*;

/// A reader of exactly `left` bytes of a file that fails if the file is shorter (it shrank) and
/// ignores what was appended after the walk measured it.
struct Exact<'a> {
    file: std::io::Take<fs::File>,
    left: u64,
    rel: &'a Path,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, inside(self.rel)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Write `upper` as an OCI layer tar at `tar_path`.
pub fn write_tar(upper: &Path, tar_path: &Path) -> Result<TarSummary, CommitError> {
    let f = fs::File::create(tar_path).map_err(io(tar_path))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    let mut sum = TarSummary::default();
    let mut links = fsmeta::HardLinks::default();
    let mut stack = vec![upper.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // The container keeps running: what it deletes meanwhile is simply not in the layer.
        let rd = match fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != upper => continue,
            r => r.map_err(io(&dir))?,
        };
        let mut entries: Vec<_> = rd.collect::<Result<Vec<_>, _>>().map_err(io(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(upper).expect("under upper").to_path_buf();
            let m = match fs::symlink_metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                r => r.map_err(io(&p))?,
            };
            if is_whiteout(&m) {
                let mut name = OsString::from(WHITEOUT_PREFIX);
                name.push(e.file_name());
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_mode(0o600);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, rel.with_file_name(name), std::io::empty()).map_err(io(&p))?;
                sum.whiteouts.push(rel);
                continue;
            }
            if fsmeta::is_reserved_name(&e.file_name()) {
                return Err(CommitError::ReservedName { path: inside(&rel) });
            }
            let kind = Kind::of(&m);
            if kind == Kind::Socket {
                sum.skipped.push(rel);
                continue;
            }
            append(&mut b, &p, &rel, &m, kind, &mut links)?;
            if kind == Kind::Dir {
                if is_opaque(&p) {
                    let mut h = tar::Header::new_gnu();
                    h.set_size(0);
                    h.set_mode(0o600);
                    b.append_data(&mut h, rel.join(OPAQUE_MARKER), std::io::empty()).map_err(io(&p))?;
                    sum.opaque.push(rel);
                }
                stack.push(p);
            }
        }
    }
    let mut w = b.into_inner().map_err(io(tar_path))?;
    std::io::Write::flush(&mut w).map_err(io(tar_path))?;
    Ok(sum)
}

/// Append one file (`p`, stored as `rel`) with its metadata, xattrs and hard-link identity.
fn append<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    p: &Path,
    rel: &Path,
    m: &fs::Metadata,
    kind: Kind,
    links: &mut fsmeta::HardLinks,
) -> Result<(), CommitError> {
    let attrs = fsmeta::xattrs(p).map_err(io(p))?;
    if !attrs.is_empty() {
        let keys: Vec<(String, &[u8])> =
            attrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{}", k.to_string_lossy()), v.as_slice())).collect();
        b.append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v))).map_err(io(p))?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(m, tar::HeaderMode::Complete);
    h.set_mode(m.mode() & fsmeta::MODE_BITS);
    if let Some(first) = links.first_of(m, rel) {
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        return b.append_link(&mut h, rel, first).map_err(io(p));
    }
    match kind {
        Kind::File => {
            let f = fs::File::open(p).map_err(io(p))?;
            let size = m.len();
            let r = Exact { file: f.take(size), left: size, rel };
            b.append_data(&mut h, rel, r).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => CommitError::Changed { path: inside(rel), expected: size },
                _ => CommitError::Io { path: p.to_path_buf(), source: e },
            })
        }
        Kind::Symlink => {
            let target = fs::read_link(p).map_err(io(p))?;
            h.set_size(0);
            b.append_link(&mut h, rel, target).map_err(io(p))
        }
        Kind::Dir => {
            h.set_size(0);
            b.append_data(&mut h, rel, std::io::empty()).map_err(io(p))
        }
        Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
            let (major, minor) = fsmeta::dev_major_minor(m.rdev());
            h.set_size(0);
            h.set_device_major(major).map_err(io(p))?;
            h.set_device_minor(minor).map_err(io(p))?;
            b.append_data(&mut h, rel, std::io::empty()).map_err(io(p))
        }
        Kind::Socket => Ok(()),
    }
}

//! The snapshot's memory file: guest RAM saved sparse, mapped back copy-on-write.
use super::{io_err, SnapshotError};
use crate::layout;
use crate::sys;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

/// True if `page` is all zero bytes (vectorizable: no early exit inside a 64-byte line).
fn is_zero(page: &[u8]) -> bool {
    page.chunks(64).all(|line| line.iter().fold(0u8, |a, b| a | b) == 0)
}

/// Write the resident, non-zero pages of guest memory `[0, mem_bytes)` into a new sparse file at
/// `path` of length `mem_bytes`; returns (bytes written, resident pages).
pub fn save_memory(mem: &GuestMemoryMmap, mem_bytes: u64, path: &Path) -> Result<(u64, u64), SnapshotError> {
    const RUN_PAGES: usize = 256;
    let page = sys::host_len(layout::PAGE_SIZE);
    let file = File::create(path).map_err(io_err(path))?;
    file.set_len(mem_bytes).map_err(io_err(path))?;
    let resident = sys::resident_pages(mem, sys::host_len(mem_bytes))?;
    let n = resident.len();
    let mut buf = vec![0u8; RUN_PAGES * page];
    let (mut written, mut i) = (0u64, 0usize);
    while i < n {
        if !resident[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < n && resident[j] && j - i < RUN_PAGES {
            j += 1;
        }
        let run = &mut buf[..(j - i) * page];
        mem.read_slice(run, GuestAddress((i * page) as u64)).map_err(|e| SnapshotError::Memory(e.to_string()))?;
        let mut k = 0;
        while k < j - i {
            if is_zero(&run[k * page..(k + 1) * page]) {
                k += 1;
                continue;
            }
            let mut l = k;
            while l < j - i && !is_zero(&run[l * page..(l + 1) * page]) {
                l += 1;
            }
            file.write_all_at(&run[k * page..l * page], ((i + k) * page) as u64).map_err(io_err(path))?;
            written += ((l - k) * page) as u64;
            k = l;
        }
        i = j;
    }
    let resident_pages = resident.iter().filter(|r| **r).count() as u64;
    Ok((written, resident_pages))
}

/// Map `path` (a snapshot memory file of exactly `mem_bytes`) as guest memory, `MAP_PRIVATE`:
/// copy-on-write, nothing read until the guest touches it.
pub fn map_memory(path: &Path, mem_bytes: u64) -> Result<GuestMemoryMmap, SnapshotError> {
    let file = std::fs::OpenOptions::new().read(true).open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    if len != mem_bytes {
        return Err(SnapshotError::Format {
            path: path.into(),
            reason: format!("memory file is {len} bytes, the state says {mem_bytes}"),
        });
    }
    let memory = |e: String| SnapshotError::Memory(format!("map {}: {e}", path.display()));
    let region = MmapRegionBuilder::new(sys::host_len(mem_bytes))
        .with_file_offset(FileOffset::new(file, 0))
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
        .build()
        .map_err(|e| memory(e.to_string()))?;
    let region = GuestRegionMmap::new(region, GuestAddress(0)).ok_or_else(|| memory("region overflows".into()))?;
    GuestMemoryMmap::from_regions(vec![region]).map_err(|e| memory(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::MEMORY_FILE;

    #[test]
    fn memory_is_saved_sparse_and_mapped_back_copy_on_write() {
        let dir = std::env::temp_dir().join(format!("vmct-snaptest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let size = 8u64 << 20;
        let file = sys::memfd(c"vmct-test", size).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            sys::host_len(size),
            Some(FileOffset::new(file, 0)),
        )])
        .unwrap();
        mem.write_obj(0x1122_3344u32, GuestAddress(0x1000)).unwrap();
        mem.write_obj(7u8, GuestAddress(0x40_0000)).unwrap();
        mem.write_obj(0u8, GuestAddress(0x60_0000)).unwrap(); // resident but zero: a hole
        let path = dir.join(MEMORY_FILE);
        let (written, resident) = save_memory(&mem, size, &path).unwrap();
        assert_eq!(written, 2 * layout::PAGE_SIZE);
        assert!(resident >= 3, "{resident}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);

        let back = map_memory(&path, size).unwrap();
        assert_eq!(back.read_obj::<u32>(GuestAddress(0x1000)).unwrap(), 0x1122_3344);
        assert_eq!(back.read_obj::<u8>(GuestAddress(0x40_0000)).unwrap(), 7);
        back.write_obj(9u8, GuestAddress(0x40_0000)).unwrap();
        // Copy-on-write: the file keeps the saved byte.
        let mut b = [0u8; 1];
        File::open(&path).unwrap().read_exact_at(&mut b, 0x40_0000).unwrap();
        assert_eq!(b[0], 7);
        assert!(matches!(map_memory(&path, size * 2), Err(SnapshotError::Format { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

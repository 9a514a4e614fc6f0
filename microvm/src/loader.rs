//! Loading the guest image into guest memory: a static ELF (through linux-loader) or raw machine code
//! (for tests and benches), both at [`IMAGE_BASE`](crate::layout::IMAGE_BASE) or above.
use crate::layout::{align_up, HUGE_PAGE_SIZE, IMAGE_BASE};
use linux_loader::loader::{elf::Elf, KernelLoader};
use std::io::Cursor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The guest image.
#[derive(Debug, Clone, Copy)]
pub enum Image<'a> {
    /// A static, non-PIE x86-64 ELF linked at or above `IMAGE_BASE`; starts at its entry point.
    Elf(&'a [u8]),
    /// Raw 64-bit machine code copied to `IMAGE_BASE`; starts at its first byte.
    Raw(&'a [u8]),
}

/// Where the image landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Entry point (guest virtual = physical).
    pub entry: u64,
    /// First byte after the image (its highest segment end).
    pub end: u64,
}

impl Loaded {
    /// Start of the heap: the image end rounded up to a 2 MiB page.
    pub fn heap_start(&self) -> u64 {
        align_up(self.end, HUGE_PAGE_SIZE)
    }
}

/// Why the image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The ELF is malformed, not x86-64, or does not fit guest memory.
    #[error("microvm: cannot load guest ELF: {0}")]
    Elf(#[from] linux_loader::loader::Error),
    /// The image is empty.
    #[error("microvm: the guest image is empty")]
    Empty,
    /// The image does not fit in guest memory.
    #[error("microvm: the guest image ({size} bytes) does not fit in {mem} bytes of guest memory")]
    TooBig {
        /// Image size.
        size: u64,
        /// Guest memory size.
        mem: u64,
    },
    /// The image ends too close to the end of guest memory to leave a heap.
    #[error("microvm: the guest image ends at 0x{end:x}, beyond guest memory of {mem} bytes")]
    NoRoom {
        /// Image end.
        end: u64,
        /// Guest memory size.
        mem: u64,
    },
}

/// Load `image` into `mem` (of `mem_bytes` bytes).
pub fn load(mem: &GuestMemoryMmap, mem_bytes: u64, image: Image<'_>) -> Result<Loaded, LoadError> {
    let loaded = match image {
        Image::Elf(bytes) => {
            if bytes.is_empty() {
                return Err(LoadError::Empty);
            }
            let r = Elf::load(mem, None, &mut Cursor::new(bytes), Some(GuestAddress(IMAGE_BASE)))?;
            Loaded { entry: r.kernel_load.0, end: r.kernel_end }
        }
        Image::Raw(code) => {
            if code.is_empty() {
                return Err(LoadError::Empty);
            }
            let size = code.len() as u64;
            if IMAGE_BASE + size > mem_bytes {
                return Err(LoadError::TooBig { size, mem: mem_bytes });
            }
            mem.write_slice(code, GuestAddress(IMAGE_BASE)).map_err(|_| LoadError::TooBig { size, mem: mem_bytes })?;
            Loaded { entry: IMAGE_BASE, end: IMAGE_BASE + size }
        }
    };
    if loaded.end > mem_bytes {
        return Err(LoadError::NoRoom { end: loaded.end, mem: mem_bytes });
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(size: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).unwrap()
    }

    #[test]
    fn raw_code_lands_at_image_base() {
        let m = mem(4 << 20);
        let l = load(&m, 4 << 20, Image::Raw(&[0x90, 0xf4])).unwrap();
        assert_eq!(l, Loaded { entry: IMAGE_BASE, end: IMAGE_BASE + 2 });
        assert_eq!(l.heap_start(), IMAGE_BASE + HUGE_PAGE_SIZE);
        assert_eq!(m.read_obj::<u8>(GuestAddress(IMAGE_BASE + 1)).unwrap(), 0xf4);
    }

    #[test]
    fn bad_images_are_typed_errors() {
        let m = mem(4 << 20);
        assert!(matches!(load(&m, 4 << 20, Image::Raw(&[])), Err(LoadError::Empty)));
        let big = vec![0u8; 3 << 20];
        assert!(matches!(load(&m, 4 << 20, Image::Raw(&big)), Err(LoadError::TooBig { .. })));
        let e = load(&m, 4 << 20, Image::Elf(b"not an elf at all, clearly")).unwrap_err();
        assert!(e.to_string().contains("cannot load guest ELF"), "{e}");
    }
}

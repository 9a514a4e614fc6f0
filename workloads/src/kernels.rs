//! The measured kernels. Each returns the work it did; the [`crate::runner`] times it with the
//! platform's own clock and reports rates.
use crate::sha256;

/// Page size the memory kernels step by.
pub const PAGE: usize = 4096;

/// Chain `iters` SHA-256 compressions (each block is the previous state), returning the first state
/// word as a check value: every platform must produce the same value for the same `iters`.
pub fn cpu_sha256_chain(iters: u64) -> u32 {
    let mut c = Sha256Chain::new();
    c.run(iters);
    c.check()
}

/// A SHA-256 chain that can be run in pieces: [`Sha256Chain::run`] of `a` then `b` blocks ends where
/// [`cpu_sha256_chain`]`(a + b)` ends, so a timed run in iterations keeps the same check value.
#[derive(Debug, Clone)]
pub struct Sha256Chain {
    state: [u32; 8],
    block: [u8; 64],
}

impl Sha256Chain {
    /// The chain before its first block.
    pub fn new() -> Sha256Chain {
        Sha256Chain { state: sha256::H0, block: [0u8; 64] }
    }

    /// Run `blocks` more compressions.
    pub fn run(&mut self, blocks: u64) {
        for _ in 0..blocks {
            sha256::compress(&mut self.state, &self.block);
            for (b, s) in self.block.chunks_exact_mut(4).zip(self.state) {
                b.copy_from_slice(&s.to_be_bytes());
            }
        }
    }

    /// The check value: the first state word.
    pub fn check(&self) -> u32 {
        self.state[0]
    }
}

impl Default for Sha256Chain {
    fn default() -> Self {
        Sha256Chain::new()
    }
}

/// Write one byte in every page of `buf` (first touch: includes the page faults of the platform).
pub fn touch_pages(buf: &mut [u8]) -> usize {
    let mut n = 0;
    for i in (0..buf.len()).step_by(PAGE) {
        // SAFETY-free volatile-ish write: black_box keeps the store from being elided.
        buf[i] = buf[i].wrapping_add(1);
        n += 1;
    }
    core::hint::black_box(&buf);
    n
}

/// Sequential pass: write then read one u64 every 64-byte line; returns bytes covered.
pub fn seq_pass(buf: &mut [u8]) -> (usize, u64) {
    let mut sum = 0u64;
    for (i, line) in buf.chunks_exact_mut(64).enumerate() {
        line[0] = i.to_le_bytes()[0]; // the low byte: the pattern wraps every 256 lines
    }
    for line in buf.chunks_exact(64) {
        sum = sum.wrapping_add(line[0] as u64);
    }
    (core::hint::black_box(buf.len()), sum)
}

/// Random page touches (xorshift64 index stream), `touches` of them; returns a checksum.
pub fn random_pages(buf: &mut [u8], touches: usize) -> u64 {
    let pages = buf.len() / PAGE;
    if pages == 0 {
        return 0;
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut sum = 0u64;
    for _ in 0..touches {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Both remainders are below `pages` and PAGE, so they fit in usize.
        let page = usize::try_from(x % pages as u64).expect("below the page count");
        let off = page * PAGE + usize::try_from((x >> 40) % PAGE as u64).expect("below PAGE");
        buf[off] = buf[off].wrapping_add(1);
        sum = sum.wrapping_add(buf[off] as u64);
    }
    core::hint::black_box(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_chain_is_deterministic_and_depends_on_iters() {
        assert_eq!(cpu_sha256_chain(0), sha256::H0[0]);
        assert_eq!(cpu_sha256_chain(10), cpu_sha256_chain(10));
        assert_ne!(cpu_sha256_chain(10), cpu_sha256_chain(11));
        let mut c = Sha256Chain::new();
        c.run(4);
        c.run(7);
        assert_eq!(c.check(), cpu_sha256_chain(11), "a chain run in pieces ends where it would in one run");
    }

    #[test]
    fn memory_kernels_cover_the_buffer() {
        let mut buf = [0u8; PAGE * 4 + 10];
        assert_eq!(touch_pages(&mut buf), 5);
        assert_eq!(buf[PAGE * 4], 1);
        let (bytes, _) = seq_pass(&mut buf);
        assert_eq!(bytes, buf.len());
        let before: u64 = buf.iter().map(|b| *b as u64).sum();
        random_pages(&mut buf, 100);
        let after: u64 = buf.iter().map(|b| *b as u64).sum();
        assert_eq!(after - before, 100);
    }
}

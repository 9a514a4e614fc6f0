//! The memory functions the compiler calls (`memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`): with no
//! libc, the guest provides them, using `rep movsb` / `rep stosb` (fast on every current x86 CPU).
use core::arch::asm;

/// Copy `n` bytes forward.
///
/// # Safety
/// Standard `memcpy` contract: valid, non-overlapping regions.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both regions are valid for `n` bytes; DF is clear (ABI).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _, options(nostack, preserves_flags))
    };
    dst
}

/// Copy `n` bytes, regions may overlap.
///
/// # Safety
/// Standard `memmove` contract: valid regions.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copy is correct when dst is below src or the regions do not overlap.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: overlapping with dst above src: copy backwards from the last byte, then clear DF again.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dst.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack)
        )
    };
    dst
}

/// Fill `n` bytes with `c`.
///
/// # Safety
/// Standard `memset` contract: a valid region.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the region is valid for `n` bytes; DF is clear (ABI).
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c.to_le_bytes()[0], options(nostack, preserves_flags))
    };
    dst
}

/// Compare `n` bytes.
///
/// # Safety
/// Standard `memcmp` contract: valid regions.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and both regions are valid for n bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// Equality-only compare (zero when equal).
///
/// # Safety
/// Standard `bcmp` contract: valid regions.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

//! Kernel keyring probe: the keyring is not namespaced except by user namespace.
use super::{sys, Ctx, Verdict};

const KEY_SPEC_PROCESS_KEYRING: i32 = -2;
const KEY_SPEC_USER_KEYRING: i32 = -4;
const KEYCTL_GET_KEYRING_ID: i32 = 0;
const KEYCTL_REVOKE: i32 = 3;
const KEYCTL_UNLINK: i32 = 9;

/// Serial of the caller's user keyring without creating it, if any.
pub fn user_keyring() -> Option<i64> {
    // SAFETY: KEYCTL_GET_KEYRING_ID takes integers only.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0) };
    (r > 0).then_some(r)
}

/// `add_key` on the private process keyring, then revoke and unlink it; then compare the user keyring
/// with the host root's. Harmless: a one-byte key in a keyring that dies with the probe child.
pub fn add_key(ctx: &Ctx) -> Verdict {
    let ty = sys::cstr("user");
    let desc = sys::cstr(&ctx.tag());
    let payload = b"x";
    // SAFETY: valid NUL-terminated strings and a payload pointer/length pair.
    let id = unsafe {
        libc::syscall(libc::SYS_add_key, ty.as_ptr(), desc.as_ptr(), payload.as_ptr(), 1usize, KEY_SPEC_PROCESS_KEYRING)
    };
    if id < 0 {
        return Verdict::blocked(format!("add_key: {}", sys::errno_name(sys::errno())));
    }
    // SAFETY: integer-only keyctl operations on the key we just created.
    unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_REVOKE, id);
        libc::syscall(libc::SYS_keyctl, KEYCTL_UNLINK, id, KEY_SPEC_PROCESS_KEYRING);
    }
    let user = user_keyring();
    match (user, ctx.host_keyring) {
        (Some(u), Some(h)) if u == h => {
            Verdict::reached(format!("add_key allowed and the user keyring is the host root's (serial {u})"))
        }
        (u, Some(h)) => Verdict::blocked(format!(
            "add_key allowed on a private keyring; user keyring {} is not the host's ({h})",
            u.map_or("none".into(), |u| u.to_string())
        )),
        (_, None) => match ctx.same_ns("user") {
            Some(false) => Verdict::blocked("add_key allowed, keyrings of its own user namespace only"),
            _ => Verdict::reached("add_key allowed in the host user namespace (keyrings shared with host uids)"),
        },
    }
}

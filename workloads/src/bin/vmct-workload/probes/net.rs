//! Network probes: reach the harness's loopback listener; open a raw socket.
use super::{sys, Ctx, Verdict};
use std::io::Write;
use std::time::Duration;

/// Connect to the harness's listener on 127.0.0.1 and send the nonce. Harmless: the only traffic is
/// one line to a listener the harness opened for this purpose.
pub fn host_loopback(ctx: &Ctx) -> Verdict {
    let (Some(addr), Some(nonce)) = (&ctx.addr, &ctx.nonce) else {
        return Verdict::error("no listener given (VMCT_CANARY_ADDR unset)");
    };
    let Ok(sa) = addr.parse::<std::net::SocketAddr>() else { return Verdict::error(format!("bad address {addr}")) };
    if !sa.ip().is_loopback() {
        return Verdict::error(format!("refusing non-loopback address {addr}"));
    }
    match std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(2)) {
        Ok(mut s) => match s.write_all(format!("{nonce}\n").as_bytes()) {
            Ok(()) => Verdict::reached(format!("connected to the host listener {addr} and sent the nonce")),
            Err(e) => Verdict::reached(format!("connected to {addr}, send failed: {}", sys::io_name(&e))),
        },
        Err(e) => Verdict::blocked(format!("{} connecting to {addr}", sys::io_name(&e))),
    }
}

/// Open (and close) a raw ICMP socket. Harmless: nothing is sent.
pub fn raw_socket(ctx: &Ctx) -> Verdict {
    // SAFETY: plain socket creation; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return Verdict::blocked(format!("socket(AF_INET, SOCK_RAW): {}", sys::errno_name(sys::errno())));
    }
    // SAFETY: fd was just returned by socket and is closed once.
    unsafe { libc::close(fd) };
    let host_has_netns = ctx.host_ns.iter().any(|(k, _)| k == "net");
    match ctx.same_ns("net") {
        Some(false) => Verdict::blocked("raw socket allowed, but only in its own network namespace"),
        Some(true) => Verdict::reached("opened a raw socket in the host network namespace"),
        // The host has network namespaces (the harness gave the inode) and this kernel has none (no /proc/self/ns/net): it is
        // another kernel, a linux guest's own network stack (IPv4 is on for images' services).
        None if host_has_netns && !std::path::Path::new("/proc/self/ns/net").exists() => Verdict::blocked(
            "raw socket allowed in a kernel without network namespaces, not the host's: the guest's own network stack",
        ),
        None => Verdict::reached("opened a raw socket (network namespace unknown)"),
    }
}

//! Networking: a private network namespace with loopback up (default, done by the init), or a veth pair
//! into a project-owned bridge namespace with private addresses (`NetMode::Bridge`).
//!
//! The bridge lives in its own named network namespace (`<prefix>-net-<pid>`, under /run/netns) that the
//! runtime creates; nothing is added to the host's namespace and nothing routes off the machine (no
//! default route, no NAT). Setup shells out to iproute2 (`ip`, `nsenter`): it is off the default
//! launch path, and a hand-written rtnetlink client would be a lot of code for an optional mode.
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Errors setting up networking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command failed.
    #[error("net: `{cmd}` failed: {detail}")]
    Command {
        /// Command line.
        cmd: String,
        /// stderr or spawn error.
        detail: String,
    },
    /// Out of addresses.
    #[error("net: bridge {0} has no free address left")]
    Exhausted(String),
}

/// Network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetMode {
    /// Private namespace, loopback only.
    #[default]
    Private,
    /// Private namespace plus a veth into the project bridge namespace.
    Bridge,
}

/// Bridge name inside the bridge namespace.
pub const BRIDGE: &str = "vmctbr0";
/// Subnet (a /16 in 10/8), the bridge is .0.1.
pub const SUBNET: [u8; 2] = [10, 213];

fn run(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| NetError::Command { cmd: args.join(" "), detail: format!("{e} (is iproute2 installed?)") })?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: args.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The project bridge namespace; removed on drop.
#[derive(Debug)]
pub struct Bridge {
    /// Namespace name.
    pub netns: String,
    next: AtomicU32,
}

impl Bridge {
    /// Create `<prefix>-net-<pid>` with a bridge at 10.213.0.1/16 and loopback up.
    pub fn create(prefix: &str) -> Result<Bridge, NetError> {
        let netns = format!("{prefix}-net-{}", std::process::id());
        let _ = run(&["ip", "netns", "del", &netns]);
        run(&["ip", "netns", "add", &netns])?;
        let b = Bridge { netns, next: AtomicU32::new(2) };
        let n = b.netns.as_str();
        let gw = format!("{}.{}.0.1/16", SUBNET[0], SUBNET[1]);
        run(&["ip", "-n", n, "link", "add", BRIDGE, "type", "bridge"])?;
        run(&["ip", "-n", n, "addr", "add", &gw, "dev", BRIDGE])?;
        run(&["ip", "-n", n, "link", "set", BRIDGE, "up"])?;
        run(&["ip", "-n", n, "link", "set", "lo", "up"])?;
        Ok(b)
    }

    /// Give the container whose init is `pid` an `eth0` on the bridge; returns the host-side end.
    pub fn attach(&self, _id: &str, pid: i32) -> Result<Veth, NetError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n >= 65_000 {
            return Err(NetError::Exhausted(self.netns.clone()));
        }
        let [hi, lo] = u16::try_from(n).expect("below 65000, checked above").to_be_bytes();
        let addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], hi, lo);
        let host = format!("vmct{n}");
        let ns = self.netns.as_str();
        let pid_s = pid.to_string();
        run(&["ip", "-n", ns, "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &pid_s])?;
        let v = Veth { netns: self.netns.clone(), name: host, addr };
        run(&["ip", "-n", ns, "link", "set", &v.name, "master", BRIDGE, "up"])?;
        let net = format!("--net=/proc/{pid}/ns/net");
        let cidr = format!("{addr}/16");
        run(&["nsenter", &net, "ip", "addr", "add", &cidr, "dev", "eth0"])?;
        run(&["nsenter", &net, "ip", "link", "set", "eth0", "up"])?;
        Ok(v)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.netns]);
    }
}

/// The host (bridge-namespace) end of a container's veth pair; deleted on drop.
#[derive(Debug)]
pub struct Veth {
    /// Namespace holding this end.
    pub netns: String,
    /// Interface name.
    pub name: String,
    /// The container's address.
    pub addr: Ipv4Addr,
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Usually gone already (the pair dies with the container's namespace).
        let _ = Command::new("ip")
            .args(["-n", &self.netns, "link", "del", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

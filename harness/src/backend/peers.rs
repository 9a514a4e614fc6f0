//! Peer runtimes crun and runc (placeholder until the container issue lands).

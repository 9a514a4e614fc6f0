//! The container runtime (see issue: container).

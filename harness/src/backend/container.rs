//! The `container` backend (placeholder until the container issue lands).

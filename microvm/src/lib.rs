//! The VMM (see issue: microvm).

//! The report (see issue: report).

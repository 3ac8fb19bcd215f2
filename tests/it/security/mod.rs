//! The security suite (issue 19, "Safe on a laptop"): one module per area, each item pinned by a
//! test that failed before its fix.

mod clients;

//! The integration tests: one binary, one module per area, each running the real `fusionizer`
//! executable against temp dirs (see `common`).

mod build;
mod common;
mod local;
mod nuctl;
mod nuctl_cli;
mod plan;
mod serve;

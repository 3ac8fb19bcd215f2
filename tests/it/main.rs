//! The integration tests: one binary, one module per area, each running the real `fusionizer`
//! executable against temp dirs (shared helpers in `tests/support`).

mod architecture;
mod build;
mod contract;
mod local;
mod nuctl;
mod nuctl_cli;
mod plan;
mod plan_destroy;
mod serve;
#[path = "../support/mod.rs"]
mod support;

//! The integration tests: one binary, one module per area, each running the real `fusionizer`
//! executable against temp dirs (shared helpers in `tests/support`).

mod architecture;
mod build;
mod contract;
mod local;
mod local_cron;
mod nuctl;
mod nuctl_cli;
mod plan;
mod plan_destroy;
mod reliability;
mod serve;
mod soak;
#[path = "../support/mod.rs"]
mod support;

//! The integration tests: one binary, one module of specs per area, each running the real
//! `fusionizer` executable against temp dirs; the harness they share is in `tests/support`.

mod architecture;
mod build;
mod cli;
mod contract;
mod dashboard;
mod kubernetes;
mod live_state;
mod local;
mod local_cron;
mod nuctl;
mod nuctl_cli;
mod optimize;
mod optimizers;
mod plan;
mod plan_destroy;
mod prebuilt;
mod pycheck;
mod reliability;
mod security;
mod serve;
mod soak;
mod state_dir;
#[path = "../support/mod.rs"]
mod support;
mod terminal;
mod traces;

//! fusionizer: fuse Nuclio Python tasks into fewer functions, declaratively.
//!
//! The library core behind the `fusionizer` binary, in layers whose imports only point down
//! (`docs/architecture.md`; `tests/it/architecture.rs` enforces it):
//!
//! - [`cli`]: arguments and one thin file per command;
//! - [`serve`]: the invocation proxy and the schedule runner;
//! - [`apply`], [`status`]: changing and reporting the platform;
//! - [`workspace`]: the pipeline fusion.toml → grouping → fused artifacts → live → plan;
//! - [`plan`], [`optimize`], [`platform`], [`fuse`], [`schedule`], [`config`]: the core, pure
//!   except for the platforms and the `command` optimizer's program;
//! - [`lock`], [`proc`], [`http_client`], [`inflight`], [`ui`], [`traces`], [`error`],
//!   [`contract`]: the ground floor.

pub mod apply;
pub mod cli;
pub mod config;
pub mod contract;
pub mod error;
pub mod fuse;
pub mod http_client;
pub mod inflight;
pub mod lock;
pub mod optimize;
pub mod plan;
pub mod platform;
pub mod proc;
pub mod schedule;
pub mod serve;
pub mod status;
pub mod traces;
pub mod ui;
pub mod workspace;

pub use cli::main_with_args;
pub use error::{Error, ExitCode, Result};

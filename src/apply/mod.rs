//! Apply: carry out a plan on a platform — creates and updates first (in parallel, each waited
//! for until ready), then deletes — under an advisory lock.
//!
//! [`engine::execute`] is used by `fusionizer apply` and by serve for every phase transition;
//! [`progress`] shows it on a terminal.

pub mod engine;
pub mod progress;

pub use engine::{
    execute, ApplyHooks, ApplyObserver, ApplyOptions, ApplyReport, ChangeResult, NoHooks,
    NoObserver, Outcome,
};

#[cfg(test)]
mod tests;

//! Which tasks share a function when: the grouping in force at an offset or for the N-th phase.
//!
//! Tasks named in no group of the phase run alone; with no phase at or before the offset, every
//! task runs alone. Only tasks that are present (declared with code, or uploaded) are grouped.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::Config;
use crate::error::Error;

/// How a command picks a grouping (`--at DURATION` or `--phase N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The grouping in force at this offset from serve start (`--at`, default `0s`).
    At(Duration),
    /// The N-th `[[phase]]` in file order, counting from 1 (`--phase`).
    Phase(usize),
}

impl Default for Selection {
    fn default() -> Self {
        Selection::At(Duration::ZERO)
    }
}

/// A grouping: sorted groups of sorted task names; every present task in exactly one group.
pub type Grouping = Vec<Vec<String>>;

/// The index (0-based) of the phase in force at `offset`, if any.
pub fn phase_at(config: &Config, offset: Duration) -> Option<usize> {
    let _ = (config, offset);
    todo!("schedule::phase_at")
}

/// The grouping for `selection` over the `present` tasks. Errors (usage, exit 64) for a phase
/// number out of range.
pub fn grouping(
    config: &Config,
    selection: Selection,
    present: &BTreeSet<String>,
) -> Result<Grouping, Error> {
    let _ = (config, selection, present);
    todo!("schedule::grouping")
}

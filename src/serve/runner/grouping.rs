//! The grouping a regroup applies: the phase in force, or a grouping an optimizer chose
//! ([`Runner::choose`]), laid over the present tasks; who chose it ([`Runner::origin`]); the
//! check an optimizer's grouping must pass before it is chosen; and the note
//! `fusionizer status` reads when an optimizer's grouping is live.

use std::collections::{BTreeMap, BTreeSet};

use super::Runner;
use crate::config::TaskSpec;
use crate::error::Error;
use crate::schedule::{Grouping, Selection};
use crate::serve::routes::{Origin, Source};
use crate::workspace::fuse_grouping_over;

/// A grouping an optimizer chose, applied in place of the phase's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Sorted groups of sorted tasks; laid over the present tasks at each regroup
    /// ([`crate::schedule::over_present`]).
    pub grouping: Grouping,
    /// `feedback` or `command`.
    pub source: Source,
    /// When it was chosen (RFC 3339, UTC).
    pub at: String,
}

impl Runner {
    /// The grouping an optimizer chose, if one applies instead of the phase's.
    pub fn chosen(&self) -> Option<Chosen> {
        self.chosen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes the next regroup apply `chosen` (an optimizer's grouping), or the phase in force
    /// again (`None`). Returns what applied before.
    pub fn choose(&self, chosen: Option<Chosen>) -> Option<Chosen> {
        std::mem::replace(
            &mut *self
                .chosen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            chosen,
        )
    }

    /// Who chose the grouping the next regroup applies, and its phase when it is a phase's.
    pub fn origin(&self) -> Origin {
        match self.chosen() {
            Some(chosen) => Origin {
                source: chosen.source,
                phase: None,
                chosen_at: Some(chosen.at),
            },
            None => Origin {
                source: Source::Static,
                phase: self.phase().map(|i| i + 1),
                chosen_at: None,
            },
        }
    }

    /// The 0-based phase the current selection picks, if any.
    pub(super) fn phase(&self) -> Option<usize> {
        match self.selection() {
            Selection::Phase(n) => n.checked_sub(1),
            Selection::At(offset) => self.with_config(|c| crate::schedule::phase_at(c, offset)),
        }
    }

    /// Every present task's spec (declared path tasks and uploads): what an optimizer may group.
    pub fn specs(&self) -> BTreeMap<String, TaskSpec> {
        self.present_specs(&self.workspace())
    }

    /// The grouping the next regroup applies, over the present tasks.
    pub fn grouping(&self) -> Result<Grouping, Error> {
        let workspace = self.workspace();
        let present = self.present_specs(&workspace).into_keys().collect();
        match self.chosen() {
            Some(chosen) => Ok(crate::schedule::over_present(
                chosen.grouping.groups(),
                &present,
            )),
            None => crate::schedule::grouping(&workspace.config, self.selection(), &present),
        }
    }

    /// Fuses `grouping` over the present tasks without deploying anything: the check a grouping
    /// an optimizer proposes must pass before it is chosen (a task missing or named twice, an
    /// unknown task, or tasks that cannot share a function are errors saying which).
    pub fn check(&self, grouping: &Grouping) -> Result<(), Error> {
        let workspace = self.workspace();
        let specs = self.present_specs(&workspace);
        let mut seen = BTreeSet::new();
        for task in grouping.tasks() {
            if !specs.contains_key(task) {
                return Err(Error::usage(format!(
                    "task `{task}` is not a task of this project with code"
                )));
            }
            if !seen.insert(task.as_str()) {
                return Err(Error::usage(format!(
                    "task `{task}` is in more than one group"
                )));
            }
        }
        if let Some(missing) = specs.keys().find(|t| !seen.contains(t.as_str())) {
            return Err(Error::usage(format!("task `{missing}` is in no group")));
        }
        if grouping.iter().any(Vec::is_empty) {
            return Err(Error::usage("a group is empty"));
        }
        fuse_grouping_over(&workspace, &specs, grouping).map(drop)
    }

    /// Keeps `.fusionizer/live-grouping.json` (read by `fusionizer status`) true after a
    /// successful regroup: written when an optimizer's grouping went live, removed when
    /// fusion.toml's did.
    pub(super) fn note_live_grouping(&self, origin: &Origin) {
        let state_dir = self.with_config(crate::config::Config::state_dir);
        let written = match (origin.source, self.grouping()) {
            (Source::Static, _) => crate::status::LiveGrouping::clear(&state_dir),
            (source, Ok(groups)) => crate::status::LiveGrouping {
                source: source.word().to_string(),
                chosen_at: origin.chosen_at.clone().unwrap_or_default(),
                groups: groups.into_groups(),
                serve_url: format!("http://{}:{}", self.state.advertise_host, self.state.port),
            }
            .write(&state_dir),
            (_, Err(_)) => return,
        };
        if let Err(e) = written {
            tracing::warn!(
                "could not note the live grouping for `fusionizer status` in `{}`: {e}",
                state_dir.display()
            );
        }
    }
}

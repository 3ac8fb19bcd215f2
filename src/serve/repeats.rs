//! Failures that repeat. serve retries a function that failed to deploy every few seconds (and a
//! later regroup may try it again); the same failure is shown once, in full, and after that
//! only as a count, `Failed create shop-b: still failing (2 times)`, at 2, 4, 8, … attempts, so
//! the terminal is not flooded with the same lines every few seconds. Anything else (another
//! failure, a success) is shown as [`Progress`] shows it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::apply::engine::{ApplyObserver, ChangeResult, Outcome};
use crate::apply::progress::Progress;
use crate::plan::Change;
use crate::ui::report::{self, Event, Tone};

/// [`Progress`], quiet about a failure it already showed.
#[derive(Default)]
pub(super) struct Repeats {
    /// Function → its last failure and how many attempts in a row failed with it.
    failing: Mutex<BTreeMap<String, (String, u32)>>,
}

impl Repeats {
    /// Whether `function` last failed (its progress is held back until it ends differently).
    fn is_failing(&self, function: &str) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(function)
    }

    /// Whether a plan of `changes` is worth a line: not when each of them is a retry of a
    /// function that is failing already.
    pub(super) fn show_plan<'a>(&self, mut changes: impl Iterator<Item = &'a Change>) -> bool {
        !changes.all(|change| self.is_failing(&change.function))
    }
}

impl ApplyObserver for Repeats {
    fn started(&self, change: &Change) {
        if !self.is_failing(&change.function) {
            Progress.started(change);
        }
    }

    fn step(&self, change: &Change, message: &str) {
        if !self.is_failing(&change.function) {
            Progress.step(change, message);
        }
    }

    fn finished(&self, result: &ChangeResult) {
        let change = &result.change;
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &result.outcome {
            Outcome::Failed(message) => match failing.get_mut(&change.function) {
                Some((last, times)) if last == message => {
                    *times += 1;
                    if times.is_power_of_two() {
                        report::emit(Event::Status {
                            verb: "Failed".to_string(),
                            subject: format!(
                                "{} {}: still failing ({} times)",
                                change.action.word(),
                                change.function,
                                times
                            ),
                            tone: Tone::Bad,
                        });
                    }
                }
                _ => {
                    failing.insert(change.function.clone(), (message.clone(), 1));
                    drop(failing);
                    Progress.finished(result);
                }
            },
            _ => {
                failing.remove(&change.function);
                drop(failing);
                Progress.finished(result);
            }
        }
    }
}

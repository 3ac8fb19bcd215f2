//! What is desired of the platform, the one answer `plan`, `apply`, `destroy`, a saved plan and
//! serve's runner give before anything is observed: a grouping given with `--at`/`--phase`, the
//! grouping the live state records, nothing at all (a destroy), or artifacts the caller fused.

use crate::schedule::Selection;

/// What a plan is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// The grouping `--at`/`--phase` select (a saved plan made with them, or without them while
    /// nothing live recorded a grouping).
    Grouping(Selection),
    /// The grouping the live state records (no `--at`/`--phase`): serve's schedule, the phase it
    /// holds or its optimizer's choice, read again whenever the plan is made or checked.
    FollowLive,
    /// Nothing: every function the project owns is deleted (`destroy`, `plan --destroy`).
    Nothing,
    /// The artifacts the caller fused itself (serve's runner: the grouping it holds over the
    /// present tasks, uploads included), planned as they are.
    Fused,
}

impl Desired {
    /// `--at`/`--phase` when given, else what the live state records.
    pub fn given(selection: Option<Selection>) -> Desired {
        selection.map_or(Desired::FollowLive, Desired::Grouping)
    }

    /// Whether this is a destroy: nothing is desired.
    pub fn is_nothing(self) -> bool {
        self == Desired::Nothing
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn flags_given_pick_that_grouping_and_none_follow_the_live_state() {
        assert_eq!(
            Desired::given(Some(Selection::Phase(2))),
            Desired::Grouping(Selection::Phase(2))
        );
        assert_eq!(Desired::given(None), Desired::FollowLive);
        assert!(Desired::Nothing.is_nothing());
        assert!(!Desired::Grouping(Selection::At(Duration::ZERO)).is_nothing());
        assert!(!Desired::FollowLive.is_nothing());
    }
}

//! Who owns the live grouping, as recorded on the functions themselves: serve writes the
//! live-state annotations (`fusionizer.io/grouping-owner` and its companions, see
//! [`crate::contract::LIVE_STATE_ANNOTATIONS`]) on every function it deploys, so that `plan`,
//! `apply` and `status` in another process, or on another machine against the same Nuclio, pick
//! the grouping serve would. Pure: reading and writing annotation maps.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::contract::{
    ANNOTATION_CHOSEN_AT, ANNOTATION_GROUPING_OWNER, ANNOTATION_PHASE, ANNOTATION_SCHEDULE_ORIGIN,
    ANNOTATION_UPLOADED,
};
use crate::platform::LiveFunction;

/// Who chose the grouping a function was deployed for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupingOwner {
    /// serve follows fusion.toml's schedule; phase offsets count from `origin` (RFC 3339, UTC).
    Schedule {
        /// The instant offset 0 stands for, as written.
        origin: String,
    },
    /// serve holds this phase (counting from 1; 0 is the initial grouping, every task alone).
    Phase(usize),
    /// serve's optimizer (`feedback` or `command`) chose the grouping.
    Optimizer {
        /// `feedback` or `command`.
        source: String,
        /// When it chose it (RFC 3339), if recorded.
        chosen_at: Option<String>,
    },
}

impl GroupingOwner {
    /// The owner serve recorded in `annotations`, if a valid one.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<GroupingOwner> {
        let get = |key: &str| annotations.get(key).map(String::as_str);
        match get(ANNOTATION_GROUPING_OWNER)? {
            "schedule" => {
                let origin = get(ANNOTATION_SCHEDULE_ORIGIN)?;
                humantime::parse_rfc3339_weak(origin).ok()?;
                Some(GroupingOwner::Schedule {
                    origin: origin.to_string(),
                })
            }
            "phase" => get(ANNOTATION_PHASE)?
                .parse()
                .ok()
                .map(GroupingOwner::Phase),
            source @ ("feedback" | "command") => Some(GroupingOwner::Optimizer {
                source: source.to_string(),
                chosen_at: get(ANNOTATION_CHOSEN_AT).map(str::to_string),
            }),
            _ => None,
        }
    }

    /// The annotations that record this owner.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: &str| out.insert(k.to_string(), v.to_string());
        match self {
            GroupingOwner::Schedule { origin } => {
                put(ANNOTATION_GROUPING_OWNER, "schedule");
                put(ANNOTATION_SCHEDULE_ORIGIN, origin);
            }
            GroupingOwner::Phase(n) => {
                put(ANNOTATION_GROUPING_OWNER, "phase");
                put(ANNOTATION_PHASE, &n.to_string());
            }
            GroupingOwner::Optimizer { source, chosen_at } => {
                put(ANNOTATION_GROUPING_OWNER, source);
                if let Some(at) = chosen_at {
                    put(ANNOTATION_CHOSEN_AT, at);
                }
            }
        }
        out
    }

    /// The schedule's offset at `now` (zero when the origin is in the future).
    pub fn offset_at(origin: &str, now: SystemTime) -> Option<Duration> {
        let origin = humantime::parse_rfc3339_weak(origin).ok()?;
        Some(now.duration_since(origin).unwrap_or_default())
    }

    /// A short description for plan and status: `serve's schedule from 2026-…`,
    /// `serve holding phase 2`, `serve's feedback optimizer (chosen at …)`.
    pub fn describe(&self) -> String {
        match self {
            GroupingOwner::Schedule { origin } => {
                format!("serve's schedule, counting from {origin}")
            }
            GroupingOwner::Phase(0) => {
                "serve, holding the initial grouping (every task alone)".to_string()
            }
            GroupingOwner::Phase(n) => format!("serve, holding phase {n}"),
            GroupingOwner::Optimizer { source, chosen_at } => match chosen_at {
                Some(at) => format!("serve's `{source}` optimizer (chosen at {at})"),
                None => format!("serve's `{source}` optimizer"),
            },
        }
    }
}

/// The owner most of `owned` record (ties go to the last in [`GroupingOwner`]'s order, so an
/// optimizer's choice wins over a phase); `None` when none records one.
pub fn live_owner(owned: &[LiveFunction]) -> Option<GroupingOwner> {
    let mut counts: BTreeMap<GroupingOwner, usize> = BTreeMap::new();
    for f in owned {
        if let Some(owner) = GroupingOwner::from_annotations(&f.annotations) {
            *counts.entry(owner).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|(a, m), (b, n)| m.cmp(n).then(a.cmp(b)))
        .map(|(owner, _)| owner)
}

/// The tasks of `function` that were uploaded to serve (`fusionizer.io/uploaded`), sorted.
pub fn uploaded_tasks(function: &LiveFunction) -> Vec<String> {
    function.task_list(ANNOTATION_UPLOADED)
}

/// The `fusionizer.io/uploaded` annotation for a function holding `uploaded` tasks (none when
/// it holds none).
pub fn uploaded_annotation(uploaded: &[String]) -> BTreeMap<String, String> {
    let mut sorted = uploaded.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        BTreeMap::new()
    } else {
        BTreeMap::from([(ANNOTATION_UPLOADED.to_string(), sorted.join(","))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_through_their_annotations() {
        for owner in [
            GroupingOwner::Schedule {
                origin: "2026-12-07T21:00:00.000Z".to_string(),
            },
            GroupingOwner::Phase(0),
            GroupingOwner::Phase(2),
            GroupingOwner::Optimizer {
                source: "feedback".to_string(),
                chosen_at: Some("2026-12-07T21:05:00Z".to_string()),
            },
        ] {
            assert_eq!(
                GroupingOwner::from_annotations(&owner.annotations()),
                Some(owner)
            );
        }
        let broken = BTreeMap::from([
            (
                ANNOTATION_GROUPING_OWNER.to_string(),
                "schedule".to_string(),
            ),
            (
                ANNOTATION_SCHEDULE_ORIGIN.to_string(),
                "yesterday".to_string(),
            ),
        ]);
        assert_eq!(GroupingOwner::from_annotations(&broken), None);
    }

    #[test]
    fn the_offset_counts_from_the_origin() {
        let origin = "2026-12-07T21:00:00Z";
        let now = humantime::parse_rfc3339("2026-12-07T21:01:30Z").unwrap();
        assert_eq!(
            GroupingOwner::offset_at(origin, now),
            Some(Duration::from_secs(90))
        );
        let before = humantime::parse_rfc3339("2026-12-07T20:00:00Z").unwrap();
        assert_eq!(
            GroupingOwner::offset_at(origin, before),
            Some(Duration::ZERO)
        );
    }
}

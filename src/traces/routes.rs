//! The routes document: which function answers for which task, and who chose the grouping
//! behind them, as serve's `GET /-/routes` answers it (README, "serve: HTTP API") and
//! `fusionizer optimize --live` reads it.
//!
//! Plain data shared by serve (which writes it from its route table) and the CLI (which reads
//! the live grouping from it), like the trace document beside it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The route table a running serve has live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesDoc {
    /// Task → the function that answers for it, by task name.
    pub routes: BTreeMap<String, RouteDoc>,
    /// Who chose the grouping the routes serve.
    pub grouping: GroupingDoc,
}

/// The function that answers for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDoc {
    /// The function's name.
    pub function: String,
    /// Every task the function holds, sorted (the route's own among them).
    pub tasks: Vec<String>,
    /// The digest of the function's build.
    pub digest: String,
    /// Live state word (`ready`, …) when the table was built.
    pub state: String,
    /// Requests in flight on the function now.
    pub inflight: usize,
}

/// Where the grouping behind the routes came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupingDoc {
    /// Who chose it.
    pub source: Source,
    /// The 1-based phase, when the grouping is a phase's.
    pub phase: Option<usize>,
    /// When an optimizer chose it (RFC 3339, UTC).
    pub chosen_at: Option<String>,
}

/// Who chose the grouping serve applies: fusion.toml's phases, or an optimizer
/// (`[optimizer] kind`, docs/optimizers.md). It labels every regroup (the `reason` of
/// `fusionizer_transitions`) and shows in `/-/routes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `[[phase]]` schedule (or `--phase`): what fusion.toml says.
    #[default]
    Static,
    /// The `feedback` optimizer: `fusionizer optimize`'s algorithm over recent traces.
    Feedback,
    /// The `command` optimizer: an external program.
    Command,
}

impl Source {
    /// The word used in logs, metrics and JSON.
    pub fn word(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Feedback => "feedback",
            Source::Command => "command",
        }
    }
}

impl RoutesDoc {
    /// The tasks `keep` accepts, grouped by the function that holds them: the groups in the
    /// functions' name order, each group's tasks in name order.
    pub fn groups(&self, keep: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
        let mut by_function: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (task, route) in &self.routes {
            if keep(task) {
                by_function
                    .entry(&route.function)
                    .or_default()
                    .push(task.clone());
            }
        }
        by_function.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(function: &str, tasks: &[&str]) -> RouteDoc {
        RouteDoc {
            function: function.into(),
            tasks: tasks.iter().map(ToString::to_string).collect(),
            digest: "sha256:abc".into(),
            state: "ready".into(),
            inflight: 0,
        }
    }

    #[test]
    fn the_document_reads_back_what_it_writes_in_the_wire_form() {
        let doc = RoutesDoc {
            routes: BTreeMap::from([
                ("a".to_string(), route("shop-a-b", &["a", "b"])),
                ("b".to_string(), route("shop-a-b", &["a", "b"])),
            ]),
            grouping: GroupingDoc {
                source: Source::Feedback,
                phase: None,
                chosen_at: Some("2026-12-06T20:14:03.118Z".into()),
            },
        };
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            text,
            r#"{"routes":{"a":{"function":"shop-a-b","tasks":["a","b"],"digest":"sha256:abc","state":"ready","inflight":0},"b":{"function":"shop-a-b","tasks":["a","b"],"digest":"sha256:abc","state":"ready","inflight":0}},"grouping":{"source":"feedback","phase":null,"chosen_at":"2026-12-06T20:14:03.118Z"}}"#
        );
        assert_eq!(serde_json::from_str::<RoutesDoc>(&text).unwrap(), doc);
    }

    #[test]
    fn the_groups_hold_the_tasks_asked_for_by_function_in_name_order() {
        let doc = RoutesDoc {
            routes: BTreeMap::from([
                ("c".to_string(), route("shop-c", &["c"])),
                ("b".to_string(), route("shop-a-b", &["a", "b", "up"])),
                ("a".to_string(), route("shop-a-b", &["a", "b", "up"])),
                ("up".to_string(), route("shop-a-b", &["a", "b", "up"])),
            ]),
            grouping: GroupingDoc {
                source: Source::Static,
                phase: Some(1),
                chosen_at: None,
            },
        };
        assert_eq!(
            doc.groups(|task| task != "up"),
            vec![
                vec!["a".to_string(), "b".to_string()],
                vec!["c".to_string()]
            ]
        );
        assert_eq!(doc.groups(|task| task == "c"), vec![vec!["c".to_string()]]);
    }
}

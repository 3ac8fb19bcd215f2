//! The route table: which function answers for which task, swapped atomically on regroup.
//!
//! Requests take an [`InFlightGuard`] on the function they are sent to, so a regroup can drain
//! an old function (wait until nothing is in flight, bounded) before it is deleted.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::inflight::{InFlight, InFlightGuard};
use crate::platform::Invoker;

/// One deployed function that answers requests.
pub struct FunctionRoute {
    pub name: String,
    /// Sorted tasks the function holds.
    pub tasks: Vec<String>,
    pub digest: String,
    /// Live state word (`ready`, …) when the table was built.
    pub state: String,
    pub invoker: Arc<dyn Invoker>,
    inflight: Arc<InFlight>,
}

impl FunctionRoute {
    pub fn new(
        name: String,
        tasks: Vec<String>,
        digest: String,
        state: String,
        invoker: Arc<dyn Invoker>,
    ) -> Self {
        FunctionRoute {
            name,
            tasks,
            digest,
            state,
            invoker,
            inflight: Arc::default(),
        }
    }

    /// Marks one request in flight until the guard drops.
    pub fn enter(&self) -> InFlightGuard {
        self.inflight.enter()
    }

    pub fn inflight(&self) -> usize {
        self.inflight.count()
    }

    /// Waits until no request is in flight, or `timeout` passes. Returns whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inflight
            .wait_idle(tokio::time::Instant::now() + timeout)
            .await
    }
}

/// Who chose the grouping serve applies: fusion.toml's phases, or an optimizer
/// (`[optimizer] kind`, docs/optimizers.md). It labels every regroup (the `reason` of
/// `fusionizer_transitions`) and shows in `/-/routes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Where the grouping behind a route table came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub source: Source,
    /// The 1-based phase, when the grouping is a phase's.
    pub phase: Option<usize>,
    /// When an optimizer chose it (RFC 3339, UTC).
    pub chosen_at: Option<String>,
}

/// Task → function, and the functions by name.
#[derive(Default)]
pub struct RouteTable {
    pub by_task: BTreeMap<String, Arc<FunctionRoute>>,
    /// Who chose the grouping these routes serve.
    pub origin: Origin,
}

impl RouteTable {
    /// The distinct functions of the table, by name.
    pub fn functions(&self) -> BTreeMap<String, Arc<FunctionRoute>> {
        self.by_task
            .values()
            .map(|f| (f.name.clone(), f.clone()))
            .collect()
    }

    /// A fixed-width table for the terminal: task, function, co-located tasks.
    pub fn render(&self) -> String {
        if self.by_task.is_empty() {
            return "  (no routes)\n".to_string();
        }
        let width = self
            .by_task
            .keys()
            .map(|t| t.len() + 1)
            .max()
            .unwrap_or(5)
            .max(5);
        let fwidth = self
            .by_task
            .values()
            .map(|f| f.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let mut out = format!("  {:width$}  {:fwidth$}  WITH\n", "ROUTE", "FUNCTION");
        for (task, f) in &self.by_task {
            let others: Vec<&str> = f
                .tasks
                .iter()
                .filter(|t| *t != task)
                .map(String::as_str)
                .collect();
            let with = if others.is_empty() {
                "-".to_string()
            } else {
                others.join(",")
            };
            let route = format!("/{task}");
            out.push_str(&format!("  {route:width$}  {:fwidth$}  {with}\n", f.name));
        }
        out
    }

    /// The table as rows (`ROUTE`, `FUNCTION`, `WITH` header first), for the progress output.
    pub fn rows(&self) -> Vec<Vec<String>> {
        let mut rows = vec![vec![
            "ROUTE".to_string(),
            "FUNCTION".to_string(),
            "WITH".to_string(),
        ]];
        for (task, f) in &self.by_task {
            let others: Vec<&str> = f
                .tasks
                .iter()
                .filter(|t| *t != task)
                .map(String::as_str)
                .collect();
            rows.push(vec![
                format!("/{task}"),
                f.name.clone(),
                if others.is_empty() {
                    "-".to_string()
                } else {
                    others.join(",")
                },
            ]);
        }
        rows
    }

    /// The JSON served at `/-/routes`.
    pub fn to_json(&self) -> serde_json::Value {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .by_task
            .iter()
            .map(|(task, f)| {
                (
                    task.clone(),
                    serde_json::json!({
                        "function": f.name,
                        "tasks": f.tasks,
                        "digest": f.digest,
                        "state": f.state,
                        "inflight": f.inflight(),
                    }),
                )
            })
            .collect();
        let origin = &self.origin;
        serde_json::json!({
            "routes": routes,
            "grouping": {
                "source": origin.source.word(),
                "phase": origin.phase,
                "chosen_at": origin.chosen_at,
            },
        })
    }
}

/// The current table behind a lock that is only held to clone or replace the `Arc`: a swap is
/// one pointer store, so a request sees either the old table or the new one, never a mix.
#[derive(Default)]
pub struct Routes(RwLock<Arc<RouteTable>>);

impl Routes {
    pub fn current(&self) -> Arc<RouteTable> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the table, returning the previous one.
    pub fn swap(&self, table: RouteTable) -> Arc<RouteTable> {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *guard, Arc::new(table))
    }
}

//! The route table: which function answers for which task, swapped atomically on regroup.
//!
//! Requests take an [`InFlightGuard`] on the function they are sent to, so a regroup can drain
//! an old function (wait until nothing is in flight, bounded) before it is deleted.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::inflight::{InFlight, InFlightGuard};
use crate::platform::Invoker;
pub use crate::traces::routes::Source;
use crate::traces::routes::{GroupingDoc, RouteDoc, RoutesDoc};

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
    /// The function's other tasks than `task`, in name order.
    pub fn others(&self, task: &str) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|t| *t != task)
            .map(String::as_str)
            .collect()
    }

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
            let others = f.others(task);
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
            let others = f.others(task);
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

    /// The document served at `/-/routes`.
    pub fn document(&self) -> RoutesDoc {
        let routes = self
            .by_task
            .iter()
            .map(|(task, f)| {
                let route = RouteDoc {
                    function: f.name.clone(),
                    tasks: f.tasks.clone(),
                    digest: f.digest.clone(),
                    state: f.state.clone(),
                    inflight: f.inflight(),
                };
                (task.clone(), route)
            })
            .collect();
        let origin = &self.origin;
        RoutesDoc {
            routes,
            grouping: GroupingDoc {
                source: origin.source,
                phase: origin.phase,
                chosen_at: origin.chosen_at.clone(),
            },
        }
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

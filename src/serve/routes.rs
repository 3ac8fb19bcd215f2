//! The route table: which function answers for which task, swapped atomically on regroup.
//!
//! Requests take an [`InflightGuard`] on the function they are sent to, so a regroup can drain
//! an old function (wait until nothing is in flight, bounded) before it is deleted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

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
    inflight: AtomicUsize,
    idle: Notify,
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
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    /// Marks one request in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InflightGuard(self.clone())
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight, or `timeout` passes. Returns whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.inflight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inflight() == 0;
            }
        }
    }
}

/// Keeps a request counted as in flight on its function.
pub struct InflightGuard(Arc<FunctionRoute>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Task → function, and the functions by name.
#[derive(Default)]
pub struct RouteTable {
    pub by_task: BTreeMap<String, Arc<FunctionRoute>>,
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
        serde_json::json!({ "routes": routes })
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

//! The apply engine: carries out a [`Plan`] on a [`Platform`], reusable by `apply` and `serve`.
//!
//! Order: every create, update and replacement first, up to `parallelism` at a time, each
//! returning once the function is ready (`Platform::deploy` waits); a replacement deletes the
//! broken function (forced) and deploys it again, accepting the brief gap. Then
//! [`ApplyHooks::before_deletes`] runs (serve switches routes and drains there), and only then
//! the deletes. A delete is skipped when it would remove the current home of a task whose new
//! home failed, so every task stays served; other work goes on. Rerunning converges because the
//! next plan sees whatever did happen.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;

use crate::fuse::Artifact;
use crate::plan::{Action, Change, Plan};
use crate::platform::{DeployProgress, Platform, PlatformError};

/// What happened to one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The platform refused; the message includes the platform's framed output.
    Failed(String),
    /// Skipped on purpose, with why.
    NotAttempted(String),
}

/// One change and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeResult {
    pub change: Change,
    pub outcome: Outcome,
    /// How long the platform took (zero when not attempted).
    pub elapsed: Duration,
}

/// The outcome of every change of a plan, in plan order (only those decided so far while the
/// engine is still running).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub results: Vec<ChangeResult>,
}

impl ApplyReport {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }

    pub fn applied(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Applied))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn not_attempted(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotAttempted(_)))
    }

    /// Every change was applied.
    pub fn is_success(&self) -> bool {
        self.results
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Applied))
    }

    /// `N applied, M failed, K not attempted`
    pub fn summary(&self) -> String {
        format!(
            "{} applied, {} failed, {} not attempted",
            self.applied(),
            self.failed(),
            self.not_attempted()
        )
    }

    /// The outcome for `function`, if decided.
    pub fn outcome(&self, function: &str) -> Option<&Outcome> {
        self.results
            .iter()
            .find(|r| r.change.function == function)
            .map(|r| &r.outcome)
    }

    /// The tasks whose new function is live (created, updated or replaced successfully).
    pub fn deployed_tasks(&self) -> BTreeSet<String> {
        self.results
            .iter()
            .filter(|r| r.change.action.deploys() && r.outcome == Outcome::Applied)
            .flat_map(|r| r.change.tasks.iter().cloned())
            .collect()
    }
}

/// Progress callbacks, for bars and CI log lines. All methods default to doing nothing.
pub trait ApplyObserver: Send + Sync {
    /// The platform starts working on `change`.
    fn started(&self, _change: &Change) {}
    /// A progress message from the platform (`building`, `starting workers`, …).
    fn step(&self, _change: &Change, _message: &str) {}
    /// `result` is final (including not-attempted changes, which never start).
    fn finished(&self, _result: &ChangeResult) {}
}

/// Reports nothing.
pub struct NoObserver;

impl ApplyObserver for NoObserver {}

/// Hooks into the apply sequence (serve switches routes and drains in `before_deletes`).
#[async_trait]
pub trait ApplyHooks: Send + Sync {
    /// Called once, after every create/update/replace finished (applied or failed) and before
    /// any delete — also when the plan has no deletes. `Err(reason)` skips every delete (each
    /// reported not attempted with `reason`).
    async fn before_deletes(&self, _report_so_far: &ApplyReport) -> Result<(), String> {
        Ok(())
    }
}

/// No hooks.
pub struct NoHooks;

impl ApplyHooks for NoHooks {}

/// How to apply.
pub struct ApplyOptions<'a> {
    /// How many creates/updates/replacements (and then deletes) run at once; at least 1.
    pub parallelism: usize,
    pub observer: &'a dyn ApplyObserver,
    pub hooks: &'a dyn ApplyHooks,
}

impl Default for ApplyOptions<'_> {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 4,
            observer: &NoObserver,
            hooks: &NoHooks,
        }
    }
}

struct Forward<'a> {
    observer: &'a dyn ApplyObserver,
    change: &'a Change,
}

impl DeployProgress for Forward<'_> {
    fn step(&self, _function: &str, message: &str) {
        self.observer.step(self.change, message);
    }
}

fn describe(err: &PlatformError) -> String {
    match err {
        PlatformError::Deploy {
            message, detail, ..
        } => match detail {
            Some(detail) => format!("{message}\n{detail}"),
            None => message.clone(),
        },
        other => crate::error::Error::chain(other),
    }
}

async fn deploy_one(
    platform: &dyn Platform,
    change: &Change,
    artifacts: &[Artifact],
    observer: &dyn ApplyObserver,
) -> ChangeResult {
    let artifact = artifacts.iter().find(|a| a.name == change.function);
    let result = |outcome, elapsed| ChangeResult {
        change: change.clone(),
        outcome,
        elapsed,
    };
    let artifact = match artifact {
        Some(a) if Some(&a.digest) == change.new_digest.as_ref() => a,
        Some(a) => {
            return result(
                Outcome::Failed(format!(
                    "the fused artifact has digest `{}`, the plan expected `{}`",
                    a.digest,
                    change.new_digest.as_deref().unwrap_or("none")
                )),
                Duration::ZERO,
            )
        }
        None => {
            return result(
                Outcome::Failed("no fused artifact has this name".to_string()),
                Duration::ZERO,
            )
        }
    };
    observer.started(change);
    let start = Instant::now();
    if change.action == Action::Replace {
        observer.step(change, "deleting the broken function");
        if let Err(e) = platform.delete(&change.function, true).await {
            return result(
                Outcome::Failed(format!(
                    "could not delete the broken function: {}",
                    describe(&e)
                )),
                start.elapsed(),
            );
        }
    }
    let progress = Forward { observer, change };
    let outcome = match platform.deploy(artifact, &progress).await {
        Ok(()) => Outcome::Applied,
        Err(e) => Outcome::Failed(describe(&e)),
    };
    result(outcome, start.elapsed())
}

async fn delete_one(
    platform: &dyn Platform,
    change: &Change,
    observer: &dyn ApplyObserver,
) -> ChangeResult {
    observer.started(change);
    let start = Instant::now();
    // A function that is not ready may be mid-provisioning; nuctl refuses those without force.
    let force = change.live_state.as_deref() != Some("ready");
    let outcome = match platform.delete(&change.function, force).await {
        Ok(()) => Outcome::Applied,
        Err(e) => Outcome::Failed(describe(&e)),
    };
    ChangeResult {
        change: change.clone(),
        outcome,
        elapsed: start.elapsed(),
    }
}

/// Why `delete` must not run: it is the current home of a task whose new home failed.
fn unsafe_delete(delete: &Change, report: &ApplyReport) -> Option<String> {
    let stranded: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.change.action.deploys() && r.outcome != Outcome::Applied)
        .flat_map(|r| {
            r.change
                .tasks
                .iter()
                .filter(|t| delete.tasks.contains(t))
                .map(move |t| format!("`{t}` (its new function `{}` failed)", r.change.function))
        })
        .collect();
    if stranded.is_empty() {
        None
    } else {
        Some(format!("it still serves {}", stranded.join(", ")))
    }
}

fn in_plan_order(plan: &Plan, mut results: Vec<ChangeResult>) -> Vec<ChangeResult> {
    let position = |name: &str| plan.changes.iter().position(|c| c.function == name);
    results.sort_by_key(|r| position(&r.change.function));
    results
}

/// Carries out `plan` with the fused `artifacts` (each deploying change needs the artifact of
/// its name and digest). Never fails as a whole: every change gets an [`Outcome`].
pub async fn execute(
    platform: &dyn Platform,
    plan: &Plan,
    artifacts: &[Artifact],
    options: &ApplyOptions<'_>,
) -> ApplyReport {
    let parallelism = options.parallelism.max(1);
    let observer = options.observer;

    // Futures are built eagerly and bounded by a semaphore (rather than stream combinators over
    // borrowing closures) so the returned future is provably `Send` for callers that spawn it.
    let permits = tokio::sync::Semaphore::new(parallelism);
    let to_deploy: Vec<&Change> = plan.changes.iter().filter(|c| c.action.deploys()).collect();
    let deploys: Vec<ChangeResult> = join_all(to_deploy.into_iter().map(|change| {
        let permits = &permits;
        async move {
            let _permit = permits.acquire().await;
            let result = deploy_one(platform, change, artifacts, observer).await;
            observer.finished(&result);
            result
        }
    }))
    .await;
    let mut report = ApplyReport {
        results: in_plan_order(plan, deploys),
    };

    let hook = options.hooks.before_deletes(&report).await;

    let mut to_delete = Vec::new();
    for change in plan.changes.iter().filter(|c| !c.action.deploys()) {
        let skip = match &hook {
            Err(reason) => Some(reason.clone()),
            Ok(()) => unsafe_delete(change, &report),
        };
        match skip {
            Some(reason) => {
                let r = ChangeResult {
                    change: change.clone(),
                    outcome: Outcome::NotAttempted(reason),
                    elapsed: Duration::ZERO,
                };
                observer.finished(&r);
                report.results.push(r);
            }
            None => to_delete.push(change),
        }
    }
    let deletes: Vec<ChangeResult> = join_all(to_delete.into_iter().map(|change| {
        let permits = &permits;
        async move {
            let _permit = permits.acquire().await;
            let result = delete_one(platform, change, observer).await;
            observer.finished(&result);
            result
        }
    }))
    .await;
    report.results.extend(deletes);
    report.results = in_plan_order(plan, report.results);
    report
}

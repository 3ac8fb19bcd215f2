//! The next grouping, from what serve observed: Fusionize's rules over a trace document
//! (`docs/optimize.md`).
//!
//! [`propose`] is pure: it takes the trace document ([`crate::traces`]), the tasks' specs and
//! the grouping in force, and returns a [`Proposal`] that says, for every observed edge, whether
//! it was inlined and why. The rules:
//!
//! - the connected components of the observed **synchronous** edges (with at least `min_calls`
//!   calls) form the groups;
//! - an asynchronous callee stays out of its caller's group, unless it is also called
//!   synchronously and joins through that edge (the explanation says so);
//! - a group never spans runtimes or conflicting specs: edges are taken hottest first
//!   (most calls; ties by caller, then callee) and an edge whose two groups would not fuse
//!   ([`crate::fuse::check_group`]) is left out, so the split is deterministic;
//! - a task the traces never mention (no invocation, no call either way), and a task without
//!   code to check, keeps the company the current grouping gives it: the unseen members of each
//!   current group stay together; a task that was seen but has no inlined edge runs alone.
//!
//! `fusionizer optimize` renders a proposal ([`render`], [`mermaid`]) and turns it into a diff
//! of fusion.toml ([`edit`]); serve's `feedback` optimizer uses the same [`propose`] through
//! [`feedback`] and damps it with [`Hysteresis`]; the `command` optimizer runs an external program
//! through [`command`].

#![warn(missing_docs)]

pub mod command;
pub mod edit;
pub mod mermaid;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{OptimizerConfig, TaskSpec};
use crate::fuse::{self, FuseError};
use crate::schedule::Grouping;
use crate::traces::{Mode, TraceDoc, Via};

/// The version of the `fusionizer optimize --output json` document (`docs/optimize-schema.json`).
pub const FORMAT_VERSION: u32 = 1;

/// The knobs of the algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Edges with fewer calls (summed over both ways of travelling) are ignored.
    pub min_calls: u64,
}

/// What the algorithm works on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The project name (names the functions in explanations).
    pub project: &'a str,
    /// The tasks that have code, by name: only these can be checked and grouped.
    pub specs: &'a BTreeMap<String, TaskSpec>,
    /// The grouping in force: every task of the project in exactly one group.
    pub current: &'a Grouping,
    /// The observed calls.
    pub traces: &'a TraceDoc,
}

/// What happened to one edge, in a word (`docs/optimize.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// A synchronous edge whose two tasks now share a function.
    Inlined,
    /// Fewer calls than `min_calls`: ignored.
    BelowMinCalls,
    /// Inlining it would put tasks that cannot be fused into one function.
    Conflict,
    /// An asynchronous call: the callee stays out of the caller's group.
    AsyncApart,
    /// An asynchronous call whose callee shares the caller's group anyway, because it is also
    /// called synchronously.
    AsyncJoined,
    /// A task of the edge is not declared, or has no code to check.
    UnknownTask,
    /// A task calling itself: nothing to group.
    SelfCall,
}

impl Decision {
    /// The word used in JSON and in `--explain`.
    pub fn word(self) -> &'static str {
        match self {
            Decision::Inlined => "inlined",
            Decision::BelowMinCalls => "below-min-calls",
            Decision::Conflict => "conflict",
            Decision::AsyncApart => "async-apart",
            Decision::AsyncJoined => "async-joined",
            Decision::UnknownTask => "unknown-task",
            Decision::SelfCall => "self-call",
        }
    }
}

/// One observed edge (calls from `caller` to `callee` in one mode, both ways of travelling
/// summed) and what the algorithm made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeOutcome {
    /// The calling task.
    pub caller: String,
    /// The called task.
    pub callee: String,
    /// Whether the caller waited.
    pub mode: Mode,
    /// Calls observed (in-process plus proxied).
    pub calls: u64,
    /// Of those, calls that already ran in-process.
    pub in_process: u64,
    /// Calls that failed (status ≥ 500 or transport).
    pub errors: u64,
    /// What the algorithm did with it.
    pub decision: Decision,
    /// Why, in one sentence.
    pub reason: String,
}

/// How much of the synchronous call volume runs in-process, before and after.
///
/// The expected gain is the share of all observed synchronous calls between two different,
/// known tasks that the proposal turns from proxied into in-process, minus the share it turns
/// the other way: `(in_process_after - in_process_before) / sync_calls`, between -1 and 1
/// (0 when there are no synchronous calls). A proxied call costs a round trip through serve
/// (about a millisecond on loopback, `examples/bench`) where an in-process one costs
/// microseconds, so the share of calls moved is what the end-to-end latency follows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gain {
    /// Synchronous calls between two different known tasks.
    pub sync_calls: u64,
    /// Of those, calls between tasks that share a function in the current grouping.
    pub in_process_before: u64,
    /// Of those, calls between tasks that share a function in the proposal.
    pub in_process_after: u64,
    /// `(in_process_after - in_process_before) / sync_calls`.
    pub expected: f64,
}

/// Why a task is where the proposal puts it, when no edge says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNote {
    /// The task.
    pub task: String,
    /// Why it is where it is.
    pub reason: String,
}

/// The outcome of [`propose`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The grouping in force (sorted groups of sorted tasks).
    pub current: Grouping,
    /// The proposed grouping (sorted groups of sorted tasks).
    pub proposed: Grouping,
    /// Every observed edge with its decision, sorted by caller, callee, mode.
    pub edges: Vec<EdgeOutcome>,
    /// Tasks kept where the current grouping has them, or seen without an inlined edge.
    pub tasks: Vec<TaskNote>,
    /// The expected gain of moving from `current` to `proposed`.
    pub gain: Gain,
}

impl Proposal {
    /// Whether the proposal differs from the grouping in force.
    pub fn changed(&self) -> bool {
        self.current != self.proposed
    }

    /// The same traffic, with `proposed` in place of the computed proposal (e.g. the grouping an
    /// optimizer in serve chose): the edges keep their decisions, the gain is recomputed.
    #[must_use]
    pub fn with_proposed(mut self, proposed: Grouping) -> Self {
        let together = |a: &str, b: &str| proposed.together(a, b);
        let after: u64 = self
            .edges
            .iter()
            .filter(|e| e.mode == Mode::Sync && e.caller != e.callee)
            .filter(|e| together(&e.caller, &e.callee))
            .map(|e| e.calls)
            .sum();
        self.gain.in_process_after = after.min(self.gain.sync_calls);
        if self.gain.sync_calls > 0 {
            #[allow(clippy::cast_precision_loss)] // call counts far below 2^52
            let expected = (self.gain.in_process_after as f64 - self.gain.in_process_before as f64)
                / self.gain.sync_calls as f64;
            self.gain.expected = expected;
        }
        self.proposed = proposed;
        self
    }
}

/// Union-find over task names, with the members of each root kept for conflict checks.
struct Groups {
    parent: BTreeMap<String, String>,
    members: BTreeMap<String, BTreeSet<String>>,
}

impl Groups {
    fn new<'a>(tasks: impl IntoIterator<Item = &'a String>) -> Self {
        let mut groups = Groups {
            parent: BTreeMap::new(),
            members: BTreeMap::new(),
        };
        for task in tasks {
            groups.parent.insert(task.clone(), task.clone());
            groups
                .members
                .insert(task.clone(), BTreeSet::from([task.clone()]));
        }
        groups
    }

    fn root(&self, task: &str) -> String {
        let mut at = task.to_string();
        while let Some(up) = self.parent.get(&at).filter(|up| **up != at) {
            at.clone_from(up);
        }
        at
    }

    fn union(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra == rb {
            return;
        }
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        let moved = self.members.remove(&gone).unwrap_or_default();
        self.members.entry(keep.clone()).or_default().extend(moved);
        self.parent.insert(gone, keep);
    }
}

/// Sums the edges of `traces` over `via`: (caller, callee, mode) → (calls, in-process, errors).
fn aggregate(traces: &TraceDoc) -> Edges {
    let mut out = Edges::new();
    for edge in &traces.edges {
        let entry = out
            .entry((edge.caller.clone(), edge.callee.clone(), edge.mode))
            .or_default();
        entry.0 += edge.count;
        if edge.via == Via::InProcess {
            entry.1 += edge.count;
        }
        entry.2 += edge.errors;
    }
    out
}

fn joined(problems: &[FuseError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// (caller, callee, mode) → (calls, of them in-process, errors), summed over `via`.
type Edges = BTreeMap<(String, String, Mode), (u64, u64, u64)>;

/// Which tasks the proposal may move and which it can check.
struct Scope {
    /// Every task of the current grouping.
    all: BTreeSet<String>,
    /// Those with code to check (a spec).
    checkable: BTreeSet<String>,
    /// Those checkable and seen in the traces: the only ones the proposal regroups.
    movable: BTreeSet<String>,
}

impl Scope {
    fn of(input: &Input<'_>, edges: &Edges) -> Self {
        let all: BTreeSet<String> = input.current.tasks().cloned().collect();
        let checkable: BTreeSet<String> = all
            .iter()
            .filter(|t| input.specs.contains_key(*t))
            .cloned()
            .collect();
        let mut seen: BTreeSet<String> = input
            .traces
            .tasks
            .iter()
            .filter(|t| t.invocations > 0)
            .map(|t| t.task.clone())
            .collect();
        for (caller, callee, _) in edges.keys() {
            seen.insert(caller.clone());
            seen.insert(callee.clone());
        }
        let movable = checkable.intersection(&seen).cloned().collect();
        Scope {
            all,
            checkable,
            movable,
        }
    }
}

/// The decision on each synchronous edge that was considered, by (caller, callee).
type SyncReasons = BTreeMap<(String, String), (Decision, String)>;

/// The next grouping by Fusionize's rules (module docs), with every decision explained.
pub fn propose(input: Input<'_>, options: Options) -> Proposal {
    let edges = aggregate(input.traces);
    let scope = Scope::of(&input, &edges);
    let (groups, sync_reasons) = inline_sync_edges(&input, options, &edges, &scope);
    let (proposed, notes) = proposed_grouping(&input, &groups, &scope);
    let current = input.current.clone();
    let (outcomes, gain) =
        edge_outcomes(&edges, options, &scope, &sync_reasons, &current, &proposed);
    Proposal {
        current,
        proposed,
        edges: outcomes,
        tasks: notes,
        gain,
    }
}

/// Merges the groups of the synchronous edges, hottest first (ties by caller then callee),
/// wherever the merged group can share a function; says why for each edge.
fn inline_sync_edges(
    input: &Input<'_>,
    options: Options,
    edges: &Edges,
    scope: &Scope,
) -> (Groups, SyncReasons) {
    let mut sync: Vec<(&String, &String, u64)> = edges
        .iter()
        .filter(|((caller, callee, mode), (calls, _, _))| {
            *mode == Mode::Sync
                && caller != callee
                && *calls >= options.min_calls
                && scope.checkable.contains(caller)
                && scope.checkable.contains(callee)
        })
        .map(|((caller, callee, _), (calls, _, _))| (caller, callee, *calls))
        .collect();
    sync.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1))));

    let mut groups = Groups::new(scope.movable.iter());
    let mut reasons = SyncReasons::new();
    for (caller, callee, calls) in sync {
        let key = (caller.clone(), callee.clone());
        let (ra, rb) = (groups.root(caller), groups.root(callee));
        if ra == rb {
            let why = format!("sync, {calls} calls: already in one group through hotter edges");
            reasons.insert(key, (Decision::Inlined, why));
            continue;
        }
        let union: BTreeSet<&String> = groups.members[&ra]
            .iter()
            .chain(groups.members[&rb].iter())
            .collect();
        let specs: Vec<&TaskSpec> = union.iter().map(|t| &input.specs[*t]).collect();
        let problems = fuse::check_group(input.project, &specs);
        let decision = if problems.is_empty() {
            groups.union(caller, callee);
            let why = format!(
                "sync, {calls} calls ≥ min-calls {}: inlined",
                options.min_calls
            );
            (Decision::Inlined, why)
        } else {
            let names: Vec<&str> = union.iter().map(|s| s.as_str()).collect();
            let why = format!(
                "sync, {calls} calls, but {} cannot share a function: {}",
                names.join(", "),
                joined(&problems)
            );
            (Decision::Conflict, why)
        };
        reasons.insert(key, decision);
    }
    (groups, reasons)
}

/// The proposed grouping, normalised: the merged groups of the movable tasks, plus the other
/// tasks as the current grouping has them; with a note on each task that did not move.
fn proposed_grouping(
    input: &Input<'_>,
    groups: &Groups,
    scope: &Scope,
) -> (Grouping, Vec<TaskNote>) {
    let mut proposed: Vec<Vec<String>> = groups
        .members
        .values()
        .map(|m| m.iter().cloned().collect())
        .collect();
    let mut notes = Vec::new();
    for group in input.current {
        let kept: Vec<String> = group
            .iter()
            .filter(|t| !scope.movable.contains(*t))
            .cloned()
            .collect();
        for task in &kept {
            let why = if scope.checkable.contains(task) {
                "not seen in the traces: kept as the current grouping has it"
            } else {
                "no code to check (an upload not received yet): kept as the current grouping has it"
            };
            notes.push(TaskNote {
                task: task.clone(),
                reason: why.to_string(),
            });
        }
        if !kept.is_empty() {
            proposed.push(kept);
        }
    }
    for group in &proposed {
        if let [task] = group.as_slice() {
            if scope.movable.contains(task) {
                notes.push(TaskNote {
                    task: task.clone(),
                    reason: "seen, but no synchronous edge of it was inlined: runs alone"
                        .to_string(),
                });
            }
        }
    }
    notes.sort_by(|a, b| a.task.cmp(&b.task));
    (Grouping::new(proposed), notes)
}

/// Every edge's decision, and the share of synchronous calls in-process before and after.
fn edge_outcomes(
    edges: &Edges,
    options: Options,
    scope: &Scope,
    sync_reasons: &SyncReasons,
    current: &Grouping,
    proposed: &Grouping,
) -> (Vec<EdgeOutcome>, Gain) {
    let together = |a: &str, b: &str| proposed.together(a, b);
    let mut outcomes = Vec::new();
    let mut gain = Gain {
        sync_calls: 0,
        in_process_before: 0,
        in_process_after: 0,
        expected: 0.0,
    };
    for ((caller, callee, mode), (calls, in_process, errors)) in edges {
        let (decision, reason) = decide(
            (caller, callee, *mode, *calls),
            edges,
            options,
            scope,
            sync_reasons,
            together(caller, callee),
        );
        let known = |t: &String| scope.all.contains(t);
        if *mode == Mode::Sync && caller != callee && known(caller) && known(callee) {
            gain.sync_calls += calls;
            if current.together(caller, callee) {
                gain.in_process_before += calls;
            }
            if together(caller, callee) {
                gain.in_process_after += calls;
            }
        }
        outcomes.push(EdgeOutcome {
            caller: caller.clone(),
            callee: callee.clone(),
            mode: *mode,
            calls: *calls,
            in_process: *in_process,
            errors: *errors,
            decision,
            reason,
        });
    }
    if gain.sync_calls > 0 {
        #[allow(clippy::cast_precision_loss)] // call counts far below 2^52
        let expected =
            (gain.in_process_after as f64 - gain.in_process_before as f64) / gain.sync_calls as f64;
        gain.expected = expected;
    }
    (outcomes, gain)
}

/// The decision on one edge (caller, callee, mode, calls) and why; `together`: whether the
/// proposal puts caller and callee in one group.
fn decide(
    (caller, callee, mode, calls): (&String, &String, Mode, u64),
    edges: &Edges,
    options: Options,
    scope: &Scope,
    sync_reasons: &SyncReasons,
    together: bool,
) -> (Decision, String) {
    let known = |t: &String| scope.all.contains(t);
    let checkable = |t: &String| scope.checkable.contains(t);
    if caller == callee {
        return (
            Decision::SelfCall,
            "a task calling itself: nothing to group".to_string(),
        );
    }
    if !known(caller) || !known(callee) {
        let missing = if known(caller) { callee } else { caller };
        return (
            Decision::UnknownTask,
            format!("`{missing}` is not a task of this project: ignored"),
        );
    }
    if !checkable(caller) || !checkable(callee) {
        let missing = if checkable(caller) { callee } else { caller };
        return (
            Decision::UnknownTask,
            format!("`{missing}` has no code to check yet: ignored"),
        );
    }
    if calls < options.min_calls {
        return (
            Decision::BelowMinCalls,
            format!(
                "{mode}, {calls} calls < min-calls {}: ignored",
                options.min_calls
            ),
        );
    }
    if mode == Mode::Async {
        if together {
            let callers: Vec<String> = edges
                .iter()
                .filter(|((c, e, m), (n, _, _))| {
                    e == callee && *m == Mode::Sync && c != e && *n >= options.min_calls
                })
                .map(|((c, _, _), (n, _, _))| format!("`{c}` ({n} calls)"))
                .collect();
            return (
                Decision::AsyncJoined,
                format!(
                    "async, {calls} calls: `{callee}` would stay apart, but it is also called \
                     synchronously by {}, which puts it in `{caller}`'s group; the async call \
                     then runs in-process",
                    callers.join(", ")
                ),
            );
        }
        return (
            Decision::AsyncApart,
            format!(
                "async, {calls} calls: the caller does not wait, so `{callee}` stays out \
                 of `{caller}`'s group"
            ),
        );
    }
    sync_reasons
        .get(&(caller.clone(), callee.clone()))
        .cloned()
        .unwrap_or((Decision::Inlined, format!("sync, {calls} calls: inlined")))
}

/// What serve's `feedback` optimizer gets from one run over a window of traces.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// The proposal, as `fusionizer optimize` would make it.
    pub proposal: Proposal,
    /// Whether the proposal differs from the live grouping and its expected gain reaches
    /// `min-gain`.
    pub worth_it: bool,
}

/// The `feedback` optimizer's step: [`propose`] with `[optimizer] min-calls` over `traces`,
/// judged against `[optimizer] min-gain`. `live` is the grouping serve runs now (every present
/// task once); `specs` holds every present task's spec (uploads included).
pub fn feedback(
    traces: &TraceDoc,
    config: &OptimizerConfig,
    project: &str,
    specs: &BTreeMap<String, TaskSpec>,
    live: &Grouping,
) -> Feedback {
    let proposal = propose(
        Input {
            project,
            specs,
            current: live,
            traces,
        },
        Options {
            min_calls: config.min_calls,
        },
    );
    let worth_it = proposal.changed() && proposal.gain.expected >= config.min_gain;
    Feedback { proposal, worth_it }
}

/// What [`Hysteresis::decide`] says about a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Regroup to the proposal now.
    Regroup,
    /// Keep the live grouping, for this reason.
    Keep(String),
}

/// Damping for live regroups, so that two groupings never flip back and forth: a proposal is
/// applied only once it has come out the same in `stable_intervals` consecutive runs, and never
/// sooner than `cooldown` after the last regroup. Times are offsets on any monotonic clock.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    stable_intervals: u32,
    cooldown: Duration,
    candidate: Option<(Grouping, u32)>,
    last_regroup: Option<Duration>,
}

impl Hysteresis {
    /// Damping by `[optimizer] stable-intervals` and `cooldown`.
    pub fn new(config: &OptimizerConfig) -> Self {
        Hysteresis {
            stable_intervals: config.stable_intervals.max(1),
            cooldown: config.cooldown,
            candidate: None,
            last_regroup: None,
        }
    }

    /// Judges one run's outcome at `now`. `wanted` is the proposal when it is worth applying
    /// ([`Feedback::worth_it`]), `None` when the live grouping should stay; a `None` resets the
    /// count. A [`Verdict::Regroup`] records `now` as the last regroup.
    pub fn decide(&mut self, now: Duration, wanted: Option<&Grouping>) -> Verdict {
        let Some(wanted) = wanted else {
            self.candidate = None;
            return Verdict::Keep(
                "the live grouping is the proposal, or the gain is too small".to_string(),
            );
        };
        let runs = match &self.candidate {
            Some((grouping, runs)) if grouping == wanted => runs + 1,
            _ => 1,
        };
        self.candidate = Some((wanted.clone(), runs));
        if runs < self.stable_intervals {
            return Verdict::Keep(format!(
                "the proposal has come out the same in {runs} of {} consecutive runs",
                self.stable_intervals
            ));
        }
        if let Some(last) = self.last_regroup {
            let since = now.saturating_sub(last);
            if since < self.cooldown {
                return Verdict::Keep(format!(
                    "the last regroup was {}s ago; cooldown is {}s",
                    since.as_secs(),
                    self.cooldown.as_secs()
                ));
            }
        }
        self.candidate = None;
        self.last_regroup = Some(now);
        Verdict::Regroup
    }
}

#[cfg(test)]
mod tests;

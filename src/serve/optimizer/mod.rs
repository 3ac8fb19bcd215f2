//! serve's optimizer loop (`[optimizer] kind = "feedback" | "command"`, docs/optimizers.md):
//! every `interval` it takes the traces recorded since the last round, asks an [`Optimizer`] for
//! the next grouping, and regroups live when the answer is worth it.
//!
//! One round ([`OptimizerLoop::round`]):
//!
//! 1. the window: the trace document now, minus the one the last round saw ([`window`]);
//! 2. the optimizer answers with a grouping (and, when it can say, the expected gain);
//! 3. the answer must cover every present task exactly once and fuse: a crash, a timeout, an
//!    invalid or a conflicting grouping is logged with the reason and nothing changes;
//! 4. it is wanted when it differs from the live grouping and its gain reaches `min-gain`;
//! 5. hysteresis: a wanted grouping is applied only once `stable-intervals` consecutive rounds
//!    wanted the same one, and never sooner than `cooldown` after the last optimizer regroup,
//!    so two groupings cannot flip back and forth ([`Hysteresis`]);
//! 6. the runner regroups to it through the same zero-downtime path as a phase
//!    ([`Runner::choose`], [`Runner::regroup`]), and the diff is logged. A failed regroup puts
//!    the previous grouping back.
//!
//! Phases and optimizers: with an optimizer configured, serve starts in the start phase and then
//! only the optimizer regroups; later `[[phase]]` boundaries are not applied (serve says so when
//! it prints its schedule). `--no-schedule` stops both.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::http::AppState;
use super::routes::Source;
use super::runner::{Chosen, Runner};
use super::state::Proposal;
use super::traces::rfc3339;
use crate::config::{Config, OptimizerConfig, OptimizerKind, TaskSpec};
use crate::optimize::command::{self, Answer, RequestPhase, RequestSettings};
use crate::optimize::{Hysteresis, Verdict};
use crate::schedule::Grouping;
use crate::traces::TraceDoc;
use crate::ui::report::{self, Event, Tone};

/// What an optimizer is asked in one round.
#[derive(Debug, Clone)]
pub struct Round<'a> {
    pub project: &'a str,
    /// The calls observed since the last round.
    pub traces: &'a TraceDoc,
    /// The grouping live now: every present task exactly once.
    pub live: &'a Grouping,
    /// Every present task's spec (declared and uploaded), by name.
    pub specs: &'a BTreeMap<String, TaskSpec>,
    /// The 1-based `[[phase]]` whose grouping is live, `None` before the first phase or when
    /// an optimizer chose the live grouping …
    pub phase: Option<usize>,
    /// … and its `after` (`40s`).
    pub phase_after: Option<String>,
}

/// An optimizer's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The next grouping (any order; the loop sorts it).
    pub grouping: Grouping,
    /// The expected gain (0 to 1), when the optimizer estimates one; compared with `min-gain`.
    pub gain: Option<f64>,
    /// Why, in one line; logged with the decision.
    pub reason: String,
    /// The details (a line per edge, say); logged when the suggestion is applied.
    pub explanation: Vec<String>,
}

/// Something that proposes the next grouping from traces: the `feedback` algorithm, or an
/// external `command`.
#[async_trait]
pub trait Optimizer: Send + Sync {
    /// `feedback` or `command`: labels the regroups it causes.
    fn source(&self) -> Source;

    /// The next grouping, or why there is none (the program crashed, timed out, printed
    /// something invalid, …).
    async fn suggest(&self, round: Round<'_>) -> Result<Suggestion, String>;
}

/// What one round came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The live grouping stays, for this reason (no change wanted, gain too small, waiting for
    /// the proposal to hold, cooldown).
    Kept(String),
    /// The optimizer failed or its answer was refused; the grouping stays.
    Refused(String),
    /// Regrouped live from one grouping to the other.
    Regrouped { from: Grouping, to: Grouping },
    /// The regroup failed; the previous grouping is back in force.
    Failed(String),
}

/// The loop's state between rounds.
pub struct OptimizerLoop {
    runner: Arc<Runner>,
    /// The trace recorder, and the board `/-/state` shows the pending proposal on.
    state: Arc<AppState>,
    optimizer: Box<dyn Optimizer>,
    /// `[optimizer]`: the interval, `min-gain` and the damping.
    config: OptimizerConfig,
    hysteresis: Hysteresis,
    /// The trace document the last round saw, and when it was taken.
    last: Option<(TraceDoc, String)>,
    /// Rounds run so far (the log numbers them).
    rounds: u64,
}

impl OptimizerLoop {
    pub fn new(
        runner: Arc<Runner>,
        state: Arc<AppState>,
        optimizer: Box<dyn Optimizer>,
        config: &OptimizerConfig,
    ) -> Self {
        OptimizerLoop {
            runner,
            state,
            optimizer,
            hysteresis: Hysteresis::new(config),
            config: config.clone(),
            last: None,
            rounds: 0,
        }
    }

    /// Runs a round every `interval` until the task is aborted.
    pub async fn run(mut self, origin: tokio::time::Instant) {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.interval,
            self.config.interval,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.round(origin.elapsed()).await;
        }
    }

    /// One round at `now` (any monotonic offset; the hysteresis compares them): see the
    /// module docs.
    pub async fn round(&mut self, now: Duration) -> Outcome {
        self.rounds += 1;
        // Only a proposal waiting for the hysteresis stays on the board (`decide` puts it back).
        self.state.board.propose(None);
        let outcome = self.decide(now).await;
        let who = self.who();
        match &outcome {
            Outcome::Kept(why) => tracing::info!("{who}: keeping the grouping: {why}"),
            Outcome::Refused(why) => {
                tracing::warn!("{who}: {why}; the grouping stays as it is");
            }
            Outcome::Regrouped { to, .. } => {
                tracing::info!("{who}: the live grouping is now {}", render(to));
            }
            Outcome::Failed(why) => {
                tracing::error!("{who}: {why}; back to the previous grouping");
            }
        }
        outcome
    }

    /// `the feedback optimizer every 1m`: what serve prints at start.
    pub fn describe(&self) -> String {
        format!(
            "the `{}` optimizer decides the grouping every {}",
            self.optimizer.source().word(),
            humantime::format_duration(self.config.interval)
        )
    }

    /// `feedback optimizer, round 3`: how the log names this round.
    fn who(&self) -> String {
        format!(
            "{} optimizer, round {}",
            self.optimizer.source().word(),
            self.rounds
        )
    }

    async fn decide(&mut self, now: Duration) -> Outcome {
        let taken = rfc3339(SystemTime::now());
        let document = self.state.traces.document();
        let traces = match &self.last {
            Some((earlier, at)) => window(earlier, at, &document),
            None => document.clone(),
        };
        self.last = Some((document, taken));
        let live = match self.runner.grouping() {
            Ok(live) => live,
            Err(err) => return Outcome::Refused(format!("no live grouping to start from: {err}")),
        };
        let specs = self.runner.specs();
        let config = self.runner.workspace().config;
        let phase = self.runner.origin().phase;
        let phase_after = phase
            .and_then(|n| config.phases.get(n - 1))
            .map(|p| humantime::format_duration(p.after).to_string());
        let round = Round {
            project: &config.project.name,
            traces: &traces,
            live: &live,
            specs: &specs,
            phase,
            phase_after,
        };
        let suggestion = match self.optimizer.suggest(round).await {
            Ok(suggestion) => suggestion,
            Err(why) => {
                self.hysteresis.decide(now, None);
                return Outcome::Refused(why);
            }
        };
        let proposed = suggestion.grouping.clone();
        if let Err(err) = self.runner.check(&proposed) {
            self.hysteresis.decide(now, None);
            return Outcome::Refused(format!(
                "refused the grouping {}: {}",
                render(&proposed),
                whole(&err)
            ));
        }
        if proposed == live {
            self.hysteresis.decide(now, None);
            let mut why = "the live grouping is the proposal".to_string();
            if !suggestion.reason.is_empty() {
                why = format!("{why}: {}", one_line(&suggestion.reason));
            }
            return Outcome::Kept(why);
        }
        if let Some(gain) = suggestion.gain.filter(|g| *g < self.config.min_gain) {
            self.hysteresis.decide(now, None);
            return Outcome::Kept(format!(
                "the expected gain {gain:.3} of {} is below min-gain {}",
                render(&proposed),
                self.config.min_gain
            ));
        }
        if let Verdict::Keep(why) = self.hysteresis.decide(now, Some(&proposed)) {
            let mut reasons = vec![format!("waiting: {why}")];
            reasons.extend(
                std::iter::once(suggestion.reason.clone())
                    .filter(|r| !r.is_empty())
                    .chain(suggestion.explanation.iter().cloned()),
            );
            self.state.board.propose(Some(Proposal {
                before: live,
                after: proposed.clone(),
                reasons,
            }));
            return Outcome::Kept(format!("proposes {}, but {why}", render(&proposed)));
        }
        self.apply(live, proposed, &suggestion).await
    }

    async fn apply(
        &mut self,
        live: Grouping,
        proposed: Grouping,
        suggestion: &Suggestion,
    ) -> Outcome {
        let source = self.optimizer.source();
        let who = self.who();
        let gain = suggestion
            .gain
            .map_or(String::new(), |g| format!(", expected gain {g:.3}"));
        let reason = if suggestion.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", one_line(&suggestion.reason))
        };
        // Shown whatever the log level: the diff of the live grouping, and why.
        report::emit(Event::Status {
            verb: "Regrouping".to_string(),
            subject: format!(
                "{} -> {} ({who}{gain}){reason}",
                render(&live),
                render(&proposed)
            ),
            tone: Tone::Info,
        });
        for line in &suggestion.explanation {
            tracing::info!("{who}: {line}");
        }
        let previous = self.runner.choose(Some(Chosen {
            grouping: proposed.clone(),
            source,
            at: rfc3339(SystemTime::now()),
        }));
        let why = format!("{} optimizer", source.word());
        let failure = match self.runner.regroup(&why).await {
            Ok(report) if report.failed.is_empty() => None,
            Ok(report) => Some(
                report
                    .failed
                    .iter()
                    .map(|(f, e)| format!("`{f}`: {}", one_line(e)))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Err(err) => Some(whole(&err)),
        };
        match failure {
            None => Outcome::Regrouped {
                from: live,
                to: proposed,
            },
            Some(why) => {
                // The runner's retry applies the previous grouping again (cleaning up what
                // this regroup deployed).
                self.runner.choose(previous);
                Outcome::Failed(format!("regrouping to {} failed: {why}", render(&proposed)))
            }
        }
    }
}

/// The optimizer `[optimizer]` configures; `None` for `kind = "static"` (the phases).
pub fn configured(config: &Config) -> Option<Box<dyn Optimizer>> {
    match config.optimizer.kind {
        OptimizerKind::Static => None,
        OptimizerKind::Feedback => Some(Box::new(Feedback(config.optimizer.clone()))),
        OptimizerKind::Command => Some(Box::new(Command {
            config: config.optimizer.clone(),
            dir: config.root.clone(),
        })),
    }
}

/// `[a, b] [c]`: a grouping in one line of a log.
pub fn render(grouping: &Grouping) -> String {
    grouping
        .iter()
        .map(|g| format!("[{}]", g.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An error with its details and causes, in one line.
fn whole(err: &crate::error::Error) -> String {
    one_line(&err.render(""))
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The calls in `now` that `earlier` (taken at `taken`) had not seen: per edge and per entry
/// task, counts, errors and bytes are the differences (an edge or task with no new call is left
/// out); spans are those after the last one `earlier` held. Quantiles cannot be subtracted: they
/// stay those since recording began. The window's `started` is `taken`.
pub fn window(earlier: &TraceDoc, taken: &str, now: &TraceDoc) -> TraceDoc {
    let before: BTreeMap<_, _> = earlier
        .edges
        .iter()
        .map(|e| ((&e.caller, &e.callee, e.mode, e.via), e))
        .collect();
    let edges = now
        .edges
        .iter()
        .filter_map(|edge| {
            let mut edge = edge.clone();
            // A count that went down means recording restarted: all of it is new.
            if let Some(old) = before
                .get(&(&edge.caller, &edge.callee, edge.mode, edge.via))
                .filter(|old| old.count <= edge.count)
            {
                edge.count -= old.count;
                edge.errors = edge.errors.saturating_sub(old.errors);
                edge.bytes = edge.bytes.saturating_sub(old.bytes);
            }
            (edge.count > 0).then_some(edge)
        })
        .collect();
    let tasks_before: BTreeMap<_, _> = earlier.tasks.iter().map(|t| (&t.task, t)).collect();
    let tasks = now
        .tasks
        .iter()
        .filter_map(|task| {
            let mut task = task.clone();
            if let Some(old) = tasks_before
                .get(&task.task)
                .filter(|old| old.invocations <= task.invocations)
            {
                task.invocations -= old.invocations;
                task.errors = task.errors.saturating_sub(old.errors);
            }
            (task.invocations > 0).then_some(task)
        })
        .collect();
    let last_seen = earlier.spans.last().map(span_time);
    let spans = now
        .spans
        .iter()
        .filter(|span| last_seen.is_none_or(|last| span_time(span) > last))
        .cloned()
        .collect();
    TraceDoc {
        version: now.version,
        started: taken.to_string(),
        limits: now.limits.clone(),
        edges,
        tasks,
        spans,
    }
}

fn span_time(span: &crate::traces::Span) -> &str {
    match span {
        crate::traces::Span::Invocation { time, .. } | crate::traces::Span::Call { time, .. } => {
            time
        }
    }
}

/// The `feedback` optimizer: `fusionizer optimize`'s algorithm ([`crate::optimize::feedback`])
/// over the window, with `[optimizer] min-calls`.
pub struct Feedback(pub OptimizerConfig);

#[async_trait]
impl Optimizer for Feedback {
    fn source(&self) -> Source {
        Source::Feedback
    }

    async fn suggest(&self, round: Round<'_>) -> Result<Suggestion, String> {
        let proposal = crate::optimize::feedback(
            round.traces,
            &self.0,
            round.project,
            round.specs,
            round.live,
        )
        .proposal;
        let explanation = proposal
            .edges
            .iter()
            .map(|e| format!("{} -> {}: {}", e.caller, e.callee, e.reason))
            .collect();
        Ok(Suggestion {
            reason: crate::optimize::render::gain_line(&proposal.gain),
            gain: Some(proposal.gain.expected),
            explanation,
            grouping: proposal.proposed,
        })
    }
}

/// The `command` optimizer: an external program run in the project directory
/// ([`crate::optimize::command`], docs/optimizer-protocol.md).
pub struct Command {
    pub config: OptimizerConfig,
    /// Where the program runs: the directory of fusion.toml.
    pub dir: PathBuf,
}

#[async_trait]
impl Optimizer for Command {
    fn source(&self) -> Source {
        Source::Command
    }

    async fn suggest(&self, round: Round<'_>) -> Result<Suggestion, String> {
        let request = command::request(
            round.project,
            round.live,
            round.specs,
            RequestPhase {
                number: round.phase,
                after: round.phase_after.clone(),
            },
            RequestSettings {
                min_calls: self.config.min_calls,
                min_gain: self.config.min_gain,
            },
            round.traces.clone(),
        );
        let answer = command::run(
            &self.config.command,
            &self.dir,
            self.config.timeout,
            &request,
            round.specs,
        )
        .await
        .map_err(|e| format!("{e} [{}]", e.kind()))?;
        Ok(match answer {
            Answer::Keep { reason } => Suggestion {
                grouping: round.live.clone(),
                gain: None,
                reason,
                explanation: Vec::new(),
            },
            Answer::Regroup { grouping, reason } => Suggestion {
                grouping,
                gain: None,
                reason,
                explanation: Vec::new(),
            },
        })
    }
}

/// A scripted optimizer for tests.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::{Grouping, Optimizer, Round, Source, Suggestion};

    /// What one round showed the optimizer: the live grouping, and the (caller, callee, count)
    /// of each windowed edge.
    pub type Seen = (Grouping, Vec<(String, String, u64)>);

    /// Answers from a script, in order; the last answer repeats. Records the live grouping and
    /// the window of edges each round saw.
    pub struct Scripted {
        source: Source,
        answers: Mutex<VecDeque<Result<Suggestion, String>>>,
        /// Per round: the live grouping, and the (caller, callee, count) of each windowed edge.
        pub seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Scripted {
        pub fn new(source: Source, answers: Vec<Result<Suggestion, String>>) -> Self {
            Scripted {
                source,
                answers: Mutex::new(answers.into()),
                seen: Arc::default(),
            }
        }

        /// A suggestion of `grouping` with `gain`.
        pub fn suggest(grouping: &[&[&str]], gain: Option<f64>) -> Result<Suggestion, String> {
            Ok(Suggestion {
                grouping: grouping
                    .iter()
                    .map(|g| g.iter().map(ToString::to_string).collect())
                    .collect(),
                gain,
                reason: "scripted".to_string(),
                explanation: vec!["a line of detail".to_string()],
            })
        }
    }

    #[async_trait]
    impl Optimizer for Scripted {
        fn source(&self) -> Source {
            self.source
        }

        async fn suggest(&self, round: Round<'_>) -> Result<Suggestion, String> {
            self.seen.lock().expect("poisoned").push((
                round.live.clone(),
                round
                    .traces
                    .edges
                    .iter()
                    .map(|e| (e.caller.clone(), e.callee.clone(), e.count))
                    .collect(),
            ));
            let mut answers = self.answers.lock().expect("poisoned");
            if answers.len() > 1 {
                answers.pop_front().expect("not empty")
            } else {
                answers
                    .front()
                    .cloned()
                    .unwrap_or_else(|| Err("no answer scripted".to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests;

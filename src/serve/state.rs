//! `/-/state`: one read-only JSON document with what the dashboard (`/-/ui`) shows beside the
//! route table and the traces: the phases and when the next one fires, the functions with their
//! tasks and workers, a recent window of each task's requests, the last transitions and the
//! optimizer (docs/dashboard.md; the schema is docs/state.schema.json).
//!
//! [`Board`] keeps what serve learns as it runs (the schedule it follows, each regroup, each
//! answered request); [`document`] reads it, the route table and the platform's workers under
//! short locks only, so polling it every second costs next to nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::routes::RouteTable;
use crate::config::Phase;
use crate::platform::{Platform, WorkerInfo};

/// The version of the `/-/state` document.
pub const VERSION: u32 = 1;
/// How long a proposal made by [`Setup::proposer`] is shown before it is made again.
const PROPOSAL_TTL: Duration = Duration::from_secs(5);
/// How many transitions the document keeps (the newest).
const TRANSITIONS: usize = 20;
/// Seconds of requests kept per task: the window of the latency quantiles and error counts.
const WINDOW_SECS: u64 = 60;
/// The most recent seconds the request rate is computed over.
const RATE_SECS: u64 = 10;
/// Latency buckets per doubling, from [`MIN_MS`]: a quantile is its bucket's geometric
/// midpoint, within 2^(1/8) − 1 ≈ 9% of the true value.
const PER_DOUBLING: f64 = 4.0;
/// 96 buckets at 4 per doubling span 10 µs to ~168 s (longer requests read as the top bucket).
const BUCKETS: usize = 96;
const MIN_MS: f64 = 0.01;

/// What serve learns as it runs, for `/-/state`. Filled by serve at start ([`Board::start`]),
/// by the runner after each regroup ([`Board::transition`]) and by the proxy for each answered
/// request ([`Board::request`]).
pub struct Board {
    setup: OnceLock<Setup>,
    /// What the optimizer proposes now ([`Board::propose`]).
    proposal: Mutex<Option<Proposal>>,
    /// The last answer of [`Setup::proposer`], and when it was made.
    proposed: Mutex<Option<(Instant, Option<Proposal>)>>,
    /// The phase (0-based) the last successful regroup applied.
    phase: Mutex<Option<usize>>,
    transitions: Mutex<VecDeque<Transition>>,
    /// Per task: the last [`WINDOW_SECS`] seconds of answered requests.
    tasks: RwLock<HashMap<String, Arc<Mutex<TaskWindow>>>>,
    /// Where the seconds of [`TaskWindow`] count from.
    epoch: Instant,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            setup: OnceLock::new(),
            proposal: Mutex::new(None),
            proposed: Mutex::new(None),
            phase: Mutex::new(None),
            transitions: Mutex::new(VecDeque::with_capacity(TRANSITIONS)),
            tasks: RwLock::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

/// What serve knows at start: the project, the platform and the schedule it follows.
pub struct Setup {
    pub project: String,
    pub platform: Arc<dyn Platform>,
    /// When serve started (phase offsets count from here), on the wall clock …
    pub started: SystemTime,
    /// … and on the monotonic one.
    pub origin: Instant,
    /// Every `[[phase]]` of fusion.toml, in file order.
    pub phases: Vec<Phase>,
    /// The phase serve started in (0-based), if any.
    pub start: Option<usize>,
    /// The phases still to come: (delay from start, 0-based phase).
    pub upcoming: Vec<(Duration, usize)>,
    /// Every declared task, so that one without a route still shows.
    pub declared: Vec<String>,
    /// Which optimizer moves the grouping (`static`: the phases).
    pub optimizer: String,
    /// Makes a proposal on demand, when no optimizer loop posts them ([`Board::propose`]): for
    /// `static`, what `fusionizer optimize` would propose from the traces so far. Called at most
    /// once per [`PROPOSAL_TTL`].
    pub proposer: Option<Proposer>,
}

/// See [`Setup::proposer`].
pub type Proposer = Box<dyn Fn() -> Option<Proposal> + Send + Sync>;

/// One regroup as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    /// When it started (RFC 3339, UTC, milliseconds).
    pub started: String,
    /// Why serve regrouped: `start (phase 1)`, `phase 2`, ``upload of `x` ``, `reload`, `retry`, …
    pub reason: String,
    /// The phase (1-based) it applied, if any.
    pub phase: Option<usize>,
    /// Whether every function deployed and the routes switched.
    pub ok: bool,
    /// From start to the end (deletes included), in milliseconds.
    pub duration_ms: f64,
    /// From start to the route switch, in milliseconds, when the routes switched.
    pub switched_after_ms: Option<f64>,
    /// Tasks whose function changed.
    pub moved: Vec<Move>,
    pub deployed: Vec<String>,
    pub deleted: Vec<String>,
    pub failed: Vec<Failure>,
    /// Why the regroup failed as a whole (the routes were left alone).
    pub error: Option<String>,
}

/// A task that moved to another function.
#[derive(Debug, Clone, Serialize)]
pub struct Move {
    pub task: String,
    pub from: Option<String>,
    pub to: String,
}

/// A function that failed to deploy.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub function: String,
    pub error: String,
}

impl Board {
    /// Records what serve follows; the first call wins (serve makes one).
    pub fn start(&self, setup: Setup) {
        let _ = self.setup.set(setup);
    }

    /// Replaces what the optimizer proposes (`None`: nothing to change).
    pub fn propose(&self, proposal: Option<Proposal>) {
        *self.proposal.lock().unwrap_or_else(PoisonError::into_inner) = proposal;
    }

    /// Records a finished regroup; `phase` is the 0-based phase it applied.
    pub fn transition(&self, phase: Option<usize>, transition: Transition) {
        if transition.ok {
            *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
        }
        let mut transitions = self
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if transitions.len() == TRANSITIONS {
            transitions.pop_front();
        }
        transitions.push_back(transition);
    }

    /// Records one request the proxy answered for `task`.
    pub fn request(&self, task: &str, status: u16, elapsed: Duration) {
        let second = self.epoch.elapsed().as_secs();
        let window = self
            .tasks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(task)
            .cloned();
        let window = match window {
            Some(window) => window,
            None => self
                .tasks
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(task.to_string())
                .or_default()
                .clone(),
        };
        window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(second, status >= 500, elapsed);
    }

    fn task_stats(&self, task: &str, now: u64) -> TaskNumbers {
        let window = self
            .tasks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(task)
            .cloned();
        match window {
            Some(window) => window
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .numbers(now, self.epoch.elapsed().as_secs_f64()),
            None => TaskNumbers::default(),
        }
    }

    /// What the optimizer proposes now: what its loop posted, else the proposer's answer (made
    /// again once it is older than [`PROPOSAL_TTL`]).
    fn current_proposal(&self, setup: Option<&Setup>) -> Option<Proposal> {
        let posted = self
            .proposal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if posted.is_some() {
            return posted;
        }
        let proposer = setup?.proposer.as_ref()?;
        let mut cached = self.proposed.lock().unwrap_or_else(PoisonError::into_inner);
        match &*cached {
            Some((at, proposal)) if at.elapsed() < PROPOSAL_TTL => proposal.clone(),
            _ => {
                let proposal = proposer();
                *cached = Some((Instant::now(), proposal.clone()));
                proposal
            }
        }
    }

    fn tasks_seen(&self) -> Vec<String> {
        self.tasks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }
}

/// One second of one task's requests.
#[derive(Clone)]
struct Second {
    at: u64,
    count: u32,
    errors: u32,
    latency: [u32; BUCKETS],
}

/// The last [`WINDOW_SECS`] seconds of one task's requests, in a ring indexed by the second,
/// plus totals since serve started.
#[derive(Default)]
struct TaskWindow {
    seconds: Vec<Second>,
    requests: u64,
    errors: u64,
}

/// The numbers `/-/state` shows for a task.
#[derive(Debug, Default, PartialEq)]
struct TaskNumbers {
    requests: u64,
    errors: u64,
    rate: f64,
    window_requests: u64,
    window_errors: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

impl TaskWindow {
    fn add(&mut self, second: u64, error: bool, elapsed: Duration) {
        if self.seconds.is_empty() {
            let empty = Second {
                at: u64::MAX,
                count: 0,
                errors: 0,
                latency: [0; BUCKETS],
            };
            self.seconds = vec![empty; WINDOW_SECS as usize];
        }
        let slot = &mut self.seconds[(second % WINDOW_SECS) as usize];
        if slot.at != second {
            slot.at = second;
            slot.count = 0;
            slot.errors = 0;
            slot.latency = [0; BUCKETS];
        }
        slot.count = slot.count.saturating_add(1);
        self.requests += 1;
        if error {
            slot.errors = slot.errors.saturating_add(1);
            self.errors += 1;
        }
        let bucket = bucket_of(elapsed.as_secs_f64() * 1000.0);
        slot.latency[bucket] = slot.latency[bucket].saturating_add(1);
    }

    /// The numbers at second `now`; `uptime` (seconds since the board began) shortens the rate's
    /// window while serve is younger than it.
    fn numbers(&self, now: u64, uptime: f64) -> TaskNumbers {
        let mut numbers = TaskNumbers {
            requests: self.requests,
            errors: self.errors,
            ..TaskNumbers::default()
        };
        let mut latency = [0u64; BUCKETS];
        let mut recent = 0u64;
        for second in &self.seconds {
            // Seconds `now - WINDOW_SECS + 1 ..= now`; the current one is still filling.
            if second.at > now || now - second.at >= WINDOW_SECS {
                continue;
            }
            numbers.window_requests += u64::from(second.count);
            numbers.window_errors += u64::from(second.errors);
            if now - second.at < RATE_SECS {
                recent += u64::from(second.count);
            }
            for (sum, n) in latency.iter_mut().zip(second.latency.iter()) {
                *sum += u64::from(*n);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        {
            let span = uptime.clamp(1.0, RATE_SECS as f64);
            numbers.rate = recent as f64 / span;
        }
        numbers.p50_ms = quantile(&latency, 0.50);
        numbers.p99_ms = quantile(&latency, 0.99);
        numbers
    }
}

fn bucket_of(ms: f64) -> usize {
    if ms <= MIN_MS {
        return 0;
    }
    // The value is positive and finite; truncation is the bucket's floor.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = ((ms / MIN_MS).log2() * PER_DOUBLING) as usize;
    index.min(BUCKETS - 1)
}

/// The geometric midpoint of the bucket holding the `q`-quantile, in milliseconds.
fn quantile(latency: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, count) in latency.iter().enumerate() {
        seen += count;
        if seen >= rank {
            #[allow(clippy::cast_precision_loss)]
            let exponent = (index as f64 + 0.5) / PER_DOUBLING;
            return Some(round3(MIN_MS * exponent.exp2()));
        }
    }
    None
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The `/-/state` document (docs/state.schema.json).
#[derive(Debug, Serialize)]
pub struct StateDoc {
    pub version: u32,
    /// Serve's clock when the document was made (RFC 3339, UTC, milliseconds).
    pub now: String,
    /// When serve started; `null` before it has.
    pub started: Option<String>,
    pub project: Option<String>,
    /// `local` or `nuctl`.
    pub platform: Option<String>,
    /// Whether the start phase is deployed (`/-/health` is 200).
    pub ready: bool,
    /// Whether serve is shutting down.
    pub draining: bool,
    pub phases: Vec<PhaseView>,
    /// The phase (1-based) the last successful regroup applied.
    pub current_phase: Option<usize>,
    pub next_change: Option<NextChange>,
    pub functions: Vec<FunctionView>,
    pub tasks: Vec<TaskView>,
    /// The last regroups, newest first.
    pub transitions: Vec<Transition>,
    pub optimizer: OptimizerView,
}

/// A phase and when it fires in this run of serve.
#[derive(Debug, Serialize)]
pub struct PhaseView {
    /// 1-based, in file order.
    pub phase: usize,
    /// The offset written in fusion.toml (`40s`).
    pub after: String,
    pub after_ms: u64,
    /// When it fired or fires in this run; `null` when this run never applies it (before the
    /// start phase, or `--no-schedule`).
    pub at: Option<String>,
    pub groups: Vec<Vec<String>>,
}

/// The next scheduled phase change.
#[derive(Debug, Serialize)]
pub struct NextChange {
    pub phase: usize,
    pub at: String,
    /// Milliseconds from `now` to `at`.
    pub in_ms: u64,
}

/// A live function and what runs it.
#[derive(Debug, Serialize)]
pub struct FunctionView {
    pub name: String,
    pub tasks: Vec<String>,
    /// The platform's state word when the route was made (`ready`, …).
    pub state: String,
    pub digest: String,
    /// Requests the proxy has in flight on it.
    pub inflight: usize,
    /// Its worker processes when serve runs them (local platform); `null` when Nuclio does.
    pub workers: Option<Vec<WorkerInfo>>,
}

/// One task's recent requests through the proxy.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub task: String,
    /// The function serving it now; `null` when it has no route.
    pub function: Option<String>,
    /// Requests answered since serve started, and those of them that failed (status ≥ 500).
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over the last 10 s.
    pub rate_per_s: f64,
    /// Requests and failures over the last 60 s, and the latency quantiles over them.
    pub window_requests: u64,
    pub window_errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The optimizer and what it proposes.
#[derive(Debug, Serialize)]
pub struct OptimizerView {
    /// `static`: the phases of fusion.toml.
    pub kind: String,
    /// The grouping the optimizer would move to next, if it proposes one.
    pub proposal: Option<Proposal>,
}

/// A proposed grouping, before → after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub before: crate::schedule::Grouping,
    pub after: crate::schedule::Grouping,
    /// Why, in a line per reason.
    pub reasons: Vec<String>,
}

fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn millis(duration: Duration) -> f64 {
    round3(duration.as_secs_f64() * 1000.0)
}

impl Transition {
    /// A transition that started at `started` (monotonic) and ended now.
    pub fn finished(reason: &str, started: Instant, ok: bool) -> Self {
        let elapsed = started.elapsed();
        Transition {
            started: rfc3339(
                SystemTime::now()
                    .checked_sub(elapsed)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            reason: reason.to_string(),
            phase: None,
            ok,
            duration_ms: millis(elapsed),
            switched_after_ms: None,
            moved: Vec::new(),
            deployed: Vec::new(),
            deleted: Vec::new(),
            failed: Vec::new(),
            error: None,
        }
    }

    /// With the time from start to the route switch.
    pub fn switched_after(mut self, elapsed: Duration) -> Self {
        self.switched_after_ms = Some(millis(elapsed));
        self
    }
}

/// The `/-/state` document now, from `board`, the route table and whether serve is `ready` and
/// `draining`.
pub fn document(board: &Board, table: &RouteTable, ready: bool, draining: bool) -> StateDoc {
    let now = SystemTime::now();
    let setup = board.setup.get();
    let functions: Vec<FunctionView> = table
        .functions()
        .into_values()
        .map(|f| FunctionView {
            workers: setup.and_then(|s| s.platform.workers(&f.name)),
            name: f.name.clone(),
            tasks: f.tasks.clone(),
            state: f.state.clone(),
            digest: f.digest.clone(),
            inflight: f.inflight(),
        })
        .collect();
    let mut names: BTreeSet<String> = table.by_task.keys().cloned().collect();
    names.extend(board.tasks_seen());
    if let Some(setup) = setup {
        names.extend(setup.declared.iter().cloned());
    }
    let second = board.epoch.elapsed().as_secs();
    let tasks = names
        .into_iter()
        .map(|task| {
            let numbers = board.task_stats(&task, second);
            TaskView {
                function: table.by_task.get(&task).map(|f| f.name.clone()),
                task,
                requests: numbers.requests,
                errors: numbers.errors,
                rate_per_s: (numbers.rate * 100.0).round() / 100.0,
                window_requests: numbers.window_requests,
                window_errors: numbers.window_errors,
                p50_ms: numbers.p50_ms,
                p99_ms: numbers.p99_ms,
            }
        })
        .collect();
    let (phases, next_change) = setup.map_or((Vec::new(), None), |s| timeline(s, now));
    let current_phase = board
        .phase
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .map(|i| i + 1);
    let transitions = board
        .transitions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .rev()
        .cloned()
        .collect();
    StateDoc {
        version: VERSION,
        now: rfc3339(now),
        started: setup.map(|s| rfc3339(s.started)),
        project: setup.map(|s| s.project.clone()),
        platform: setup.map(|s| s.platform.kind().to_string()),
        ready,
        draining,
        phases,
        current_phase,
        next_change,
        functions,
        tasks,
        transitions,
        optimizer: OptimizerView {
            kind: setup.map_or_else(|| "static".to_string(), |s| s.optimizer.clone()),
            proposal: board.current_proposal(setup),
        },
    }
}

/// The phases with their times in this run, and the next change after `now`.
fn timeline(setup: &Setup, now: SystemTime) -> (Vec<PhaseView>, Option<NextChange>) {
    let fires: BTreeMap<usize, Duration> = setup
        .start
        .map(|i| (i, Duration::ZERO))
        .into_iter()
        .chain(setup.upcoming.iter().map(|(delay, i)| (*i, *delay)))
        .collect();
    let phases = setup
        .phases
        .iter()
        .enumerate()
        .map(|(i, phase)| PhaseView {
            phase: i + 1,
            after: humantime::format_duration(phase.after).to_string(),
            after_ms: u64::try_from(phase.after.as_millis()).unwrap_or(u64::MAX),
            at: fires.get(&i).map(|delay| rfc3339(setup.started + *delay)),
            groups: phase.groups.clone(),
        })
        .collect();
    let elapsed = setup.origin.elapsed();
    let next_change = setup
        .upcoming
        .iter()
        .find_map(|(delay, i)| Some((delay.checked_sub(elapsed).filter(|d| !d.is_zero())?, i)))
        .map(|(left, i)| NextChange {
            phase: i + 1,
            at: rfc3339(now + left),
            in_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
        });
    (phases, next_change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_window_within_the_bucket_error() {
        let mut window = TaskWindow::default();
        for i in 0..99 {
            window.add(5, false, Duration::from_millis(2 + i % 2));
        }
        window.add(5, true, Duration::from_millis(800));
        let numbers = window.numbers(5, 100.0);
        assert_eq!((numbers.requests, numbers.errors), (100, 1));
        assert_eq!((numbers.window_requests, numbers.window_errors), (100, 1));
        let p50 = numbers.p50_ms.unwrap();
        assert!((1.8..=3.3).contains(&p50), "{p50}");
        let p99 = numbers.p99_ms.unwrap();
        assert!((1.8..=3.3).contains(&p99), "{p99}");
        // The 100th value is the slow one: p100 is in its bucket.
        let mut latency = [0u64; BUCKETS];
        for s in &window.seconds {
            if s.at == 5 {
                for (a, b) in latency.iter_mut().zip(s.latency.iter()) {
                    *a += u64::from(*b);
                }
            }
        }
        let top = quantile(&latency, 1.0).unwrap();
        assert!((800.0 / 1.1..=800.0 * 1.1).contains(&top), "{top}");
        // 100 requests within the last 10 s: 10 per second.
        assert!((numbers.rate - 10.0).abs() < 1e-9, "{}", numbers.rate);
    }

    #[test]
    fn old_seconds_leave_the_window_but_stay_in_the_totals() {
        let mut window = TaskWindow::default();
        window.add(3, true, Duration::from_millis(1));
        window.add(50, false, Duration::from_millis(1));
        // At second 70, second 3 is out of the 60 s window, 50 is in it but not in the rate's 10 s.
        let numbers = window.numbers(70, 70.0);
        assert_eq!((numbers.requests, numbers.errors), (2, 1));
        assert_eq!((numbers.window_requests, numbers.window_errors), (1, 0));
        assert!(numbers.rate.abs() < 1e-9);
        // Second 63 reuses second 3's slot: the old counts are gone.
        window.add(63, false, Duration::from_millis(1));
        let numbers = window.numbers(63, 70.0);
        assert_eq!((numbers.window_requests, numbers.window_errors), (2, 0));
        // Nothing at all: no quantiles.
        assert_eq!(TaskWindow::default().numbers(0, 0.0).p50_ms, None);
    }

    #[test]
    fn buckets_cover_microseconds_to_minutes() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.02), 4);
        assert_eq!(bucket_of(1e9), BUCKETS - 1);
        for ms in [0.05, 0.4, 3.0, 70.0, 1500.0, 90_000.0] {
            let mut latency = [0u64; BUCKETS];
            latency[bucket_of(ms)] = 1;
            let estimate = quantile(&latency, 0.5).unwrap();
            let ratio = estimate / ms;
            assert!((0.91..=1.10).contains(&ratio), "{ms} ms read as {estimate}");
        }
    }

    #[test]
    fn the_timeline_says_which_phases_this_run_applies_and_when() {
        let phase = |after| Phase {
            after: Duration::from_secs(after),
            groups: vec![vec!["a".to_string()]],
        };
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // `--phase 2` of three: phase 1 never applies, 3 comes 60 s after start (120 − 60).
        let setup = Setup {
            project: "p".into(),
            platform: Arc::new(crate::platform::memory::MemoryPlatform::default()),
            started,
            origin: Instant::now(),
            phases: vec![phase(0), phase(60), phase(120)],
            start: Some(1),
            upcoming: vec![(Duration::from_secs(60), 2)],
            declared: Vec::new(),
            optimizer: "static".into(),
            proposer: None,
        };
        let (phases, next) = timeline(&setup, SystemTime::now());
        let at: Vec<Option<&str>> = phases.iter().map(|p| p.at.as_deref()).collect();
        assert_eq!(
            at,
            [
                None,
                Some("2027-01-15T08:00:00.000Z"),
                Some("2027-01-15T08:01:00.000Z")
            ]
        );
        assert_eq!(phases[2].after, "2m");
        let next = next.unwrap();
        assert_eq!(next.phase, 3);
        assert!(
            next.in_ms <= 60_000 && next.in_ms > 50_000,
            "{}",
            next.in_ms
        );
        // Once its time has passed nothing is next.
        let passed = Setup {
            upcoming: vec![(Duration::ZERO, 2)],
            ..setup
        };
        assert!(timeline(&passed, SystemTime::now()).1.is_none());
    }

    #[test]
    fn transitions_keep_the_newest_and_the_phase_of_the_last_success() {
        let board = Board::default();
        for n in 0..25 {
            let ok = n != 24;
            board.transition(
                Some(n % 2),
                Transition::finished(&format!("phase {n}"), Instant::now(), ok),
            );
        }
        let transitions = board.transitions.lock().unwrap();
        assert_eq!(transitions.len(), TRANSITIONS);
        assert_eq!(transitions.front().unwrap().reason, "phase 5");
        assert_eq!(transitions.back().unwrap().reason, "phase 24");
        // The failed 24th does not change the phase in force: the 23rd's (1) is.
        assert_eq!(*board.phase.lock().unwrap(), Some(1));
    }
}

//! `fusionizer serve`: the invocation proxy, the schedule runner and the HTTP API. Its clients
//! (`invoke`, `traces export`, `optimize`) are commands of [`crate::cli`], which all talk to it
//! through `cli/serve_client.rs`.
//!
//! Start-up takes over SIGINT/SIGTERM first, binds the listener (so `/-/health` answers 503
//! while the start phase deploys), applies the start phase, prints the route table and the
//! schedule, then follows the schedule: each phase fires at its `after` offset from start
//! (counted from the start phase's own offset with `--phase N`). A ticker re-reads the platform
//! (every 500 ms on the local platform, every 15 s through nuctl) so a separate `apply` is picked
//! up, retries a failed regroup every few seconds, and with `--watch` reloads fusion.toml and the
//! task files when they change.
//!
//! Shutdown (SIGINT/SIGTERM, at any point, the start-up deploy included) stops the schedule
//! (a regroup or start in progress is cancelled: workers it started are stopped), then drains:
//! client requests get 503, while task-to-task calls (`X-Fusionizer-Caller`) are still served,
//! until the requests in flight finish or `[serve] shutdown-timeout` passes (what is cut off
//! then is logged). Then it stops listening, stops the workers, removes its socket directories
//! and exits 0.

pub mod address;
pub mod background;
mod dashboard;
mod guard;
pub mod http;
mod listener;
pub mod metrics;
pub mod optimizer;
mod repeats;
pub mod routes;
pub mod runner;
pub mod state;
pub mod traces;
pub mod uploads;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::config::{Config, Workspace};
use crate::error::{Error, ExitCode, Result};
use crate::platform::{HostOptions, Platform, PlatformError};
use crate::schedule::Selection;
use crate::ui::report::{self, Event, Tone};
use crate::ui::Ui;

use self::http::AppState;
use self::metrics::Metrics;
use self::optimizer::OptimizerLoop;
use self::routes::Routes;
use self::runner::Runner;

/// How often the background loop wakes: for `--watch`, retries, and platform resyncs (each
/// platform says how often it wants those).
const TICK: Duration = Duration::from_millis(500);
/// How long after a failed regroup serve tries again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long, once the drain is over and the workers are stopped, open connections get to
/// receive their last answers before serve exits.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Resolved `fusionizer serve` arguments.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub listen: Option<String>,
    pub phase: Option<usize>,
    pub no_schedule: bool,
    pub insecure: bool,
    pub watch: bool,
}

/// Runs serve until SIGINT/SIGTERM on its own runtime: see the module docs.
pub fn run(ui: &Ui, workspace: Workspace, args: ServeArgs) -> Result<ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        // The proxy's work per request is tiny next to the workers' (Python processes that need
        // the cores). One runtime thread per four cores keeps requests on one thread end to end
        // (fewer cross-thread wake-ups: ~30% less proxy CPU per request measured on 2 cores);
        // `TOKIO_WORKER_THREADS` overrides it.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        builder.worker_threads((cores / 4).max(1));
    }
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| Error::failure(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(ui, workspace, args))
}

/// Phases still to come: (delay from serve start, phase index) pairs.
type Upcoming = Vec<(Duration, usize)>;

/// The phase serve starts in (0-based index), and the schedule after it.
fn schedule(config: &Config, args: &ServeArgs) -> Result<(Option<usize>, Upcoming)> {
    let start = match args.phase {
        Some(n) if n == 0 || n > config.phases.len() => {
            return Err(Error::usage(format!(
                "`--phase {n}`: fusion.toml has {} phase(s)",
                config.phases.len()
            )))
        }
        Some(n) => Some(n - 1),
        None => crate::schedule::phase_at(config, Duration::ZERO),
    };
    if args.no_schedule {
        return Ok((start, Vec::new()));
    }
    let origin = start.map(|i| config.phases[i].after).unwrap_or_default();
    let next = start.map_or(0, |i| i + 1);
    let upcoming = (next..config.phases.len())
        .filter_map(|i| Some((config.phases[i].after.checked_sub(origin)?, i)))
        .collect();
    Ok((start, upcoming))
}

/// The start phase in words, for `Deploying …` and the start regroup's reason (`start (…)`):
/// `phase 2`, or `every task alone` when no phase is in force at 0s.
fn start_name(start: Option<usize>) -> String {
    match start {
        Some(i) => format!("phase {}", i + 1),
        None => "every task alone".to_string(),
    }
}

fn selection_for(start: Option<usize>) -> Selection {
    match start {
        Some(i) => Selection::Phase(i + 1),
        None => Selection::At(Duration::ZERO),
    }
}

async fn resolve_listen(text: &str) -> Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host(text).await.map_err(|e| {
        Error::usage(format!("invalid listen address `{text}`: {e}"))
            .with_hint("use HOST:PORT, e.g. `127.0.0.1:8000`")
    })?;
    addrs
        .next()
        .ok_or_else(|| Error::usage(format!("listen address `{text}` resolves to nothing")))
}

/// Where serve listens and how tasks reach it.
struct Bound {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    token: Option<String>,
    /// The host tasks use to reach the proxy ([`crate::config::ServeConfig::advertised_host`]).
    advertise: String,
}

impl Bound {
    /// The proxy's base URL as tasks see it (always a URL while serve runs).
    fn proxy_url(&self, config: &Config) -> String {
        config.proxy_url(Some(self.local)).unwrap_or_default()
    }
}

/// Checks the listen address against the token rule and binds it.
async fn bind(config: &Config, args: &ServeArgs) -> Result<Bound> {
    let listen_text = args
        .listen
        .clone()
        .unwrap_or_else(|| config.serve.listen.clone());
    let addr = resolve_listen(&listen_text).await?;
    let token = match &config.serve.token_env {
        None => None,
        // A token that is configured but missing must not silently turn into no token at all.
        Some(name) => match std::env::var(name) {
            Ok(token) if !token.trim().is_empty() => Some(token),
            Ok(_) => return Err(missing_token(name, "is empty")),
            Err(std::env::VarError::NotPresent) => return Err(missing_token(name, "is not set")),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(missing_token(name, "is not valid UTF-8"))
            }
        },
    };
    if !addr.ip().is_loopback() && token.is_none() && !args.insecure {
        return Err(Error::usage(format!(
            "refusing to listen on `{addr}` (not loopback) without a token"
        ))
        .with_hint(
            "set `[serve] token-env` and that environment variable, or pass `--insecure` to expose PUT/DELETE without authentication",
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::failure(format!("cannot listen on `{addr}`: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::failure(format!("cannot read the listen address: {e}")))?;
    let advertise = config.serve.advertised_host(local.ip());
    Ok(Bound {
        listener,
        local,
        token,
        advertise,
    })
}

/// The refusal to start when `[serve] token-env` names a variable without a token (exit 78).
fn missing_token(name: &str, why: &str) -> Error {
    Error::new(
        ExitCode::Config,
        format!("`[serve] token-env` names `{name}`, but that environment variable {why}"),
    )
    .with_hint(format!(
        "set it to the bearer token PUT/DELETE and a remote `/-/state` must carry (`export \
         {name}=…`), or remove `token-env` from fusion.toml to run without a token on loopback"
    ))
}

/// Opens the platform with serve's settings; one that cannot be reached at all (no nuctl) is
/// exit 69, like plan and apply, rather than a failed start-phase deploy.
async fn open_platform(workspace: &Workspace, proxy_url: String) -> Result<Arc<dyn Platform>> {
    let config = &workspace.config;
    crate::workspace::check_deploy_settings(workspace)?;
    let platform = crate::workspace::open_platform(
        workspace,
        Some(HostOptions {
            proxy_url,
            request_timeout: config.serve.request_timeout,
        }),
    )?;
    if let Err(err @ PlatformError::Unavailable { .. }) = platform.list(&config.project.name).await
    {
        return Err(err.into());
    }
    Ok(platform)
}

async fn serve(ui: &Ui, workspace: Workspace, args: ServeArgs) -> Result<ExitCode> {
    // Before anything is started: from here on a SIGINT/SIGTERM is a shutdown that stops what
    // was started and exits 0, whenever it comes.
    let mut signals = Signals::install()?;
    let config = workspace.config.clone();
    let (start, upcoming) = schedule(&config, &args)?;
    // With an optimizer only it regroups after the start phase (docs/optimizers.md, "Phases and
    // optimizers"); `--no-schedule` stops both.
    let optimizer = if args.no_schedule {
        None
    } else {
        self::optimizer::configured(&config)
    };
    let upcoming = if optimizer.is_some() {
        Vec::new()
    } else {
        upcoming
    };
    let bound = bind(&config, &args).await?;
    // Phase offsets count from here, the moment serve starts (not from when the first deploy
    // finished).
    let origin = tokio::time::Instant::now();
    let platform = open_platform(&workspace, bound.proxy_url(&config)).await?;
    let state = app_state(&config, &bound);
    let runner = Arc::new(Runner::new(
        workspace,
        platform.clone(),
        selection_for(start),
        state.clone(),
    ));
    runner.set_owner(grouping_owner(&config, start, &upcoming, origin));
    state.board.start(self::state::Setup {
        project: config.project.name.clone(),
        platform: platform.clone(),
        started: std::time::SystemTime::now()
            .checked_sub(origin.elapsed())
            .unwrap_or(std::time::UNIX_EPOCH),
        origin: origin.into_std(),
        phases: config.phases.clone(),
        start,
        upcoming: upcoming.clone(),
        declared: config.tasks.keys().cloned().collect(),
        // The optimizer that runs (`static` with `--no-schedule`, too).
        optimizer: optimizer
            .as_ref()
            .map_or(self::routes::Source::Static, |o| o.source())
            .word()
            .to_string(),
        // A `feedback` or `command` optimizer's loop posts its own proposals.
        proposer: optimizer
            .is_none()
            .then(|| dashboard::static_proposer(&runner, state.traces.clone())),
    });

    status(
        ui,
        "Listening",
        &format!("on http://{} ({} platform)", bound.local, platform.kind()),
    );
    // `invoke`, `traces export` and `optimize` find serve here; the guard removes the record
    // when serve returns, whichever way.
    let _address = record_address(&config, bound.local);
    let server = start_server(&config, bound, &state, &runner);

    let start_name = start_name(start);
    status(ui, "Deploying", &start_name);
    // The start is cancelled by a shutdown: the regroup is dropped halfway, and the workers it
    // started stop with it (see `platform::local::pool::Pool`'s `Drop`).
    let started = tokio::select! {
        started = deploy_start(ui, &runner, &state, &start_name) => Some(started),
        () = signals.recv() => None,
    };
    let background = match started {
        Some(Ok(())) => {
            let optimizing = optimizer.map(|optimizer| {
                OptimizerLoop::new(runner.clone(), state.clone(), optimizer, &config.optimizer)
            });
            print_start(ui, &state, &upcoming, optimizing.as_ref());
            let schedule = background(runner.clone(), state.clone(), origin, upcoming, args.watch);
            // One task, so that the shutdown's abort stops the optimizer's rounds too.
            let background = tokio::spawn(async move {
                match optimizing {
                    Some(optimizing) => {
                        tokio::join!(schedule, optimizing.run(origin));
                    }
                    None => schedule.await,
                }
            });
            signals.recv().await;
            Some(background)
        }
        Some(Err(err)) => {
            server.stop().await;
            platform.shutdown().await;
            return Err(err);
        }
        None => {
            ui.status(&format!(
                "Shutting down while deploying {start_name}: stopping what was started..."
            ));
            None
        }
    };
    shut_down(
        ui,
        &state,
        platform.as_ref(),
        server,
        background,
        config.serve.shutdown_timeout,
    )
    .await;
    status(ui, "Stopped", "fusionizer serve");
    Ok(ExitCode::Success)
}

/// The state every request handler shares, from `[serve]`'s settings.
fn app_state(config: &Config, bound: &Bound) -> Arc<AppState> {
    Arc::new(AppState {
        routes: Routes::default(),
        metrics: Metrics::new(),
        board: self::state::Board::default(),
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        inflight: Arc::default(),
        token: bound.token.clone(),
        advertise_host: bound.advertise.clone(),
        port: bound.local.port(),
        max_body: config.serve.max_body_bytes as usize,
        max_upload: config.serve.max_upload_bytes as usize,
        request_timeout: config.serve.request_timeout,
        body_timeout: config.serve.body_read_timeout,
        traces: Arc::new(self::traces::Recorder::new(
            config.serve.trace_spans,
            config.serve.trace_edges,
        )),
        background: self::background::Background::new(
            config.serve.async_queue,
            config.serve.async_queue_bytes,
            self::background::DEFAULT_CONCURRENCY,
        ),
        chains: self::http::Chains::default(),
        degraded: std::sync::Mutex::default(),
    })
}

/// Who owns the grouping serve deploys, recorded on every function so that `plan`, `apply` and
/// `status` elsewhere pick the grouping serve would: the schedule's origin (serve's start at
/// `origin`, less the offset of the phase it starts in) while a later phase is still to come,
/// else the phase it holds (which, unlike an origin, a restart leaves the same: an unchanged
/// project redeploys nothing). `upcoming` is empty with `--no-schedule` and with an optimizer.
fn grouping_owner(
    config: &Config,
    start: Option<usize>,
    upcoming: &[(Duration, usize)],
    origin: tokio::time::Instant,
) -> crate::platform::owner::GroupingOwner {
    if upcoming.is_empty() {
        crate::platform::owner::GroupingOwner::Phase(start.map_or(0, |i| i + 1))
    } else {
        let start_offset = start.map(|i| config.phases[i].after).unwrap_or_default();
        let started = std::time::SystemTime::now()
            .checked_sub(origin.elapsed())
            .unwrap_or(std::time::UNIX_EPOCH);
        let origin = started
            .checked_sub(start_offset)
            .unwrap_or(std::time::UNIX_EPOCH);
        crate::platform::owner::GroupingOwner::Schedule {
            origin: humantime::format_rfc3339_millis(origin).to_string(),
        }
    }
}

/// Records serve's address in the state dir for the other commands; the record is removed when
/// the returned guard drops. A failure is a warning: serve runs on.
fn record_address(config: &Config, local: SocketAddr) -> Option<self::address::Recorded> {
    match self::address::ServeAddress::of_this_process(local).write(&config.state_dir()) {
        Ok(recorded) => Some(recorded),
        Err(e) => {
            tracing::warn!(
                "cannot record serve's address in `{}` ({e}); other commands need `--server`",
                config.state_dir().display()
            );
            None
        }
    }
}

/// Starts the HTTP server on `bound`'s listener: the guard before every route, then the
/// proxy's and the dashboard's routes, within the connection limits.
fn start_server(
    config: &Config,
    bound: Bound,
    state: &Arc<AppState>,
    runner: &Arc<Runner>,
) -> Server {
    let stop_listening = Arc::new(tokio::sync::Notify::new());
    let task = {
        let stop_listening = stop_listening.clone();
        let guard = Arc::new(guard::Guard::new(
            bound.local.ip(),
            &bound.advertise,
            config
                .nuctl
                .proxy_url
                .as_deref()
                .and_then(|url| url.parse::<hyper::Uri>().ok())
                .and_then(|uri| uri.host().map(str::to_string))
                .as_deref(),
            &config.serve.allowed_hosts,
            &config.serve.allowed_origins,
        ));
        // The guard runs first, before any route: a refused request does no work at all.
        let app = http::router(state.clone(), runner.clone())
            .merge(dashboard::router(state.clone()))
            .layer(axum::middleware::from_fn_with_state(guard, guard::enforce));
        let (max_connections, lowered) = listener::connection_limit(config.serve.max_connections);
        if let Some(why) = lowered {
            tracing::warn!("{why}");
        }
        let limits = listener::Limits {
            header_read: config.serve.header_read_timeout,
            idle: config.serve.idle_timeout,
            max_connections,
        };
        let listener = bound.listener;
        tokio::spawn(listener::serve(listener, app, limits, async move {
            stop_listening.notified().await;
        }))
    };
    Server {
        task,
        stop_listening,
    }
}

/// The HTTP server task and the switch that stops its listener.
struct Server {
    task: tokio::task::JoinHandle<()>,
    stop_listening: Arc<tokio::sync::Notify>,
}

impl Server {
    /// Stops listening and waits (at most [`CLOSE_GRACE`]) for open connections to finish.
    async fn stop(mut self) {
        self.stop_listening.notify_one();
        match tokio::time::timeout(CLOSE_GRACE, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("server task failed: {e}"),
            Err(_) => {
                tracing::warn!(
                    "connections still open {CLOSE_GRACE:?} after shutdown; closing them"
                );
                self.task.abort();
            }
        }
    }
}

/// The shutdown (see the module docs): stop the schedule, drain, stop listening and the
/// workers.
async fn shut_down(
    ui: &Ui,
    state: &AppState,
    platform: &dyn Platform,
    server: Server,
    background: Option<tokio::task::JoinHandle<()>>,
    timeout: Duration,
) {
    state.draining.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let inflight = state.inflight.count();
    status(
        ui,
        "Stopping",
        &format!(
            "serve: new client requests get 503; {inflight} in flight (drain up to {})",
            humantime::format_duration(timeout)
        ),
    );
    if inflight > 0 {
        report::emit(Event::Begin {
            id: "shutdown".to_string(),
            verb: "Draining".to_string(),
            subject: format!(
                "{inflight} request(s) in flight (up to {})",
                humantime::format_duration(timeout)
            ),
        });
    }
    if let Some(background) = background {
        // A regroup in progress is cancelled; what it started stops with it.
        background.abort();
        let _ = background.await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let drained = state.inflight.wait_idle(deadline).await;
    if inflight > 0 || !drained {
        report::emit(Event::End {
            id: "shutdown".to_string(),
            verb: if drained { "Drained" } else { "Cut off" }.to_string(),
            subject: if drained {
                "the requests in flight".to_string()
            } else {
                format!("{} request(s) still in flight", state.inflight.count())
            },
            elapsed: Some(started.elapsed()),
            tone: if drained { Tone::Good } else { Tone::Warn },
            detail: Vec::new(),
        });
    }
    if drained {
        tracing::info!("shutdown: drained in {:.2?}", started.elapsed());
    } else {
        let table = state.routes.current();
        let busy: Vec<String> = table
            .functions()
            .values()
            .filter(|f| f.inflight() > 0)
            .map(|f| {
                format!(
                    "`{}` ({} in flight; tasks {})",
                    f.name,
                    f.inflight(),
                    f.tasks.join(", ")
                )
            })
            .collect();
        tracing::warn!(
            "shutdown: the drain deadline (`[serve] shutdown-timeout` = {}) passed with {} \
             request(s) still in flight; cutting them off{}",
            humantime::format_duration(timeout),
            state.inflight.count(),
            if busy.is_empty() {
                String::new()
            } else {
                format!(": {}", busy.join(", "))
            }
        );
    }
    // Stop listening first; then the workers, so that a request cut off above still gets an
    // answer (an error) before its connection closes.
    let stopping = tokio::spawn(server.stop());
    platform.shutdown().await;
    let _ = stopping.await;
}

/// Deploys the start phase. A failed function or a held lock is retried in the background; any
/// other failure ends serve.
async fn deploy_start(ui: &Ui, runner: &Runner, state: &AppState, start_name: &str) -> Result<()> {
    match runner.regroup(&format!("start ({start_name})")).await {
        Ok(report) if report.failed.is_empty() => state.ready.store(true, Ordering::SeqCst),
        Ok(report) => ui.status(&format!(
            "warning: {} function(s) failed to deploy; retrying every {}s",
            report.failed.len(),
            RETRY_AFTER.as_secs()
        )),
        Err(err) if err.code == ExitCode::TempFail => ui.status(&format!(
            "warning: {}; retrying every {}s",
            err.message,
            RETRY_AFTER.as_secs()
        )),
        Err(err) => {
            return Err(
                Error::failure(format!("could not deploy {start_name}")).caused_by(err.to_string())
            )
        }
    }
    Ok(())
}

/// A one-line status of serve (suppressed by `-q`).
fn status(ui: &Ui, verb: &str, subject: &str) {
    if !ui.quiet {
        report::emit(Event::Status {
            verb: verb.to_string(),
            subject: subject.to_string(),
            tone: Tone::Good,
        });
    }
}

/// The route table and the schedule, once the start phase is up.
fn print_start(ui: &Ui, state: &AppState, upcoming: &Upcoming, optimizing: Option<&OptimizerLoop>) {
    if ui.quiet {
        return;
    }
    let table = state.routes.current();
    report::emit(Event::Table {
        verb: "Routes".to_string(),
        subject: if table.by_task.is_empty() {
            "none".to_string()
        } else {
            String::new()
        },
        rows: if table.by_task.is_empty() {
            Vec::new()
        } else {
            table.rows()
        },
    });
    if let Some(optimizing) = optimizing {
        status(
            ui,
            "Schedule",
            &format!(
                "none; {} (later phases are not applied)",
                optimizing.describe()
            ),
        );
    } else if upcoming.is_empty() {
        status(ui, "Schedule", "none (staying in this grouping)");
    } else {
        let mut rows = vec![vec!["AFTER".to_string(), "PHASE".to_string()]];
        rows.extend(upcoming.iter().map(|(delay, i)| {
            vec![
                format!("+{}", humantime::format_duration(*delay)),
                format!("phase {}", i + 1),
            ]
        }));
        report::emit(Event::Table {
            verb: "Schedule".to_string(),
            subject: String::new(),
            rows,
        });
    }
}

/// The schedule, the resync ticker, retries and `--watch`, until aborted.
async fn background(
    runner: Arc<Runner>,
    state: Arc<AppState>,
    origin: tokio::time::Instant,
    upcoming: Upcoming,
    watch: bool,
) {
    let mut upcoming = upcoming.into_iter().peekable();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retry = tokio::time::Instant::now();
    let resync_every = runner.platform().resync_interval();
    let mut last_resync = tokio::time::Instant::now();
    let mut watcher = watch.then(|| Watcher::new(&runner.workspace().config));
    loop {
        let next_phase = upcoming.peek().map(|(delay, _)| origin + *delay);
        tokio::select! {
            () = async {
                match next_phase {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let (_, i) = upcoming.next().expect("peeked");
                runner.set_selection(Selection::Phase(i + 1));
                let due = origin.elapsed();
                let outcome = runner.regroup(&format!("phase {}", i + 1)).await;
                if let Ok(report) = outcome {
                    tracing::info!(
                        "phase {} due at +{:.2?}, routes switched {:.2?} later",
                        i + 1,
                        due,
                        report.elapsed
                    );
                }
            }
            _ = tick.tick() => {
                if let Some(watcher) = watcher.as_mut() {
                    if watcher.changed() {
                        reload(&runner).await;
                        continue;
                    }
                }
                if runner.failed.load(Ordering::SeqCst) && last_retry.elapsed() >= RETRY_AFTER {
                    last_retry = tokio::time::Instant::now();
                    if runner.regroup("retry").await.is_ok_and(|r| r.failed.is_empty()) {
                        state.ready.store(true, Ordering::SeqCst);
                    }
                } else if last_resync.elapsed() >= resync_every {
                    last_resync = tokio::time::Instant::now();
                    // Drift (another terminal's apply or destroy) is repaired with a regroup
                    // when `[serve] self-heal` is on; a failure is retried like any other.
                    if runner.resync().await {
                        let _ = runner.regroup("self-heal").await;
                    }
                }
                state
                    .metrics
                    .worker_restarts_total(runner.platform().worker_restarts());
                state
                    .metrics
                    .trigger_events_total(&runner.platform().trigger_events());
            }
        }
    }
}

/// `--watch`: reload fusion.toml; on success re-apply the current phase.
async fn reload(runner: &Runner) {
    let (file, options) = {
        let workspace = runner.workspace();
        (
            workspace.config.file.clone(),
            workspace.config.load_options(),
        )
    };
    match crate::config::load_with(&file, &options) {
        Ok(workspace) => {
            tracing::info!("`{}` or a task changed; reloading", file.display());
            if workspace.config.optimizer != runner.workspace().config.optimizer {
                tracing::warn!(
                    "`[optimizer]` changed: serve keeps the optimizer it started with; restart \
                     serve to apply the change"
                );
            }
            runner.set_workspace(workspace);
            let _ = runner.regroup("reload").await;
        }
        Err(diagnostics) => {
            let err: Error = diagnostics.into();
            tracing::error!("not reloading: {err}");
        }
    }
}

/// Notices changes to fusion.toml and the declared task directories by polling a fingerprint
/// of paths, sizes and modification times (cheap for task-sized trees).
struct Watcher {
    roots: Vec<std::path::PathBuf>,
    last: u64,
}

impl Watcher {
    fn new(config: &Config) -> Self {
        let mut roots = vec![config.file.clone()];
        roots.extend(config.overlay.clone());
        for task in config.tasks.values() {
            if let crate::config::TaskSource::Path { dir, .. } = &task.source {
                roots.push(dir.clone());
            }
        }
        let mut watcher = Watcher { roots, last: 0 };
        watcher.last = watcher.fingerprint();
        watcher
    }

    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for root in &self.roots {
            for entry in walkdir::WalkDir::new(root)
                .sort_by_file_name()
                .into_iter()
                .flatten()
            {
                if let Ok(meta) = entry.metadata() {
                    entry.path().hash(&mut hasher);
                    meta.len().hash(&mut hasher);
                    meta.modified().ok().hash(&mut hasher);
                }
            }
        }
        hasher.finish()
    }

    fn changed(&mut self) -> bool {
        let now = self.fingerprint();
        std::mem::replace(&mut self.last, now) != now
    }
}

/// SIGINT and SIGTERM, taken over from the moment [`Signals::install`] runs.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Error::failure(format!("cannot handle {name}: {e}")))
        };
        Ok(Signals {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_phase_reads_as_one_phrase_inside_the_start_reason() {
        assert_eq!(start_name(Some(1)), "phase 2");
        // Before: `start (the initial grouping (every task alone))`, parentheses in parentheses.
        assert_eq!(
            format!("start ({})", start_name(None)),
            "start (every task alone)"
        );
    }
}

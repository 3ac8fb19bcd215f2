//! `fusion.toml`: discovery, strict parsing and validation into a [`Config`].
//!
//! Parsing is strict (unknown keys are errors) and validation reports every problem it finds in
//! one run, each as a [`Diagnostic`] with file, line and column where there is one. Loading a
//! [`Workspace`] also loads and checks every declared task's `function.yaml`
//! ([`crate::config::taskspec`]).

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::diagnostic::{display_path, relative_to, Diagnostic, Diagnostics};
pub use self::pycheck::{check_python, PythonCheck};
pub use self::taskspec::TaskSpec;

pub(crate) mod check;
mod diagnostic;
pub mod pycheck;
pub mod taskspec;
#[cfg(test)]
mod tests;
mod units;

/// The file name looked for when walking up from the working directory.
pub const FILE_NAME: &str = "fusion.toml";

/// Which platform a project deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// `platform = "local"` (the default): functions run as local processes.
    #[default]
    Local,
    /// `platform = "nuctl"`: functions are deployed to Nuclio with `nuctl` (see `[nuctl]`).
    Nuctl,
}

/// `[project]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectConfig {
    /// `name`: the project name, a DNS label of at most [`crate::contract::MAX_PROJECT_NAME`] chars.
    pub name: String,
    /// `platform`: where the project deploys to, default [`PlatformKind::Local`].
    pub platform: PlatformKind,
}

/// Where a task's code comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSource {
    /// A directory; `dir` is resolved against the directory holding fusion.toml.
    Path {
        /// The path exactly as written in fusion.toml (never empty).
        written: String,
        /// `written` joined onto the directory holding fusion.toml.
        dir: PathBuf,
    },
    /// `{ upload = true }`: the code arrives later over `PUT /<task>`.
    Upload,
}

/// One entry of `[tasks]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDecl {
    /// The task name (the key under `[tasks]`), a DNS label of at most
    /// [`crate::contract::MAX_TASK_NAME`] chars.
    pub name: String,
    /// Where the task's code comes from.
    pub source: TaskSource,
}

/// One `[[phase]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Offset from `serve` start.
    pub after: Duration,
    /// The groups as written (task names; each group sorted, groups in file order).
    pub groups: Vec<Vec<String>>,
}

/// The highest `[serve] max-response-size`: a worker's answer travels in one frame, read into
/// memory whole.
pub const MAX_RESPONSE_LIMIT: u64 = 1024 * 1024 * 1024;

/// `[serve]`, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// `listen`, default `127.0.0.1:8000`; an `IP:PORT` socket address (no host names).
    pub listen: String,
    /// `advertise`: the host given to tasks in `Fusionizer-Server-Address` (default: the listen host).
    pub advertise: Option<String>,
    /// `token-env`: name of the env var holding the bearer token for PUT/DELETE.
    pub token_env: Option<String>,
    /// `max-body-size`, default 4 MiB like Nuclio's HTTP trigger.
    ///
    /// Every `max-*-size` key takes an integer (bytes) or a string with a unit: `B`, `KB`, `MB`,
    /// `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024), e.g. `"4MiB"`.
    pub max_body_bytes: u64,
    /// `max-response-size`: the largest answer (body and headers) a local worker sends, default
    /// 64 MiB, at most [`MAX_RESPONSE_LIMIT`]; a larger one is a 502 that names this setting.
    pub max_response_bytes: u64,
    /// `request-timeout`, default 60s.
    pub request_timeout: Duration,
    /// `drain-timeout`: how long a function being replaced or removed by a regroup may finish
    /// its in-flight requests before it is deleted, default 30s.
    pub drain_timeout: Duration,
    /// `shutdown-timeout`: how long serve, stopping on SIGINT/SIGTERM, lets in-flight requests
    /// (and the task-to-task calls they make) finish before it stops the workers, default 30s.
    /// Its own key because a supervisor's stop grace period bounds it, not a regroup's pace.
    pub shutdown_timeout: Duration,
    /// `max-upload-size` (zip as sent), default 16 MiB.
    pub max_upload_bytes: u64,
    /// `max-unpacked-size` (what an upload unpacks to), default 64 MiB.
    pub max_unpacked_bytes: u64,
    /// `trace-spans`: raw spans `GET /-/traces` keeps (a ring), default 1024; 0 keeps none.
    pub trace_spans: usize,
    /// `trace-edges`: distinct call edges (and entry tasks) aggregated, default 4096.
    pub trace_edges: usize,
    /// `async-queue`: asynchronous calls (`Prefer: respond-async`) accepted and not finished,
    /// default 256; past it a call gets 503 with `Retry-After`.
    pub async_queue: usize,
    /// `async-queue-size`: the request bodies those calls hold, in bytes, default 64 MiB; a call
    /// that would take the queue past it gets 503 with `Retry-After` as well.
    pub async_queue_bytes: u64,
    /// `allowed-hosts`: further names the `Host` header may carry (beyond the listen address,
    /// `localhost`, the loopback addresses and `advertise`); `*.example.com` matches subdomains,
    /// `*` any host. Anything else is refused before any work (docs/security.md).
    pub allowed_hosts: Vec<String>,
    /// `allowed-origins`: browser origins (`http://host:port`) allowed beside serve's own; `*`
    /// allows any. A request with another `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// `header-read-timeout`: how long a client has to send a request's headers once it started,
    /// default 10s.
    pub header_read_timeout: Duration,
    /// `body-read-timeout`: how long a client has to send a whole request body, default 60s.
    pub body_read_timeout: Duration,
    /// `idle-timeout`: how long a connection may sit without a request (a keep-alive connection
    /// between requests, or one that never sends anything), default 60s.
    pub idle_timeout: Duration,
    /// `max-connections`: client connections open at once, default 1024, lowered at start so
    /// that file descriptors stay in reserve for the workers and the platform.
    pub max_connections: usize,
    /// `self-heal`, default true: when serve notices that the live functions drifted from what
    /// it deployed (another terminal's `apply` or `destroy`), it reports the drift and repairs
    /// it; `false` only reports it (and `/-/health` stays `degraded` while a task has no
    /// function).
    pub self_heal: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8000".to_string(),
            advertise: None,
            token_env: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            max_upload_bytes: 16 * 1024 * 1024,
            max_unpacked_bytes: 64 * 1024 * 1024,
            trace_spans: 1024,
            trace_edges: 4096,
            async_queue: 256,
            async_queue_bytes: 64 * 1024 * 1024,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            self_heal: true,
        }
    }
}

/// Which of a Nuclio function's invocation URLs the proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlPreference {
    /// `status.externalInvocationUrls` first (a proxy outside the cluster). The default.
    #[default]
    External,
    /// `status.internalInvocationUrls` first (a proxy inside the cluster).
    Internal,
}

/// How `nuctl deploy` gets each function's image (`[nuctl] images`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageMode {
    /// `"build"`: every deploy builds the image with nuctl (`--path`), which needs Docker where
    /// nuctl runs. The default.
    #[default]
    Build,
    /// `"prebuilt"`: images were built ahead by `fusionizer images`; deploys pass
    /// `--run-image` and build nothing, so nuctl needs no Docker (serve in a pod).
    Prebuilt,
}

/// `[nuctl] readiness-timeout` when unset: every deploy has a deadline.
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(300);

/// `[nuctl] build-timeout` when unset.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// `[nuctl]`, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct NuctlConfig {
    /// `binary`, default `nuctl`; env `FUSIONIZER_NUCTL` overrides it (applied by the platform).
    pub binary: String,
    /// `platform`: nuctl `--platform` (`auto`, `local`, `kube`).
    pub platform: Option<String>,
    /// `namespace`: nuctl `--namespace`; unset means nuctl's default.
    pub namespace: Option<String>,
    /// `kubeconfig`: nuctl `--kubeconfig`; `~` expanded, relative to fusion.toml's directory.
    pub kubeconfig: Option<PathBuf>,
    /// `registry`: `nuctl deploy --registry`, where built images are pushed.
    pub registry: Option<String>,
    /// `run-registry`: `nuctl deploy --run-registry`, where the cluster pulls images from.
    pub run_registry: Option<String>,
    /// `project`: the Nuclio project (`--project-name`).
    pub project: Option<String>,
    /// `images = "build" | "prebuilt"`: whether deploys build images or run prebuilt ones.
    pub images: ImageMode,
    /// `readiness-timeout`: `nuctl deploy --readiness-timeout`, rounded up to whole seconds,
    /// passed on every deploy; default [`DEFAULT_READINESS_TIMEOUT`].
    pub readiness_timeout: Duration,
    /// `build-timeout`: how long a deploy may take before its readiness wait starts (building
    /// and pushing the image); a `nuctl deploy` still running after `build-timeout` plus
    /// `readiness-timeout` is killed. Default [`DEFAULT_BUILD_TIMEOUT`].
    pub build_timeout: Duration,
    /// `invocation-url = "external" | "internal"`.
    pub invocation_url: UrlPreference,
    /// `http-trigger-service-type`: `nuctl deploy --http-trigger-service-type` (`NodePort` or
    /// `ClusterIP`); unset means Nuclio's default (`ClusterIP` on Kubernetes).
    pub http_trigger_service_type: Option<String>,
    /// `proxy-url`: how functions reach `fusionizer serve` from inside the cluster; baked into
    /// each function's env as `FUSIONIZER_PROXY_URL`.
    pub proxy_url: Option<String>,
}

impl Default for NuctlConfig {
    fn default() -> Self {
        NuctlConfig {
            binary: "nuctl".to_string(),
            platform: None,
            namespace: None,
            kubeconfig: None,
            registry: None,
            run_registry: None,
            project: None,
            images: ImageMode::Build,
            readiness_timeout: DEFAULT_READINESS_TIMEOUT,
            build_timeout: DEFAULT_BUILD_TIMEOUT,
            invocation_url: UrlPreference::External,
            http_trigger_service_type: None,
            proxy_url: None,
        }
    }
}

/// `[optimizer] kind`: who decides the grouping while `serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// The `[[phase]]` schedule, nothing else (the default).
    #[default]
    Static,
    /// Every `interval`, the `fusionizer optimize` algorithm over the last window of traces.
    Feedback,
    /// Every `interval`, an external program (`command`) that reads traces on stdin and prints
    /// the next grouping (`docs/optimizer-protocol.md`).
    Command,
}

/// `[optimizer]`, with defaults filled in (`docs/optimize.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerConfig {
    /// `kind`, default [`OptimizerKind::Static`].
    pub kind: OptimizerKind,
    /// `interval`: how often a `feedback` or `command` optimizer runs, default 60s.
    pub interval: Duration,
    /// `min-calls`: edges with fewer calls are ignored, default 10. Also the default of
    /// `fusionizer optimize --min-calls`.
    pub min_calls: u64,
    /// `min-gain`: the expected gain (share of synchronous calls that become in-process, 0 to 1)
    /// below which a `feedback` proposal is not applied, default 0.05.
    pub min_gain: f64,
    /// `stable-intervals`: how many consecutive runs must propose the same grouping before it is
    /// applied (hysteresis), default 2.
    pub stable_intervals: u32,
    /// `cooldown`: the least time between two live regroups made by an optimizer, default 5m.
    pub cooldown: Duration,
    /// `command`: the program and its arguments (`kind = "command"` only).
    pub command: Vec<String>,
    /// `timeout`: how long one run of `command` may take before it is killed, default 10s.
    pub timeout: Duration,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Static,
            interval: Duration::from_secs(60),
            min_calls: 10,
            min_gain: 0.05,
            stable_intervals: 2,
            cooldown: Duration::from_secs(300),
            command: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// A parsed and validated `fusion.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The fusion.toml file itself.
    pub file: PathBuf,
    /// The directory holding it; task paths are relative to it.
    pub root: PathBuf,
    /// Where everything fusionizer writes goes ([`Config::state_dir`]): [`LoadOptions::state_dir`]
    /// when given, else [`crate::contract::STATE_DIR`] beside fusion.toml. Always absolute.
    pub state_dir: PathBuf,
    /// The overlay merged over fusion.toml's `[serve]` and `[nuctl]`, if any
    /// ([`LoadOptions::overlay`]), absolute.
    pub overlay: Option<PathBuf>,
    /// `[project]`.
    pub project: ProjectConfig,
    /// `[tasks]`: task name → declaration.
    pub tasks: BTreeMap<String, TaskDecl>,
    /// `[[phase]]` entries, in file order.
    pub phases: Vec<Phase>,
    /// `[serve]`, with defaults filled in.
    pub serve: ServeConfig,
    /// `[nuctl]`, with defaults filled in.
    pub nuctl: NuctlConfig,
    /// `[optimizer]`, with defaults filled in.
    pub optimizer: OptimizerConfig,
    /// `[[override]]` entries, in file order.
    pub overrides: Vec<Override>,
}

/// One `[[override]]`: settings for the function of exactly this task set, in whatever phase
/// it is deployed (`docs/optimize.md`, "Memory").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// `tasks`: the group, sorted.
    pub tasks: Vec<String>,
    /// `resources.limits.memory`: a Kubernetes quantity such as `"256Mi"`, written into the
    /// fused function.yaml's `spec.resources.limits.memory` in place of the merged value.
    pub memory_limit: Option<String>,
}

impl Config {
    /// The state directory: everything fusionizer writes (build output, the local platform's
    /// live state, run records, uploads, the lock, serve's records). `.fusionizer/` beside
    /// fusion.toml unless [`LoadOptions::state_dir`] says otherwise; created when first needed.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
    }

    /// The options this config was loaded with, to load it again alike (serve's `--watch`).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            state_dir: Some(self.state_dir.clone()),
            overlay: self.overlay.clone(),
        }
    }

    /// The proxy's base URL that tasks use to call a task in another function
    /// (`FUSIONIZER_PROXY_URL`); every place that hands it out asks here. `bound` is the address
    /// serve has bound, while it runs:
    ///
    /// - serve running: `[serve] advertise`, else the bound IP (`127.0.0.1` for an unspecified
    ///   one, [`ServeConfig::advertised_host`]), with the bound port;
    /// - on nuctl, baked in at fuse time: `[nuctl] proxy-url`, else `[serve] advertise` with the
    ///   port of `[serve] listen`, else none (the listen host is no address inside a cluster);
    /// - on local, outside serve: `[serve] advertise` with the port of `[serve] listen`, else
    ///   `[serve] listen` itself.
    pub fn proxy_url(&self, bound: Option<std::net::SocketAddr>) -> Option<String> {
        let serve = &self.serve;
        if let Some(bound) = bound {
            let host = serve.advertised_host(bound.ip());
            return Some(format!("http://{host}:{}", bound.port()));
        }
        let advertised = serve.advertise.as_deref().and_then(|host| {
            let port = serve.listen.rsplit_once(':')?.1;
            Some(format!("http://{host}:{port}"))
        });
        match self.project.platform {
            PlatformKind::Nuctl => self.nuctl.proxy_url.clone().or(advertised),
            PlatformKind::Local => {
                Some(advertised.unwrap_or_else(|| format!("http://{}", serve.listen)))
            }
        }
    }
}

impl ServeConfig {
    /// The host tasks are told to reach serve at (`Fusionizer-Server-Address`, the proxy URL)
    /// while serve listens on `ip`: `advertise`, else `ip`, reading `127.0.0.1` for an
    /// unspecified one (`0.0.0.0`, `::`).
    pub fn advertised_host(&self, ip: std::net::IpAddr) -> String {
        self.advertise.clone().unwrap_or_else(|| {
            if ip.is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                ip.to_string()
            }
        })
    }
}

/// A config plus the loaded spec of every task whose code is a path.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The parsed and validated fusion.toml.
    pub config: Config,
    /// Task name → spec, for `TaskSource::Path` tasks (upload tasks are added by `serve`).
    pub specs: BTreeMap<String, TaskSpec>,
}

/// Walks up from `start` looking for `fusion.toml`, like cargo does for Cargo.toml.
pub fn discover(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|candidate| candidate.is_file())
}

/// What a load takes besides fusion.toml itself (the CLI's `--state-dir` and `--overlay`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The state directory ([`Config::state_dir`]); `None` is `.fusionizer/` beside fusion.toml.
    /// A relative path is made absolute against the process's working directory.
    pub state_dir: Option<PathBuf>,
    /// A TOML file whose `[serve]` and `[nuctl]` tables are merged key by key over
    /// fusion.toml's before validation (no other table; `docs/nuctl.md`, "Overlay").
    pub overlay: Option<PathBuf>,
}

/// [`load_with`] with the default options: state beside fusion.toml, no overlay.
pub fn load(file: &Path) -> Result<Workspace, Diagnostics> {
    load_with(file, &LoadOptions::default())
}

/// Reads, parses and validates `file` (with `options`' overlay merged in) and every declared
/// task. All problems at once: those in fusion.toml and the overlay (in file order, including
/// task directories that are missing), then those in each task's `function.yaml` (in task
/// order).
pub fn load_with(file: &Path, options: &LoadOptions) -> Result<Workspace, Diagnostics> {
    let file = absolute(file);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Diagnostics(vec![Diagnostic::new(&file, format!("cannot read: {e}"))]))?;
    let overlay = match &options.overlay {
        Some(path) => {
            let path = absolute(path);
            let text = read_overlay(&path)?;
            Some((path, text))
        }
        None => None,
    };
    let overlay_ref = overlay
        .as_ref()
        .map(|(path, text)| check::Overlay { file: path, text });
    let mut parsed = check::parse(&file, &text, overlay_ref);
    if let Some(config) = &mut parsed.config {
        if let Some(dir) = &options.state_dir {
            config.state_dir = absolute(dir);
        }
    }
    let mut diagnostics = parsed.diagnostics;
    let mut task_diagnostics = Vec::new();
    let mut specs = BTreeMap::new();
    if let Some(config) = &parsed.config {
        for (name, decl) in &config.tasks {
            let TaskSource::Path { written, dir } = &decl.source else {
                continue;
            };
            let located = |message: String, hint: &str| {
                let mut d = Diagnostic::new(&file, message).with_hint(hint);
                if let Some(span) = parsed.task_spans.get(name) {
                    let (line, column) = check::line_column(&text, span.start);
                    d = d.at(line, column);
                }
                d
            };
            if !dir.exists() {
                let hint = match nearest_directory(written, dir) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => "create it with a `function.yaml` and the handler module, or fix the \
                             path"
                        .to_string(),
                };
                diagnostics.push(located(
                    format!("task `{name}`: directory `{written}` does not exist"),
                    &hint,
                ));
            } else if !dir.is_dir() {
                diagnostics.push(located(
                    format!("task `{name}`: `{written}` is not a directory"),
                    "point the task at the directory holding its `function.yaml`",
                ));
            } else {
                match TaskSpec::read(name, dir, config.project.platform) {
                    Ok(spec) => {
                        specs.insert(name.clone(), spec);
                    }
                    Err(problems) => task_diagnostics.extend(problems),
                }
            }
        }
    }
    sort_by_location(&mut diagnostics);
    diagnostics.extend(task_diagnostics);
    match parsed.config {
        Some(config) if diagnostics.is_empty() => Ok(Workspace { config, specs }),
        _ => Err(Diagnostics(diagnostics)),
    }
}

/// The text of the overlay `path`, or why it cannot be read.
fn read_overlay(path: &Path) -> Result<String, Diagnostics> {
    std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            path,
            format!("cannot read the overlay: {e}"),
        )
        .with_hint(
            "point `--overlay` or `FUSIONIZER_OVERLAY` at a readable TOML file holding \
             `[serve]` and `[nuctl]` settings, or leave both unset",
        )])
    })
}

/// For a task directory `written` (resolved: `dir`) that does not exist: its closest sibling
/// directory, written the same way (`tasks/b` for `tasks/bb`), when one is close enough to be a
/// likely typo.
fn nearest_directory(written: &str, dir: &Path) -> Option<String> {
    let wanted = dir.file_name()?.to_str()?;
    let siblings: Vec<String> = std::fs::read_dir(dir.parent()?)
        .ok()?
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    let close = check::closest(wanted, siblings.iter().map(String::as_str))?;
    let trimmed = written.trim_end_matches('/');
    Some(match trimmed.rfind('/') {
        Some(slash) => format!("{}{close}", &trimmed[..=slash]),
        None => close.to_string(),
    })
}

/// Parses and validates fusion.toml text (no task files are read). `file` is used in diagnostics
/// and to resolve task paths.
pub fn parse(file: &Path, text: &str) -> Result<Config, Diagnostics> {
    let file = absolute(file);
    let parsed = check::parse(&file, text, None);
    let mut diagnostics = parsed.diagnostics;
    sort_by_location(&mut diagnostics);
    match parsed.config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(Diagnostics(diagnostics)),
    }
}

/// Parses a duration like `90s`, `5m`, `1h30m`, `1h 30m`, `500ms`, `0s`. A bare number is refused
/// (`90` could be seconds or minutes); the error says what to write instead.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    units::duration(text).map_err(|e| e.to_string())
}

/// Parses a byte size: an integer followed by an optional unit (`B`, `KB`, `MB`, `GB`, `KiB`,
/// `MiB`, `GiB`), e.g. `4MiB`. Zero is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    units::size(text).map_err(|e| e.to_string())
}

/// Diagnostics of one file in reading order; those without a location (about the file as a
/// whole) first. Stable, so problems at one spot keep the order they were found in.
fn sort_by_location(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| (d.line.unwrap_or(0), d.column.unwrap_or(0)));
}

/// `path` made absolute against the process's working directory (the one place config paths
/// are made absolute; every path in a loaded [`Config`] is absolute).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

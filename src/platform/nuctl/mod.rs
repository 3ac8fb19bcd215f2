//! The `nuctl` platform: real Nuclio (Docker or Kubernetes) driven through the `nuctl` CLI.
//!
//! Every call goes through [`cli::Nuctl`]; state comes only from `get … -o json`
//! ([`function`]); invocations go straight to the function's invocation URL over a pooled HTTP
//! client ([`invoke`]), with the URL cached here and refreshed after every deploy, on
//! [`Platform::refresh`], and when a connection is refused. Deploys write the artifact under
//! `.fusionizer/build/<name>/` and run
//! `nuctl deploy <name> --path <dir> --file <dir>/function.yaml`, or, with `[nuctl] images =
//! "prebuilt"`, `nuctl deploy <name> --file <dir>/function.yaml --run-image <image>` (the image
//! `fusionizer images` built ahead, [`image`]; no build); ownership labels and
//! annotations travel in that function.yaml, never as flags (nuctl's `--labels` truncates values
//! containing `,` or `=`).

pub mod cli;
pub mod function;
pub mod image;
pub mod invoke;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::config::{Config, ImageMode, NuctlConfig};
use crate::contract::{ANNOTATION_DIGEST, MAX_FUNCTION_NAME};
use crate::fuse::Artifact;
use crate::platform::{
    DeployProgress, FunctionState, HostOptions, InvokeError, Invoker, LiveFunction, Platform,
    PlatformError, LABEL_PROJECT,
};

pub use cli::{Nuctl, NuctlError, BINARY_ENV, NUCTL_VERSION};
use function::NuclioFunction;
use invoke::NuctlInvoker;

use crate::http_client::{http_client, HttpClient};

/// nuctl's default for `deploy --registry` (pkg/nuctl/command/build.go `addBuildFlags`).
pub const REGISTRY_ENV: &str = "NUCTL_REGISTRY";

/// Nuclio creates this project itself; it never needs `nuctl create project`.
const DEFAULT_NUCLIO_PROJECT: &str = "default";

/// How long "this function has no endpoint" is believed before asking nuctl again.
const NEGATIVE_CACHE: Duration = Duration::from_secs(1);

/// Real Nuclio through `nuctl`.
pub struct NuctlPlatform {
    inner: Arc<Inner>,
}

/// What the platform and its invokers share.
pub(crate) struct Inner {
    nuctl: Nuctl,
    settings: NuctlConfig,
    /// The registries of `[nuctl]` and nuctl's environment, for `images = "prebuilt"`.
    registries: Option<image::Registries>,
    /// The fusionizer project (the `fusionizer.io/project` label value).
    project: String,
    /// `<root>/.fusionizer/build`: one directory per deployed function.
    build_dir: PathBuf,
    http: HttpClient,
    request_timeout: Duration,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    /// Serialises endpoint look-ups so a burst of refused connections runs one `nuctl get`.
    lookup: tokio::sync::Mutex<()>,
    /// Whether the Nuclio project is known to exist (checked once per process).
    nuclio_project_ready: tokio::sync::Mutex<bool>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    /// `host:port[/path]`, or why there is none.
    address: Result<String, String>,
    fetched: Instant,
}

impl NuctlPlatform {
    /// Opens the platform for `config`; the binary is `[nuctl] binary` unless env
    /// `FUSIONIZER_NUCTL` names another. Nothing runs yet: a missing nuctl shows on first use.
    pub fn new(config: &Config, host: Option<HostOptions>) -> Result<Self, PlatformError> {
        let nuctl = Nuctl::new(&config.nuctl, std::env::var_os(BINARY_ENV));
        Self::with_nuctl(config, host, nuctl)
    }

    /// Like [`NuctlPlatform::new`] with an explicitly configured [`Nuctl`] (e.g. with a timeout).
    pub fn with_nuctl(
        config: &Config,
        host: Option<HostOptions>,
        nuctl: Nuctl,
    ) -> Result<Self, PlatformError> {
        let request_timeout = host.map_or(config.serve.request_timeout, |h| h.request_timeout);
        Ok(NuctlPlatform {
            inner: Arc::new(Inner {
                nuctl,
                settings: config.nuctl.clone(),
                registries: image::Registries::from_env(&config.nuctl),
                project: config.project.name.clone(),
                build_dir: config.state_dir().join("build"),
                http: http_client(),
                request_timeout,
                endpoints: Mutex::new(HashMap::new()),
                lookup: tokio::sync::Mutex::new(()),
                nuclio_project_ready: tokio::sync::Mutex::new(false),
            }),
        })
    }

    /// The wrapper every call goes through.
    pub fn nuctl(&self) -> &Nuctl {
        &self.inner.nuctl
    }

    /// Where `deploy` writes the artifact of function `name`.
    pub fn build_dir(&self, name: &str) -> PathBuf {
        self.inner.build_dir.join(name)
    }

    /// Replaces a function: `nuctl delete function <name> --force` (which works even while it
    /// is stuck provisioning), then a fresh deploy. For functions a plan marked `replace`.
    pub async fn replace(
        &self,
        artifact: &Artifact,
        progress: &dyn DeployProgress,
    ) -> Result<(), PlatformError> {
        // Refused before the old function is deleted, not after.
        check_name(&artifact.name)?;
        progress.step(&artifact.name, "deleting the old function (--force)");
        self.delete(&artifact.name, true).await?;
        self.deploy(artifact, progress).await
    }
}

impl Inner {
    /// `nuctl get function <name> -o json`; also refreshes the endpoint cache.
    async fn fetch(&self, name: &str) -> Result<Option<NuclioFunction>, NuctlError> {
        let cmd = self.nuctl.command(["get", "function", name, "-o", "json"]);
        let found = match self.nuctl.get_json(&cmd).await? {
            None => None,
            Some(values) => {
                let mut functions = parse_functions(&cmd, values)?;
                functions.retain(|f| f.metadata.name == name);
                functions.pop()
            }
        };
        self.remember(name, found.as_ref());
        Ok(found)
    }

    fn remember(&self, name: &str, function: Option<&NuclioFunction>) {
        let address = match function {
            None => Err("it is not deployed".to_string()),
            // A same-named function of another owner is never invoked.
            Some(f) if !f.is_owned_by(&self.project) => Err(format!(
                "the function of that name is not owned by fusionizer project `{}`",
                self.project
            )),
            Some(f) => match f.state() {
                state @ (FunctionState::Provisioning(_)
                | FunctionState::Error(_)
                | FunctionState::Unhealthy(_)) => Err(format!("its state is `{}`", state.word())),
                _ => f.address(self.settings.invocation_url, self.is_docker()),
            },
        };
        self.endpoints.lock().expect("endpoint cache").insert(
            name.to_string(),
            Endpoint {
                address,
                fetched: Instant::now(),
            },
        );
    }

    /// Whether nuctl drives Nuclio's Docker platform (`[nuctl] platform = "local"`), where a
    /// function's node is this machine (see [`function::pick_address`]).
    fn is_docker(&self) -> bool {
        self.settings.platform.as_deref() == Some("local")
    }

    /// What fusionizer knows about the live deploy of `f`: the function.yaml it wrote under
    /// `.fusionizer/build/<name>/` when that is the one live (same `fusionizer.io/digest`), and
    /// the `--readiness-timeout` it passes.
    fn as_deployed(&self, f: &NuclioFunction) -> function::AsDeployed {
        let live_digest = f
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_DIGEST));
        let written = live_digest.and_then(|digest| {
            let path = self
                .build_dir
                .join(&f.metadata.name)
                .join(crate::contract::FUNCTION_FILE);
            let text = std::fs::read_to_string(path).ok()?;
            let doc: serde_json::Value = serde_norway::from_str(&text).ok()?;
            let written_digest = doc
                .get("metadata")?
                .get("annotations")?
                .get(ANNOTATION_DIGEST)?
                .as_str()?;
            (written_digest == digest).then_some(doc)
        });
        function::AsDeployed {
            written,
            readiness_timeout: Some(readiness_secs(self.settings.readiness_timeout)),
        }
    }

    /// A function of this project, as plan and status see it.
    fn live(&self, f: &NuclioFunction) -> LiveFunction {
        f.to_live_as(&self.as_deployed(f))
    }

    fn forget(&self, name: &str) {
        self.endpoints.lock().expect("endpoint cache").remove(name);
    }

    /// The cached address of `name`, looked up with nuctl when missing or (with `refresh`)
    /// when it was cached before this call.
    async fn address(&self, name: &str, refresh: bool) -> Result<String, InvokeError> {
        let asked = Instant::now();
        let usable = |e: &Endpoint| {
            if refresh {
                e.fetched > asked
            } else {
                e.address.is_ok() || e.fetched.elapsed() < NEGATIVE_CACHE
            }
        };
        let cached = |this: &Self| {
            this.endpoints
                .lock()
                .expect("endpoint cache")
                .get(name)
                .filter(|e| usable(e))
                .cloned()
        };
        let endpoint = match cached(self) {
            Some(e) => e,
            None => {
                let _guard = self.lookup.lock().await;
                match cached(self) {
                    Some(e) => e,
                    None => {
                        self.fetch(name)
                            .await
                            .map_err(|e| InvokeError::Unavailable {
                                function: name.to_string(),
                                reason: PlatformError::from(e).to_string(),
                            })?;
                        cached(self).ok_or_else(|| InvokeError::Unavailable {
                            function: name.to_string(),
                            reason: "no endpoint was recorded".to_string(),
                        })?
                    }
                }
            }
        };
        endpoint.address.map_err(|reason| InvokeError::Unavailable {
            function: name.to_string(),
            reason,
        })
    }

    /// Creates the Nuclio project `[nuctl] project` once, if nuctl does not know it.
    async fn ensure_nuclio_project(&self) -> Result<(), NuctlError> {
        let Some(project) = self.settings.project.as_deref() else {
            return Ok(());
        };
        if project == DEFAULT_NUCLIO_PROJECT {
            return Ok(());
        }
        let mut ready = self.nuclio_project_ready.lock().await;
        if *ready {
            return Ok(());
        }
        let get = self
            .nuctl
            .command(["get", "project", project, "-o", "json"]);
        if self.nuctl.get_json(&get).await?.is_none() {
            let create = self.nuctl.command(["create", "project", project]);
            self.nuctl.run(&create).await?;
        }
        *ready = true;
        Ok(())
    }

    /// The error of a deploy killed at its deadline: the function, the state nuctl reports for
    /// it now, and the commands that show why. Only this function was touched: the apply
    /// engine keeps every function whose tasks have no working new home.
    async fn deadline_error(&self, name: &str, timeout: Duration) -> PlatformError {
        let state = match self.fetch(name).await {
            Ok(Some(f)) => {
                let mut state = format!("its state is `{}`", f.state().word());
                if let Some(message) = f.status.message.as_deref().filter(|m| !m.is_empty()) {
                    state.push_str(&format!(" ({})", message.lines().next().unwrap_or("")));
                }
                state
            }
            Ok(None) => "nuctl reports no such function".to_string(),
            Err(e) => format!(
                "nuctl could not report its state: {}",
                PlatformError::from(e)
            ),
        };
        let get = self.nuctl.command(["get", "function", name, "-o", "yaml"]);
        let mut why = format!("see why with `{}`", get.display());
        if !self.is_docker() {
            let namespace = self
                .settings
                .namespace
                .as_deref()
                .map(|n| format!(" --namespace {n}"))
                .unwrap_or_default();
            why.push_str(&format!(
                " and `kubectl describe pods{namespace} -l nuclio.io/function-name={name}`"
            ));
        }
        let (build, readiness) = (self.settings.build_timeout, self.settings.readiness_timeout);
        let settings = if timeout == build + readiness {
            format!(
                " (`[nuctl] build-timeout` {} plus `readiness-timeout` {})",
                humantime::format_duration(build),
                humantime::format_duration(readiness)
            )
        } else {
            String::new()
        };
        PlatformError::Deploy {
            function: name.to_string(),
            message: format!(
                "`nuctl deploy` did not finish within {}{settings}, so it was stopped; {state}",
                humantime::format_duration(timeout),
            ),
            detail: Some(format!(
                "{why}; raise `readiness-timeout` (or `build-timeout`, for slow image builds) \
                 in `[nuctl]` if it only needs longer"
            )),
        }
    }

    /// Runs a deploy command of function `name` and checks the function is ready after it.
    async fn run_deploy(
        &self,
        name: &str,
        cmd: &crate::proc::Cmd,
        progress: &dyn DeployProgress,
    ) -> Result<(), PlatformError> {
        if let Err(e) = self.nuctl.run(cmd).await {
            // Whatever was cached before the attempt says nothing about the function now.
            self.forget(name);
            if let NuctlError::Timeout { timeout, .. } = e {
                return Err(self.deadline_error(name, timeout).await);
            }
            return Err(deploy_error(name, e));
        }

        progress.step(name, "checking readiness");
        match self.fetch(name).await? {
            Some(f) if f.state() == FunctionState::Ready => Ok(()),
            Some(f) => Err(PlatformError::Deploy {
                function: name.to_string(),
                message: format!(
                    "nuctl finished, but the function's state is `{}`",
                    f.state().word()
                ),
                detail: f.status.message.clone().filter(|m| !m.is_empty()),
            }),
            None => Err(PlatformError::Deploy {
                function: name.to_string(),
                message: "nuctl finished, but the function does not exist".to_string(),
                detail: None,
            }),
        }
    }

    /// The prebuilt image of `artifact`, with `[nuctl] images = "prebuilt"` (and a registry,
    /// which `validate` requires).
    fn prebuilt_image(&self, artifact: &Artifact) -> Option<image::FunctionImage> {
        if self.settings.images != ImageMode::Prebuilt {
            return None;
        }
        let registries = self.registries.as_ref()?;
        Some(image::function_image(
            registries,
            &artifact.name,
            &artifact.digest,
        ))
    }

    fn deploy_command(
        &self,
        name: &str,
        dir: &std::path::Path,
        prebuilt: Option<&image::FunctionImage>,
    ) -> crate::proc::Cmd {
        let mut args: Vec<std::ffi::OsString> = vec!["deploy".into(), name.into()];
        let s = &self.settings;
        match prebuilt {
            None => {
                args.extend(["--path".into(), dir.into()]);
                args.extend(["--file".into(), dir.join("function.yaml").into()]);
                if let Some(registry) = &s.registry {
                    args.extend(["--registry".into(), registry.into()]);
                }
                if let Some(run_registry) = &s.run_registry {
                    args.extend(["--run-registry".into(), run_registry.into()]);
                }
            }
            Some(image) => {
                // No `--path`: any of `spec.build.path`, `functionSourceCode` or `build.image`
                // makes nuclio build (pkg/platform/abstract/platform.go
                // `functionBuildRequired`); with only `spec.image` (`--run-image`,
                // pkg/nuctl/command/deploy.go `enrichConfigWithStringArgs`) it skips the build
                // and deploys that image (a task's function.yaml may set none of those fields,
                // nor `spec.image`: src/config/taskspec.rs refuses them, so the fused file
                // never makes nuclio build). `--file` still gives the function's configuration
                // (deploy.go `resolveFunctionConfigPath`), whose `spec.runtime` nuclio then
                // requires. The kube deployer prepends the run registry to the image unless it
                // already starts with it (pkg/platform/kube/client/deployer.go
                // `populateFunction`); passing it explicitly keeps env `NUCTL_RUN_REGISTRY`
                // from prefixing it a second time.
                args.extend(["--file".into(), dir.join("function.yaml").into()]);
                args.extend(["--run-image".into(), image.pulled.clone().into()]);
                if let Some(registries) = &self.registries {
                    args.extend(["--run-registry".into(), registries.pull.clone().into()]);
                }
            }
        }
        if let Some(project) = &s.project {
            args.extend(["--project-name".into(), project.into()]);
        }
        // Always passed: nuctl's own default comes from the platform configuration
        // (pkg/nuctl/command/deploy.go `populateDeploymentDefaults`), and fusionizer's deadline
        // for the whole deploy is counted from this one.
        let secs = readiness_secs(s.readiness_timeout);
        args.extend(["--readiness-timeout".into(), secs.to_string().into()]);
        if let Some(service_type) = &s.http_trigger_service_type {
            // pkg/nuctl/command/deploy.go: `--http-trigger-service-type` overrides the HTTP
            // trigger's Kubernetes ServiceType (default ClusterIP, pkg/platformconfig/types.go).
            args.extend(["--http-trigger-service-type".into(), service_type.into()]);
        }
        self.nuctl.command(args)
    }
}

/// `--readiness-timeout` for a configured timeout: nuctl takes whole seconds; round up so a
/// sub-second setting is not 0 (unset).
fn readiness_secs(timeout: Duration) -> u64 {
    timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)
}

/// Why a deploy with `settings` cannot work, with how to fix it: on Kubernetes (`[nuctl]
/// platform = "kube"`) without `[nuctl] registry` or env `NUCTL_REGISTRY` (`registry_env`),
/// nuctl builds the image and never pushes it (pkg/containerimagebuilderpusher/docker.go
/// `pushContainerImage` skips the push for an empty registry URL), so the pod pulls
/// `nuclio/processor-<function>:latest` and ends in `ImagePullBackOff`. With `[nuctl] images =
/// "prebuilt"` a registry is needed on every platform: the images are named after it.
pub fn registry_problem(
    settings: &NuctlConfig,
    registry_env: Option<&std::ffi::OsStr>,
) -> Option<(String, String)> {
    let set = |v: Option<&str>| v.is_some_and(|v| !v.is_empty());
    if set(settings.registry.as_deref()) || registry_env.is_some_and(|v| !v.is_empty()) {
        return None;
    }
    if settings.images == ImageMode::Prebuilt {
        // `fusionizer images` pushes each image there, and deploys name it ([`image`]).
        return Some((
            format!(
                "`nuctl.images = \"prebuilt\"` needs a registry, and neither `nuctl.registry` \
                 nor `{REGISTRY_ENV}` is set: `fusionizer images` pushes each function's image \
                 there and deploys run it from there"
            ),
            format!(
                "set `registry` in `[nuctl]` to a registry the cluster can pull from (e.g. \
                 `registry = \"registry.example.com/team\"`), or export `{REGISTRY_ENV}`, or \
                 set `images = \"build\"`"
            ),
        ));
    }
    if settings.platform.as_deref() != Some("kube") {
        return None;
    }
    Some((
        format!(
            "`nuctl.registry` is not set and neither is `{REGISTRY_ENV}`: on Kubernetes nuctl \
             would build each image without pushing it, and the function's pod would never \
             start (`ImagePullBackOff` on `nuclio/processor-<function>:latest`)"
        ),
        format!(
            "set `registry` in `[nuctl]` to a registry the cluster can pull from (e.g. \
             `registry = \"registry.example.com/team\"`), or export `{REGISTRY_ENV}`"
        ),
    ))
}

/// Refuses a function name Nuclio cannot deploy on Kubernetes, before nuctl runs. The kube
/// platform names the function's `Deployment`, `Service`, `ConfigMap`, HPA and `Ingress`
/// `nuclio-<function>` (pkg/platform/kube/types.go `DeploymentNameFromFunctionName` and
/// friends), DNS labels of at most 63 characters: a name of 57 to 63 characters fails when the
/// Service is created (pkg/platform/kube/functionres/lazy.go), and one over 63 is dropped by the
/// controller's `validation.IsQualifiedName` check without a status, so `nuctl deploy` waits
/// for readiness forever (pkg/platform/kube/controller/nucliofunction.go `CreateOrUpdate`,
/// pkg/platform/kube/client/deployer.go). fusionizer's own names never exceed the limit
/// (`MAX_FUNCTION_NAME`, src/contract.rs); a hand-made artifact could.
fn check_name(name: &str) -> Result<(), PlatformError> {
    let length = name.chars().count();
    if length <= MAX_FUNCTION_NAME {
        return Ok(());
    }
    Err(PlatformError::Deploy {
        function: name.to_string(),
        message: format!(
            "its name has {length} characters, and a function name may have at most \
             {MAX_FUNCTION_NAME}: on Kubernetes Nuclio names its resources `nuclio-<function>`, \
             which must fit in 63 characters (nuctl would fail or wait forever)"
        ),
        detail: Some(
            "names fusionizer makes always fit; give the group a shorter name".to_string(),
        ),
    })
}

fn parse_functions(
    cmd: &crate::proc::Cmd,
    values: Vec<serde_json::Value>,
) -> Result<Vec<NuclioFunction>, NuctlError> {
    values
        .into_iter()
        .map(NuclioFunction::from_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| NuctlError::Unparsable {
            command: cmd.display(),
            source,
        })
}

fn deploy_error(function: &str, err: NuctlError) -> PlatformError {
    match err {
        failed @ NuctlError::Failed { .. } => PlatformError::Deploy {
            function: function.to_string(),
            message: failed.to_string(),
            detail: failed.detail(),
        },
        other => other.into(),
    }
}

/// A failed deploy in prebuilt mode most likely ran an image nobody built: the function's pod
/// cannot pull it, which nuclio reports only as a readiness failure (on kube the pod waits in
/// `ImagePullBackOff` until the controller's readiness deadline, pkg/platform/kube/functionres/
/// lazy.go `WaitAvailable`, whose fail-fast check only knows `CrashLoopBackOff`; on Docker,
/// `docker run` fails to pull, pkg/platform/local/platform.go `deployFunction`). Say which
/// command builds it.
fn with_prebuilt_hint(err: PlatformError, image: Option<&image::FunctionImage>) -> PlatformError {
    match (err, image) {
        (
            PlatformError::Deploy {
                function,
                message,
                detail,
            },
            Some(image),
        ) => {
            let pulled = if image.pulled == image.pushed {
                String::new()
            } else {
                format!("; it runs the prebuilt image `{}`", image.pulled)
            };
            PlatformError::Deploy {
                function,
                message: format!(
                    "{message}{pulled}; was `fusionizer images` run for this commit? it builds \
                     `{}`",
                    image.pushed
                ),
                detail,
            }
        }
        (err, _) => err,
    }
}

#[async_trait]
impl Platform for NuctlPlatform {
    fn kind(&self) -> &'static str {
        "nuctl"
    }

    fn identity(&self) -> String {
        let s = &self.inner.settings;
        let mut id = format!(
            "nuctl:{}/{}",
            s.platform.as_deref().unwrap_or("auto"),
            s.namespace.as_deref().unwrap_or("default-namespace")
        );
        if let Some(kubeconfig) = &s.kubeconfig {
            id.push_str(&format!("@{}", kubeconfig.display()));
        }
        id
    }

    async fn list(&self, project: &str) -> Result<Vec<LiveFunction>, PlatformError> {
        let selector = format!("{LABEL_PROJECT}={project}");
        let cmd = self
            .inner
            .nuctl
            .command(["get", "function", "-o", "json", "-l", &selector]);
        let Some(values) = self.inner.nuctl.get_json(&cmd).await? else {
            return Ok(Vec::new());
        };
        let functions = parse_functions(&cmd, values)?;
        // Nuclio's Docker platform ignores every selector key except `nuclio.io/project-name`
        // (pkg/platform/local/client/store.go), so the selector above narrows nothing there:
        // ownership is decided here, from the labels, on every platform. Only owned functions
        // reach the endpoint cache too.
        let mut live: Vec<LiveFunction> = functions
            .iter()
            .map(|f| (f, self.inner.live(f)))
            .filter(|(_, live)| live.is_owned_by(project))
            .map(|(f, live)| {
                self.inner.remember(&f.metadata.name, Some(f));
                live
            })
            .collect();
        live.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(live)
    }

    async fn get(&self, name: &str) -> Result<Option<LiveFunction>, PlatformError> {
        Ok(self.inner.fetch(name).await?.map(|f| self.inner.live(&f)))
    }

    async fn deploy(
        &self,
        artifact: &Artifact,
        progress: &dyn DeployProgress,
    ) -> Result<(), PlatformError> {
        let name = artifact.name.as_str();
        check_name(name)?;
        let inner = &self.inner;
        progress.step(name, "checking the live function");
        if let Some(live) = inner.fetch(name).await? {
            if let FunctionState::Provisioning(state) = live.state() {
                return Err(PlatformError::Deploy {
                    function: name.to_string(),
                    message: format!(
                        "it is stuck in state `{state}` from an earlier deploy that did not \
                         finish, and nuctl refuses to update it"
                    ),
                    detail: Some(format!(
                        "`fusionizer plan` marks it `replace`, and `apply` then runs `nuctl \
                         delete function {name} --force` before deploying"
                    )),
                });
            }
        }
        inner.ensure_nuclio_project().await?;

        let dir = inner.build_dir.join(name);
        progress.step(name, "writing the artifact");
        artifact.write(&dir).map_err(|e| {
            PlatformError::io(
                format!("cannot write the artifact to `{}`", dir.display()),
                e,
            )
        })?;

        progress.step(name, "deploying with nuctl");
        let prebuilt = inner.prebuilt_image(artifact);
        let cmd = inner.deploy_command(name, &dir, prebuilt.as_ref());
        let outcome = inner.run_deploy(name, &cmd, progress).await;
        outcome.map_err(|e| with_prebuilt_hint(e, prebuilt.as_ref()))
    }

    async fn delete(&self, name: &str, force: bool) -> Result<(), PlatformError> {
        let mut args = vec!["delete", "function", name];
        if force {
            args.push("--force");
        }
        let cmd = self.inner.nuctl.command(args);
        self.inner.nuctl.run(&cmd).await?;
        self.inner.remember(name, None);
        Ok(())
    }

    async fn invoker(&self, name: &str) -> Result<Arc<dyn Invoker>, PlatformError> {
        Ok(Arc::new(NuctlInvoker {
            name: name.to_string(),
            inner: Arc::clone(&self.inner),
        }))
    }

    /// The address serve would invoke (`[nuctl] invocation-url`), as `list` recorded it.
    fn url(&self, function: &str) -> Option<Result<String, String>> {
        let endpoints = self.inner.endpoints.lock().expect("endpoint cache");
        let endpoint = endpoints.get(function)?;
        Some(
            endpoint
                .address
                .as_ref()
                .map(|address| format!("http://{address}"))
                .map_err(Clone::clone),
        )
    }

    /// Each look runs `nuctl get` (a second or so on a real cluster): serve looks every 15 s,
    /// and also right after every deploy and whenever a connection is refused.
    fn resync_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(15)
    }

    async fn refresh(&self) -> Result<(), PlatformError> {
        let selector = format!("{LABEL_PROJECT}={}", self.inner.project);
        let cmd = self
            .inner
            .nuctl
            .command(["get", "function", "-o", "json", "-l", &selector]);
        let functions = match self.inner.nuctl.get_json(&cmd).await? {
            None => Vec::new(),
            Some(values) => parse_functions(&cmd, values)?,
        };
        self.inner.endpoints.lock().expect("endpoint cache").clear();
        // As in `list`: the Docker platform ignores the selector
        // (pkg/platform/local/client/store.go), so only functions whose labels say this project
        // owns them are cached.
        for f in functions
            .iter()
            .filter(|f| f.is_owned_by(&self.inner.project))
        {
            self.inner.remember(&f.metadata.name, Some(f));
        }
        Ok(())
    }
}

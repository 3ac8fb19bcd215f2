//! An in-memory [`Platform`] for tests: functions live in a map, every call is recorded in
//! order, and any function's deploy or delete (or the whole platform) can be made to fail.
//!
//! It behaves like a real platform where plan, apply and serve can observe it: `deploy` keeps
//! the previous version when it fails, `delete` of a missing function succeeds, `list` returns
//! the owned functions in name order, and ownership comes from the deployed function.yaml's
//! labels. Nothing here spawns, listens or sleeps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::fuse::Artifact;
use crate::platform::{
    DeployProgress, FunctionState, InvokeError, InvokeRequest, InvokeResponse, Invoker,
    LiveFunction, Platform, PlatformError, ANNOTATION_DIGEST, ANNOTATION_TASKS,
    ANNOTATION_TASK_DIGESTS, LABEL_MANAGED_BY, LABEL_PROJECT, MANAGED_BY,
};

/// One recorded platform call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    List {
        project: String,
    },
    Get {
        name: String,
    },
    /// A deploy attempt (recorded whether it succeeded or not), with the artifact's digest.
    Deploy {
        name: String,
        digest: String,
    },
    Delete {
        name: String,
        force: bool,
    },
    Invoker {
        name: String,
    },
    Refresh,
}

/// A request handler for [`MemoryPlatform::set_handler`].
pub type Handler = Arc<dyn Fn(&str, InvokeRequest) -> InvokeResponse + Send + Sync>;

#[derive(Default)]
struct State {
    functions: BTreeMap<String, LiveFunction>,
    /// Deployed artifacts by function name (what `deploy` last succeeded with).
    artifacts: BTreeMap<String, Artifact>,
    calls: Vec<Call>,
    deploy_failures: BTreeMap<String, String>,
    delete_failures: BTreeMap<String, String>,
    unavailable: Option<String>,
    handler: Option<Handler>,
}

/// The in-memory platform. Cheap to clone handles via `Arc`.
pub struct MemoryPlatform {
    identity: String,
    state: Mutex<State>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Default for MemoryPlatform {
    fn default() -> Self {
        MemoryPlatform::new("memory")
    }
}

impl MemoryPlatform {
    /// An empty platform whose [`Platform::identity`] is `memory:<name>`.
    pub fn new(name: &str) -> Self {
        MemoryPlatform {
            identity: format!("memory:{name}"),
            state: Mutex::new(State::default()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the assertions that follow.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts `function` on the platform as is (owned or not), replacing any of the same name.
    pub fn insert(&self, function: LiveFunction) {
        self.lock()
            .functions
            .insert(function.name.clone(), function);
    }

    /// Sets the live state of an existing function; returns false when it does not exist.
    pub fn set_state(&self, name: &str, state: FunctionState) -> bool {
        match self.lock().functions.get_mut(name) {
            Some(f) => {
                f.state = state;
                true
            }
            None => false,
        }
    }

    /// Every deploy of `name` fails with `message` until [`Self::clear_failures`].
    pub fn fail_deploy(&self, name: &str, message: &str) {
        self.lock()
            .deploy_failures
            .insert(name.to_string(), message.to_string());
    }

    /// Every delete of `name` fails with `message` until [`Self::clear_failures`].
    pub fn fail_delete(&self, name: &str, message: &str) {
        self.lock()
            .delete_failures
            .insert(name.to_string(), message.to_string());
    }

    /// Every call fails with [`PlatformError::Unavailable`] (`Some`) or works again (`None`).
    pub fn set_unavailable(&self, message: Option<&str>) {
        self.lock().unavailable = message.map(str::to_string);
    }

    /// Forgets every configured deploy and delete failure.
    pub fn clear_failures(&self) {
        let mut state = self.lock();
        state.deploy_failures.clear();
        state.delete_failures.clear();
    }

    /// Answers invocations with `handler(function, request)` instead of echoing the request.
    pub fn set_handler(&self, handler: Handler) {
        self.lock().handler = Some(handler);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Every function on the platform (owned or not), in name order.
    pub fn functions(&self) -> Vec<LiveFunction> {
        self.lock().functions.values().cloned().collect()
    }

    /// One function by name.
    pub fn function(&self, name: &str) -> Option<LiveFunction> {
        self.lock().functions.get(name).cloned()
    }

    /// The artifact `name` was last successfully deployed from.
    pub fn artifact(&self, name: &str) -> Option<Artifact> {
        self.lock().artifacts.get(name).cloned()
    }

    /// The largest number of deploys that were in progress at the same time.
    pub fn max_concurrent_deploys(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn record(&self, call: Call) -> Result<(), PlatformError> {
        let mut state = self.lock();
        state.calls.push(call);
        match &state.unavailable {
            Some(message) => Err(PlatformError::Unavailable {
                message: message.clone(),
                hint: None,
            }),
            None => Ok(()),
        }
    }
}

/// The live view of a deployed artifact: labels and annotations from its function.yaml's
/// `metadata`, with the ownership annotations taken from the artifact itself.
pub fn live_from_artifact(artifact: &Artifact) -> LiveFunction {
    let metadata = crate::fuse::Metadata::from_yaml(&artifact.function_yaml).unwrap_or_default();
    let labels = metadata.labels;
    let mut annotations = metadata.annotations;
    annotations.insert(ANNOTATION_TASKS.to_string(), artifact.tasks.join(","));
    annotations.insert(ANNOTATION_DIGEST.to_string(), artifact.digest.clone());
    annotations.insert(
        ANNOTATION_TASK_DIGESTS.to_string(),
        artifact
            .task_digests
            .iter()
            .map(|(t, d)| format!("{t}={d}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    LiveFunction {
        name: artifact.name.clone(),
        labels,
        annotations,
        state: FunctionState::Ready,
        config_yaml: Some(artifact.function_yaml.clone()),
    }
}

/// The labels that make a function owned by `project`.
pub fn ownership_labels(project: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
    ])
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Platform for MemoryPlatform {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn list(&self, project: &str) -> Result<Vec<LiveFunction>, PlatformError> {
        self.record(Call::List {
            project: project.to_string(),
        })?;
        Ok(self
            .lock()
            .functions
            .values()
            .filter(|f| f.is_owned_by(project))
            .cloned()
            .collect())
    }

    async fn get(&self, name: &str) -> Result<Option<LiveFunction>, PlatformError> {
        self.record(Call::Get {
            name: name.to_string(),
        })?;
        Ok(self.lock().functions.get(name).cloned())
    }

    async fn deploy(
        &self,
        artifact: &Artifact,
        progress: &dyn DeployProgress,
    ) -> Result<(), PlatformError> {
        self.record(Call::Deploy {
            name: artifact.name.clone(),
            digest: artifact.digest.clone(),
        })?;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlight(&self.in_flight);
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        progress.step(&artifact.name, "building");
        // Let other deploys of the same apply start, so concurrency is observable.
        tokio::task::yield_now().await;
        progress.step(&artifact.name, "starting");
        tokio::task::yield_now().await;
        let mut state = self.lock();
        if let Some(message) = state.deploy_failures.get(&artifact.name) {
            return Err(PlatformError::Deploy {
                function: artifact.name.clone(),
                message: message.clone(),
                detail: None,
            });
        }
        state
            .functions
            .insert(artifact.name.clone(), live_from_artifact(artifact));
        state
            .artifacts
            .insert(artifact.name.clone(), artifact.clone());
        Ok(())
    }

    async fn delete(&self, name: &str, force: bool) -> Result<(), PlatformError> {
        self.record(Call::Delete {
            name: name.to_string(),
            force,
        })?;
        tokio::task::yield_now().await;
        let mut state = self.lock();
        if let Some(message) = state.delete_failures.get(name) {
            return Err(PlatformError::Other(format!(
                "deleting `{name}` failed: {message}"
            )));
        }
        if !force {
            if let Some(FunctionState::Provisioning(s)) =
                state.functions.get(name).map(|f| &f.state)
            {
                return Err(PlatformError::Other(format!(
                    "`{name}` is provisioning (`{s}`); delete it with force"
                )));
            }
        }
        state.functions.remove(name);
        state.artifacts.remove(name);
        Ok(())
    }

    async fn invoker(&self, name: &str) -> Result<Arc<dyn Invoker>, PlatformError> {
        self.record(Call::Invoker {
            name: name.to_string(),
        })?;
        let state = self.lock();
        if !state.functions.contains_key(name) {
            return Err(PlatformError::Other(format!(
                "function `{name}` does not exist"
            )));
        }
        Ok(Arc::new(MemoryInvoker {
            function: name.to_string(),
            handler: state.handler.clone(),
        }))
    }

    async fn refresh(&self) -> Result<(), PlatformError> {
        self.record(Call::Refresh)
    }
}

/// Answers with the configured handler, or echoes the request body with header
/// `x-fusionizer-function` naming the function.
struct MemoryInvoker {
    function: String,
    handler: Option<Handler>,
}

#[async_trait]
impl Invoker for MemoryInvoker {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, InvokeError> {
        if let Some(handler) = &self.handler {
            return Ok(handler(&self.function, request));
        }
        Ok(InvokeResponse {
            status: 200,
            headers: vec![
                ("x-fusionizer-function".to_string(), self.function.clone()),
                ("x-fusionizer-task".to_string(), request.task.clone()),
            ],
            body: Bytes::from(request.body.to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::NoProgress;

    fn artifact(name: &str, tasks: &[&str], digest: &str) -> Artifact {
        Artifact {
            name: name.to_string(),
            tasks: tasks.iter().map(ToString::to_string).collect(),
            digest: digest.to_string(),
            task_digests: tasks
                .iter()
                .map(|t| (t.to_string(), format!("sha256:{t}")))
                .collect(),
            function_yaml: format!(
                "metadata:\n  name: {name}\n  labels:\n    {LABEL_PROJECT}: shop\n    {LABEL_MANAGED_BY}: {MANAGED_BY}\n"
            ),
            num_workers: 1,
            build_commands: vec![],
            build_rewrites: vec![],
            files: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn deploy_then_list_shows_owned_function_with_annotations() {
        let p = MemoryPlatform::default();
        p.deploy(&artifact("shop-a", &["a"], "sha256:1"), &NoProgress)
            .await
            .unwrap();
        let live = p.list("shop").await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].tasks(), vec!["a"]);
        assert_eq!(live[0].digest(), Some("sha256:1"));
        assert_eq!(live[0].task_digests()["a"], "sha256:a");
        assert!(p.list("other").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn failed_deploy_keeps_previous_version() {
        let p = MemoryPlatform::default();
        p.deploy(&artifact("shop-a", &["a"], "sha256:1"), &NoProgress)
            .await
            .unwrap();
        p.fail_deploy("shop-a", "build failed");
        let err = p
            .deploy(&artifact("shop-a", &["a"], "sha256:2"), &NoProgress)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("build failed"));
        assert_eq!(p.function("shop-a").unwrap().digest(), Some("sha256:1"));
    }

    #[tokio::test]
    async fn delete_records_calls_and_respects_provisioning() {
        let p = MemoryPlatform::default();
        p.deploy(&artifact("shop-a", &["a"], "sha256:1"), &NoProgress)
            .await
            .unwrap();
        p.set_state("shop-a", FunctionState::Provisioning("building".into()));
        assert!(p.delete("shop-a", false).await.is_err());
        p.delete("shop-a", true).await.unwrap();
        p.delete("shop-missing", false).await.unwrap();
        assert!(p.function("shop-a").is_none());
        assert_eq!(
            p.calls(),
            vec![
                Call::Deploy {
                    name: "shop-a".into(),
                    digest: "sha256:1".into()
                },
                Call::Delete {
                    name: "shop-a".into(),
                    force: false
                },
                Call::Delete {
                    name: "shop-a".into(),
                    force: true
                },
                Call::Delete {
                    name: "shop-missing".into(),
                    force: false
                },
            ]
        );
    }

    #[tokio::test]
    async fn unavailable_fails_every_call() {
        let p = MemoryPlatform::default();
        p.set_unavailable(Some("cluster unreachable"));
        assert!(matches!(
            p.list("shop").await,
            Err(PlatformError::Unavailable { .. })
        ));
        p.set_unavailable(None);
        assert!(p.list("shop").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn invoker_echoes_by_default() {
        let p = MemoryPlatform::default();
        assert!(p.invoker("shop-a").await.is_err());
        p.deploy(&artifact("shop-a", &["a"], "sha256:1"), &NoProgress)
            .await
            .unwrap();
        let inv = p.invoker("shop-a").await.unwrap();
        let resp = inv
            .invoke(InvokeRequest {
                task: "a".into(),
                body: Bytes::from_static(b"hi"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(&resp.body[..], b"hi");
    }
}

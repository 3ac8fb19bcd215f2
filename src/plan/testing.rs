//! Test fixtures for the unit tests of plan and apply: artifacts shaped like the fuse step's (merged function.yaml with ownership
//! labels and annotations, per-task digests), built without reading any files.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::contract::{
    ANNOTATION_DIGEST, ANNOTATION_TASKS, ANNOTATION_TASK_DIGESTS, LABEL_MANAGED_BY, LABEL_PROJECT,
    MANAGED_BY,
};
use crate::fuse::Artifact;
use crate::platform::{FunctionState, LiveFunction};

fn sha(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// A fake group: its tasks, a version string per task (the task's "files") and merged env.
#[derive(Debug, Clone)]
pub struct Fake {
    /// The owning project (ownership label, name prefix).
    pub project: String,
    /// The group's tasks, sorted.
    pub tasks: Vec<String>,
    /// Task → version string standing in for its files (default `v1`).
    pub versions: BTreeMap<String, String>,
    /// Merged `spec.env` entries, name and value, in order.
    pub env: Vec<(String, String)>,
    /// The HTTP trigger's `numWorkers` (default 1).
    pub workers: usize,
}

impl Fake {
    /// A group of `tasks` (sorted) in `project`, every task at `v1`, no env, one worker.
    pub fn new(project: &str, tasks: &[&str]) -> Fake {
        let mut tasks: Vec<String> = tasks.iter().map(ToString::to_string).collect();
        tasks.sort();
        Fake {
            project: project.to_string(),
            versions: tasks
                .iter()
                .map(|t| (t.clone(), "v1".to_string()))
                .collect(),
            tasks,
            env: Vec::new(),
            workers: 1,
        }
    }

    /// Changes a task's files.
    pub fn version(mut self, task: &str, version: &str) -> Fake {
        self.versions.insert(task.to_string(), version.to_string());
        self
    }

    /// Adds an env entry to the merged spec.
    pub fn env(mut self, name: &str, value: &str) -> Fake {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the HTTP trigger's `numWorkers`.
    pub fn workers(mut self, n: usize) -> Fake {
        self.workers = n;
        self
    }

    /// The function name: `<project>-<task>-<task>…`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.project, self.tasks.join("-"))
    }

    fn yaml(&self, digest: &str, task_digests: &BTreeMap<String, String>) -> String {
        let mut y = String::new();
        y.push_str("apiVersion: nuclio.io/v1\nkind: NuclioFunction\nmetadata:\n");
        y.push_str(&format!("  name: {}\n  labels:\n", self.name()));
        y.push_str(&format!("    {LABEL_PROJECT}: {}\n", self.project));
        y.push_str(&format!("    {LABEL_MANAGED_BY}: {MANAGED_BY}\n"));
        y.push_str("  annotations:\n");
        y.push_str(&format!(
            "    {ANNOTATION_TASKS}: {}\n",
            self.tasks.join(",")
        ));
        y.push_str(&format!("    {ANNOTATION_DIGEST}: {digest}\n"));
        let td: Vec<String> = task_digests
            .iter()
            .map(|(t, d)| format!("{t}={d}"))
            .collect();
        y.push_str(&format!(
            "    {ANNOTATION_TASK_DIGESTS}: {}\n",
            td.join(",")
        ));
        y.push_str("spec:\n  runtime: python:3.11\n  handler: _fusionizer_entry:handler\n");
        if !self.env.is_empty() {
            y.push_str("  env:\n");
            for (k, v) in &self.env {
                y.push_str(&format!("  - name: {k}\n    value: {v}\n"));
            }
        }
        y.push_str("  triggers:\n    http:\n      kind: http\n");
        y.push_str(&format!("      numWorkers: {}\n", self.workers));
        y
    }

    /// The artifact: a single `function.yaml` with ownership labels, digest and per-task digests.
    pub fn build(&self) -> Artifact {
        let task_digests: BTreeMap<String, String> = self
            .tasks
            .iter()
            .map(|t| (t.clone(), sha(&format!("{t}:{}", self.versions[t]))))
            .collect();
        let digest = sha(&self.yaml("", &task_digests));
        let yaml = self.yaml(&digest, &task_digests);
        Artifact {
            name: self.name(),
            tasks: self.tasks.clone(),
            digest,
            task_digests,
            function_yaml: yaml.clone(),
            num_workers: self.workers,
            build_commands: Vec::new(),
            build_rewrites: Vec::new(),
            files: BTreeMap::from([("function.yaml".to_string(), yaml.into_bytes())]),
        }
    }

    /// The function as the platform would report it after deploying [`Fake::build`].
    pub fn live(&self) -> LiveFunction {
        crate::platform::memory::live_from_artifact(&self.build())
    }

    /// [`Fake::live`], but reported in `state`.
    pub fn live_in(&self, state: FunctionState) -> LiveFunction {
        LiveFunction {
            state,
            ..self.live()
        }
    }
}

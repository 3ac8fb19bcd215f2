//! The configuration-level commands: `validate`, `build`, `init`, `completions`.
//!
//! `validate` loads fusion.toml with every task and also fuses the grouping of every phase, so a
//! merge conflict is caught before anything is deployed. `build` writes the artifacts of one
//! grouping to disk (nothing when anything is invalid). `init` scaffolds a project whose two
//! tasks call each other (the `examples/native` pair).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::OutputFormat;
use crate::config::{self, Workspace};
use crate::fuse::{self, Artifact};
use crate::platform::{LABEL_MANAGED_BY, LABEL_PROJECT, MANAGED_BY};
use crate::schedule::{self, Selection};
use crate::{Context, Error, ExitCode, Result};

/// `fusionizer validate`: every problem of fusion.toml, the task specs and the merge of every
/// phase's groups at once (exit 78), or a one-line summary on stdout.
pub fn validate(ctx: &Context) -> Result<ExitCode> {
    let ws = ctx.workspace()?;
    let present = present_tasks(&ws);

    // The groupings to check: the start (when it is not already a phase) and every phase.
    let mut selections: Vec<(String, Selection)> = Vec::new();
    if schedule::phase_at(&ws.config, Duration::ZERO).is_none() {
        selections.push(("start".to_string(), Selection::At(Duration::ZERO)));
    }
    for n in 1..=ws.config.phases.len() {
        selections.push((format!("phase {n}"), Selection::Phase(n)));
    }
    // Problem text → where it occurs, in order of first appearance.
    let mut problems: Vec<(String, Vec<String>)> = Vec::new();
    let mut hint = None;
    for (label, selection) in selections {
        let grouping = schedule::grouping(&ws.config, selection, &present)?;
        let Err(err) = fuse::fuse_all(&ws, &ws.specs, &grouping) else {
            continue;
        };
        if err.code != ExitCode::Config {
            return Err(err);
        }
        hint = hint.or(err.hint);
        for cause in err.details {
            match problems.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, labels)) => labels.push(label.clone()),
                None => problems.push((cause, vec![label.clone()])),
            }
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        let mut err = Error::new(
            ExitCode::Config,
            format!(
                "invalid configuration: the groups cannot be fused ({n} problem{})",
                plural(n)
            ),
        );
        err.details = problems
            .into_iter()
            .map(|(cause, labels)| format!("{}: {cause}", labels.join(", ")))
            .collect();
        err.hint = hint;
        return Err(err);
    }

    let tasks = ws.config.tasks.len();
    let uploads = tasks - ws.specs.len();
    let phases = ws.config.phases.len();
    let file = ws
        .config
        .file
        .file_name()
        .map_or_else(|| config::FILE_NAME.into(), |f| f.to_string_lossy());
    let uploads = if uploads > 0 {
        format!(" ({uploads} by upload)")
    } else {
        String::new()
    };
    crate::ui::outln(&format!(
        "{file} is valid: {tasks} task{}{uploads}, {phases} phase{}",
        plural(tasks),
        plural(phases)
    ));
    Ok(ExitCode::Success)
}

/// `fusionizer build`: fuses the selected grouping and writes one directory per function under
/// `out` (default `.fusionizer/build/` beside fusion.toml), replacing stale ones of this project.
pub fn build(
    ctx: &Context,
    selection: Selection,
    out: Option<PathBuf>,
    output: OutputFormat,
) -> Result<ExitCode> {
    let ws = ctx.workspace()?;
    let present = present_tasks(&ws);
    let grouping = schedule::grouping(&ws.config, selection, &present)?;
    let artifacts = fuse::fuse_all(&ws, &ws.specs, &grouping)?;
    let out = match out {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => ctx.cwd.join(dir),
        None => ws.config.state_dir().join("build"),
    };
    write_artifacts(&out, &ws.config.project.name, &artifacts)?;

    match output {
        OutputFormat::Json => {
            let functions: Vec<serde_json::Value> = artifacts
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "name": a.name,
                        "tasks": a.tasks,
                        "digest": a.digest,
                        "path": out.join(&a.name).display().to_string(),
                    })
                })
                .collect();
            let doc = serde_json::json!({ "functions": functions });
            crate::ui::outln(&serde_json::to_string_pretty(&doc).expect("JSON values serialise"));
        }
        _ => {
            let rows: Vec<[String; 3]> = artifacts
                .iter()
                .map(|a| [a.name.clone(), a.tasks.join(","), a.digest.clone()])
                .collect();
            let name_width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
            let tasks_width = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
            let mut text = String::new();
            for [name, tasks, digest] in &rows {
                text.push_str(&format!(
                    "{}  {tasks:<tasks_width$}  {digest}\n",
                    ctx.ui
                        .paint(crate::ui::Style::Bold, &format!("{name:<name_width$}")),
                ));
            }
            crate::ui::out(&text);
        }
    }
    let n = artifacts.len();
    ctx.ui.status(&format!(
        "built {n} function{} in {}",
        plural(n),
        config::display_path(&out)
    ));
    Ok(ExitCode::Success)
}

/// The tasks grouped by `build`/`validate`: those declared with a path (upload tasks have no
/// code yet).
fn present_tasks(ws: &Workspace) -> BTreeSet<String> {
    ws.specs.keys().cloned().collect()
}

/// Writes every artifact to `<out>/<name>/` (each through a temporary sibling directory renamed
/// into place) and removes the directories of this project's functions that are no longer built.
/// A directory counts as this project's when its function.yaml carries both ownership labels.
fn write_artifacts(out: &Path, project: &str, artifacts: &[Artifact]) -> Result<()> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        Error::failure(format!("cannot {what} `{}`", path.display())).caused_by(e.to_string())
    };
    std::fs::create_dir_all(out).map_err(|e| io("create", out, e))?;
    let keep: BTreeSet<&str> = artifacts.iter().map(|a| a.name.as_str()).collect();
    let entries = std::fs::read_dir(out).map_err(|e| io("read", out, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() || keep.contains(name.as_str()) {
            continue;
        }
        let leftover = name.starts_with(".fusionizer-tmp-");
        if leftover || owned_by(&path.join("function.yaml"), project) {
            std::fs::remove_dir_all(&path).map_err(|e| io("remove", &path, e))?;
        }
    }
    for artifact in artifacts {
        let tmp = out.join(format!(".fusionizer-tmp-{}", artifact.name));
        artifact.write(&tmp).map_err(|e| io("write", &tmp, e))?;
        let dest = out.join(&artifact.name);
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| io("replace", &dest, e))?;
        }
        std::fs::rename(&tmp, &dest).map_err(|e| io("write", &dest, e))?;
    }
    Ok(())
}

/// Whether `function_yaml` exists and carries this project's ownership labels.
fn owned_by(function_yaml: &Path, project: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(function_yaml) else {
        return false;
    };
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
        return false;
    };
    let labels = &doc["metadata"]["labels"];
    labels[LABEL_MANAGED_BY].as_str() == Some(MANAGED_BY)
        && labels[LABEL_PROJECT].as_str() == Some(project)
}

/// The files `init` writes, relative to the project directory (fusion.toml is generated).
const INIT_FILES: &[(&str, &str)] = &[
    (
        "tasks/taska/function.yaml",
        include_str!("../examples/native/tasks/taska/function.yaml"),
    ),
    (
        "tasks/taska/main.py",
        include_str!("../examples/native/tasks/taska/main.py"),
    ),
    (
        "tasks/taskb/function.yaml",
        include_str!("../examples/native/tasks/taskb/function.yaml"),
    ),
    (
        "tasks/taskb/main.py",
        include_str!("../examples/native/tasks/taskb/main.py"),
    ),
];

/// `fusionizer init [DIR] [--name NAME]`: a fusion.toml and two tasks that call each other.
/// Refuses (exit 1) to overwrite any file that already exists.
pub fn init(ctx: &Context, dir: Option<PathBuf>, name: Option<String>) -> Result<ExitCode> {
    let dir = match dir {
        Some(d) if d.is_absolute() => d,
        Some(d) => ctx.cwd.join(d),
        None => ctx.cwd.clone(),
    };
    let name = match name {
        Some(name) if config::is_dns_label(&name, crate::taskspec::MAX_TASK_NAME) => name,
        Some(name) => {
            return Err(
                Error::usage(format!("`{name}` is not a valid project name")).with_hint(
                    "use lowercase letters, digits and `-` (at most 40, not at either end)",
                ),
            )
        }
        None => project_name_for(&dir).ok_or_else(|| {
            Error::usage(format!(
                "cannot derive a project name from `{}`",
                dir.display()
            ))
            .with_hint("pass one with `--name`")
        })?,
    };

    let fusion_toml = init_fusion_toml(&name);
    let mut files: Vec<(&str, &str)> = vec![(config::FILE_NAME, fusion_toml.as_str())];
    files.extend_from_slice(INIT_FILES);
    if dir.join(config::FILE_NAME).exists() {
        return Err(Error::failure(format!(
            "`{}` already exists",
            config::display_path(&dir.join(config::FILE_NAME))
        ))
        .with_hint("edit it instead, or run `fusionizer init DIR` for a new directory"));
    }
    if let Some((rel, _)) = files.iter().find(|(rel, _)| dir.join(rel).exists()) {
        return Err(Error::failure(format!(
            "`{}` already exists and `init` does not overwrite files",
            config::display_path(&dir.join(rel))
        ))
        .with_hint("move it away, or run `fusionizer init DIR` for a new directory"));
    }
    for (rel, content) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::failure(format!("cannot create `{}`", parent.display()))
                    .caused_by(e.to_string())
            })?;
        }
        std::fs::write(&path, content).map_err(|e| {
            Error::failure(format!("cannot write `{}`", path.display())).caused_by(e.to_string())
        })?;
    }
    ctx.ui.status(&format!(
        "created project `{name}` in {}: fusion.toml, tasks/taska, tasks/taskb\n\
         next: `fusionizer serve` in it, then `curl -X POST http://127.0.0.1:8000/taska -d '{{\"value1\": 5, \"value2\": 3}}' -H 'Content-Type: application/json'`",
        config::display_path(&dir)
    ));
    Ok(ExitCode::Success)
}

/// A project name from a directory's name: lowercased, other characters turned into `-`,
/// at most 40 characters.
fn project_name_for(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let raw = dir.file_name()?.to_string_lossy().to_lowercase();
    let mut name = String::new();
    for c in raw.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let mut name = name.trim_matches('-').to_string();
    name.truncate(crate::taskspec::MAX_TASK_NAME);
    let name = name.trim_end_matches('-').to_string();
    config::is_dns_label(&name, crate::taskspec::MAX_TASK_NAME).then_some(name)
}

fn init_fusion_toml(name: &str) -> String {
    format!(
        r#"# fusionizer project: which tasks exist and which of them share a Nuclio function when.
# Every key is documented in fusion.toml.example in the fusionizer repository.

[project]
name = "{name}"

[tasks]
taska = "tasks/taska"   # calls taskb with context.platform.call_function
taskb = "tasks/taskb"   # adds two numbers

# From the start each task runs alone; after 40 seconds both share one function and the
# call from taska to taskb runs in-process.
[[phase]]
after = "0s"
groups = [["taska"], ["taskb"]]

[[phase]]
after = "40s"
groups = [["taska", "taskb"]]
"#
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `fusionizer completions <shell>`.
pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "fusionizer", &mut buf);
    crate::ui::out(&String::from_utf8_lossy(&buf));
    Ok(ExitCode::Success)
}

//! `fusionizer init`: scaffolds a project. In a directory that already holds task directories
//! (`tasks/NAME/function.yaml` or `NAME/function.yaml`) it declares those; otherwise it writes two
//! tasks that call each other (the `examples/native` pair). Either way it writes a `.gitignore`
//! for `.fusionizer/` (build output and serve's state), or adds that line to the one there.

use std::path::{Path, PathBuf};

use super::Context;
use crate::config;
use crate::contract::{is_dns_label, is_task_name, FUNCTION_FILE, MAX_PROJECT_NAME};
use crate::error::{Error, ExitCode, Result};

/// The files `init` writes, relative to the project directory (fusion.toml is generated).
const INIT_FILES: &[(&str, &str)] = &[
    (
        "tasks/taska/function.yaml",
        include_str!("../../examples/native/tasks/taska/function.yaml"),
    ),
    (
        "tasks/taska/main.py",
        include_str!("../../examples/native/tasks/taska/main.py"),
    ),
    (
        "tasks/taskb/function.yaml",
        include_str!("../../examples/native/tasks/taskb/function.yaml"),
    ),
    (
        "tasks/taskb/main.py",
        include_str!("../../examples/native/tasks/taskb/main.py"),
    ),
];

/// The line `init` makes sure `.gitignore` has.
const GITIGNORE_LINE: &str = ".fusionizer/";

/// `fusionizer init [DIR] [--name NAME]`: a fusion.toml for the task directories found in DIR,
/// or with two tasks that call each other when there are none, and a `.gitignore`. Refuses
/// (exit 1) to overwrite any file that already exists (`.gitignore` is only added to).
pub(super) fn command(
    ctx: &Context,
    dir: Option<PathBuf>,
    name: Option<String>,
) -> Result<ExitCode> {
    let dir = match dir {
        Some(d) if d.is_absolute() => d,
        Some(d) => ctx.cwd.join(d),
        None => ctx.cwd.clone(),
    };
    let name = match name {
        Some(name) if is_dns_label(&name, MAX_PROJECT_NAME) => name,
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

    let found = find_tasks(&dir);
    let fusion_toml = if found.is_empty() {
        init_fusion_toml(&name)
    } else {
        found_fusion_toml(&name, &found)
    };
    let mut files: Vec<(&str, &str)> = vec![(config::FILE_NAME, fusion_toml.as_str())];
    if found.is_empty() {
        files.extend_from_slice(INIT_FILES);
    }
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
    let gitignore = ignore_state_dir(&dir)?;
    if found.is_empty() {
        ctx.ui.status(&format!(
            "created project `{name}` in {}: fusion.toml, tasks/taska, tasks/taskb{gitignore}\n\
             next: `fusionizer serve` in it, then `curl -X POST http://127.0.0.1:8000/taska -d '{{\"value1\": 5, \"value2\": 3}}' -H 'Content-Type: application/json'`",
            config::display_path(&dir)
        ));
    } else {
        let tasks: Vec<String> = found
            .iter()
            .map(|(task, rel)| format!("{task} ({rel})"))
            .collect();
        ctx.ui.status(&format!(
            "created project `{name}` in {}: fusion.toml declaring the {} task director{} found: \
             {}{gitignore}\n\
             next: `fusionizer validate`, then group tasks with [[phase]] tables (see the \
             comments in fusion.toml) and `fusionizer serve`",
            config::display_path(&dir),
            found.len(),
            if found.len() == 1 { "y" } else { "ies" },
            tasks.join(", ")
        ));
    }
    Ok(ExitCode::Success)
}

/// Task directories already in `dir`: each `tasks/NAME/` and `NAME/` that holds a
/// function.yaml and whose name is a valid task name, as (name, relative path), sorted by name;
/// a name found in both places is taken from `tasks/`.
fn find_tasks(dir: &Path) -> Vec<(String, String)> {
    let mut found = std::collections::BTreeMap::new();
    for (parent, prefix) in [(dir.join("tasks"), "tasks/"), (dir.to_path_buf(), "")] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !entry.path().join(FUNCTION_FILE).is_file() || !is_task_name(&name) {
                continue;
            }
            found
                .entry(name.clone())
                .or_insert_with(|| format!("{prefix}{name}"));
        }
    }
    found.into_iter().collect()
}

/// Makes `.gitignore` in `dir` ignore `.fusionizer/`: writes it, or adds the line to the one
/// there. Returns what to add to the summary (`, .gitignore`), or nothing when the line was
/// there already.
fn ignore_state_dir(dir: &Path) -> Result<&'static str> {
    let path = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::failure(format!("cannot read `{}`", path.display()))
                .caused_by(e.to_string()))
        }
    };
    let ignored = |text: &str| {
        text.lines().map(str::trim).any(|l| {
            matches!(
                l,
                ".fusionizer" | ".fusionizer/" | "/.fusionizer" | "/.fusionizer/"
            )
        })
    };
    let (text, word) = match existing {
        Some(text) if ignored(&text) => return Ok(""),
        Some(mut text) => {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "# fusionizer's build output and serve's state\n{GITIGNORE_LINE}\n"
            ));
            (text, " (added `.fusionizer/` to .gitignore)")
        }
        None => (
            format!("# fusionizer's build output and serve's state\n{GITIGNORE_LINE}\n"),
            ", .gitignore",
        ),
    };
    std::fs::write(&path, text).map_err(|e| {
        Error::failure(format!("cannot write `{}`", path.display())).caused_by(e.to_string())
    })?;
    Ok(word)
}

/// The fusion.toml for task directories that already exist: every task declared, each in its
/// own function until phases say otherwise.
fn found_fusion_toml(name: &str, tasks: &[(String, String)]) -> String {
    let width = tasks.iter().map(|(task, _)| task.len()).max().unwrap_or(0);
    let declared: String = tasks
        .iter()
        .map(|(task, rel)| format!("{task:<width$} = \"{rel}\"\n"))
        .collect();
    let first = tasks.first().map_or("a", |(task, _)| task.as_str());
    let second = tasks.get(1).map_or("b", |(task, _)| task.as_str());
    format!(
        r#"# fusionizer project: which tasks exist and which of them share a Nuclio function when.
# Every key is documented in fusion.toml.example in the fusionizer repository.

[project]
name = "{name}"

# The task directories `fusionizer init` found.
[tasks]
{declared}
# Without a [[phase]] every task runs in its own function. To fuse tasks that call each other,
# add phases, e.g.:
#
# [[phase]]
# after = "0s"
# groups = [["{first}", "{second}"]]
"#
    )
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
    name.truncate(MAX_PROJECT_NAME);
    let name = name.trim_end_matches('-').to_string();
    is_dns_label(&name, MAX_PROJECT_NAME).then_some(name)
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

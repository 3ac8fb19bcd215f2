//! `fusionizer init`: scaffolds a project whose two tasks call each other (the
//! `examples/native` pair).

use std::path::{Path, PathBuf};

use super::Context;
use crate::config;
use crate::contract::{is_dns_label, MAX_PROJECT_NAME};
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

/// `fusionizer init [DIR] [--name NAME]`: a fusion.toml and two tasks that call each other.
/// Refuses (exit 1) to overwrite any file that already exists.
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

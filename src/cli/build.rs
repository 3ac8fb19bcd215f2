//! `fusionizer build`: writes the artifacts of one grouping to disk (nothing when anything is
//! invalid).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::Context;
use crate::config;
use crate::error::{Error, ExitCode, Result};
use crate::fuse::{self, Artifact};
use crate::schedule::Selection;
use crate::ui::{plural, OutputFormat};
use crate::workspace;

/// `fusionizer build`: fuses the selected grouping and writes one directory per function under
/// `out` (default `.fusionizer/build/` beside fusion.toml), replacing stale ones of this project.
pub(super) fn command(
    ctx: &Context,
    selection: Selection,
    out: Option<PathBuf>,
    output: OutputFormat,
) -> Result<ExitCode> {
    let ws = ctx.workspace()?;
    let artifacts = workspace::fuse_selection(&ws, selection)?;
    let out = match out {
        Some(dir) => ctx.resolve(&dir),
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
    std::fs::read_to_string(function_yaml)
        .ok()
        .and_then(|text| fuse::Metadata::from_yaml(&text))
        .is_some_and(|m| m.is_owned_by(project))
}

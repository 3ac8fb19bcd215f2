//! `fusionizer images`: builds, ahead of any deploy, the image of every function any phase of
//! fusion.toml can deploy, and pushes it to `[nuctl] registry`, so that a serve without Docker
//! (in a pod) deploys them with `[nuctl] images = "prebuilt"` (`nuctl deploy --run-image`).
//!
//! Each function is fused the way `fusionizer build` fuses a grouping, over the union of every
//! phase's groupings (and the start's, when no phase starts at `0s`), and built with
//! `nuctl build <function> --path <dir> --file <dir>/function.yaml --registry <registry>
//! --image processor-<function>:<tag>` (pkg/nuctl/command/build.go: the same build flags as
//! `deploy`), one at a time: Docker is the bottleneck. The image's name comes from
//! [`crate::platform::nuctl::image`], the one place a deploy also takes it from.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Context;
use crate::config::{self, PlatformKind};
use crate::error::{Error, ExitCode, Result};
use crate::fuse::Artifact;
use crate::platform::nuctl::image::{function_image, FunctionImage, Registries};
use crate::platform::nuctl::{self, Nuctl, NuctlError};
use crate::platform::PlatformError;
use crate::schedule::{self, Selection};
use crate::ui::plural;
use crate::ui::report::{self, Event, Tone};
use crate::workspace;

/// `fusionizer images [--dry-run]`.
pub(super) fn command(ctx: &Context, dry_run: bool) -> Result<ExitCode> {
    let ws = ctx.workspace()?;
    let config = &ws.config;
    if config.project.platform != PlatformKind::Nuctl {
        return Err(Error::new(
            ExitCode::Config,
            format!(
                "{}: `fusionizer images` builds images for the `nuctl` platform, and \
                 `project.platform` is not `nuctl`",
                config.file.display()
            ),
        )
        .with_hint("the local platform runs tasks as Python processes and needs no image"));
    }
    let Some(registries) = Registries::from_env(&config.nuctl) else {
        return Err(Error::new(
            ExitCode::Config,
            format!(
                "{}: `fusionizer images` pushes each image to a registry, and neither \
                 `nuctl.registry` nor `{}` is set",
                config.file.display(),
                nuctl::REGISTRY_ENV
            ),
        )
        .with_hint(
            "set `registry` in `[nuctl]` to a registry the cluster can pull from (e.g. \
             `registry = \"registry.example.com/team\"`), or export `NUCTL_REGISTRY`",
        ));
    };
    let artifacts = every_function(&ws)?;
    let images: Vec<(Artifact, FunctionImage)> = artifacts
        .into_values()
        .map(|a| {
            let image = function_image(&registries, &a.name, &a.digest);
            (a, image)
        })
        .collect();

    if dry_run {
        for (artifact, image) in &images {
            crate::ui::outln(&format!("{}  {}", image.pushed, artifact.tasks.join(",")));
        }
        let n = images.len();
        ctx.ui.status(&format!(
            "{n} image{} to build (dry run: nothing built)",
            plural(n)
        ));
        return Ok(ExitCode::Success);
    }

    let rt = workspace::runtime()?;
    let nuctl = Nuctl::new(&config.nuctl, std::env::var_os(nuctl::BINARY_ENV));
    let dir = config.state_dir().join("images");
    let mut failed = Vec::new();
    for (artifact, image) in &images {
        let started = Instant::now();
        report::emit(Event::Begin {
            id: image.pushed.clone(),
            verb: "Building".to_string(),
            subject: image.pushed.clone(),
        });
        let outcome = rt.block_on(build(&nuctl, &dir, artifact, image, &registries));
        let elapsed = started.elapsed();
        match outcome {
            Ok(()) => {
                end(image, "Built", Tone::Good, elapsed, Vec::new());
                crate::ui::outln(&format!("built   {}", image.pushed));
            }
            Err(e) => {
                let mut detail = vec![e.message.clone()];
                detail.extend(e.causes.iter().cloned());
                end(image, "Failed", Tone::Bad, elapsed, detail);
                crate::ui::outln(&format!("failed  {}", image.pushed));
                failed.push((image.pushed.clone(), e));
            }
        }
    }
    let n = images.len();
    if failed.is_empty() {
        ctx.ui.status(&format!(
            "built and pushed {n} image{} to {}",
            plural(n),
            registries.push
        ));
        return Ok(ExitCode::Success);
    }
    let mut err = Error::failure(format!(
        "{} of {n} image{} failed to build: {}",
        failed.len(),
        plural(n),
        failed
            .iter()
            .map(|(image, _)| format!("`{image}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for (image, e) in failed {
        err.details.push(format!("{image}: {}", e.message));
        err.details.extend(e.causes);
    }
    Err(err)
}

fn end(image: &FunctionImage, verb: &str, tone: Tone, elapsed: Duration, detail: Vec<String>) {
    report::emit(Event::End {
        id: image.pushed.clone(),
        verb: verb.to_string(),
        subject: image.pushed.clone(),
        elapsed: Some(elapsed),
        tone,
        detail,
    });
}

/// Every distinct function (by name and digest) of the start's grouping and of every phase's,
/// fused as `fusionizer build` fuses one grouping.
fn every_function(ws: &config::Workspace) -> Result<BTreeMap<(String, String), Artifact>> {
    let mut selections = Vec::new();
    if schedule::phase_at(&ws.config, Duration::ZERO).is_none() {
        selections.push(Selection::At(Duration::ZERO));
    }
    selections.extend((1..=ws.config.phases.len()).map(Selection::Phase));
    let mut functions = BTreeMap::new();
    for selection in selections {
        for artifact in workspace::fuse_selection(ws, selection)? {
            functions
                .entry((artifact.name.clone(), artifact.digest.clone()))
                .or_insert(artifact);
        }
    }
    Ok(functions)
}

/// Writes `artifact` under `<dir>/<name>/` and runs `nuctl build` on it.
async fn build(
    nuctl: &Nuctl,
    dir: &std::path::Path,
    artifact: &Artifact,
    image: &FunctionImage,
    registries: &Registries,
) -> Result<()> {
    let path = dir.join(&artifact.name);
    artifact.write(&path).map_err(|e| {
        Error::failure(format!("cannot write the artifact to `{}`", path.display()))
            .caused_by(e.to_string())
    })?;
    let cmd = nuctl.command([
        "build".into(),
        std::ffi::OsString::from(&artifact.name),
        "--path".into(),
        path.clone().into(),
        "--file".into(),
        path.join(crate::contract::FUNCTION_FILE).into(),
        "--registry".into(),
        registries.push.clone().into(),
        "--image".into(),
        image.name.clone().into(),
    ]);
    match nuctl.run(&cmd).await {
        Ok(_) => Ok(()),
        Err(failed @ NuctlError::Failed { .. }) => {
            let mut e = Error::failure(failed.to_string());
            e.causes.extend(failed.detail());
            Err(e)
        }
        Err(other) => Err(Error::from(PlatformError::from(other))),
    }
}

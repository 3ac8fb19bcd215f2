//! `fusionizer optimize`: read traces (from a running serve or a file) and fusion.toml, propose
//! the next grouping ([`crate::optimize`]), render it, and optionally write it into fusion.toml.

use std::collections::BTreeSet;
use std::time::Duration;

use super::serve_client::{default_address, ServeClient, MAX_TRACES_BYTES, MIB, SERVER_FLAG};
use super::Context;
use crate::config;
use crate::error::{Error, ExitCode, Result};
use crate::optimize::edit::{self, format_duration};
use crate::optimize::render::{self, Report};
use crate::optimize::{propose, Input, Options};
use crate::schedule::{self, Selection};
use crate::traces::{self, RoutesDoc, TraceDoc};
use crate::ui::{self, OutputFormat};

/// The largest route table read from serve (`--live`): a few hundred bytes a task.
const MAX_ROUTES_BYTES: usize = 16 * MIB;

/// Resolved `fusionizer optimize` arguments.
#[derive(Debug, Clone)]
pub(super) struct OptimizeArgs {
    /// `--from URL|FILE`.
    pub(super) from: Option<String>,
    /// `--server URL`.
    pub(super) server: Option<String>,
    /// `--timeout`: the deadline of each exchange with a running serve.
    pub(super) timeout: Duration,
    pub(super) min_calls: Option<u64>,
    pub(super) explain: bool,
    pub(super) output: OutputFormat,
    pub(super) after: Option<Duration>,
    pub(super) write: bool,
    pub(super) detailed_exitcode: bool,
    /// `--memory`, with its headroom in percent.
    pub(super) memory: Option<u32>,
    /// `--live`: propose the grouping serve has live instead of one from the traces.
    pub(super) live: bool,
}

/// `fusionizer optimize`.
pub(super) fn command(ctx: &Context, args: OptimizeArgs) -> Result<ExitCode> {
    let workspace = ctx.workspace()?;
    let config = &workspace.config;
    let (from, flag) = source_of(ctx, &args);
    let (source, traces) = read_traces(ctx, &from, flag, args.timeout)?;
    let min_calls = args.min_calls.unwrap_or(config.optimizer.min_calls);

    // The grouping in force once the schedule has run: the last phase, or every task alone.
    let declared: BTreeSet<String> = config.tasks.keys().cloned().collect();
    let selection = match config.phases.len() {
        0 => Selection::At(Duration::ZERO),
        n => Selection::Phase(n),
    };
    let current = schedule::grouping(config, selection, &declared)?;
    let proposal = propose(
        Input {
            project: &config.project.name,
            specs: &workspace.specs,
            current: &current,
            traces: &traces,
        },
        Options { min_calls },
    );
    // `--live`: what an optimizer in serve chose. The edges still explain the traffic, but the
    // proposal is exactly the live grouping.
    let proposal = if args.live {
        proposal.with_proposed(live_grouping(&from, flag, args.timeout, &declared)?)
    } else {
        proposal
    };

    let after = phase_offset(config, args.after)?;
    let memory = args
        .memory
        .map(|headroom| edit::memory_limits(&proposal, &traces, headroom));

    let before = std::fs::read_to_string(&config.file).map_err(|e| {
        Error::failure(format!(
            "cannot read `{}`: {e}",
            config::display_path(&config.file)
        ))
    })?;
    let changed = proposal.changed();
    let memory_changes = memory.as_ref().is_some_and(|m| !m.is_empty());
    let proposed_text = if changed || memory_changes {
        let comment = if args.live {
            format!(
                "The grouping serve had live at {} (chosen by its optimizer), written by\n\
                 `fusionizer optimize --live` (expected gain {:+.0}% of synchronous calls in-process).",
                from,
                proposal.gain.expected * 100.0
            )
        } else {
            format!(
                "Proposed by `fusionizer optimize` from the traces of {source} since {}\n\
                 (min-calls {min_calls}; expected gain {:+.0}% of synchronous calls in-process).",
                traces.started,
                proposal.gain.expected * 100.0
            )
        };
        let memory = memory.as_deref().unwrap_or(&[]);
        let text = if changed {
            edit::append_phase(&before, after, &proposal.proposed, &comment, memory)
        } else {
            edit::set_memory_limits(&before, memory)
        }
        .map_err(|e| {
            Error::new(
                ExitCode::Config,
                format!("`{}`: {e}", config::display_path(&config.file)),
            )
        })?;
        // The edit must leave a valid fusion.toml.
        config::parse(&config.file, &text).map_err(|d| {
            Error::failure("the proposed fusion.toml does not validate (a bug)".to_string())
                .caused_by(
                    d.0.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
        })?;
        text
    } else {
        before.clone()
    };
    let name = config::display_path(&config.file);
    let diff = edit::unified_diff(name.trim_start_matches("./"), &before, &proposed_text);
    let has_change = !diff.is_empty();
    let report = Report::new(
        &config.project.name,
        &source,
        &traces.started,
        min_calls,
        proposal,
        changed.then(|| format_duration(after)),
        memory,
        diff,
    );
    ui::out(&match args.output {
        OutputFormat::Text => render::text(&report, args.explain, ctx.ui.color),
        OutputFormat::Json => render::json(&report),
        OutputFormat::Markdown => render::markdown(&report),
    });
    if args.write {
        write_proposal(ctx, config, &proposed_text, has_change)?;
    }
    Ok(if args.detailed_exitcode && has_change {
        ExitCode::Changes
    } else {
        ExitCode::Success
    })
}

/// The `after` of the phase the proposal adds: `--after`, which must come after the last
/// `[[phase]]`, else the default past it.
fn phase_offset(config: &config::Config, given: Option<Duration>) -> Result<Duration> {
    let last = config.phases.last().map(|p| p.after);
    let after = match given {
        Some(after) if last.is_some_and(|last| after <= last) => {
            let last = format_duration(last.unwrap_or_default());
            return Err(Error::usage(format!(
                "`--after {}` is not after the last [[phase]] (`after = \"{last}\"`)",
                format_duration(after)
            ))
            .with_hint(
                "phases run in increasing `after` order: pick a later offset, or omit `--after`",
            ));
        }
        Some(after) => after,
        None => edit::default_after(last),
    };
    Ok(after)
}

/// `--write`: the proposal into fusion.toml, when it changes anything.
fn write_proposal(
    ctx: &Context,
    config: &config::Config,
    text: &str,
    has_change: bool,
) -> Result<()> {
    if has_change {
        std::fs::write(&config.file, text).map_err(|e| {
            Error::failure(format!(
                "cannot write `{}`: {e}",
                config::display_path(&config.file)
            ))
        })?;
        ctx.ui.status(&format!(
            "Wrote the proposal into `{}`; review it, then `fusionizer plan`",
            config::display_path(&config.file)
        ));
    } else {
        ctx.ui
            .status("Nothing to write: fusion.toml already describes the proposal");
    }
    Ok(())
}

/// Where the traces come from, and the flag that named it: `--from` as given (a URL or a
/// file), else `--server` or the serve running for this project, as a URL.
fn source_of(ctx: &Context, args: &OptimizeArgs) -> (String, &'static str) {
    if let Some(from) = &args.from {
        return (from.clone(), "--from");
    }
    let server = args.server.clone().unwrap_or_else(|| default_address(ctx));
    let url = if server.contains("://") {
        server
    } else {
        format!("http://{server}")
    };
    (url, SERVER_FLAG)
}

/// The grouping a running serve has live: its `/-/routes`, tasks grouped by the function that
/// holds them. Only tasks fusion.toml declares (uploads that are not declared stay out).
fn live_grouping(
    from: &str,
    flag: &'static str,
    timeout: Duration,
    declared: &BTreeSet<String>,
) -> Result<schedule::Grouping> {
    if !from.contains("://") {
        return Err(Error::usage(format!(
            "`--live` reads a running serve, but `--from {from}` is a file"
        ))
        .with_hint("pass `--server http://HOST:PORT` of the serve whose grouping to keep"));
    }
    let client = ServeClient::new(from, flag, timeout)?;
    let url = client.url("/-/routes");
    let body = client.get("/-/routes", MAX_ROUTES_BYTES)?;
    let routes: RoutesDoc = serde_json::from_slice(&body)
        .map_err(|e| Error::failure(format!("`{url}`: not serve's route table: {e}")))?;
    Ok(schedule::Grouping::new(
        routes.groups(|task| declared.contains(task)),
    ))
}

/// The trace document from `from`: an `http://` URL fetches `/-/traces` from a running serve
/// (the URL as given when it already has a path not ending in `/`), anything else is a file.
fn read_traces(
    ctx: &Context,
    from: &str,
    flag: &'static str,
    timeout: Duration,
) -> Result<(String, TraceDoc)> {
    if from.contains("://") {
        let client = ServeClient::new(from, flag, timeout)?;
        let path = match client.path() {
            prefix if prefix.ends_with('/') => format!("{prefix}-/traces"),
            given => given.to_string(),
        };
        let url = client.url(&path);
        let body = client.get(&path, MAX_TRACES_BYTES)?;
        let doc = traces::parse(&String::from_utf8_lossy(&body), &url)
            .map_err(|e| Error::failure(e.to_string()))?;
        return Ok((url, doc));
    }
    let path = ctx.resolve(std::path::Path::new(from));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::failure(format!("cannot read traces `{from}`: {e}")).with_hint(
            "pass a file written by `fusionizer traces export FILE`, or `http://HOST:PORT` of a \
             running serve",
        )
    })?;
    let doc = traces::parse(&text, from).map_err(|e| Error::failure(e.to_string()))?;
    Ok((from.to_string(), doc))
}

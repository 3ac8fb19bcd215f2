//! Renderings of a proposal: text (with `--explain`, the call graph and a reason per edge),
//! versioned JSON (`docs/optimize-schema.json`) and markdown with a Mermaid diagram for a pull
//! request. Pure functions of a [`Report`].

use serde::{Deserialize, Serialize};

use super::edit::MemoryLimit;
use super::mermaid::{self, Arrow};
use super::{Decision, EdgeOutcome, Gain, TaskNote, FORMAT_VERSION};
use crate::schedule::Grouping;
use crate::ui::{paint, Style};

/// Everything `fusionizer optimize` reports; also the JSON document it prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The project.
    pub project: String,
    /// Where the traces came from (a file or URL).
    pub source: String,
    /// When the traces began (the trace document's `started`).
    pub traces_started: String,
    /// The `min-calls` used.
    pub min_calls: u64,
    /// Whether the proposal differs from the current grouping.
    pub changed: bool,
    /// The grouping in force (the last `[[phase]]`, or every task alone).
    pub current: Grouping,
    /// The proposed grouping.
    pub proposed: Grouping,
    /// The `after` of the appended phase, when there is a change.
    pub after: Option<String>,
    /// The expected gain.
    pub gain: Gain,
    /// Every observed edge with its decision.
    pub edges: Vec<EdgeOutcome>,
    /// Tasks placed without an edge deciding it.
    pub tasks: Vec<TaskNote>,
    /// The memory proposal (`--memory`), else `None`.
    pub memory: Option<Vec<MemoryLimit>>,
    /// The unified diff of fusion.toml; empty when nothing changes.
    pub diff: String,
}

impl Report {
    /// A report of `version` [`FORMAT_VERSION`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        project: &str,
        source: &str,
        traces_started: &str,
        min_calls: u64,
        proposal: super::Proposal,
        after: Option<String>,
        memory: Option<Vec<MemoryLimit>>,
        diff: String,
    ) -> Self {
        Report {
            version: FORMAT_VERSION,
            project: project.to_string(),
            source: source.to_string(),
            traces_started: traces_started.to_string(),
            min_calls,
            changed: proposal.changed(),
            current: proposal.current,
            proposed: proposal.proposed,
            after,
            gain: proposal.gain,
            edges: proposal.edges,
            tasks: proposal.tasks,
            memory,
            diff,
        }
    }

    fn arrows(&self) -> Vec<Arrow> {
        self.edges
            .iter()
            .filter(|e| !matches!(e.decision, Decision::UnknownTask | Decision::SelfCall))
            .map(|e| Arrow {
                caller: e.caller.clone(),
                callee: e.callee.clone(),
                mode: e.mode,
                calls: e.calls,
            })
            .collect()
    }
}

fn grouping_text(grouping: &Grouping) -> String {
    grouping
        .iter()
        .map(|g| format!("[{}]", g.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[allow(clippy::cast_precision_loss)] // call counts far below 2^52
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".to_string();
    }
    format!("{:.0}%", part as f64 * 100.0 / whole as f64)
}

/// One line about the gain.
pub fn gain_line(gain: &Gain) -> String {
    if gain.sync_calls == 0 {
        return "No synchronous calls between tasks were observed: nothing to gain.".to_string();
    }
    format!(
        "Expected gain {:+.0}%: of {} synchronous calls, {} run in-process now ({}), {} would with the proposal ({}).",
        gain.expected * 100.0,
        gain.sync_calls,
        gain.in_process_before,
        percent(gain.in_process_before, gain.sync_calls),
        gain.in_process_after,
        percent(gain.in_process_after, gain.sync_calls),
    )
}

fn decision_style(decision: Decision) -> Style {
    match decision {
        Decision::Inlined | Decision::AsyncJoined => Style::Green,
        Decision::Conflict => Style::Red,
        Decision::AsyncApart => Style::Yellow,
        Decision::BelowMinCalls | Decision::UnknownTask | Decision::SelfCall => Style::Dim,
    }
}

/// The text rendering: the groupings, the gain and the diff; with `explain`, first the call
/// graph with the decision and reason of every edge, and why each remaining task is where it is.
pub fn text(report: &Report, explain: bool, color: bool) -> String {
    let mut out = String::new();
    if explain {
        out.push_str(&format!(
            "Call graph from {} (traces since {}), min-calls {}:\n",
            report.source, report.traces_started, report.min_calls
        ));
        if report.edges.is_empty() {
            out.push_str("  (no calls between tasks observed)\n");
        }
        let width = report
            .edges
            .iter()
            .map(|e| e.caller.len() + e.callee.len() + 4)
            .max()
            .unwrap_or(0);
        for edge in &report.edges {
            let arrow = format!("{} -> {}", edge.caller, edge.callee);
            out.push_str(&format!(
                "  {arrow:<width$}  {:<5} {:>7} calls  {}: {}\n",
                edge.mode.to_string(),
                edge.calls,
                paint(color, decision_style(edge.decision), edge.decision.word()),
                edge.reason
            ));
        }
        for note in &report.tasks {
            out.push_str(&format!("  task {}: {}\n", note.task, note.reason));
        }
        out.push('\n');
    }
    out.push_str(&format!("Current:  {}\n", grouping_text(&report.current)));
    out.push_str(&format!("Proposed: {}\n", grouping_text(&report.proposed)));
    out.push_str(&gain_line(&report.gain));
    out.push('\n');
    if let Some(memory) = &report.memory {
        for limit in memory {
            out.push_str(&format!(
                "Memory for [{}]: {} (p99 peak RSS {} bytes plus headroom)\n",
                limit.tasks.join(", "),
                limit.limit,
                limit.peak_rss_p99_bytes
            ));
        }
    }
    if report.diff.is_empty() {
        out.push_str("No change: the grouping in force already matches the traces.\n");
    } else {
        out.push('\n');
        for line in report.diff.lines() {
            out.push_str(&diff_line(color, line));
            out.push('\n');
        }
    }
    out
}

/// The JSON rendering (`docs/optimize-schema.json`), pretty-printed, with a trailing newline.
pub fn json(report: &Report) -> String {
    pretty_json(report)
}

/// One line of a unified diff, coloured when `color`: headers bold, additions green, removals
/// red, hunk lines dim. The diff of fusion.toml here, of a function's files in a plan
/// (`plan::render`).
pub fn diff_line(color: bool, line: &str) -> String {
    if line.starts_with("+++") || line.starts_with("---") {
        paint(color, Style::Bold, line)
    } else if line.starts_with('+') {
        paint(color, Style::Green, line)
    } else if line.starts_with('-') {
        paint(color, Style::Red, line)
    } else if line.starts_with("@@") {
        paint(color, Style::Dim, line)
    } else {
        line.to_string()
    }
}

/// A document of plain data as pretty-printed JSON with a trailing newline: the `--output json`
/// rendering of a proposal here and of a plan (`plan::render`).
pub fn pretty_json(document: &impl Serialize) -> String {
    let mut text =
        serde_json::to_string_pretty(document).expect("a document of plain data always serialises");
    text.push('\n');
    text
}

/// `text` as one markdown table cell: `|` escaped, line breaks as spaces.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The markdown rendering for a pull request: the gain, a Mermaid diagram of the grouping before
/// and after with the observed calls, a table of the edges and why, and the diff of fusion.toml.
pub fn markdown(report: &Report) -> String {
    let mut out = format!(
        "### fusionizer optimize for `{}`\n\n{}\n\n",
        report.project,
        gain_line(&report.gain)
    );
    out.push_str(&mermaid::diagram(
        &report.project,
        &report.current,
        &report.proposed,
        &report.arrows(),
    ));
    out.push_str("\n| Call | Mode | Calls | Decision | Why |\n| --- | --- | ---: | --- | --- |\n");
    for edge in &report.edges {
        out.push_str(&format!(
            "| `{}` → `{}` | {} | {} | {} | {} |\n",
            edge.caller,
            edge.callee,
            edge.mode,
            edge.calls,
            edge.decision.word(),
            cell(&edge.reason)
        ));
    }
    for note in &report.tasks {
        out.push_str(&format!("\n- `{}`: {}", note.task, cell(&note.reason)));
    }
    if !report.tasks.is_empty() {
        out.push('\n');
    }
    if report.diff.is_empty() {
        out.push_str("\nNo change: the grouping in force already matches the traces.\n");
    } else {
        let mut fence = "```".to_string();
        while report.diff.contains(&fence) {
            fence.push('`');
        }
        out.push_str(&format!(
            "\n<details>\n<summary>fusion.toml</summary>\n\n{fence}diff\n{}{}{fence}\n\n</details>\n",
            report.diff,
            if report.diff.ends_with('\n') { "" } else { "\n" }
        ));
    }
    out
}

//! Renderings of a [`Plan`]: Terraform-like text, versioned JSON (`docs/plan-schema.json`) and a
//! markdown summary for pull-request comments. Pure functions of the plan; colour only when the
//! caller says so.

use crate::optimize::mermaid;
use crate::optimize::render::{cell, diff_line, pretty_json};
use crate::plan::{Action, Change, Plan, Summary};
use crate::schedule::Grouping;
use crate::ui::{paint, Style};

/// The line printed when live state already matches.
pub const NO_CHANGES: &str = "No changes. Live state matches fusion.toml.";

fn style_of(action: Action) -> Style {
    match action {
        Action::Create => Style::Green,
        Action::Update => Style::Yellow,
        Action::Replace | Action::Delete => Style::Red,
    }
}

fn legend_text(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update in-place",
        Action::Replace => "destroy and then create replacement",
        Action::Delete => "destroy",
    }
}

/// `Plan: X to add, Y to change, Z to destroy.`
pub fn footer(summary: &Summary) -> String {
    format!("Plan: {}.", counts(summary))
}

/// `X to add, Y to change, Z to destroy`
pub fn counts(summary: &Summary) -> String {
    format!(
        "{} to add, {} to change, {} to destroy",
        summary.add, summary.change, summary.destroy
    )
}

fn short(digest: &str) -> &str {
    // `sha256:` plus 12 hex digits is plenty to tell versions apart on screen.
    let keep = "sha256:".len() + 12;
    if digest.starts_with("sha256:") && digest.len() > keep {
        &digest[..keep]
    } else {
        digest
    }
}

/// Who chose the grouping and which functions belong to serve, when either applies: a line
/// each, then a blank line.
pub fn preamble(plan: &Plan) -> String {
    let mut out = String::new();
    if let Some(grouping) = &plan.grouping {
        out.push_str(&format!("Grouping: {}\n", grouping.description));
    }
    for kept in &plan.kept {
        out.push_str(&format!(
            "Kept: {} (tasks {}): owned by serve, holds uploaded task(s) {}\n",
            kept.function,
            kept.tasks.join(", "),
            kept.uploaded.join(", ")
        ));
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn digest_line(change: &Change) -> Option<String> {
    match (&change.old_digest, &change.new_digest) {
        (Some(old), Some(new)) if old != new => Some(format!("{} -> {}", short(old), short(new))),
        (_, Some(new)) => Some(short(new).to_string()),
        (Some(old), None) => Some(short(old).to_string()),
        (None, None) => None,
    }
}

/// The text rendering: a legend of the symbols used, one block per change, the masked diff of
/// each update, and the footer; or [`NO_CHANGES`].
pub fn text(plan: &Plan, color: bool) -> String {
    let mut out = preamble(plan);
    if !plan.has_changes() {
        out.push_str(NO_CHANGES);
        out.push('\n');
        return out;
    }
    out.push_str("Fusionizer will perform the following actions, shown with these symbols:\n");
    let mut used: Vec<Action> = plan.changes.iter().map(|c| c.action).collect();
    used.sort();
    used.dedup();
    for action in used {
        out.push_str(&format!(
            "{} {}\n",
            paint(color, style_of(action), &format!("{:>3}", action.symbol())),
            legend_text(action)
        ));
    }
    for change in &plan.changes {
        out.push('\n');
        out.push_str(&format!(
            "{} {}\n",
            paint(
                color,
                style_of(change.action),
                &format!("{:>3}", change.action.symbol())
            ),
            paint(color, Style::Bold, &change.function)
        ));
        out.push_str(&format!("      tasks:  {}\n", change.tasks.join(", ")));
        out.push_str(&format!("      reason: {}\n", change.reason));
        if let Some(line) = digest_line(change) {
            out.push_str(&format!("      digest: {line}\n"));
        }
        for rewrite in &change.build_rewrites {
            out.push_str(&format!(
                "      build:  {}: `{}`\n              runs as `{}`\n",
                rewrite.task, rewrite.from, rewrite.to
            ));
        }
        if let Some(diff) = change.diff.as_deref().filter(|d| !d.is_empty()) {
            out.push('\n');
            for line in diff.lines() {
                let styled = diff_line(color, line);
                out.push_str(format!("      {styled}").trim_end());
                out.push('\n');
            }
        }
    }
    out.push('\n');
    out.push_str(&paint(color, Style::Bold, &footer(&plan.summary)));
    out.push('\n');
    out
}

/// The JSON rendering (`docs/plan-schema.json`), pretty-printed, with a trailing newline.
pub fn json(plan: &Plan) -> String {
    pretty_json(plan)
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The markdown rendering: one collapsible `<details>` block for a pull-request comment, with a
/// table of the changes and the diffs of updates; a single line when there are no changes.
pub fn markdown(plan: &Plan) -> String {
    let preamble = preamble(plan)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| format!("{}\n", cell(l)))
        .collect::<String>();
    if !plan.has_changes() {
        let line = format!("**fusionizer plan** for `{}`: {NO_CHANGES}\n", plan.project);
        return if preamble.is_empty() {
            line
        } else {
            format!("{line}\n{preamble}")
        };
    }
    let mut out = String::new();
    out.push_str(&format!(
        "<details>\n<summary><strong>fusionizer plan</strong> for <code>{}</code>: {}</summary>\n\n",
        html(&plan.project),
        html(&counts(&plan.summary))
    ));
    if !preamble.is_empty() {
        out.push_str(&preamble);
        out.push('\n');
    }
    out.push_str("| | Function | Tasks | Reason |\n| --- | --- | --- | --- |\n");
    for change in &plan.changes {
        out.push_str(&format!(
            "| `{}` {} | `{}` | {} | {} |\n",
            change.action.symbol(),
            change.action.word(),
            change.function,
            cell(&change.tasks.join(", ")),
            cell(&change.reason)
        ));
    }
    if !plan.unchanged.is_empty() {
        out.push_str(&format!(
            "\nUnchanged: {}\n",
            plan.unchanged
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for change in &plan.changes {
        let Some(diff) = change.diff.as_deref().filter(|d| !d.is_empty()) else {
            continue;
        };
        let mut fence = "```".to_string();
        while diff.contains(&fence) {
            fence.push('`');
        }
        out.push_str(&format!(
            "\n`{} {}`, merged function.yaml:\n\n{fence}diff\n{}{}{fence}\n",
            change.action.symbol(),
            change.function,
            diff,
            if diff.ends_with('\n') { "" } else { "\n" }
        ));
    }
    out.push_str("\n</details>\n");
    out
}

/// [`markdown`] with the grouping drawn before → after as a Mermaid diagram (the renderer of
/// `fusionizer optimize --output markdown`), so a reviewer sees which tasks move together.
/// `before` is the task sets of the live functions, `after` those of the desired ones; the
/// diagram is left out when they are the same.
pub fn markdown_with_grouping(plan: &Plan, before: &Grouping, after: &Grouping) -> String {
    let text = markdown(plan);
    if before == after {
        return text;
    }
    let diagram = format!(
        "Grouping, before → after:\n\n{}",
        mermaid::diagram(&plan.project, before, after, &[])
    );
    match text.strip_suffix("\n</details>\n") {
        Some(head) => format!("{head}\n{diagram}\n</details>\n"),
        None => format!("{text}\n{diagram}"),
    }
}

//! `fusionizer status`: the live owned functions, their tasks, state and digest, and drift
//! against the chosen grouping — `in sync`, `differs` (same name but another digest, or broken:
//! `error`, `unhealthy`, stuck provisioning), `not desired` (owned but not in the grouping) —
//! plus desired functions that are `missing`. `in sync` means plan leaves it alone.
//!
//! When serve's optimizer (`[optimizer] kind = "feedback"` or `"command"`) regrouped live, the
//! live grouping is one fusion.toml does not describe: serve notes it in
//! `.fusionizer/live-grouping.json` ([`LiveGrouping`]), and status warns about it
//! ([`optimizer_note`]) as long as the live functions still follow that grouping.
//!
//! [`compute`] is pure; [`command`] observes the platform and renders a table or JSON.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fuse::Artifact;
use crate::platform::LiveFunction;
use crate::ui::{paint, Style};

/// The version of the status JSON.
pub const FORMAT_VERSION: u32 = 1;

/// How a function relates to the chosen grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Drift {
    #[serde(rename = "in sync")]
    InSync,
    #[serde(rename = "differs")]
    Differs,
    #[serde(rename = "not desired")]
    NotDesired,
    #[serde(rename = "missing")]
    Missing,
    /// It holds tasks uploaded to serve: serve's, which plan and apply leave alone.
    #[serde(rename = "kept (serve)")]
    Kept,
}

impl Drift {
    pub fn word(self) -> &'static str {
        match self {
            Drift::InSync => "in sync",
            Drift::Differs => "differs",
            Drift::NotDesired => "not desired",
            Drift::Missing => "missing",
            Drift::Kept => "kept (serve)",
        }
    }
}

/// One row: a live owned function, or a desired one that is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionStatus {
    pub function: String,
    pub tasks: Vec<String>,
    /// The live state word; `None` when missing.
    pub state: Option<String>,
    /// The platform's message for `error`/`unhealthy`, when any.
    pub message: Option<String>,
    /// The live digest.
    pub digest: Option<String>,
    /// The digest the chosen grouping wants; `None` when not desired.
    pub desired_digest: Option<String>,
    pub drift: Drift,
}

/// Counts per drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusSummary {
    pub in_sync: usize,
    pub differs: usize,
    pub not_desired: usize,
    pub missing: usize,
    /// Functions serve holds for uploaded tasks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kept: usize,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The whole status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub format_version: u32,
    pub project: String,
    /// By function name.
    pub functions: Vec<FunctionStatus>,
    pub summary: StatusSummary,
    /// Set when serve's optimizer chose the live grouping and fusion.toml does not describe it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerNote>,
    /// Who chose the grouping compared against, when the live state had a say (serve's
    /// schedule, held phase or optimizer, as its functions record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grouping: Option<crate::plan::GroupingSource>,
}

/// The file in the state directory where serve notes a live grouping an optimizer chose.
pub const LIVE_GROUPING_FILE: &str = "live-grouping.json";

/// What serve notes when an optimizer regrouped live (`.fusionizer/live-grouping.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveGrouping {
    /// `feedback` or `command`.
    pub source: String,
    /// When the optimizer chose it (RFC 3339, UTC).
    pub chosen_at: String,
    /// The grouping serve applied: sorted groups of sorted tasks.
    pub groups: Vec<Vec<String>>,
    /// serve's base URL, for `fusionizer optimize --from`.
    pub serve_url: String,
}

impl LiveGrouping {
    /// Writes the note (whole or not at all: a temporary file renamed into place).
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let mut file = tempfile::NamedTempFile::new_in(state_dir)?;
        serde_json::to_writer_pretty(&mut file, self)?;
        file.persist(state_dir.join(LIVE_GROUPING_FILE))
            .map(drop)
            .map_err(|e| e.error)
    }

    /// Reads the note, if serve left one that can be read.
    pub fn read(state_dir: &Path) -> Option<LiveGrouping> {
        let text = std::fs::read_to_string(state_dir.join(LIVE_GROUPING_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Removes the note: the live grouping is fusion.toml's again.
    pub fn clear(state_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(state_dir.join(LIVE_GROUPING_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The warning that fusion.toml no longer describes the live grouping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptimizerNote {
    /// Who chose the live grouping: `feedback` or `command`.
    pub source: String,
    pub chosen_at: String,
    /// The live grouping.
    pub live: Vec<Vec<String>>,
    /// The grouping fusion.toml selects.
    pub desired: Vec<Vec<String>>,
    /// How to make fusion.toml describe the live grouping.
    pub hint: String,
}

/// The warning for `note` (what serve noted), when the live owned functions still follow the
/// grouping it names and the desired artifacts (fusion.toml's grouping) do not. `None` when
/// there is no note, or when a later `apply` (or `optimize --write`) made them agree again.
pub fn optimizer_note(
    note: Option<LiveGrouping>,
    project: &str,
    desired: &[Artifact],
    live_owned: &[LiveFunction],
) -> Option<OptimizerNote> {
    let note = note?;
    let mut live: Vec<Vec<String>> = live_owned
        .iter()
        .filter(|f| f.is_owned_by(project))
        .map(LiveFunction::tasks)
        .collect();
    live.sort();
    let mut wanted: Vec<Vec<String>> = desired.iter().map(|a| a.tasks.clone()).collect();
    wanted.sort();
    (live == note.groups && live != wanted).then(|| OptimizerNote {
        hint: format!(
            "`fusionizer optimize --from {} --live` prints the change to fusion.toml that describes it \
             (`--write` makes it)",
            note.serve_url
        ),
        source: note.source,
        chosen_at: note.chosen_at,
        live,
        desired: wanted,
    })
}

fn render_groups(groups: &[Vec<String>]) -> String {
    groups
        .iter()
        .map(|g| format!("[{}]", g.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Status {
    /// Every desired function is live with its digest and nothing else is owned.
    pub fn in_sync(&self) -> bool {
        self.functions
            .iter()
            .all(|f| matches!(f.drift, Drift::InSync | Drift::Kept))
    }
}

/// Relates the live owned functions to the desired artifacts.
pub fn compute(project: &str, desired: &[Artifact], live_owned: &[LiveFunction]) -> Status {
    let wanted: BTreeMap<&str, &Artifact> = desired.iter().map(|a| (a.name.as_str(), a)).collect();
    let mut rows: BTreeMap<String, FunctionStatus> = BTreeMap::new();
    for live in live_owned.iter().filter(|f| f.is_owned_by(project)) {
        let want = wanted.get(live.name.as_str());
        // In sync means plan would leave it alone: the desired digest, and not broken.
        let drift = match want {
            None => Drift::NotDesired,
            Some(a)
                if live.digest() == Some(a.digest.as_str())
                    && live.state.needs_replacement().is_none() =>
            {
                Drift::InSync
            }
            Some(_) => Drift::Differs,
        };
        let message = match &live.state {
            crate::platform::FunctionState::Error(m)
            | crate::platform::FunctionState::Unhealthy(m)
                if !m.is_empty() =>
            {
                Some(m.clone())
            }
            _ => None,
        };
        rows.insert(
            live.name.clone(),
            FunctionStatus {
                function: live.name.clone(),
                tasks: live.tasks(),
                state: Some(live.state.word().to_string()),
                message,
                digest: live.digest().map(str::to_string),
                desired_digest: want.map(|a| a.digest.clone()),
                drift,
            },
        );
    }
    for (name, a) in &wanted {
        rows.entry(name.to_string())
            .or_insert_with(|| FunctionStatus {
                function: name.to_string(),
                tasks: a.tasks.clone(),
                state: None,
                message: None,
                digest: None,
                desired_digest: Some(a.digest.clone()),
                drift: Drift::Missing,
            });
    }
    let functions: Vec<FunctionStatus> = rows.into_values().collect();
    let n = |d: Drift| functions.iter().filter(|f| f.drift == d).count();
    Status {
        format_version: FORMAT_VERSION,
        project: project.to_string(),
        summary: StatusSummary {
            in_sync: n(Drift::InSync),
            differs: n(Drift::Differs),
            not_desired: n(Drift::NotDesired),
            missing: n(Drift::Missing),
            kept: 0,
        },
        functions,
        optimizer: None,
        grouping: None,
    }
}

/// Adds the functions serve holds for uploaded tasks, as `kept (serve)` rows.
pub fn add_kept(status: &mut Status, kept: &[LiveFunction]) {
    for live in kept {
        status.functions.push(FunctionStatus {
            function: live.name.clone(),
            tasks: live.tasks(),
            state: Some(live.state.word().to_string()),
            message: None,
            digest: live.digest().map(str::to_string),
            desired_digest: None,
            drift: Drift::Kept,
        });
        status.summary.kept += 1;
    }
    status.functions.sort_by(|a, b| a.function.cmp(&b.function));
}

fn short(digest: Option<&String>) -> String {
    match digest {
        Some(d) if d.starts_with("sha256:") && d.len() > 19 => d[..19].to_string(),
        Some(d) => d.clone(),
        None => "-".to_string(),
    }
}

/// A table, one row per function, then a one-line verdict.
pub fn render_text(status: &Status, color: bool) -> String {
    if status.functions.is_empty() {
        return format!(
            "No functions of project `{}` are live, and none are desired.\n",
            status.project
        );
    }
    let header = ["FUNCTION", "TASKS", "STATE", "DIGEST", "DRIFT"];
    let mut out = String::new();
    if let Some(grouping) = &status.grouping {
        out.push_str(&format!("Grouping: {}\n\n", grouping.description));
    }
    let rows: Vec<[String; 5]> = status
        .functions
        .iter()
        .map(|f| {
            [
                f.function.clone(),
                f.tasks.join(","),
                f.state.clone().unwrap_or_else(|| "-".to_string()),
                short(f.digest.as_ref()),
                f.drift.word().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5], styles: [Option<Style>; 5]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let padded = if i + 1 == cells.len() {
                cell.to_string()
            } else {
                format!("{cell:<w$}  ", w = widths[i])
            };
            text.push_str(&match styles[i] {
                Some(style) => paint(color, style, &padded),
                None => padded,
            });
        }
        text.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header, [Some(Style::Bold); 5]));
    for (row, f) in rows.iter().zip(&status.functions) {
        let state_style = match f.state.as_deref() {
            Some("ready") => None,
            _ => Some(Style::Red),
        };
        let drift_style = match f.drift {
            Drift::InSync => Style::Green,
            Drift::Differs => Style::Yellow,
            Drift::NotDesired | Drift::Missing => Style::Red,
            Drift::Kept => Style::Dim,
        };
        out.push_str(&line(
            [&row[0], &row[1], &row[2], &row[3], &row[4]],
            [None, None, state_style, None, Some(drift_style)],
        ));
    }
    out.push('\n');
    if let Some(note) = &status.optimizer {
        out.push_str(&paint(
            color,
            Style::Yellow,
            &format!(
                "warning: fusion.toml no longer describes the live grouping: serve's `{}` \
                 optimizer regrouped live at {}",
                note.source, note.chosen_at
            ),
        ));
        out.push('\n');
        out.push_str(&format!(
            "  live:         {}\n  fusion.toml:  {}\nhint: {}\n\n",
            render_groups(&note.live),
            render_groups(&note.desired),
            note.hint
        ));
    }
    if status.in_sync() {
        out.push_str("Live state matches fusion.toml.\n");
    } else {
        let s = &status.summary;
        out.push_str(&format!(
            "{} in sync, {} differ, {} not desired, {} missing; run `fusionizer plan` for details.\n",
            s.in_sync, s.differs, s.not_desired, s.missing
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::Fake;
    use crate::platform::FunctionState;

    #[test]
    fn drift_covers_every_case() {
        let (a, b, c, d) = (
            Fake::new("shop", &["taska"]),
            Fake::new("shop", &["taskb"]),
            Fake::new("shop", &["taskc"]),
            Fake::new("shop", &["taskd"]),
        );
        // taske is live with the desired digest but unhealthy: plan would replace it.
        let e = Fake::new("shop", &["taske"]);
        let desired = vec![
            a.build(),
            b.clone().version("taskb", "v2").build(),
            d.build(),
            e.build(),
        ];
        let live = vec![
            a.live(),
            b.live_in(FunctionState::Error("OOM".into())),
            c.live(),
            e.live_in(FunctionState::Unhealthy(String::new())),
        ];
        let status = compute("shop", &desired, &live);
        let drift: Vec<(&str, Drift)> = status
            .functions
            .iter()
            .map(|f| (f.function.as_str(), f.drift))
            .collect();
        assert_eq!(
            drift,
            vec![
                ("shop-taska", Drift::InSync),
                ("shop-taskb", Drift::Differs),
                ("shop-taskc", Drift::NotDesired),
                ("shop-taskd", Drift::Missing),
                ("shop-taske", Drift::Differs),
            ]
        );
        assert!(!status.in_sync());
        assert_eq!(status.functions[1].message.as_deref(), Some("OOM"));
        insta::assert_snapshot!("status_drift_text", render_text(&status, false));
        insta::assert_snapshot!(
            "status_drift_json",
            serde_json::to_string_pretty(&status).unwrap()
        );
    }

    #[test]
    fn a_live_grouping_an_optimizer_chose_is_a_warning_while_it_lasts() {
        let (a, b, ab) = (
            Fake::new("shop", &["taska"]),
            Fake::new("shop", &["taskb"]),
            Fake::new("shop", &["taska", "taskb"]),
        );
        let note = |groups: &[&[&str]]| LiveGrouping {
            source: "feedback".to_string(),
            chosen_at: "2026-12-06T19:00:00.000Z".to_string(),
            groups: groups
                .iter()
                .map(|g| g.iter().map(ToString::to_string).collect())
                .collect(),
            serve_url: "http://127.0.0.1:8000".to_string(),
        };
        let desired = [a.build(), b.build()];
        let live = [ab.live()];
        let mut status = compute("shop", &desired, &live);
        status.optimizer =
            optimizer_note(Some(note(&[&["taska", "taskb"]])), "shop", &desired, &live);
        let text = render_text(&status, false);
        assert!(
            text.contains(
                "warning: fusion.toml no longer describes the live grouping: serve's `feedback` \
                 optimizer regrouped live at 2026-12-06T19:00:00.000Z\n  live:         [taska, taskb]\n  \
                 fusion.toml:  [taska] [taskb]\nhint: `fusionizer optimize --from http://127.0.0.1:8000 --live`"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["optimizer"]["source"], "feedback");
        assert_eq!(json["optimizer"]["live"][0][1], "taskb");
        // No note, a note the live functions no longer follow, or fusion.toml caught up: quiet.
        assert_eq!(optimizer_note(None, "shop", &desired, &live), None);
        let stale = optimizer_note(
            Some(note(&[&["taska"], &["taskb"]])),
            "shop",
            &desired,
            &live,
        );
        assert_eq!(stale, None);
        let caught_up = [ab.build()];
        let note_ab = Some(note(&[&["taska", "taskb"]]));
        assert_eq!(optimizer_note(note_ab, "shop", &caught_up, &live), None);
        assert!(!serde_json::to_string(&compute("shop", &desired, &live))
            .unwrap()
            .contains("optimizer"));
    }

    #[test]
    fn the_note_is_written_read_and_cleared_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join(".fusionizer");
        assert_eq!(LiveGrouping::read(&state_dir), None);
        LiveGrouping::clear(&state_dir).unwrap();
        let note = LiveGrouping {
            source: "command".to_string(),
            chosen_at: "t".to_string(),
            groups: vec![vec!["a".to_string()]],
            serve_url: "http://127.0.0.1:1".to_string(),
        };
        note.write(&state_dir).unwrap();
        assert_eq!(LiveGrouping::read(&state_dir), Some(note));
        LiveGrouping::clear(&state_dir).unwrap();
        assert_eq!(LiveGrouping::read(&state_dir), None);
    }

    #[test]
    fn matching_state_says_so() {
        let a = Fake::new("shop", &["taska"]);
        let status = compute("shop", &[a.build()], &[a.live()]);
        assert!(status.in_sync());
        assert!(render_text(&status, false).ends_with("Live state matches fusion.toml.\n"));
        assert!(!render_text(&status, false).contains('\x1b'));
        assert!(render_text(&status, true).contains('\x1b'));
    }
}

//! `fusionizer status`: the live owned functions, their tasks, state and digest, and drift
//! against the chosen grouping — `in sync`, `differs` (same name but another digest, or broken:
//! `error`, `unhealthy`, stuck provisioning), `not desired` (owned but not in the grouping) —
//! plus desired functions that are `missing`. `in sync` means plan leaves it alone.
//!
//! [`compute`] is pure; [`command`] observes the platform and renders a table or JSON.

use std::collections::BTreeMap;

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
}

impl Drift {
    pub fn word(self) -> &'static str {
        match self {
            Drift::InSync => "in sync",
            Drift::Differs => "differs",
            Drift::NotDesired => "not desired",
            Drift::Missing => "missing",
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
}

/// The whole status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub format_version: u32,
    pub project: String,
    /// By function name.
    pub functions: Vec<FunctionStatus>,
    pub summary: StatusSummary,
}

impl Status {
    /// Every desired function is live with its digest and nothing else is owned.
    pub fn in_sync(&self) -> bool {
        self.functions.iter().all(|f| f.drift == Drift::InSync)
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
        },
        functions,
    }
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
    let mut out = String::new();
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
        };
        out.push_str(&line(
            [&row[0], &row[1], &row[2], &row[3], &row[4]],
            [None, None, state_style, None, Some(drift_style)],
        ));
    }
    out.push('\n');
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
    fn matching_state_says_so() {
        let a = Fake::new("shop", &["taska"]);
        let status = compute("shop", &[a.build()], &[a.live()]);
        assert!(status.in_sync());
        assert!(render_text(&status, false).ends_with("Live state matches fusion.toml.\n"));
        assert!(!render_text(&status, false).contains('\x1b'));
        assert!(render_text(&status, true).contains('\x1b'));
    }
}

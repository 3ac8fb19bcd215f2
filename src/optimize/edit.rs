//! A proposal as a change to fusion.toml: a `[[phase]]` appended (and, with the memory proposal,
//! `[[override]]` tables), made with `toml_edit` so every comment and the formatting of the rest
//! of the file stay as they are, and shown as a unified diff made with `similar`.

use std::time::Duration;

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value};

use super::Proposal;
use crate::schedule::Grouping;
use crate::traces::TraceDoc;

/// The default headroom of the memory proposal, in percent of the measured p99 peak RSS.
pub const DEFAULT_HEADROOM_PERCENT: u32 = 25;

const MIB: u64 = 1024 * 1024;

/// One group's proposed memory limit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryLimit {
    /// The group.
    pub tasks: Vec<String>,
    /// The largest `peak_rss_p99_bytes` among the group's tasks.
    pub peak_rss_p99_bytes: u64,
    /// `peak_rss_p99_bytes` plus the headroom, rounded up to whole MiB, as a Kubernetes
    /// quantity (`"96Mi"`).
    pub limit: String,
}

/// The Fusionize++ sizing: for each group of the proposal with more than zero measured tasks,
/// the largest p99 peak RSS among its tasks (a worker's peak over an invocation already includes
/// the tasks it called in-process), plus `headroom_percent`, rounded up to whole MiB. Groups
/// with no measurement get no limit.
pub fn memory_limits(
    proposal: &Proposal,
    traces: &TraceDoc,
    headroom_percent: u32,
) -> Vec<MemoryLimit> {
    let mut out = Vec::new();
    for group in &proposal.proposed {
        let peak = traces
            .tasks
            .iter()
            .filter(|t| group.contains(&t.task))
            .filter_map(|t| t.peak_rss_p99_bytes)
            .max();
        let Some(peak) = peak else { continue };
        let with_headroom = peak
            .saturating_mul(100 + u64::from(headroom_percent))
            .div_ceil(100);
        let mib = with_headroom.div_ceil(MIB).max(1);
        out.push(MemoryLimit {
            tasks: group.clone(),
            peak_rss_p99_bytes: peak,
            limit: format!("{mib}Mi"),
        });
    }
    out
}

/// `d` as fusion.toml writes durations: `0s`, `90s`, `1h 30m`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    humantime::format_duration(d).to_string()
}

/// The default `after` of the appended phase: one second after the last `[[phase]]`, or `0s`
/// when there is none (the proposal then holds from serve's start).
pub fn default_after(last_phase: Option<Duration>) -> Duration {
    last_phase.map_or(Duration::ZERO, |after| after + Duration::from_secs(1))
}

fn string_array<'a>(items: impl IntoIterator<Item = &'a String>) -> Array {
    let mut array = Array::new();
    for item in items {
        array.push(item.as_str());
    }
    array
}

/// fusion.toml `text` with a `[[phase]]` of `grouping` appended at `after` (after the last
/// phase), with `comment` above it, and one `[[override]]` per memory limit (an existing override
/// for the same task set gets the new `resources.limits.memory`; the rest of it stays). Errors
/// name what is wrong with the file.
pub fn append_phase(
    text: &str,
    after: Duration,
    grouping: &Grouping,
    comment: &str,
    memory: &[MemoryLimit],
) -> Result<String, String> {
    let mut doc = parse(text)?;
    let mut phase = Table::new();
    let mut groups = Array::new();
    for group in grouping {
        groups.push(Value::Array(string_array(group)));
    }
    phase.insert("after", toml_edit::value(format_duration(after)));
    phase.insert("groups", toml_edit::value(groups));
    let prefix: String = comment
        .lines()
        .map(|line| format!("# {line}\n").replace("# \n", "#\n"))
        .collect();
    phase.decor_mut().set_prefix(format!("\n{prefix}"));
    match doc.get_mut("phase") {
        None => {
            let mut phases = ArrayOfTables::new();
            phases.push(phase);
            doc.insert("phase", Item::ArrayOfTables(phases));
        }
        Some(Item::ArrayOfTables(phases)) => {
            // Right below the last phase, before the tables that follow it in the file.
            if let Some(position) = phases.iter().filter_map(Table::position).max() {
                phase.set_position(position);
            }
            phases.push(phase);
        }
        Some(_) => return Err("`phase` is not an array of `[[phase]]` tables".to_string()),
    }
    for limit in memory {
        set_memory(&mut doc, limit)?;
    }
    Ok(doc.to_string())
}

/// fusion.toml `text` with one `[[override]]` per memory limit (as [`append_phase`] writes
/// them), the grouping left as it is.
pub fn set_memory_limits(text: &str, memory: &[MemoryLimit]) -> Result<String, String> {
    let mut doc = parse(text)?;
    for limit in memory {
        set_memory(&mut doc, limit)?;
    }
    Ok(doc.to_string())
}

fn parse(text: &str) -> Result<DocumentMut, String> {
    text.parse()
        .map_err(|e: toml_edit::TomlError| format!("not valid TOML: {}", e.message()))
}

fn set_memory(doc: &mut DocumentMut, limit: &MemoryLimit) -> Result<(), String> {
    let tasks_of = |table: &Table| -> Option<Vec<String>> {
        let mut names: Vec<String> = table
            .get("tasks")?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        names.sort();
        Some(names)
    };
    if doc.get("override").is_none() {
        doc.insert("override", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let Some(Item::ArrayOfTables(overrides)) = doc.get_mut("override") else {
        return Err("`override` is not an array of `[[override]]` tables".to_string());
    };
    let existing = overrides
        .iter_mut()
        .find(|t| tasks_of(t).as_ref() == Some(&limit.tasks));
    let table = match existing {
        Some(table) => table,
        None => {
            let mut table = Table::new();
            table.insert("tasks", toml_edit::value(string_array(&limit.tasks)));
            table.decor_mut().set_prefix(format!(
                "\n# Memory for `{}`: p99 peak RSS {} MiB measured, plus headroom.\n",
                limit.tasks.join(", "),
                limit.peak_rss_p99_bytes.div_ceil(MIB)
            ));
            overrides.push(table);
            overrides
                .iter_mut()
                .last()
                .expect("an override was just pushed")
        }
    };
    let resources = table
        .entry("resources")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_dotted(true);
            Item::Table(t)
        })
        .as_table_like_mut()
        .ok_or("`resources` of an `[[override]]` is not a table")?;
    let limits = resources
        .entry("limits")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_dotted(true);
            Item::Table(t)
        })
        .as_table_like_mut()
        .ok_or("`resources.limits` of an `[[override]]` is not a table")?;
    limits.insert("memory", toml_edit::value(limit.limit.as_str()));
    Ok(())
}

/// A unified diff (3 lines of context) from `before` to `after`, with `a/<name>` and `b/<name>`
/// headers; empty when they are equal.
pub fn unified_diff(name: &str, before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = "# the project\n[project]\nname = \"iot\" # trailing\n\n[tasks]\na = \"tasks/a\"\nb = \"tasks/b\"\n\n# first phase\n[[phase]]\nafter = \"0s\"\ngroups = [[\"a\"], [\"b\"]]\n\n# serve settings\n[serve]\nlisten = \"127.0.0.1:8000\"\n";

    fn g(groups: &[&[&str]]) -> Grouping {
        groups
            .iter()
            .map(|g| g.iter().map(ToString::to_string).collect())
            .collect()
    }

    #[test]
    fn the_phase_goes_below_the_last_one_and_comments_stay() {
        let out = append_phase(
            TOML,
            Duration::from_secs(1),
            &g(&[&["a", "b"]]),
            "Proposed by fusionizer optimize",
            &[],
        )
        .unwrap();
        assert!(out.contains("# the project\n"), "{out}");
        assert!(out.contains("name = \"iot\" # trailing\n"), "{out}");
        assert!(out.contains("# serve settings\n[serve]"), "{out}");
        let first = out.find("after = \"0s\"").unwrap();
        let second = out.find("after = \"1s\"").unwrap();
        let serve = out.find("[serve]").unwrap();
        assert!(first < second && second < serve, "{out}");
        assert!(out.contains("# Proposed by fusionizer optimize\n[[phase]]\nafter = \"1s\"\ngroups = [[\"a\", \"b\"]]\n"), "{out}");
        let diff = unified_diff("fusion.toml", TOML, &out);
        assert!(
            diff.starts_with("--- a/fusion.toml\n+++ b/fusion.toml\n"),
            "{diff}"
        );
        assert!(diff.contains("+groups = [[\"a\", \"b\"]]\n"), "{diff}");
        assert!(
            diff.lines()
                .all(|l| !l.starts_with('-') || l.starts_with("---")),
            "only additions: {diff}"
        );
    }

    #[test]
    fn no_phase_yet_appends_one_and_memory_goes_into_overrides() {
        let text = "[project]\nname = \"iot\"\n\n[tasks]\na = \"tasks/a\"\n\n[[override]]\ntasks = [\"a\"]\nresources.limits.memory = \"1Gi\" # old\n";
        let limits = vec![
            MemoryLimit {
                tasks: vec!["a".into()],
                peak_rss_p99_bytes: 40 * MIB,
                limit: "50Mi".into(),
            },
            MemoryLimit {
                tasks: vec!["b".into(), "c".into()],
                peak_rss_p99_bytes: 70 * MIB,
                limit: "88Mi".into(),
            },
        ];
        let out = append_phase(text, Duration::ZERO, &g(&[&["a"]]), "x", &limits).unwrap();
        let parsed: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(parsed["phase"][0]["after"].as_str(), Some("0s"));
        assert_eq!(
            parsed["override"][0]["resources"]["limits"]["memory"].as_str(),
            Some("50Mi")
        );
        assert_eq!(
            parsed["override"][1]["resources"]["limits"]["memory"].as_str(),
            Some("88Mi")
        );
        assert!(out.contains("resources.limits.memory = \"88Mi\""), "{out}");
    }

    #[test]
    fn durations_and_the_default_after() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(default_after(None), Duration::ZERO);
        assert_eq!(
            default_after(Some(Duration::from_secs(40))),
            Duration::from_secs(41)
        );
        assert!(append_phase("not toml [", Duration::ZERO, &g(&[]), "", &[])
            .unwrap_err()
            .starts_with("not valid TOML"));
    }
}

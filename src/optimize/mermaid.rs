//! A grouping, before and after, as a Mermaid flowchart for a pull request: one subgraph per
//! side, one box per function holding its tasks, and the observed calls as arrows (solid for
//! synchronous, dotted for asynchronous). `fusionizer optimize --output markdown` and
//! `fusionizer plan --output markdown` both draw with [`diagram`].

use crate::fuse::function_name;
use crate::schedule::Grouping;
use crate::traces::Mode;

/// One arrow of the diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    /// The calling task.
    pub caller: String,
    /// The called task.
    pub callee: String,
    /// Solid for sync, dotted for async.
    pub mode: Mode,
    /// The label: the number of calls.
    pub calls: u64,
}

/// A Mermaid node id: task names are DNS labels (`a-z`, `0-9`, `-`), so `-` → `_` is unique.
fn id(side: &str, name: &str) -> String {
    format!("{side}_{}", name.replace('-', "_"))
}

fn quoted(text: &str) -> String {
    text.replace('"', "#quot;")
}

fn side(
    out: &mut String,
    key: &str,
    title: &str,
    project: &str,
    grouping: &Grouping,
    arrows: &[Arrow],
) {
    out.push_str(&format!("  subgraph {key}[\"{}\"]\n", quoted(title)));
    out.push_str("    direction LR\n");
    for (index, group) in grouping.iter().enumerate() {
        out.push_str(&format!(
            "    subgraph {key}_f{index}[\"{}\"]\n",
            quoted(&function_name(project, group))
        ));
        for task in group {
            out.push_str(&format!("      {}[\"{}\"]\n", id(key, task), quoted(task)));
        }
        out.push_str("    end\n");
    }
    let present = |task: &str| grouping.group_of(task).is_some();
    for arrow in arrows {
        if !present(&arrow.caller) || !present(&arrow.callee) {
            continue;
        }
        let link = match arrow.mode {
            Mode::Sync => format!("-->|{}|", arrow.calls),
            Mode::Async => format!("-.->|async {}|", arrow.calls),
        };
        out.push_str(&format!(
            "    {} {link} {}\n",
            id(key, &arrow.caller),
            id(key, &arrow.callee)
        ));
    }
    out.push_str("  end\n");
}

/// A fenced ```` ```mermaid ```` block: `before` on the left, `after` on the right, each function
/// a box named as it is deployed, `arrows` drawn on both sides.
pub fn diagram(project: &str, before: &Grouping, after: &Grouping, arrows: &[Arrow]) -> String {
    let mut out = String::from("```mermaid\nflowchart LR\n");
    side(&mut out, "before", "before", project, before, arrows);
    side(&mut out, "after", "after", project, after, arrows);
    out.push_str("  before ~~~ after\n```\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(groups: &[&[&str]]) -> Grouping {
        groups
            .iter()
            .map(|g| g.iter().map(ToString::to_string).collect())
            .collect()
    }

    #[test]
    fn both_sides_with_functions_and_arrows() {
        let arrows = vec![
            Arrow {
                caller: "ingest".into(),
                callee: "parse-x".into(),
                mode: Mode::Sync,
                calls: 120,
            },
            Arrow {
                caller: "ingest".into(),
                callee: "archive".into(),
                mode: Mode::Async,
                calls: 40,
            },
        ];
        let text = diagram(
            "iot",
            &g(&[&["archive"], &["ingest"], &["parse-x"]]),
            &g(&[&["archive"], &["ingest", "parse-x"]]),
            &arrows,
        );
        assert!(text.starts_with("```mermaid\nflowchart LR\n"), "{text}");
        assert!(
            text.contains("subgraph after_f1[\"iot-ingest-parse-x\"]"),
            "{text}"
        );
        assert!(
            text.contains("after_ingest -->|120| after_parse_x"),
            "{text}"
        );
        assert!(
            text.contains("before_ingest -.->|async 40| before_archive"),
            "{text}"
        );
        assert!(text.ends_with("```\n"), "{text}");
    }
}

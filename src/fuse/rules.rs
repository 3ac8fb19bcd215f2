//! The field rules of the merge: how `spec.runtime`, `env`, `build`, `triggers`, `resources`,
//! timeouts, volumes, labels and annotations of several tasks become one (the list is in
//! [`super::merge`]), plus the Kubernetes quantity and Go duration parsers they compare with.

use serde_norway::{Mapping, Value};

use super::item::{conflict, equal, generic, invalid, key_text, merge_keys, sorted, Item};
use super::FuseError;
use crate::contract::RESERVED_PREFIX;

use super::build_paths::POST_COPY;

/// `spec.runtime`: identical everywhere. Bare `python` is Nuclio's `python:3.9`, so the two
/// agree (the merged spec then says `python:3.9`).
pub(super) fn runtime(items: &[Item<'_>], problems: &mut Vec<FuseError>) -> Value {
    let Some(first) = items.first() else {
        return Value::Null;
    };
    if items.iter().all(|i| i.value == first.value) {
        return first.value.clone();
    }
    let normal = |v: &Value| match v.as_str() {
        Some("python") => Value::String("python:3.9".to_string()),
        _ => v.clone(),
    };
    let want = normal(first.value);
    for other in &items[1..] {
        if normal(other.value) != want {
            problems.push(conflict("spec.runtime", first, other));
        }
    }
    want
}

/// `metadata.labels` / `metadata.annotations`: union, sorted by key; the same key with different
/// values is a conflict; keys under `fusionizer.io/` are fusionizer's own.
pub(super) fn string_map(items: &[Item<'_>], path: &str, problems: &mut Vec<FuseError>) -> Mapping {
    let map = merge_keys(items, path, &[], problems, |key, items, problems| {
        if key.starts_with(RESERVED_PREFIX) {
            for item in items {
                problems.push(FuseError::Reserved {
                    task: item.task.to_string(),
                    field: format!("{path}.{key}"),
                });
            }
        }
        equal(&format!("{path}.{key}"), items, problems);
        items[0].value.clone()
    });
    sorted(map)
}

/// `spec.env`: merged by `name`, first appearance first; the same name set differently (value or
/// `valueFrom`) is a conflict.
pub(super) fn env(items: &[Item<'_>], problems: &mut Vec<FuseError>) -> Value {
    let mut merged: Vec<(String, Item<'_>)> = Vec::new();
    for item in items {
        let Some(list) = item.value.as_sequence() else {
            problems.push(invalid(
                item,
                "`spec.env` must be a list of `{name, value}`",
            ));
            continue;
        };
        for entry in list {
            let Some(name) = entry.get("name").and_then(Value::as_str) else {
                problems.push(invalid(item, "every `spec.env` entry needs a `name`"));
                continue;
            };
            let this = Item {
                task: item.task,
                value: entry,
            };
            match merged.iter().find(|(n, _)| n == name) {
                Some((_, first)) if first.value != entry => {
                    problems.push(conflict(
                        &format!("spec.env[{name}]"),
                        &shown(first),
                        &shown(&this),
                    ));
                }
                Some(_) => {}
                None => merged.push((name.to_string(), this)),
            }
        }
    }
    Value::Sequence(merged.into_iter().map(|(_, i)| i.value.clone()).collect())
}

fn shown<'a>(item: &Item<'a>) -> Item<'a> {
    Item {
        task: item.task,
        value: env_shown(item.value),
    }
}

/// What a conflict shows of an env entry: its `value` when that is all it has.
fn env_shown(entry: &Value) -> &Value {
    match entry.as_mapping() {
        Some(map) if map.len() == 2 && map.contains_key("value") => &map["value"],
        _ => entry,
    }
}

/// A list unioned in order of first appearance, equal entries once.
pub(super) fn union_list(path: &str, items: &[Item<'_>], problems: &mut Vec<FuseError>) -> Value {
    let mut out: Vec<Value> = Vec::new();
    for item in items {
        let Some(list) = item.value.as_sequence() else {
            problems.push(invalid(item, &format!("`{path}` must be a list")));
            continue;
        };
        for entry in list {
            if !out.contains(entry) {
                out.push(entry.clone());
            }
        }
    }
    Value::Sequence(out)
}

/// `spec.build`: `commands` concatenated without duplicates, `directives` lists unioned, the
/// rest generic. Returns the merged value and the merged commands.
pub(super) fn build(items: &[Item<'_>], problems: &mut Vec<FuseError>) -> (Value, Vec<String>) {
    let mut commands = Vec::new();
    let map = merge_keys(
        items,
        "spec.build",
        &[],
        problems,
        |key, items, problems| match key {
            "commands" => {
                commands = build_commands(items, problems);
                Value::Sequence(commands.iter().cloned().map(Value::String).collect())
            }
            "directives" => Value::Mapping(merge_keys(
                items,
                "spec.build.directives",
                &[],
                problems,
                |key, items, problems| {
                    union_list(&format!("spec.build.directives.{key}"), items, problems)
                },
            )),
            other => generic(&format!("spec.build.{other}"), items, problems),
        },
    );
    (Value::Mapping(map), commands)
}

/// `build.commands` of every task, in task order, each command once, as Nuclio reads them
/// ([`nuclio_commands`]): the pre-copy ones, then `@nuclio.postCopy` and the post-copy ones.
/// Each command is one list entry, its continuation lines already joined as Nuclio joins them,
/// so that one task's trailing `\` can never swallow the next task's command. A command that
/// still ends with `\` once joined (only the last entry of a task's list can) would; it is
/// refused unless it comes last.
fn build_commands(items: &[Item<'_>], problems: &mut Vec<FuseError>) -> Vec<String> {
    let mut pre: Vec<(usize, String)> = Vec::new();
    let mut post: Vec<(usize, String)> = Vec::new();
    for (at, item) in items.iter().enumerate() {
        let Some(list) = item.value.as_sequence() else {
            problems.push(invalid(
                item,
                "`spec.build.commands` must be a list of strings",
            ));
            continue;
        };
        let mut lines = Vec::new();
        for entry in list {
            match entry.as_str() {
                Some(line) => lines.push(line),
                None => problems.push(invalid(
                    item,
                    "`spec.build.commands` must be a list of strings",
                )),
            }
        }
        let (task_pre, task_post) = nuclio_commands(&lines);
        for (target, commands) in [(&mut pre, task_pre), (&mut post, task_post)] {
            for command in commands {
                if !target.iter().any(|(_, c)| *c == command) {
                    target.push((at, command));
                }
            }
        }
    }
    let mut out: Vec<(usize, String)> = pre;
    if !post.is_empty() {
        out.push((usize::MAX, POST_COPY.to_string()));
        out.extend(post);
    }
    if let Some((_, rest)) = out.split_last() {
        for (at, command) in rest {
            if command.ends_with('\\') {
                problems.push(invalid(
                    &items[*at],
                    &format!(
                        "the build command `{command}` ends with `\\` once Nuclio joins its \
                         continuation lines, so Nuclio would join the next command of the fused \
                         function to it: remove the trailing `\\`"
                    ),
                ));
            }
        }
    }
    out.into_iter().map(|(_, command)| command).collect()
}

/// A task's `build.commands` as Nuclio 1.14 turns them into Dockerfile `RUN` directives
/// (`pkg/processor/build/builder.go`, `commandsToDirectives`): (pre-copy, post-copy) commands.
/// An entry whose last byte is `\` continues on the next entry, joined without the backslash
/// and without a space (`["echo 1\", "2"]` runs `echo 12`); a last entry ending with `\` just
/// loses it. A line that is `@nuclio.postCopy` (blanks trimmed) switches to post-copy, even in
/// the middle of a continuation, where what was joined so far becomes a post-copy command.
pub(crate) fn nuclio_commands(lines: &[&str]) -> (Vec<String>, Vec<String>) {
    let (mut pre, mut post) = (Vec::new(), Vec::new());
    let mut in_post = false;
    let mut at = 0;
    while at < lines.len() {
        let mut joined = String::new();
        loop {
            let line = lines[at];
            if line.trim() == POST_COPY {
                in_post = true;
                break;
            }
            if let Some(head) = line.strip_suffix('\\') {
                joined.push_str(head);
                if at + 1 >= lines.len() {
                    break;
                }
                at += 1;
            } else {
                joined.push_str(line);
                break;
            }
        }
        at += 1;
        if !joined.is_empty() {
            if in_post { &mut post } else { &mut pre }.push(joined);
        }
    }
    (pre, post)
}

/// `spec.triggers`: the tasks' HTTP triggers become one (named after the first task's), whose
/// `numWorkers` is the largest and whose other fields merge (attributes key by key, so two
/// different ports conflict; `maxRequestBodySize` the largest); every other trigger stays its
/// task's own, routed to it ([`other_triggers`]). Returns the merged triggers (sorted by key),
/// the HTTP trigger's `numWorkers`, and which task each non-HTTP trigger belongs to.
// Long by design: the HTTP trigger's merge is one sequence of per-field rules.
pub(super) fn triggers(
    items: &[Item<'_>],
    problems: &mut Vec<FuseError>,
) -> (Value, usize, std::collections::BTreeMap<String, String>) {
    let mut http: Vec<(Item<'_>, String)> = Vec::new();
    let mut others: Vec<(String, Item<'_>)> = Vec::new();
    for item in items {
        let Some(map) = item.value.as_mapping() else {
            problems.push(invalid(item, "`spec.triggers` must be a mapping"));
            continue;
        };
        let mut seen_http = false;
        for (key, trigger) in map {
            let key = key_text(key);
            let this = Item {
                task: item.task,
                value: trigger,
            };
            if trigger.get("kind").and_then(Value::as_str) == Some("http") {
                if seen_http {
                    problems.push(invalid(
                        item,
                        "`spec.triggers` has more than one `http` trigger, which Nuclio rejects",
                    ));
                    continue;
                }
                seen_http = true;
                http.push((this, key));
            } else {
                others.push((key, this));
            }
        }
    }

    let mut out = Mapping::new();
    let mut num_workers = 1;
    if let Some((_, http_key)) = http.first() {
        let http_key = http_key.clone();
        let path = format!("spec.triggers.{http_key}");
        let trigger_items: Vec<Item<'_>> = http.iter().map(|(i, _)| *i).collect();
        let mut workers: Option<u64> = None;
        for item in &trigger_items {
            let given = item
                .value
                .get("numWorkers")
                .or_else(|| item.value.get("maxWorkers"));
            match given {
                None => {}
                Some(v) => match v.as_u64() {
                    Some(n) => workers = Some(workers.map_or(n, |w| w.max(n))),
                    None => problems.push(invalid(
                        item,
                        &format!("`{path}.numWorkers` must be a whole number"),
                    )),
                },
            }
        }
        let mut merged = merge_keys(
            &trigger_items,
            &path,
            &["name", "numWorkers", "maxWorkers"],
            problems,
            |key, items, problems| match key {
                "attributes" => Value::Mapping(merge_keys(
                    items,
                    &format!("{path}.attributes"),
                    &[],
                    problems,
                    |key, items, problems| {
                        let field = format!("{path}.attributes.{key}");
                        if key == "maxRequestBodySize" {
                            largest(&field, items, problems, Value::as_f64)
                        } else {
                            generic(&field, items, problems)
                        }
                    },
                )),
                "annotations" => {
                    Value::Mapping(string_map(items, &format!("{path}.annotations"), problems))
                }
                other => generic(&format!("{path}.{other}"), items, problems),
            },
        );
        merged.insert("name".into(), Value::String(http_key.clone()));
        if let Some(n) = workers {
            merged.insert("numWorkers".into(), Value::Number(n.into()));
            num_workers = usize::try_from(n).unwrap_or(usize::MAX);
        }
        out.insert(Value::String(http_key), Value::Mapping(merged));
    }

    let routes = other_triggers(&others, &http, &mut out, problems);
    (Value::Mapping(sorted(out)), num_workers, routes)
}

/// The non-HTTP triggers of a group, each routed to its task: the result maps every trigger's
/// (final) name to the task it belongs to, for the generated entry (Nuclio gives a non-HTTP
/// event's trigger as `event.trigger.name`).
///
/// A trigger key that only one task uses keeps its name; one that several tasks use is
/// namespaced per task as `<task>-<key>` (with `name` set to match: Nuclio's `validateTriggers`
/// in pkg/platform/abstract/platform.go refuses a key that differs from its `name`). A cron
/// trigger also gets `Task-Name: <task>` in `attributes.event.headers`: in Nuclio's `processor`
/// cron mode the trigger builds its events with those headers
/// (pkg/processor/trigger/cron/event.go), and in `kube` mode a `CronJob` posts to the HTTP
/// trigger with them (pkg/platform/kube/functionres/lazy.go), where a trigger-name map would
/// not see the event.
fn other_triggers(
    others: &[(String, Item<'_>)],
    http: &[(Item<'_>, String)],
    out: &mut Mapping,
    problems: &mut Vec<FuseError>,
) -> std::collections::BTreeMap<String, String> {
    let mut routes = std::collections::BTreeMap::new();
    let users = |key: &str| -> std::collections::BTreeSet<&str> {
        others
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, i)| i.task)
            .collect()
    };
    for (key, item) in others {
        let path = format!("spec.triggers.{key}");
        if let Some((http_item, _)) = http.iter().find(|(_, k)| k == key) {
            problems.push(conflict(&path, http_item, item));
            continue;
        }
        let Some(trigger) = item.value.as_mapping() else {
            problems.push(invalid(item, &format!("`{path}` must be a mapping")));
            continue;
        };
        let name = if users(key).len() > 1 {
            format!("{}-{key}", item.task)
        } else {
            key.clone()
        };
        if out.contains_key(name.as_str()) {
            problems.push(invalid(
                item,
                &format!(
                    "`{path}` would be renamed `{name}` to tell the tasks' triggers apart, but \
                     another trigger already has that name; rename one of them"
                ),
            ));
            continue;
        }
        let mut trigger = trigger.clone();
        if name != *key {
            trigger.insert("name".into(), Value::String(name.clone()));
        }
        if trigger.get("kind").and_then(Value::as_str) == Some("cron") {
            add_cron_task_header(&mut trigger, item.task);
        }
        routes.insert(name.clone(), item.task.to_string());
        out.insert(Value::String(name), Value::Mapping(trigger));
    }
    routes
}

/// Sets `attributes.event.headers.Task-Name` of a cron trigger to `task`, creating the maps
/// on the way.
fn add_cron_task_header(trigger: &mut Mapping, task: &str) {
    let child = |map: &mut Mapping, key: &str| -> Mapping {
        match map.remove(key) {
            Some(Value::Mapping(inner)) => inner,
            _ => Mapping::new(),
        }
    };
    let mut attributes = child(trigger, "attributes");
    let mut event = child(&mut attributes, "event");
    let mut headers = child(&mut event, "headers");
    headers.insert(
        Value::String(crate::contract::HEADER_TASK_NAME.to_string()),
        Value::String(task.to_string()),
    );
    event.insert("headers".into(), Value::Mapping(headers));
    attributes.insert("event".into(), Value::Mapping(event));
    trigger.insert("attributes".into(), Value::Mapping(attributes));
}

/// `spec.resources`: every quantity under `requests`/`limits` the largest (Kubernetes quantity
/// syntax: `500m`, `1.5`, `128Mi`, `1G`); anything else generic.
pub(super) fn resources(items: &[Item<'_>], problems: &mut Vec<FuseError>) -> Value {
    Value::Mapping(merge_keys(
        items,
        "spec.resources",
        &[],
        problems,
        |key, items, problems| {
            let path = format!("spec.resources.{key}");
            if key == "requests" || key == "limits" {
                Value::Mapping(merge_keys(
                    items,
                    &path,
                    &[],
                    problems,
                    |name, items, problems| {
                        largest(&format!("{path}.{name}"), items, problems, quantity)
                    },
                ))
            } else {
                generic(&path, items, problems)
            }
        },
    ))
}

/// The value whose `measure` is the largest (the first of equals, as written). Values that cannot
/// be measured must be equal.
pub(super) fn largest(
    path: &str,
    items: &[Item<'_>],
    problems: &mut Vec<FuseError>,
    measure: impl Fn(&Value) -> Option<f64>,
) -> Value {
    let measured: Option<Vec<f64>> = items.iter().map(|i| measure(i.value)).collect();
    match measured {
        Some(sizes) if !sizes.is_empty() => {
            let mut best = 0;
            for (i, size) in sizes.iter().enumerate() {
                if *size > sizes[best] {
                    best = i;
                }
            }
            items[best].value.clone()
        }
        _ => generic(path, items, problems),
    }
}

/// `spec.volumes`: unioned; an entry is named by `volume.name` (Nuclio requires it to equal
/// `volumeMount.name`). The same name with different content, or two volumes mounted at the
/// same path, is a conflict.
pub(super) fn volumes(items: &[Item<'_>], problems: &mut Vec<FuseError>) -> Value {
    let mut merged: Vec<Item<'_>> = Vec::new();
    for item in items {
        let Some(list) = item.value.as_sequence() else {
            problems.push(invalid(item, "`spec.volumes` must be a list"));
            continue;
        };
        for entry in list {
            let this = Item {
                task: item.task,
                value: entry,
            };
            let name = volume_name(entry);
            let mount = entry
                .get("volumeMount")
                .and_then(|m| m.get("mountPath"))
                .and_then(Value::as_str);
            let mut keep = true;
            for first in &merged {
                if first.value == entry {
                    keep = false;
                    break;
                }
                if name.is_some() && volume_name(first.value) == name {
                    problems.push(conflict(
                        &format!("spec.volumes[{}]", name.unwrap_or_default()),
                        first,
                        &this,
                    ));
                    keep = false;
                    break;
                }
                let first_mount = first
                    .value
                    .get("volumeMount")
                    .and_then(|m| m.get("mountPath"))
                    .and_then(Value::as_str);
                if mount.is_some() && first_mount == mount {
                    problems.push(conflict(
                        &format!("spec.volumes (mountPath `{}`)", mount.unwrap_or_default()),
                        first,
                        &this,
                    ));
                    keep = false;
                    break;
                }
            }
            if keep {
                merged.push(this);
            }
        }
    }
    Value::Sequence(merged.into_iter().map(|i| i.value.clone()).collect())
}

fn volume_name(entry: &Value) -> Option<&str> {
    entry
        .get("volume")
        .and_then(|v| v.get("name"))
        .or_else(|| entry.get("volumeMount").and_then(|v| v.get("name")))
        .and_then(Value::as_str)
}

/// A Kubernetes quantity (`500m`, `2`, `0.5`, `128Mi`, `1G`, `1e3`) in base units.
pub(super) fn quantity(value: &Value) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let text = match value {
        Value::Number(n) => return n.as_f64(),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1.0));
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(|n| n * factor)
}

/// A Go duration (`eventTimeout`: `30s`, `1m30s`, `500ms`, `0`) in seconds.
pub(super) fn go_duration_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    if text == "0" {
        return Some(0.0);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
}

//! The strict walk over fusion.toml's spanned TOML tree: every key is known, every value has the
//! right type and shape, and every problem becomes a [`Diagnostic`] at its line and column.
//!
//! The walk never stops at the first problem; it builds as much of the [`Config`] as it can so
//! that later checks (groups naming tasks, task directories) still run.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::units::{self, UnitError};
use super::{Config, Diagnostic, PlatformKind, ProjectConfig, TaskDecl, TaskSource};
use crate::contract::{
    dns_label_hint, invalid_task_name, is_dns_label, is_task_name, MAX_PROJECT_NAME,
};

mod optimizer;
mod phases;
mod serve;

const ROOT_KEYS: &[&str] = &[
    "project",
    "tasks",
    "phase",
    "serve",
    "nuctl",
    "optimizer",
    "override",
];
const PROJECT_KEYS: &[&str] = &["name", "platform"];
const TASK_KEYS: &[&str] = &["path", "upload"];

/// The declared name closest to `name`, when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, candidate)| candidate)
}

/// The hint for a group member that names no declared task: the likely typo, or where to declare it.
pub(crate) fn unknown_task_hint<'a>(
    name: &str,
    declared: impl IntoIterator<Item = &'a str>,
) -> String {
    match closest(name, declared) {
        Some(close) => format!("did you mean `{close}`?"),
        None => "declare it under `[tasks]`".to_string(),
    }
}

/// What the walk produced: the (possibly partial) config, where each path task's directory is
/// written, and every problem found.
pub(crate) struct Parsed {
    /// `None` only when the text is not TOML at all.
    pub config: Option<Config>,
    /// Task name → span of its directory as written (for problems found reading the directory).
    pub task_spans: BTreeMap<String, Range<usize>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// An overlay: a TOML file whose `[serve]` and `[nuctl]` are merged over fusion.toml's.
#[derive(Clone, Copy)]
pub(crate) struct Overlay<'a> {
    /// The file, absolute.
    pub file: &'a Path,
    /// Its text.
    pub text: &'a str,
}

/// The tables an overlay may hold.
const OVERLAY_TABLES: &[&str] = &["serve", "nuctl"];

/// Parses and checks `text`, with `overlay` merged in. `file` must be absolute; task directories
/// resolve against its parent.
pub(crate) fn parse(file: &Path, text: &str, overlay: Option<Overlay<'_>>) -> Parsed {
    // The overlay is parsed after as many spaces as fusion.toml has bytes (and one more), so its
    // spans follow fusion.toml's: a span then names one place in one of the two files, and a
    // problem with a value the overlay set is reported in the overlay.
    let overlay_start = text.len() + 1;
    let padded = overlay.map(|o| format!("{}{}", " ".repeat(overlay_start), o.text));
    let mut checker = Checker {
        file,
        text,
        overlay,
        overlay_start,
        diagnostics: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            checker.error(span, format!("invalid TOML: {}", err.message()), None);
            return Parsed {
                config: None,
                task_spans: BTreeMap::new(),
                diagnostics: checker.diagnostics,
            };
        }
    };
    let mut root = root.into_inner();
    if let Some(padded) = &padded {
        checker.merge_overlay(&mut root, padded);
    }
    let root_dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
    checker.check_keys(&root, ROOT_KEYS, None);

    let project = checker.project(&root);
    let mut task_spans = BTreeMap::new();
    let tasks = checker.tasks(&root, &root_dir, &mut task_spans);
    let phases = checker.phases(&root, &tasks);
    let serve = checker.serve(&root);
    let nuctl = checker.nuctl(&root, &root_dir, project.platform);
    let optimizer = checker.optimizer(&root);
    let overrides = checker.overrides(&root, &tasks);
    Parsed {
        config: Some(Config {
            file: file.to_path_buf(),
            state_dir: root_dir.join(crate::contract::STATE_DIR),
            overlay: overlay.map(|o| o.file.to_path_buf()),
            root: root_dir,
            project,
            tasks,
            phases,
            serve,
            nuctl,
            optimizer,
            overrides,
        }),
        task_spans,
        diagnostics: checker.diagnostics,
    }
}

/// Converts a byte offset into a 1-based line and column (in characters).
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

type Value<'i> = Spanned<DeValue<'i>>;

/// The hint for a phase's `groups` of the wrong shape.
const GROUPS_SHAPE_HINT: &str = "write `groups = [[\"taska\", \"taskb\"], [\"taskc\"]]`";

/// Which list of task names [`Checker::task_names`] reads, for the wording of its problems.
#[derive(Clone, Copy)]
enum TaskList<'s> {
    /// `[[override]] tasks` of the N-th override.
    Override(usize),
    /// A group of the N-th phase, after groups holding `earlier`.
    Group {
        phase: usize,
        earlier: &'s BTreeSet<String>,
    },
}

/// A problem of a list of task names or of one member.
enum ListProblem<'a> {
    /// The list is not an array; the TOML type found.
    NotAList(&'a str),
    /// The list is empty.
    Empty,
    /// A member is not a string; the TOML type found.
    NotAName(&'a str),
    /// A member names no declared task; the hint.
    Unknown(&'a str, String),
    /// A member is also in an earlier group of the phase.
    InTwoGroups(&'a str),
    /// A member is listed again.
    Twice(&'a str),
}

impl TaskList<'_> {
    /// The tasks of the earlier groups (none for an override).
    fn earlier(&self) -> &BTreeSet<String> {
        static NONE: BTreeSet<String> = BTreeSet::new();
        match self {
            TaskList::Override(_) => &NONE,
            TaskList::Group { earlier, .. } => earlier,
        }
    }

    /// `problem` in this list's words: message and hint.
    fn problem(&self, problem: ListProblem<'_>) -> (String, Option<String>) {
        let once = || Some("list each task once".to_string());
        match (*self, problem) {
            (TaskList::Override(n), ListProblem::NotAList(found)) => (
                format!("`override {n}.tasks` must be an array of task names, found {found}"),
                None,
            ),
            (TaskList::Override(n), ListProblem::Empty) => (
                format!("override {n}: `tasks` is empty"),
                Some("name the tasks of the function it applies to".to_string()),
            ),
            (TaskList::Override(n), ListProblem::NotAName(found)) => (
                format!("`override {n}.tasks` must be task names, found {found}"),
                None,
            ),
            (TaskList::Override(n), ListProblem::Twice(name)) => (
                format!("override {n}: task `{name}` is listed twice"),
                once(),
            ),
            (TaskList::Group { phase, .. }, ListProblem::NotAList(found)) => (
                format!("phase {phase}: a group must be an array of task names, found {found}"),
                Some(GROUPS_SHAPE_HINT.to_string()),
            ),
            (TaskList::Group { phase, .. }, ListProblem::Empty) => (
                format!("phase {phase}: empty group"),
                Some("remove the `[]` from `groups`".to_string()),
            ),
            (TaskList::Group { phase, .. }, ListProblem::NotAName(found)) => (
                format!("phase {phase}: a group member must be a task name, found {found}"),
                Some(GROUPS_SHAPE_HINT.to_string()),
            ),
            (TaskList::Group { phase, .. }, ListProblem::Twice(name)) => (
                format!("phase {phase}: task `{name}` appears twice in one group"),
                once(),
            ),
            (list, ListProblem::InTwoGroups(name)) => (
                format!("{}: task `{name}` is in two groups", list.whose()),
                Some("a task runs in one function per phase; keep it in one group".to_string()),
            ),
            (list, ListProblem::Unknown(name, hint)) => (
                format!("{}: unknown task `{name}`", list.whose()),
                Some(hint),
            ),
        }
    }

    /// The owner, as messages begin: `override 2`, `phase 1`.
    fn whose(&self) -> String {
        match self {
            TaskList::Override(n) => format!("override {n}"),
            TaskList::Group { phase, .. } => format!("phase {phase}"),
        }
    }
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    overlay: Option<Overlay<'a>>,
    /// Where the overlay's spans start ([`parse`]).
    overlay_start: usize,
    diagnostics: Vec<Diagnostic>,
}

/// `overlay`'s tables merged key by key over `base`: a key of the overlay replaces the same key
/// of fusion.toml, and two tables at one key are merged the same way, recursively.
fn merge_tables<'i>(base: &mut DeTable<'i>, overlay: DeTable<'i>) {
    for (key, value) in overlay {
        let merged = match (base.remove(&key), value) {
            (Some(old), new) => match (old.into_inner(), new.get_ref()) {
                (DeValue::Table(mut old), DeValue::Table(_)) => {
                    let span = new.span();
                    let DeValue::Table(new) = new.into_inner() else {
                        unreachable!("matched as a table above")
                    };
                    merge_tables(&mut old, new);
                    Spanned::new(span, DeValue::Table(old))
                }
                _ => new,
            },
            (None, new) => new,
        };
        base.insert(key, merged);
    }
}

impl<'i> Checker<'_> {
    /// Merges the overlay (`padded`: its text after [`parse`]'s padding) over `root`, reporting
    /// a file that is not TOML and anything in it but the `[serve]` and `[nuctl]` tables.
    fn merge_overlay(&mut self, root: &mut DeTable<'i>, padded: &'i str) {
        let overlay = match DeTable::parse(padded) {
            Ok(overlay) => overlay.into_inner(),
            Err(err) => {
                let span = err.span().unwrap_or(self.overlay_start..self.overlay_start);
                self.error(
                    span,
                    format!("the overlay is not valid TOML: {}", err.message()),
                    None,
                );
                return;
            }
        };
        let allowed = "an overlay holds only the `[serve]` and `[nuctl]` tables; set everything \
                       else in fusion.toml";
        for (key, value) in overlay {
            let name = key.get_ref().as_ref();
            if !OVERLAY_TABLES.contains(&name) {
                let what = match value.get_ref() {
                    DeValue::Table(_) => format!("table `[{name}]`"),
                    _ => format!("top-level key `{name}`"),
                };
                self.error(
                    key.span(),
                    format!("the overlay may not set the {what}"),
                    Some(allowed.to_string()),
                );
                continue;
            }
            if !matches!(value.get_ref(), DeValue::Table(_)) {
                self.error(
                    value.span(),
                    format!(
                        "the overlay's `{name}` must be a table, found {}",
                        value.get_ref().type_str()
                    ),
                    Some(format!("write `[{name}]` and the settings below it")),
                );
                continue;
            }
            let mut one = DeTable::new();
            one.insert(key, value);
            merge_tables(root, one);
        }
    }
}

impl Checker<'_> {
    /// The file, line and column of `offset`: in the overlay past [`Checker::overlay_start`].
    fn locate(&self, offset: usize) -> (std::path::PathBuf, usize, usize) {
        match self.overlay {
            Some(overlay) if offset >= self.overlay_start => {
                let (line, column) = line_column(overlay.text, offset - self.overlay_start);
                (overlay.file.to_path_buf(), line, column)
            }
            _ => {
                let (line, column) = line_column(self.text, offset);
                (self.file.to_path_buf(), line, column)
            }
        }
    }

    fn error(&mut self, span: Range<usize>, message: String, hint: Option<String>) {
        let (file, line, column) = self.locate(span.start);
        self.diagnostics.push(Diagnostic {
            file,
            line: Some(line),
            column: Some(column),
            message,
            hint,
        });
    }

    fn error_without_location(&mut self, message: String, hint: Option<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: None,
            column: None,
            message,
            hint,
        });
    }

    /// Reports every key of `table` not in `valid`. `context` names the table in messages
    /// (`None` for the top level).
    fn check_keys(&mut self, table: &DeTable<'_>, valid: &[&str], context: Option<&str>) {
        for key in table.keys() {
            let name = key.get_ref().as_ref();
            if valid.contains(&name) {
                continue;
            }
            let list = valid
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let (message, list) = match context {
                Some(context) => (
                    format!("unknown key `{name}` in {context}"),
                    format!("valid keys in {context}: {list}"),
                ),
                None => (
                    format!("unknown top-level key `{name}`"),
                    format!("valid top-level keys: {list}"),
                ),
            };
            let hint = match closest(name, valid.iter().copied()) {
                Some(close) => format!("did you mean `{close}`? {list}"),
                None => list,
            };
            self.error(key.span(), message, Some(hint));
        }
    }

    /// `[table_name] key` of `table` when it is a duration greater than zero; zero is an error
    /// (with `hint`).
    fn positive_duration(
        &mut self,
        table: &DeTable<'_>,
        table_name: &str,
        key: &str,
        hint: Option<&str>,
    ) -> Option<Duration> {
        let value = table.get(key)?;
        let duration = self.duration(value, &format!("{table_name}.{key}"))?;
        if duration.is_zero() {
            self.error(
                value.span(),
                format!("`{table_name}.{key}` must be greater than zero"),
                hint.map(str::to_string),
            );
            return None;
        }
        Some(duration)
    }

    fn type_error(&mut self, value: &Value<'_>, what: &str, expected: &str) {
        self.error(
            value.span(),
            format!(
                "`{what}` must be {expected}, found {}",
                value.get_ref().type_str()
            ),
            None,
        );
    }

    /// The declared task names of the list `value`, and whether no member had a problem (each
    /// reported in `list`'s words); `None` when `value` is not an array or is empty. A name of an
    /// earlier group is reported and kept.
    fn task_names(
        &mut self,
        value: &Value<'_>,
        list: TaskList<'_>,
        tasks: &BTreeMap<String, TaskDecl>,
    ) -> Option<(BTreeSet<String>, bool)> {
        let DeValue::Array(members) = value.get_ref() else {
            let (message, hint) = list.problem(ListProblem::NotAList(value.get_ref().type_str()));
            self.error(value.span(), message, hint);
            return None;
        };
        if members.is_empty() {
            let (message, hint) = list.problem(ListProblem::Empty);
            self.error(value.span(), message, hint);
            return None;
        }
        let mut names = BTreeSet::new();
        let mut ok = true;
        for member in members {
            let problem = match member.get_ref() {
                DeValue::String(name) if !tasks.contains_key(name.as_ref()) => {
                    let hint = unknown_task_hint(name, tasks.keys().map(String::as_str));
                    ListProblem::Unknown(name, hint)
                }
                DeValue::String(name) if list.earlier().contains(name.as_ref()) => {
                    names.insert(name.to_string());
                    ListProblem::InTwoGroups(name)
                }
                DeValue::String(name) if names.contains(name.as_ref()) => ListProblem::Twice(name),
                DeValue::String(name) => {
                    names.insert(name.to_string());
                    continue;
                }
                other => ListProblem::NotAName(other.type_str()),
            };
            let (message, hint) = list.problem(problem);
            self.error(member.span(), message, hint);
            ok = false;
        }
        Some((names, ok))
    }

    /// The table at `key` of `root`, reporting a value of another type.
    fn table<'t, 'i>(&mut self, root: &'t DeTable<'i>, key: &str) -> Option<&'t DeTable<'i>> {
        let value = root.get(key)?;
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.type_error(value, key, "a table");
                None
            }
        }
    }

    fn string<'v>(&mut self, value: &'v Value<'_>, what: &str) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.type_error(value, what, "a string");
                None
            }
        }
    }

    /// An array of strings, each checked by `problem` (a reason and a hint when it is wrong);
    /// the good ones, in order.
    fn string_list(
        &mut self,
        value: &Value<'_>,
        what: &str,
        problem: impl Fn(&str) -> Option<(String, String)>,
    ) -> Vec<String> {
        let DeValue::Array(members) = value.get_ref() else {
            self.type_error(value, what, "an array of strings");
            return Vec::new();
        };
        let mut list = Vec::new();
        for member in members {
            let Some(text) = self.string(member, what) else {
                continue;
            };
            match problem(text) {
                Some((reason, hint)) => {
                    self.error(member.span(), format!("`{what}`: {reason}"), Some(hint));
                }
                None => list.push(text.to_ascii_lowercase()),
            }
        }
        list
    }

    fn optional_string(&mut self, table: &DeTable<'_>, key: &str, what: &str) -> Option<String> {
        let value = table.get(key)?;
        let text = self.string(value, what)?;
        if text.is_empty() {
            self.error(value.span(), format!("`{what}` is empty"), None);
            return None;
        }
        Some(text.to_string())
    }

    fn unit_error(&mut self, value: &Value<'_>, what: &str, text: &str, err: UnitError) {
        self.error(
            value.span(),
            format!("invalid `{what}` `{text}`: {}", err.reason),
            Some(err.hint),
        );
    }

    fn duration(&mut self, value: &Value<'_>, what: &str) -> Option<Duration> {
        let text = self.string(value, what)?;
        match units::duration(text) {
            Ok(duration) => Some(duration),
            Err(err) => {
                self.unit_error(value, what, text, err);
                None
            }
        }
    }

    /// A count: a whole number between `min` and `max`.
    fn count(&mut self, value: &Value<'_>, what: &str, min: u64, max: u64) -> Option<u64> {
        let DeValue::Integer(int) = value.get_ref() else {
            self.type_error(value, what, "a whole number");
            return None;
        };
        let n = u64::from_str_radix(int.as_str(), int.radix())
            .ok()
            .filter(|n| (min..=max).contains(n));
        if n.is_none() {
            self.error(
                value.span(),
                format!("invalid `{what}` `{int}`: must be a whole number from {min} to {max}"),
                None,
            );
        }
        n
    }

    /// A byte size: an integer (bytes) or a string with a unit.
    fn size(&mut self, value: &Value<'_>, what: &str) -> Option<u64> {
        match value.get_ref() {
            DeValue::Integer(int) => {
                match u64::from_str_radix(int.as_str(), int.radix())
                    .ok()
                    .filter(|n| *n > 0)
                {
                    Some(n) => Some(n),
                    None => {
                        self.error(
                            value.span(),
                            format!("invalid `{what}` `{int}`: must be a positive number of bytes"),
                            None,
                        );
                        None
                    }
                }
            }
            DeValue::String(text) => match units::size(text) {
                Ok(n) => Some(n),
                Err(err) => {
                    self.unit_error(value, what, text, err);
                    None
                }
            },
            _ => {
                self.type_error(
                    value,
                    what,
                    "an integer (bytes) or a string like `\"4MiB\"`",
                );
                None
            }
        }
    }

    fn project(&mut self, root: &DeTable<'_>) -> ProjectConfig {
        let mut project = ProjectConfig {
            name: String::new(),
            platform: PlatformKind::default(),
        };
        let Some(value) = root.get("project") else {
            self.error_without_location(
                "missing `[project]`".to_string(),
                Some("add `[project]` with `name = \"myproject\"`".to_string()),
            );
            return project;
        };
        let Some(table) = self.table(root, "project") else {
            return project;
        };
        self.check_keys(table, PROJECT_KEYS, Some("`[project]`"));
        match table.get("name") {
            None => self.error(
                value.span(),
                "missing `project.name`".to_string(),
                Some("add `name = \"myproject\"` under `[project]`".to_string()),
            ),
            Some(name) => {
                if let Some(text) = self.string(name, "project.name") {
                    if !is_dns_label(text, MAX_PROJECT_NAME) {
                        self.error(
                            name.span(),
                            format!("invalid project name `{text}`"),
                            Some(dns_label_hint("project name", MAX_PROJECT_NAME)),
                        );
                    }
                    project.name = text.to_string();
                }
            }
        }
        if let Some(platform) = table.get("platform") {
            if let Some(text) = self.string(platform, "project.platform") {
                match text {
                    "local" => project.platform = PlatformKind::Local,
                    "nuctl" => project.platform = PlatformKind::Nuctl,
                    other => self.error(
                        platform.span(),
                        format!("unknown platform `{other}`"),
                        Some("`platform` is `local` or `nuctl`".to_string()),
                    ),
                }
            }
        }
        project
    }

    fn tasks(
        &mut self,
        root: &DeTable<'_>,
        root_dir: &Path,
        spans: &mut BTreeMap<String, Range<usize>>,
    ) -> BTreeMap<String, TaskDecl> {
        let mut tasks = BTreeMap::new();
        let Some(table) = self.table(root, "tasks") else {
            return tasks;
        };
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if !is_task_name(name) {
                let (message, hint) = invalid_task_name(name);
                self.error(key.span(), message, Some(hint));
            }
            let Some(source) = self.task_source(name, value, root_dir, spans) else {
                continue;
            };
            tasks.insert(
                name.to_string(),
                TaskDecl {
                    name: name.to_string(),
                    source,
                },
            );
        }
        tasks
    }

    fn task_source(
        &mut self,
        name: &str,
        value: &Value<'_>,
        root_dir: &Path,
        spans: &mut BTreeMap<String, Range<usize>>,
    ) -> Option<TaskSource> {
        let table_hint = || {
            format!("write `{name} = \"tasks/{name}\"`, `{name} = {{ path = \"tasks/{name}\" }}` or `{name} = {{ upload = true }}`")
        };
        let path_value = match value.get_ref() {
            DeValue::String(_) => value,
            DeValue::Table(table) => {
                self.check_keys(table, TASK_KEYS, Some(&format!("task `{name}`")));
                let upload = match table.get("upload") {
                    None => None,
                    Some(upload) => match upload.get_ref() {
                        DeValue::Boolean(b) => Some(*b),
                        _ => {
                            self.type_error(upload, &format!("tasks.{name}.upload"), "a boolean");
                            return None;
                        }
                    },
                };
                match (table.get("path"), upload) {
                    (Some(_), Some(_)) => {
                        self.error(
                            value.span(),
                            format!("task `{name}` has both `path` and `upload`"),
                            Some(table_hint()),
                        );
                        return None;
                    }
                    (Some(path), None) => path,
                    (None, Some(true)) => return Some(TaskSource::Upload),
                    (None, _) => {
                        self.error(
                            value.span(),
                            format!("task `{name}` needs `path` or `upload = true`"),
                            Some(table_hint()),
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.error(
                    value.span(),
                    format!(
                        "task `{name}` must be a directory path or a table, found {}",
                        value.get_ref().type_str()
                    ),
                    Some(table_hint()),
                );
                return None;
            }
        };
        let written = self.string(path_value, &format!("tasks.{name}.path"))?;
        if written.is_empty() {
            self.error(
                path_value.span(),
                format!("task `{name}` has an empty path"),
                Some(table_hint()),
            );
            return None;
        }
        spans.insert(name.to_string(), path_value.span());
        Some(TaskSource::Path {
            written: written.to_string(),
            dir: root_dir.join(written),
        })
    }
}

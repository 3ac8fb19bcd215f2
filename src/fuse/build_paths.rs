//! A task's build commands, moved with its files.
//!
//! Nuclio copies a function's directory to `/opt/nuclio` in the image and runs the build
//! commands after `@nuclio.postCopy` once the copy is done (`pkg/processor/build/builder.go`:
//! the `preCopy`/`postCopy` directives around `COPY handler /opt/nuclio`, the path given by
//! `pkg/processor/build/runtime/python/runtime.go`'s `ImageArtifactPaths`). Fusion moves each
//! task's files to `/opt/nuclio/fusionizer_tasks/<task>/`, so a post-copy command such as
//! `pip install -r /opt/nuclio/requirements.txt` would find nothing there. The rule:
//!
//! - in a task's **post-copy** commands, `/opt/nuclio/<name>`, where `<name>` is a file or
//!   directory at the top of the task's directory, becomes
//!   `/opt/nuclio/fusionizer_tasks/<task>/<name>`, and `/opt/nuclio` itself (`cd /opt/nuclio`)
//!   becomes `/opt/nuclio/fusionizer_tasks/<task>`;
//! - Nuclio's own files there (`whl`, `_nuclio_wrapper.py`, `requirements`, `test_wrapper.py`,
//!   `.dockerignore`, put by the python onbuild image) are left as they are;
//! - anything else under `/opt/nuclio` (a name the task does not have, a glob, fusion's own
//!   layout) cannot be rewritten safely and is refused, naming the command;
//! - pre-copy commands run before any file is copied, in Nuclio as in a fused image, and are
//!   left alone.
//!
//! The local platform runs the same commands with `/opt/nuclio` standing for the function's
//! directory on disk ([`localize`]).

use std::collections::BTreeSet;

/// Where Nuclio copies a function's directory in the image.
pub const NUCLIO_DIR: &str = "/opt/nuclio";
/// Nuclio's marker that switches the following build commands to after the code copy.
pub const POST_COPY: &str = "@nuclio.postCopy";
/// What Nuclio's python onbuild image itself puts under `/opt/nuclio`
/// (`pkg/processor/build/runtime/python/runtime.go`: `/home/nuclio/bin/py` and the wheels).
/// `/home/nuclio/bin/py` is `pkg/processor/runtime/python/py` copied whole
/// (`pkg/processor/build/runtime/python/docker/onbuild/Dockerfile`, built from the repository's
/// root, where that directory's own `.dockerignore` does not apply), so its test and ignore
/// files may be there too.
const NUCLIO_OWN: &[&str] = &[
    "whl",
    "_nuclio_wrapper.py",
    "requirements",
    "test_wrapper.py",
    ".dockerignore",
];

/// One command as written and as rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The task the command belongs to.
    pub task: String,
    /// The command in the task's function.yaml.
    pub from: String,
    /// The command in the fused function.
    pub to: String,
}

/// Why a command cannot be rewritten: the path it names, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsafe {
    /// The command as written.
    pub command: String,
    /// The path under `/opt/nuclio` it names.
    pub path: String,
    /// Why that path cannot follow the task's files.
    pub reason: &'static str,
}

/// `task`'s build commands with its post-copy paths moved (see the module docs); `entries` are
/// the names at the top of its directory.
pub fn rewrite(
    task: &str,
    entries: &BTreeSet<String>,
    commands: &[String],
) -> Result<(Vec<String>, Vec<Rewrite>), Unsafe> {
    let mut out = Vec::with_capacity(commands.len());
    let mut rewrites = Vec::new();
    let mut post_copy = false;
    for command in commands {
        if command.trim() == POST_COPY {
            post_copy = true;
            out.push(command.clone());
            continue;
        }
        if !post_copy {
            out.push(command.clone());
            continue;
        }
        let rewritten = rewrite_command(task, entries, command)?;
        if &rewritten != command {
            rewrites.push(Rewrite {
                task: task.to_string(),
                from: command.clone(),
                to: rewritten.clone(),
            });
        }
        out.push(rewritten);
    }
    Ok((out, rewrites))
}

/// Whether `c` can be part of a path (so `/opt/nuclio` next to it is part of a longer name).
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '~' | '$' | '{' | '}')
}

/// Where each `/opt/nuclio` that stands on its own in `command` starts.
fn occurrences(command: &str) -> Vec<usize> {
    command
        .match_indices(NUCLIO_DIR)
        .map(|(at, _)| at)
        .filter(|&at| {
            let before = command[..at].chars().next_back();
            let after = command[at + NUCLIO_DIR.len()..].chars().next();
            !before.is_some_and(path_char) && !after.is_some_and(|c| c != '/' && path_char(c))
        })
        .collect()
}

fn rewrite_command(
    task: &str,
    entries: &BTreeSet<String>,
    command: &str,
) -> Result<String, Unsafe> {
    let home = format!("{NUCLIO_DIR}/{}/{task}", crate::contract::TASKS_DIR);
    let mut out = String::with_capacity(command.len() + 64);
    let mut last = 0;
    for at in occurrences(command) {
        let rest = &command[at + NUCLIO_DIR.len()..];
        let name: String = rest
            .strip_prefix('/')
            .unwrap_or("")
            .chars()
            .take_while(|&c| path_char(c) && c != '/' || "*?[]".contains(c))
            .collect();
        let unsafe_path = |reason| Unsafe {
            command: command.to_string(),
            path: format!("{NUCLIO_DIR}/{name}"),
            reason,
        };
        out.push_str(&command[last..at]);
        if name.is_empty() {
            // The directory itself (`cd /opt/nuclio`, `/opt/nuclio/`).
            out.push_str(&home);
            last = at + NUCLIO_DIR.len();
        } else if name.contains(['*', '?', '[', '$', '{']) {
            return Err(unsafe_path(
                "a pattern or variable over the function's directory would match other tasks' \
                 files once fused",
            ));
        } else if entries.contains(&name) {
            out.push_str(&home);
            out.push('/');
            out.push_str(&name);
            last = at + NUCLIO_DIR.len() + 1 + name.len();
        } else if NUCLIO_OWN.contains(&name.as_str()) {
            out.push_str(NUCLIO_DIR);
            last = at + NUCLIO_DIR.len();
        } else if name == crate::contract::TASKS_DIR
            || name.starts_with("fusionizer_dispatcher")
            || name.starts_with("_fusionizer_entry")
        {
            return Err(unsafe_path(
                "fusionizer's own layout is not a task's to name",
            ));
        } else {
            return Err(unsafe_path(
                "the task's directory holds no such file, so fusionizer cannot tell where it \
                 is once the task's files move",
            ));
        }
    }
    out.push_str(&command[last..]);
    Ok(out)
}

/// A command as the local platform runs it: `/opt/nuclio` stands for `dir`, the function's
/// directory on disk, as it does in Nuclio's image. `None` for the post-copy marker, which is
/// no command.
pub fn localize(command: &str, dir: &std::path::Path) -> Option<String> {
    if command.trim() == POST_COPY {
        return None;
    }
    let dir = dir.display().to_string();
    let mut out = String::with_capacity(command.len());
    let mut last = 0;
    for at in occurrences(command) {
        out.push_str(&command[last..at]);
        out.push_str(&dir);
        last = at + NUCLIO_DIR.len();
    }
    out.push_str(&command[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> BTreeSet<String> {
        ["requirements.txt", "main.py", "lib", "function.yaml"]
            .map(String::from)
            .into()
    }

    fn run(commands: &[&str]) -> Result<Vec<String>, Unsafe> {
        let commands: Vec<String> = commands.iter().map(|c| (*c).to_string()).collect();
        rewrite("taska", &entries(), &commands).map(|(out, _)| out)
    }

    #[test]
    fn post_copy_paths_of_the_tasks_files_move_with_them() {
        let out = run(&[
            "pip install -r /opt/nuclio/requirements.txt",
            "@nuclio.postCopy",
            "pip install -r /opt/nuclio/requirements.txt",
            "cd /opt/nuclio && python -m compileall lib",
            "cp -r /opt/nuclio/lib/data /tmp/ && ls /opt/nuclio/",
            "python /opt/nuclio/_nuclio_wrapper.py --help; ls /opt/nuclio/whl",
            "echo /opt/nuclioX /x/opt/nuclio/main.py",
        ])
        .unwrap();
        let home = "/opt/nuclio/fusionizer_tasks/taska";
        assert_eq!(
            out,
            [
                // Pre-copy: before any file is there, fused or not.
                "pip install -r /opt/nuclio/requirements.txt".to_string(),
                "@nuclio.postCopy".to_string(),
                format!("pip install -r {home}/requirements.txt"),
                format!("cd {home} && python -m compileall lib"),
                format!("cp -r {home}/lib/data /tmp/ && ls {home}/"),
                "python /opt/nuclio/_nuclio_wrapper.py --help; ls /opt/nuclio/whl".to_string(),
                "echo /opt/nuclioX /x/opt/nuclio/main.py".to_string(),
            ]
        );
        let (_, rewrites) = rewrite(
            "taska",
            &entries(),
            &[
                "@nuclio.postCopy".into(),
                "pip install -r /opt/nuclio/requirements.txt".into(),
            ],
        )
        .unwrap();
        assert_eq!(rewrites.len(), 1);
        assert_eq!(
            rewrites[0].from,
            "pip install -r /opt/nuclio/requirements.txt"
        );
    }

    #[test]
    fn what_cannot_be_moved_safely_is_refused_naming_the_path() {
        for (command, path) in [
            ("pip install /opt/nuclio/*.whl", "/opt/nuclio/*.whl"),
            ("cat /opt/nuclio/missing.txt", "/opt/nuclio/missing.txt"),
            (
                "ls /opt/nuclio/fusionizer_tasks/other",
                "/opt/nuclio/fusionizer_tasks",
            ),
            (
                "python /opt/nuclio/_fusionizer_entry.py",
                "/opt/nuclio/_fusionizer_entry.py",
            ),
            ("ls /opt/nuclio/$DIR", "/opt/nuclio/$DIR"),
        ] {
            let err = run(&["@nuclio.postCopy", command]).unwrap_err();
            assert_eq!(err.path, path, "{command}");
            assert_eq!(err.command, command);
        }
    }

    #[test]
    fn the_local_platform_reads_opt_nuclio_as_the_functions_directory() {
        let dir = std::path::Path::new("/tmp/fn");
        assert_eq!(localize("@nuclio.postCopy", dir), None);
        assert_eq!(
            localize(
                "pip install -r /opt/nuclio/fusionizer_tasks/a/r.txt && cd /opt/nuclio",
                dir
            )
            .unwrap(),
            "pip install -r /tmp/fn/fusionizer_tasks/a/r.txt && cd /tmp/fn"
        );
        assert_eq!(
            localize("echo /opt/nucliox", dir).unwrap(),
            "echo /opt/nucliox"
        );
    }
}

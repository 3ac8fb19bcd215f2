//! What a task can do to `serve` through the local platform's workers (issue 19, items 3, 4
//! and 9): print without end, leave processes behind, answer more than serve will hold. Each
//! test runs the real binary with real Python workers on 127.0.0.1 and waits for conditions
//! with deadlines.

use std::path::Path;
use std::time::Duration;

use fusionizer::contract::MAX_LOG_LINE;

use crate::support::{
    client, process_running, put_zip, wait_for, workers_of, zip_dir, Serve, TestEnv,
};

/// A task directory at `dir`: the quickstart's function.yaml and `main` as its handler module.
fn write_task(dir: &Path, main: &str) {
    let yaml = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/tasks/taskb");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(yaml.join("function.yaml"), dir.join("function.yaml")).unwrap();
    std::fs::write(dir.join("main.py"), main).unwrap();
}

/// A project `name` whose tasks live in `tasks/<task>` with the given handler modules.
fn project(name: &str, tasks: &[(&str, &str)], serve_section: &str) -> TestEnv {
    let env = TestEnv::new();
    let mut toml = format!("[project]\nname = \"{name}\"\n\n[tasks]\n");
    for (task, main) in tasks {
        write_task(&env.project().join("tasks").join(task), main);
        toml.push_str(&format!("{task} = \"tasks/{task}\"\n"));
    }
    toml.push_str(serve_section);
    env.write(&[("fusion.toml", &toml)]);
    env
}

/// `POST /<task>` with a JSON body: (status, body).
fn post(serve: &Serve, task: &str, body: &serde_json::Value) -> (u16, Vec<u8>) {
    let response = client()
        .post(serve.url(&format!("/{task}")))
        .json(body)
        .send()
        .unwrap_or_else(|e| panic!("POST /{task}: {e}"));
    (
        response.status().as_u16(),
        response.bytes().unwrap().to_vec(),
    )
}

/// The peak resident set of process `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

/// Writes `size` bytes of one line, then its newline, to stdout: through Python's `sys.stdout`
/// (letter `p`), or with `raw` to file descriptor 1 itself (letter `r`), as a C extension or a
/// subprocess would.
const SPEW: &str = r#"import os
import sys


def handler(context, event):
    raw, size = event.body["raw"], event.body["size"]
    chunk = ("r" if raw else "p") * 65536
    for _ in range(size // len(chunk)):
        if raw:
            view = memoryview(chunk.encode())
            while view:
                view = view[os.write(1, view):]
        else:
            sys.stdout.write(chunk)
    if raw:
        os.write(1, b"\n")
    else:
        sys.stdout.write("\n")
    return "written"
"#;

/// Item 3: a task that prints tens of MiB without a newline, through Python and straight to
/// its file descriptor, leaves one log line each of at most `MAX_LOG_LINE` bytes saying how much
/// was cut, and serve's peak memory grows by far less than what was printed. Before the fix
/// serve held the whole line (and copies of it) and logged it whole.
#[test]
fn task_output_is_logged_in_bounded_lines_and_serve_memory_stays_flat() {
    let env = project("spew", &[("spew", SPEW)], "");
    let serve = Serve::start(&env, &[]);
    let spew = |raw: bool, size: usize| {
        let (status, body) = post(
            &serve,
            "spew",
            &serde_json::json!({"raw": raw, "size": size}),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    };
    let line_of = |letter: char, size: usize| {
        format!("{letter} … [truncated: {} more bytes]", size - MAX_LOG_LINE)
    };
    // Warm up both paths, so that what is measured below is what the output itself costs.
    for raw in [true, false] {
        spew(raw, 1 << 17);
    }
    serve.wait_for_log(&line_of('r', 1 << 17), Duration::from_secs(60));
    serve.wait_for_log(&line_of('p', 1 << 17), Duration::from_secs(60));

    let size = 32 << 20;
    for (raw, letter) in [(true, 'r'), (false, 'p')] {
        let before = peak_rss(serve.pid());
        spew(raw, size);
        serve.wait_for_log(&line_of(letter, size), Duration::from_secs(60));
        let grown = peak_rss(serve.pid()).saturating_sub(before);
        assert!(
            grown < size as u64 / 4,
            "serve's peak RSS grew by {grown} bytes while a task printed {size} bytes ({})",
            if raw { "raw" } else { "through sys.stdout" }
        );
    }
    let log = serve.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest <= MAX_LOG_LINE + 200,
        "a log line of {longest} bytes"
    );
}

/// Returns `size` bytes.
const BIG: &str = r#"def handler(context, event):
    return b"z" * event.body["size"]
"#;

/// Item 9: an answer over `[serve] max-response-size` is a 502 that names the limit and the
/// setting; the worker is not killed and answers the next request. Before the fix (with the
/// frame limit of 256 MiB) such an answer killed the worker (`killed by signal 9`) and the client
/// read "the worker … crashed".
#[test]
fn an_answer_over_the_response_limit_is_a_502_naming_the_setting_and_the_worker_lives() {
    let env = project(
        "bigans",
        &[("big", BIG)],
        "\n[serve]\nmax-response-size = \"64KiB\"\n",
    );
    let serve = Serve::start(&env, &[]);
    let workers = workers_of("bigans");
    assert_eq!(workers.len(), 1, "{workers:?}");

    let (status, body) = post(&serve, "big", &serde_json::json!({"size": 300_000}));
    let body = String::from_utf8_lossy(&body).trim_end().to_string();
    assert_eq!(status, 502, "{body}");
    let size: u64 = body
        .strip_prefix("task `big` answered ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(size > 300_000, "{body}");
    assert!(
        body.ends_with(" bytes, over the limit of 65536 bytes (`[serve] max-response-size`)"),
        "{body}"
    );

    let (status, body) = post(&serve, "big", &serde_json::json!({"size": 1000}));
    assert_eq!((status, body.len()), (200, 1000));
    assert_eq!(workers_of("bigans"), workers, "the worker was replaced");
    let log = serve.log();
    assert!(
        !log.contains("killed by signal") && !log.contains("restarting"),
        "{log}"
    );
    assert!(log.contains("over the limit of 65536 bytes"), "{log}");
}

/// Starts a `sleep 300` per request and answers its pid and the worker's; with `"crash"` it
/// writes the child's pid to `<dir>/crash-child` and kills its own worker instead. Its
/// termination callback writes `<dir>/terminated-<worker pid>`: `alive` when its children were
/// all still running then.
const SPAWNER: &str = r#"import os
import subprocess

children = []
state = {}


def init_context(context):
    context.platform.set_termination_callback(on_termination)


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def on_termination():
    if "dir" in state:
        alive = all(child.poll() is None for child in children)
        path = os.path.join(state["dir"], "terminated-%d" % os.getpid())
        write(path, "alive" if alive else "gone")


def handler(context, event):
    state["dir"] = event.body["dir"]
    child = subprocess.Popen(["sleep", "300"])
    children.append(child)
    if event.body.get("crash"):
        write(os.path.join(state["dir"], "crash-child"), str(child.pid))
        os._exit(3)
    return {"child": child.pid, "worker": os.getpid()}
"#;

const OTHER: &str = r#"def handler(context, event):
    return "other"
"#;

/// Item 4: a process a task started ends with its worker, after the worker's termination
/// callbacks, whichever way the worker goes: drained by a regroup, its task deleted, crashed
/// (as a worker killed after a request timed out), and at a graceful shutdown. Before the fix
/// it ran on, reparented to init.
#[test]
fn what_a_task_starts_ends_with_its_worker_after_its_termination_callbacks() {
    let env = TestEnv::new();
    let code = env.root().join("code");
    write_task(&code.join("spawner"), SPAWNER);
    write_task(&code.join("other"), OTHER);
    let marks = env.root().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    env.write(&[(
        "fusion.toml",
        "[project]\nname = \"orphans\"\n\n[tasks]\nspawner = { upload = true }\n\
         other = { upload = true }\n\n[[phase]]\nafter = \"0s\"\ngroups = [[\"spawner\", \"other\"]]\n",
    )]);
    let serve = Serve::start(&env, &[]);
    let upload = |task: &str| {
        let (status, body) = put_zip(&serve, task, zip_dir(&code.join(task)), None);
        assert_eq!(status, 200, "PUT /{task}: {body}\n{}", serve.log());
    };
    let spawn = || {
        let (status, body) = post(
            &serve,
            "spawner",
            &serde_json::json!({"dir": marks.display().to_string()}),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let pid = |key: &str| u32::try_from(answer[key].as_u64().unwrap()).unwrap();
        let (child, worker) = (pid("child"), pid("worker"));
        assert!(process_running(child));
        (child, worker)
    };
    let ends = |what: &str, pid: u32| {
        wait_for(
            format!("{what} (pid {pid}) to end"),
            Duration::from_secs(30),
            || (!process_running(pid)).then_some(()),
        );
    };
    let terminated = |worker: u32| {
        let mark = marks.join(format!("terminated-{worker}"));
        wait_for("the termination callback", Duration::from_secs(30), || {
            std::fs::read_to_string(&mark).ok()
        })
    };

    // Alone, then drained and deleted when `other` arrives and the two are fused.
    upload("spawner");
    let (child, worker) = spawn();
    upload("other");
    ends("a child of a worker drained by a regroup", child);
    assert_eq!(
        terminated(worker),
        "alive",
        "the group ended before the callbacks ran"
    );

    // Deleted: its function is replaced by one running `other` alone.
    let (child, _) = spawn();
    let response = client().delete(serve.url("/spawner")).send().unwrap();
    assert_eq!(response.status(), 200);
    ends("a child of a deleted task's worker", child);

    // A worker that crashes (as one killed after a request timed out is buried).
    upload("spawner");
    let (status, _) = post(
        &serve,
        "spawner",
        &serde_json::json!({"dir": marks.display().to_string(), "crash": true}),
    );
    assert_eq!(status, 502);
    let child: u32 = std::fs::read_to_string(marks.join("crash-child"))
        .unwrap()
        .parse()
        .unwrap();
    ends("a child of a crashed worker", child);

    // Graceful shutdown.
    let (child, worker) = spawn();
    assert_eq!(serve.terminate(), Some(0));
    ends("a child of a worker stopped at shutdown", child);
    assert_eq!(terminated(worker), "alive");
}

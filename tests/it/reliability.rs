//! Regression tests of issue 15 ("no acknowledged upload is ever lost, shutdown drains for real,
//! and no process or file outlives serve"), one per defect, end to end against a real serve on
//! 127.0.0.1 with real Python workers. Each waits for conditions with deadlines; none sleeps
//! to synchronise or asserts a duration.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::support::{
    add, client, entries, process_running, put_zip, result_of, wait_for, workers_of, zip_dir,
    Serve, TestEnv,
};

/// `examples/quickstart`'s `taskb` (adds `value1` and `value2`), answering `offset` more.
fn adder(dir: &Path, offset: i64) -> Vec<u8> {
    let main = dir.join("main.py");
    let source = std::fs::read_to_string(&main).unwrap();
    let original = "body[\"value1\"] + body[\"value2\"]";
    let changed = source.replace(original, &format!("{original} + {offset}"));
    assert_ne!(source, changed, "taskb's code changed; update this test");
    let copy = dir.with_file_name(format!("adder-{offset}"));
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(dir.join("function.yaml"), copy.join("function.yaml")).unwrap();
    std::fs::write(copy.join("main.py"), changed).unwrap();
    zip_dir(&copy)
}

/// A task that validates (function.yaml and handler module are there) but cannot be imported.
fn broken(dir: &Path) -> Vec<u8> {
    let copy = dir.with_file_name("broken");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(dir.join("function.yaml"), copy.join("function.yaml")).unwrap();
    std::fs::write(copy.join("main.py"), "def handler(context, event:\n").unwrap();
    zip_dir(&copy)
}

/// Defect 1: a good upload and bad ones sent at the same time. The good one is acknowledged
/// (200), the bad ones refused (422), and afterwards the task serves the acknowledged code, which
/// is also what is stored on disk. Before the fix a bad upload's rollback restored a backup taken
/// before the good upload swapped its code in, so the acknowledged code was lost.
#[test]
fn concurrent_uploads_never_lose_the_acknowledged_one() {
    let env = TestEnv::example("quickstart");
    env.write(&[("fusion.toml", "[project]\nname = \"race\"\n\n[tasks]\n")]);
    let code = env.project().join("tasks/taskb");
    let serve = Arc::new(Serve::start(&env, &[]));
    let (status, body) = put_zip(&serve, "up", adder(&code, 0), None);
    assert_eq!(status, 200, "{body}");
    let bad = broken(&code);
    let stored = env.project().join(".fusionizer/uploads/up/main.py");
    for round in 1..=6i64 {
        let offset = round * 1000;
        let good = adder(&code, offset);
        let uploads: Vec<(bool, Vec<u8>)> =
            [(false, bad.clone()), (true, good), (false, bad.clone())]
                .into_iter()
                .collect();
        let barrier = Arc::new(Barrier::new(uploads.len()));
        let answers: Vec<(bool, u16, String)> = uploads
            .into_iter()
            .map(|(is_good, zip)| {
                let (serve, barrier) = (serve.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let (status, body) = put_zip(&serve, "up", zip, None);
                    (is_good, status, body)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        for (is_good, status, body) in &answers {
            let expected = if *is_good { 200 } else { 422 };
            assert_eq!(*status, expected, "round {round}: {body}");
        }
        assert_eq!(
            result_of(&add(&serve, "up", 1, 1).1),
            Some(2 + offset),
            "round {round}: the acknowledged upload is not the one serving\n{}",
            serve.log()
        );
        let on_disk = std::fs::read_to_string(&stored).unwrap();
        assert!(
            on_disk.contains(&format!("+ {offset}")),
            "round {round}: the acknowledged upload is not the one stored:\n{on_disk}"
        );
    }
}

/// Sends `head` (a request line and headers, without the blank line) and then `body_len` bytes
/// of body, all of it before reading anything, as Python's `http.client` does; returns the
/// status line, or the error the client got.
fn send_whole_body_then_read(base: &str, head: &str, body_len: usize) -> Result<String, String> {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!("{head}\r\nHost: {address}\r\nContent-Length: {body_len}\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("writing the head: {e}"))?;
    let chunk = vec![b'x'; 1 << 20];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).map_err(|e| {
            format!(
                "writing the body ({} of {body_len} bytes sent): {e}",
                body_len - left
            )
        })?;
        left -= n;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&answer)
            ));
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Defect 5: a body over the limit gets its 413 even when the client writes the whole body
/// before it reads (Python's `http.client`, many others). Before the fix serve answered and
/// closed without reading the rest, and the client got a broken pipe or a reset instead.
#[test]
fn oversized_bodies_get_their_413_when_the_client_sends_everything_first() {
    let env = TestEnv::example("quickstart");
    env.write(&[(
        "fusion.toml",
        "[project]\nname = \"big\"\n\n[tasks]\ntaskb = \"tasks/taskb\"\n",
    )]);
    let serve = Serve::start(&env, &[]);
    for attempt in 1..=3 {
        let status = send_whole_body_then_read(
            &serve.base,
            "POST /taskb HTTP/1.1\r\nContent-Type: application/octet-stream",
            50 << 20,
        );
        assert_eq!(
            status.as_deref(),
            Ok("HTTP/1.1 413 Payload Too Large"),
            "POST, attempt {attempt}"
        );
    }
    // The same for an upload over its limit (16 MiB by default).
    let status = send_whole_body_then_read(
        &serve.base,
        "PUT /newtask HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=XX",
        50 << 20,
    );
    assert_eq!(
        status.as_deref(),
        Ok("HTTP/1.1 413 Payload Too Large"),
        "PUT"
    );
    // serve is fine afterwards.
    assert_eq!(result_of(&add(&serve, "taskb", 2, 2).1), Some(4));
}

/// A raw request (any target, any method) on a fresh connection; its status code.
fn raw_status(base: &str, method: &str, target: &str) -> u16 {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = if matches!(method, "POST" | "PUT" | "PATCH") {
        "{}"
    } else {
        ""
    };
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: no status in {text:?}"))
}

/// Defect 4: a name that is not a valid task name is refused the same way whatever it points
/// at on the host, on every method, before any path is built from it. Before the fix
/// `POST /%2Fetc` answered 503 ("not deployed right now", because `/etc` exists) while
/// `POST /%2Fnonexistent` answered 404.
#[test]
fn invalid_task_names_reveal_nothing_about_the_host() {
    let env = TestEnv::example("quickstart");
    env.write(&[(
        "fusion.toml",
        "[project]\nname = \"probe\"\n\n[tasks]\ntaskb = \"tasks/taskb\"\n",
    )]);
    // Something that exists next to the uploads directory, and one level up.
    std::fs::create_dir_all(env.project().join(".fusionizer/uploads")).unwrap();
    std::fs::create_dir_all(env.project().join(".fusionizer/secret")).unwrap();
    let serve = Serve::start(&env, &[]);
    let long = "a".repeat(41);
    let longer = "b".repeat(4000);
    let names: Vec<String> = [
        "%2Fetc",
        "%2fetc",
        "%2Fnonexistent",
        "%2E%2E",
        "..",
        "%2E",
        "..%2Fsecret",
        "%2E%2E%2Fsecret",
        "..%2F..%2F..%2F..%2F..%2F..%2Fetc",
        "%5Cetc",
        "..%5Csecret",
        "%00",
        "task%00",
        "%2Ftmp",
        "%2F",
        "%C3%A9t%C3%A9",
        "%EF%BD%94%EF%BD%81%EF%BD%93%EF%BD%8B",
        "Taskb",
        "task_b",
        "-taskb",
        long.as_str(),
        longer.as_str(),
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    let mut seen = Vec::new();
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"] {
        for name in &names {
            for target in [format!("/{name}"), format!("/{name}/sub/path")] {
                let status = raw_status(&serve.base, method, &target);
                seen.push(format!("{method} {target} -> {status}"));
                assert!(
                    status == 400 || status == 404,
                    "{method} {target} answered {status}; an invalid name must be refused the \
                     same way whatever exists on the host\n{}",
                    seen.join("\n")
                );
            }
        }
    }
    // Every invalid name gets the same answer on a given method, whatever it points at.
    for method in ["GET", "POST", "PUT", "DELETE"] {
        let statuses: std::collections::BTreeSet<u16> = names
            .iter()
            .map(|name| raw_status(&serve.base, method, &format!("/{name}")))
            .collect();
        assert_eq!(
            statuses.len(),
            1,
            "{method}: {statuses:?}\n{}",
            seen.join("\n")
        );
    }
    // A valid name still works.
    assert_eq!(result_of(&add(&serve, "taskb", 2, 3).1), Some(5));
    assert_eq!(raw_status(&serve.base, "POST", "/nonexistent"), 404);
}

/// `taska` of the quickstart (original style: asks `taskb` through the proxy), held at a gate:
/// it writes the file `ready` names, waits for the file `go` names, and only then calls
/// `taskb`.
const GATED_TASKA: &str = r#"import os
import time


def handler(context, event, requests_session):
    body = event.body
    with open(body["ready"] + ".tmp", "w") as f:
        f.write("in")
    os.rename(body["ready"] + ".tmp", body["ready"])
    deadline = time.monotonic() + 120
    while not os.path.exists(body["go"]):
        if time.monotonic() > deadline:
            return 504, "never released"
        time.sleep(0.01)
    address = event.headers["Fusionizer-Server-Address"]
    port = event.headers.get("Fusionizer-Server-Port", "8000")
    numbers = {"value1": body["value1"], "value2": body["value2"]}
    response = requests_session.post(f"http://{address}:{port}/taskb", json=numbers)
    if response.status_code != 200:
        return 502, f"taskb answered {response.status_code}: {response.text}"
    return response.json()
"#;

/// A project `name` whose `taska` is [`GATED_TASKA`] and `taskb` the quickstart's, each in a
/// function of its own (so the call between them goes through the proxy).
fn gated_project(name: &str, serve_section: &str) -> TestEnv {
    let env = TestEnv::example("quickstart");
    env.write(&[
        ("tasks/taska/main.py", GATED_TASKA),
        (
            "fusion.toml",
            &format!(
                "[project]\nname = \"{name}\"\n\n[tasks]\ntaska = \"tasks/taska\"\ntaskb = \"tasks/taskb\"\n{serve_section}"
            ),
        ),
    ]);
    env
}

/// Starts `POST /taska` through the gate in a thread; returns it once the handler is inside.
fn gated_request(
    serve: &Arc<Serve>,
    env: &TestEnv,
) -> (std::thread::JoinHandle<(u16, String)>, PathBuf) {
    let ready = env.root().join("ready");
    let go = env.root().join("go");
    let request = {
        let serve = serve.clone();
        let body = serde_json::json!({
            "value1": 20, "value2": 22,
            "ready": ready.display().to_string(), "go": go.display().to_string(),
        });
        std::thread::spawn(move || {
            let response = client()
                .post(serve.url("/taska"))
                .json(&body)
                .send()
                .unwrap();
            (response.status().as_u16(), response.text().unwrap())
        })
    };
    wait_for(
        "the request to reach the handler",
        Duration::from_secs(60),
        || ready.exists().then_some(()),
    );
    (request, go)
}

/// Defect 2: on SIGTERM serve stops taking client requests, but a request already in flight
/// finishes, including the call it makes to a task in another function through the proxy.
/// Before the fix the listener closed at once: that call was refused, and the client got a 500
/// while serve exited 0.
#[test]
fn shutdown_lets_in_flight_requests_finish_their_calls_between_functions() {
    let env = gated_project("drain", "");
    let serve = Arc::new(Serve::start(&env, &[]));
    let (request, go) = gated_request(&serve, &env);
    serve.signal("TERM");
    serve.wait_for_log("Stopping serve", Duration::from_secs(30));
    // A new client request is refused while the drain goes on.
    let refused = client()
        .post(serve.url("/taskb"))
        .json(&serde_json::json!({"value1": 1, "value2": 1}))
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string());
    std::fs::write(&go, "").unwrap();
    let (status, body) = request.join().unwrap();
    assert_eq!(
        (status, result_of(&body)),
        (200, Some(42)),
        "{body}\n{}",
        serve.log()
    );
    assert_eq!(refused, Ok(503));
    let mut serve = Arc::into_inner(serve).unwrap();
    assert_eq!(serve.wait_exit(), Some(0), "{}", serve.log());
    assert!(workers_of("drain").is_empty(), "workers left behind");
}

/// Defect 2, the deadline: a request still in flight when `[serve] shutdown-timeout` passes is
/// cut off, serve says which, stops the workers and exits 0.
#[test]
fn shutdown_cuts_off_what_outlasts_the_deadline_and_says_so() {
    let env = gated_project("cutoff", "\n[serve]\nshutdown-timeout = \"1s\"\n");
    let serve = Arc::new(Serve::start(&env, &[]));
    let (request, _never) = gated_request(&serve, &env);
    serve.signal("TERM");
    // The client gets an error answer (or a closed connection); either way it is not left
    // hanging.
    let _ = request.join();
    let mut serve = Arc::into_inner(serve).expect("the request thread is done");
    assert_eq!(serve.wait_exit(), Some(0), "{}", serve.log());
    let log = serve.log();
    assert!(
        log.contains("request(s) still in flight; cutting them off: `cutoff-taska` (1 in flight"),
        "{log}"
    );
    wait_for("the workers to stop", Duration::from_secs(30), || {
        workers_of("cutoff").is_empty().then_some(())
    });
}

/// A task whose `init_context` writes its process id into `marker` and then blocks.
fn slow_init_project(name: &str, marker: &Path) -> TestEnv {
    let env = TestEnv::example("quickstart");
    let code = format!(
        "import os\nimport time\n\n\ndef init_context(context):\n    with open({marker:?} + \".tmp\", \"w\") as f:\n        f.write(str(os.getpid()))\n    os.rename({marker:?} + \".tmp\", {marker:?})\n    time.sleep(600)\n\n\ndef handler(context, event):\n    return \"ready at last\"\n",
        marker = marker.display().to_string()
    );
    let yaml = std::fs::read_to_string(env.project().join("tasks/taskb/function.yaml")).unwrap();
    env.write(&[
        ("tasks/slow/function.yaml", &yaml),
        ("tasks/slow/main.py", &code),
        (
            "fusion.toml",
            &format!("[project]\nname = \"{name}\"\n\n[tasks]\nslow = \"tasks/slow\"\n"),
        ),
    ]);
    std::fs::create_dir_all(env.root().join("tmp")).unwrap();
    env
}

/// The process id `init_context` wrote into `marker`, once it did.
fn init_pid(marker: &Path) -> u32 {
    wait_for("init_context to start", Duration::from_secs(120), || {
        std::fs::read_to_string(marker).ok()?.trim().parse().ok()
    })
}

/// Defect 3: SIGTERM while the start phase is still deploying (a worker inside
/// `init_context`) stops that worker, leaves no socket directory or staged version behind, and
/// exits 0. Before the fix the signal handler was installed only after the first deploy: serve
/// died of the signal (exit 143), and its workers and `/tmp/fz-*` directories stayed.
#[test]
fn sigterm_during_the_start_deploy_stops_everything_and_exits_0() {
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("init-pid");
    let env = slow_init_project("early", &marker);
    let tmp = env.root().join("tmp");
    let mut serve = Serve::spawn(&env, &[("TMPDIR", tmp.to_str().unwrap())], &[]);
    let pid = init_pid(&marker);
    assert!(process_running(pid));
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(), Some(0), "{}", serve.log());
    wait_for("the worker to stop", Duration::from_secs(30), || {
        (!process_running(pid)).then_some(())
    });
    let state = env.project().join(".fusionizer/local");
    assert_eq!(
        entries(&tmp),
        Vec::<String>::new(),
        "socket directories left behind"
    );
    assert_eq!(entries(&state.join("run")), Vec::<String>::new());
    assert_eq!(
        entries(&state.join("store")),
        Vec::<String>::new(),
        "staged versions left behind"
    );
}

/// Defect 6: workers die with the process that started them, even a `kill -9`ed one (here
/// `apply`, while a worker is inside `init_context`), and the next command removes the socket
/// directory the dead process left and says so. Before the fix the worker ran on until
/// `init_context` returned, and the directory stayed.
#[test]
fn workers_die_with_a_killed_apply_and_the_next_command_cleans_up() {
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("init-pid");
    let env = slow_init_project("orphans", &marker);
    let tmp = env.root().join("tmp");
    let mut apply = std::process::Command::new(env!("CARGO_BIN_EXE_fusionizer"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.root().join("home"))
        .env("NO_COLOR", "1")
        .env("TMPDIR", &tmp)
        .env("FUSIONIZER_CACHE_DIR", crate::support::cache_dir())
        .current_dir(env.project())
        .args(["apply", "--auto-approve"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = init_pid(&marker);
    assert!(process_running(pid));
    assert_eq!(entries(&tmp).len(), 1, "one socket directory");
    apply.kill().unwrap();
    apply.wait().unwrap();
    wait_for(
        "the worker to die with apply",
        Duration::from_secs(30),
        || (!process_running(pid)).then_some(()),
    );
    // What the dead process could not remove is removed by the next command, which says so.
    assert_eq!(entries(&tmp).len(), 1);
    let out = env
        .cmd()
        .env("TMPDIR", &tmp)
        .env("FUSIONIZER_CACHE_DIR", crate::support::cache_dir())
        .arg("plan")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did not exit cleanly") && stderr.contains("removed its socket directory"),
        "{}",
        crate::support::transcript(&out)
    );
    assert_eq!(entries(&tmp), Vec::<String>::new());
    assert_eq!(
        entries(&env.project().join(".fusionizer/local/run")),
        Vec::<String>::new()
    );
}

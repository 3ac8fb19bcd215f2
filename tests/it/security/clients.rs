//! Issue 19, items 5 and 6: the CLI's clients of a running serve (`invoke`, `traces export`,
//! `optimize --from`) against hostile or broken servers on loopback (one that never answers, an
//! endless or oversized body, a 5 MB error page, an `https://` address), and the `command`
//! optimizer runner against programs that leave a child holding stdout or print too much.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use fusionizer::optimize::command::{self, Answer, OptimizerError};

use crate::support::{poll_within, process_running, transcript, TestEnv};

/// How long a command may run before the test gives up on it (it is killed then): far above
/// anything the fixed code takes, so only a hang reaches it.
const HANG: Duration = Duration::from_secs(90);

/// A project to run the commands in (`optimize` needs a fusion.toml).
fn project() -> TestEnv {
    TestEnv::example("iot")
}

/// Runs `fusionizer ARGS` in `env`, killed after [`HANG`]; (exit code, stderr, transcript).
fn run(env: &TestEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let output = env.cmd().args(args).timeout(HANG).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        transcript(&output),
    )
}

/// Reads a request head from `stream` (bounded: 64 KiB, or 30 s without a byte).
fn read_head(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// A server on loopback that answers one request with `head` and then `body_bytes` bytes of
/// `x`, written in chunks until the client hangs up; returns its address and the number of body
/// bytes it managed to write.
fn answer_once(head: String, body_bytes: usize) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        read_head(&mut stream);
        if stream.write_all(head.as_bytes()).is_err() {
            return 0;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while written < body_bytes {
            let n = chunk.len().min(body_bytes - written);
            if stream.write_all(&chunk[..n]).is_err() {
                return written;
            }
            written += n;
        }
        // Let the client read it all before the connection closes.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut rest = [0u8; 1024];
        while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
        written
    });
    (address, server)
}

/// Regression (issue 19, item 5): `optimize --from URL` and `traces export --from` waited for
/// ever on a server that accepts and never answers. Nothing accepts on this listener: the
/// kernel completes the handshakes from its backlog, and no byte ever comes back.
#[test]
fn clients_give_up_on_a_server_that_accepts_and_never_answers() {
    let env = project();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let url = format!("http://{address}");
    for (args, what) in [
        (
            vec!["invoke", "ingest", "--server", &address, "--timeout", "1s"],
            "POST /ingest",
        ),
        (
            vec![
                "traces",
                "export",
                "-",
                "--from",
                &address,
                "--timeout",
                "1s",
            ],
            "GET /-/traces",
        ),
        (
            vec!["optimize", "--from", &url, "--timeout", "1s"],
            "GET /-/traces",
        ),
    ] {
        let (code, stderr, all) = run(&env, &args);
        assert_eq!(code, Some(69), "{args:?}\n{all}");
        assert!(
            stderr.contains(&format!(
                "fusionizer serve at `{url}` did not answer `{what}` within 1s"
            )),
            "{args:?}\n{all}"
        );
        assert!(
            stderr.contains("--timeout"),
            "the hint names the flag: {all}"
        );
    }
    drop(silent);
}

/// Regression (issue 19, item 5): `traces export` read bodies without a limit. An endless body
/// stops at 64 MiB; a declared length over the limit is refused before it is read.
#[test]
fn clients_stop_reading_at_the_body_limit() {
    let env = project();
    // No length: the body runs until the server closes, which it would after 256 MiB.
    let (address, server) = answer_once(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".into(),
        256 * 1024 * 1024,
    );
    let (code, stderr, all) = run(&env, &["traces", "export", "-", "--from", &address]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        stderr.contains(&format!(
            "`http://{address}/-/traces` answered 200 OK with a body over 64 MiB"
        )),
        "{all}"
    );
    assert!(
        server.join().unwrap() < 256 * 1024 * 1024,
        "the client hung up"
    );

    let declared = 200 * 1024 * 1024;
    let (address, server) = answer_once(
        format!("HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"),
        declared,
    );
    let (code, stderr, all) = run(&env, &["invoke", "ingest", "--server", &address]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        stderr.contains("answered 200 OK with a body over 64 MiB"),
        "{all}"
    );
    assert!(server.join().unwrap() < declared, "the client hung up");
}

/// Regression (issue 19, item 5): an error page was printed whole (5 MB on the terminal). Now
/// the message shows its first 2 KiB and how much was left out.
#[test]
fn an_error_page_is_cut_short_in_the_message() {
    let env = project();
    let page = 5_000_000;
    let head = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: {page}\r\n\
         Connection: close\r\n\r\n"
    );
    let (address, server) = answer_once(head.clone(), page);
    let (code, stderr, all) = run(&env, &["invoke", "ingest", "--server", &address]);
    server.join().unwrap();
    assert_eq!(code, Some(1), "{all}");
    assert!(
        stderr.contains("`ingest` answered 500 Internal Server Error: xxxx"),
        "{all}"
    );
    assert!(stderr.contains("… (4997952 more bytes)"), "{all}");
    assert!(stderr.len() < 8 * 1024, "{} bytes of stderr", stderr.len());

    let (address, server) = answer_once(head, page);
    let (code, stderr, all) = run(&env, &["optimize", "--from", &format!("http://{address}")]);
    server.join().unwrap();
    assert_eq!(code, Some(1), "{all}");
    assert!(stderr.contains("… (4997952 more bytes)"), "{all}");
    assert!(stderr.len() < 8 * 1024, "{} bytes of stderr", stderr.len());
}

/// Issue 19, item 5 (and issue 22): every client reads an address the same way. `https://` was
/// handed by `invoke` and `traces export` to a connector that speaks only plain HTTP; now each
/// refuses it up front, naming the address.
#[test]
fn every_client_refuses_https_naming_the_address() {
    let env = project();
    let https = "https://127.0.0.1:8443";
    // The message names the flag: `--server` (`--from` of `traces export` is its alias), and
    // `--from` of `optimize`, which also takes a file.
    for (args, flag) in [
        (vec!["invoke", "ingest", "--server", https], "--server"),
        (vec!["traces", "export", "-", "--server", https], "--server"),
        (vec!["traces", "export", "-", "--from", https], "--server"),
        (vec!["optimize", "--server", https], "--server"),
        (vec!["optimize", "--from", https], "--from"),
    ] {
        let (code, stderr, all) = run(&env, &args);
        assert_eq!(code, Some(64), "{args:?}\n{all}");
        assert!(
            stderr.contains(&format!("`{flag} {https}`: HTTPS is not supported")),
            "{args:?}\n{all}"
        );
    }
}

// --- the `command` optimizer runner (item 6) -----------------------------------------------

/// The smallest request: no tasks, no traces (an answer of `keep` is valid for it).
fn empty_request() -> command::Request {
    use fusionizer::traces::{Limits, TraceDoc};
    command::request(
        "shop",
        &fusionizer::schedule::Grouping::default(),
        &BTreeMap::new(),
        command::RequestPhase {
            number: None,
            after: None,
        },
        command::RequestSettings {
            min_calls: 10,
            min_gain: 0.05,
        },
        TraceDoc {
            version: 1,
            started: "2025-01-01T00:00:00.000Z".to_string(),
            limits: Limits {
                spans: 0,
                edges: 0,
                sketch: String::new(),
            },
            edges: Vec::new(),
            tasks: Vec::new(),
            spans: Vec::new(),
        },
    )
}

/// Runs the shell script `script` as the command optimizer in `dir`.
fn run_script(dir: &Path, script: &str, timeout: Duration) -> Result<Answer, OptimizerError> {
    std::fs::write(dir.join("optimizer.sh"), script).unwrap();
    let program = vec!["sh".to_string(), "optimizer.sh".to_string()];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(command::run(
        &program,
        dir,
        timeout,
        &empty_request(),
        &BTreeMap::new(),
    ))
}

/// The pid a script wrote into `dir/name`.
fn pid_in(dir: &Path, name: &str) -> u32 {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits (30 s at most) until `pid` is gone; kills it if it is not, so a failing run leaves
/// nothing behind. Whether it went by itself.
fn gone_by_itself(pid: u32) -> bool {
    if poll_within(Duration::from_secs(30), || !process_running(pid)).is_some() {
        return true;
    }
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    false
}

/// Regression (issue 19, item 6): a program that answers at once but leaves a background child
/// holding stdout was reported as timed out every round (the runner waited for EOF), and the
/// child was left behind. Now its answer counts as soon as it exits, and the child is killed.
#[test]
fn an_optimizer_that_answers_and_leaves_a_child_holding_stdout_is_heard_and_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let answer = run_script(
        tmp.path(),
        "cat > /dev/null\n\
         sleep 300 &\n\
         echo $! > child.pid\n\
         echo '{\"version\": 1, \"keep\": true, \"reason\": \"answered at once\"}'\n",
        Duration::from_secs(20),
    );
    let child = pid_in(tmp.path(), "child.pid");
    assert!(
        gone_by_itself(child),
        "the background child {child} outlived the run"
    );
    assert_eq!(
        answer,
        Ok(Answer::Keep {
            reason: "answered at once".to_string()
        })
    );
}

/// Regression (issue 19, item 6): on a timeout only the program itself was killed; what it had
/// started kept running. Now its whole process group goes.
#[test]
fn an_optimizer_killed_for_its_timeout_takes_its_children_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let answer = run_script(
        tmp.path(),
        "sleep 300 &\n\
         echo $! > child.pid\n\
         sleep 300\n",
        Duration::from_secs(5),
    );
    assert_eq!(
        answer.as_ref().map_err(OptimizerError::kind),
        Err("timeout")
    );
    let child = pid_in(tmp.path(), "child.pid");
    assert!(
        gone_by_itself(child),
        "the background child {child} outlived the run"
    );
}

/// Regression (issue 19, item 6): more than 4 MiB on stdout was reported as `timeout` (the
/// runner stopped reading, the program blocked writing), not the documented `invalid-json`.
#[test]
fn an_optimizer_printing_5_mib_is_an_invalid_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let error = run_script(
        tmp.path(),
        "head -c 5242880 /dev/zero | tr '\\000' x\n",
        Duration::from_secs(60),
    )
    .unwrap_err();
    assert_eq!(error.kind(), "invalid-json", "{error}");
    assert!(
        error.to_string().contains(&format!(
            "more than {} bytes on stdout",
            command::MAX_STDOUT_BYTES
        )),
        "{error}"
    );
}

//! Clients that hold connections (docs/security.md, "Connections"): one that connects and says
//! nothing, one that trickles its headers, one that stops halfway through its body, one that
//! keeps an idle keep-alive connection; and enough of them to exhaust a low file descriptor
//! limit. Each is closed by its deadline, and serve keeps answering well-behaved clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{addr, project, ran, raw, request};
use crate::support::{client, wait_for, Serve};

/// Short deadlines, so that the test sees them pass.
const TIMEOUTS: &str =
    "header-read-timeout = \"1s\"\nbody-read-timeout = \"1s\"\nidle-timeout = \"2s\"";

/// Reads from `stream` until the server closes it; what it sent (at most 60 s: past that the
/// connection was held, and the test fails).
fn until_closed(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A reset is a close too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the connection was still open after 60s ({e}); it sent: {}",
            String::from_utf8_lossy(&answer)
        ),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn silent_slow_and_idle_connections_are_closed_by_their_deadlines() {
    let (env, marker) = project(TIMEOUTS);
    let serve = Serve::start(&env, &[]);
    let host = addr(&serve);

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(&host).unwrap();
    assert_eq!(until_closed(&mut silent), "");

    // Starts a request and never finishes its headers.
    let mut trickle = TcpStream::connect(&host).unwrap();
    trickle
        .write_all(format!("POST /victim HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes())
        .unwrap();
    assert_eq!(until_closed(&mut trickle), "");

    // Sends its headers and a tenth of its body.
    let mut half = TcpStream::connect(&host).unwrap();
    half.write_all(
        format!("POST /victim HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n0123456789")
            .as_bytes(),
    )
    .unwrap();
    let answer = until_closed(&mut half);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body-read-timeout"), "{answer}");

    // One request on a keep-alive connection, then nothing.
    let mut idle = TcpStream::connect(&host).unwrap();
    idle.write_all(format!("GET /-/health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let answer = until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    assert_eq!(
        ran(&marker),
        Vec::<String>::new(),
        "no request was complete"
    );
    assert_eq!(raw(&serve, &request("POST", "/victim", &host, &[])).0, 200);
}

/// `fusionizer serve` under `ulimit -n limit`.
fn serve_with_fd_limit(env: &crate::support::TestEnv, limit: u32) -> Serve {
    let mut serve = Serve::spawn_wrapped(
        env,
        &[],
        &[],
        &[
            "sh",
            "-c",
            &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
        ],
    );
    serve.wait_healthy();
    serve
}

#[test]
fn hundreds_of_held_connections_under_a_low_fd_limit_do_not_stop_serve_answering() {
    // This test holds 300 sockets of its own.
    raise_own_fd_limit();
    let (env, marker) = project(TIMEOUTS);
    let serve = serve_with_fd_limit(&env, 256);
    let host = addr(&serve);
    assert!(
        serve.log().contains("lowered from 1024"),
        "the limit is fitted to `ulimit -n`:\n{}",
        serve.log()
    );

    // 300 clients, a third each: connect only, half a header, idle after one request.
    let mut held = Vec::new();
    for i in 0..300 {
        let Ok(mut stream) = TcpStream::connect(&host) else {
            continue;
        };
        match i % 3 {
            0 => {}
            1 => {
                let _ = stream.write_all(b"GET /-/health HTTP/1.1\r\nHo");
            }
            _ => {
                let _ = stream.write_all(
                    format!("GET /-/health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
                );
            }
        }
        held.push(stream);
    }

    // A well-behaved client is answered, while those 300 are still open on its side.
    let started = Instant::now();
    let (status, body) = wait_for(
        "an answer to a well-behaved client",
        Duration::from_secs(60),
        || {
            let response = client().post(serve.url("/victim")).body("{}").send().ok()?;
            Some((response.status().as_u16(), response.text().ok()?))
        },
    );
    assert_eq!((status, body.as_str()), (200, "ran"));
    assert_eq!(ran(&marker), ["POST"]);
    eprintln!(
        "answered after {:?} with 300 connections held",
        started.elapsed()
    );
    // Said once, naming the setting.
    wait_for(
        "the connection limit in the log",
        Duration::from_secs(30),
        || {
            serve
                .log()
                .contains("`[serve] max-connections`, lowered")
                .then_some(())
        },
    );
    assert_eq!(
        serve
            .log()
            .matches("client connections are open, the limit")
            .count(),
        1,
        "{}",
        serve.log()
    );
    drop(held);
    assert_eq!(
        client()
            .get(serve.url("/-/health"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

/// Raises this process's soft open-file limit to its hard limit.
fn raise_own_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

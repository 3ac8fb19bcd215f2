//! The harness of `fusionizer serve`: a running serve on 127.0.0.1 (killed on drop) with its
//! log, a client, bounded concurrent load, and uploads as zips.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{cache_dir, wait_for, Lazy, TestEnv};

/// A running `fusionizer serve`; killed on drop.
pub(crate) struct Serve {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts serve in `env`'s project with `args`, waits until `/-/health` is 200.
    pub(crate) fn start(env: &TestEnv, args: &[&str]) -> Serve {
        Serve::start_with(env, &[], args)
    }

    /// [`Serve::start`] with extra environment variables.
    pub(crate) fn start_with(env: &TestEnv, vars: &[(&str, &str)], args: &[&str]) -> Serve {
        let mut serve = Serve::spawn(env, vars, args);
        serve.wait_healthy();
        serve
    }

    /// Starts serve and returns once it listens, without waiting for the start phase.
    pub(crate) fn spawn(env: &TestEnv, vars: &[(&str, &str)], args: &[&str]) -> Serve {
        Serve::spawn_wrapped(env, vars, args, &[])
    }

    /// [`Serve::spawn`] run by `wrapper` (a command and its arguments, given the binary and its
    /// arguments after them), e.g. `sh -c 'ulimit -n 256 && exec "$0" "$@"'`.
    pub(crate) fn spawn_wrapped(
        env: &TestEnv,
        vars: &[(&str, &str)],
        args: &[&str],
        wrapper: &[&str],
    ) -> Serve {
        let binary = env!("CARGO_BIN_EXE_fusionizer");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", env.root().join("home"))
            .env("NO_COLOR", "1")
            .env("FUSIONIZER_CACHE_DIR", cache_dir())
            .current_dir(env.project())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        if let Some(python) = std::env::var_os("FUSIONIZER_PYTHON") {
            cmd.env("FUSIONIZER_PYTHON", python);
        }
        let mut child = cmd.spawn().expect("spawn fusionizer serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("Listening on ").nth(1) {
                        let url = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(url);
                    }
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                }
            });
        }
        let Ok(base) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("serve did not start:\n{}", log.lock().unwrap());
        };
        Serve { child, base, log }
    }

    /// Waits until `/-/health` answers 200.
    pub(crate) fn wait_healthy(&mut self) {
        let client = client();
        let (base, log, child) = (&self.base, &self.log, &mut self.child);
        let log = || log.lock().unwrap().clone();
        wait_for(
            Lazy(|| format!("serve to become healthy:\n{}", log())),
            Duration::from_secs(300),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("serve exited with {status}:\n{}", log());
                }
                client
                    .get(format!("{base}/-/health"))
                    .send()
                    .is_ok_and(|r| r.status() == 200)
            },
        );
    }

    /// Waits until serve's log holds `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str, timeout: Duration) {
        wait_for(
            Lazy(|| format!("`{needle}` in serve's log:\n{}", self.log())),
            timeout,
            || self.log().contains(needle),
        );
    }

    /// serve's stderr so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// serve's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL of `path` on serve.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The body of `GET path`.
    pub(crate) fn text(&self, path: &str) -> String {
        client().get(self.url(path)).send().unwrap().text().unwrap()
    }

    /// A counter or gauge value from `/-/metrics` (sum over label sets matching `filter`).
    pub(crate) fn metric(&self, name: &str, filter: &str) -> f64 {
        let text = client()
            .get(self.url("/-/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub(crate) fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        self.wait_exit()
    }

    /// Sends `signal` (`TERM`, `KILL`, …) without waiting.
    pub(crate) fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
    }

    /// Waits (bounded) for serve to exit; its exit code (`None`: killed by a signal).
    pub(crate) fn wait_exit(&mut self) -> Option<i32> {
        let (log, child) = (&self.log, &mut self.child);
        wait_for(
            Lazy(|| format!("serve to exit:\n{}", log.lock().unwrap())),
            Duration::from_secs(60),
            || child.try_wait().ok().flatten().map(|status| status.code()),
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client that gives up after 60 s.
pub(crate) fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `POST /<task>` of the quickstart's adder with `a` and `b`: status and body.
pub(crate) fn add(serve: &Serve, task: &str, a: i64, b: i64) -> (u16, String) {
    let response = client()
        .post(serve.url(&format!("/{task}")))
        .json(&serde_json::json!({"value1": a, "value2": b}))
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// The `result` of an adder's JSON answer.
pub(crate) fn result_of(body: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("result")?
        .as_i64()
}

/// Bounded concurrent load on `POST /<task>` with `{"value1": client, "value2": i}`, until
/// [`Load::finish`]. `accept(client, i, result)` says whether an answer is correct.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    max_latency_us: Arc<AtomicU64>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

/// What a [`Load`] saw.
pub(crate) struct LoadReport {
    pub(crate) ok: u64,
    pub(crate) failures: Vec<String>,
    pub(crate) max_latency_us: u64,
}

impl Load {
    /// Starts `clients` clients on `task`, each sending up to 20 000 requests.
    pub(crate) fn start(
        serve: &Arc<Serve>,
        task: &'static str,
        clients: i64,
        accept: fn(i64, i64, i64) -> bool,
    ) -> Load {
        Load::start_bounded(serve, task, clients, 20_000, accept)
    }

    /// [`Load::start`] with at most `per_client` requests from each client.
    pub(crate) fn start_bounded(
        serve: &Arc<Serve>,
        task: &'static str,
        clients: i64,
        per_client: i64,
        accept: fn(i64, i64, i64) -> bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let max_latency_us = Arc::new(AtomicU64::new(0));
        let clients = (0..clients)
            .map(|n| {
                let (serve, stop, ok, failures, max_latency_us) = (
                    serve.clone(),
                    stop.clone(),
                    ok.clone(),
                    failures.clone(),
                    max_latency_us.clone(),
                );
                std::thread::spawn(move || {
                    let client = client();
                    // Bounded in count as well as by `finish`.
                    for i in 0..per_client {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let started = Instant::now();
                        let outcome = client
                            .post(serve.url(&format!("/{task}")))
                            .json(&serde_json::json!({"value1": n, "value2": i}))
                            .send()
                            .map_err(|e| e.to_string())
                            .and_then(|r| {
                                let status = r.status().as_u16();
                                let body = r.text().map_err(|e| e.to_string())?;
                                match result_of(&body) {
                                    Some(r) if status == 200 && accept(n, i, r) => Ok(()),
                                    _ => Err(format!("{status}: {body}")),
                                }
                            });
                        let took = started.elapsed().as_micros() as u64;
                        max_latency_us.fetch_max(took, Ordering::SeqCst);
                        match outcome {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            max_latency_us,
            clients,
        }
    }

    /// Stops the load and reports what it saw.
    pub(crate) fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            c.join().unwrap();
        }
        LoadReport {
            ok: self.ok.load(Ordering::SeqCst),
            failures: std::mem::take(&mut *self.failures.lock().unwrap()),
            max_latency_us: self.max_latency_us.load(Ordering::SeqCst),
        }
    }
}

/// The files below `dir` as a zip archive, as `PUT /<task>` takes them.
pub(crate) fn zip_dir(dir: &std::path::Path) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            zip.start_file(rel, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(&std::fs::read(entry.path()).unwrap())
                .unwrap();
        }
    }
    zip.finish().unwrap();
    buf.into_inner()
}

/// `PUT /<task>` of a zip (with a bearer `token`, if given): status and body.
pub(crate) fn put_zip(
    serve: &Serve,
    task: &str,
    zip: Vec<u8>,
    token: Option<&str>,
) -> (u16, String) {
    let form = reqwest::blocking::multipart::Form::new().part(
        "zip_file",
        reqwest::blocking::multipart::Part::bytes(zip).file_name("task.zip"),
    );
    let mut request = client().put(serve.url(&format!("/{task}"))).multipart(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .unwrap_or_else(|e| panic!("PUT /{task}: {e:?}"));
    (response.status().as_u16(), response.text().unwrap())
}

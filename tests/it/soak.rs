//! The reliability soak (issue 15): serve and apply on the local platform, driven the way a
//! hostile or unlucky user would, with the checks that matter after every scenario.
//!
//! ```sh
//! scripts/soak            # the full soak (several minutes)
//! scripts/soak --short    # the short one CI runs from `scripts/test` (well under a minute)
//! ```
//!
//! (`scripts/soak` runs `cargo test --release --test it soak -- --ignored --nocapture` with
//! `FUSIONIZER_SOAK=full|short`; `FUSIONIZER_SOAK_SEED=N` replays the random choices of a run,
//! whose seed is printed first.)
//!
//! Scenarios:
//! - **regroup + crash**: the schedule regroups under load, and at every switch, once the new
//!   function's workers appear, a worker of a function still serving is killed (`kill -9`);
//! - **uploads + deletes**: waves of concurrent good uploads, bad uploads and deletes of one
//!   task, while another task is under load;
//! - **SIGTERM**: serve is stopped at a random point of its start, in the middle of a regroup
//!   under load, and under steady load;
//! - **kill -9 apply**: `apply` is killed at a random point (one round waits for its readiness
//!   check's worker first), then `plan` and `apply` run again.
//!
//! After each it checks that every acknowledged write is live (after a wave of uploads and
//! deletes the task is in the state one of the wave's acknowledged requests left, and serves
//! what is stored), that no request failed that the design says must not (a crashed worker may
//! cost the request it was running, a 502; a shutdown refuses new requests, with a 503 or at the
//! socket; nothing else may fail), that no process (worker, serve, apply) and no file (socket
//! directory, run record, staged version or upload) is left behind, and that `plan` is clean.
//! It prints its figures as a table and fails if any check failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{
    cache_dir, client, entries, poll_within, process_running, put_zip, result_of, wait_for,
    workers_of, zip_dir, Load, Serve, TestEnv,
};

/// At most how many requests each load client sends (the load also stops with its scenario).
const MAX_REQUESTS: i64 = 500_000;

/// How much of everything a run does.
struct Size {
    /// Scheduled regroupings in the regroup scenario.
    switches: u32,
    /// Waves of concurrent uploads and deletes.
    waves: u32,
    /// Rounds of the SIGTERM and the kill -9 scenarios.
    rounds: u32,
}

/// One scenario's figures, a row of the table.
#[derive(Default)]
struct Row {
    scenario: &'static str,
    rounds: u32,
    requests: u64,
    /// Failed requests the design allows (a crashed worker's request, a refused one at shutdown).
    allowed: usize,
    /// Failed requests it does not allow.
    unexpected: usize,
    writes: usize,
    orphans: usize,
    leaked: usize,
    plan: String,
}

/// Seeded pseudo-random choices (xorshift64*), so a run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Everything a scenario found wrong, with its context.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            eprintln!("  PROBLEM: {what}");
            self.0.push(what);
        }
    }
}

#[test]
#[ignore = "the reliability soak: run it with `scripts/soak` (or `scripts/soak --short`)"]
fn soak() {
    let full = std::env::var("FUSIONIZER_SOAK").is_ok_and(|v| v == "full");
    let size = if full {
        Size {
            switches: 20,
            waves: 40,
            rounds: 10,
        }
    } else {
        Size {
            switches: 3,
            waves: 3,
            rounds: 1,
        }
    };
    let seed = std::env::var("FUSIONIZER_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!(
        "soak ({}), seed {seed} (replay with FUSIONIZER_SOAK_SEED={seed})",
        if full { "full" } else { "short" }
    );
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut problems = Problems::default();
    let rows = vec![
        regroup_with_crashes(&size, &mut problems),
        uploads_and_deletes(&size, &mut rng, &mut problems),
        sigterm_anywhere(&size, &mut rng, &mut problems),
        kill_apply(&size, &mut rng, &mut problems),
    ];
    eprintln!("\n{}", table(&rows));
    eprintln!("soak took {:.0?}", started.elapsed());
    assert!(
        problems.0.is_empty(),
        "{} problem(s):\n{}",
        problems.0.len(),
        problems.0.join("\n")
    );
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | rounds | requests | failed (allowed) | failed (unexpected) | acknowledged writes checked | orphans | leaked files | plan |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.rounds,
            r.requests,
            r.allowed,
            r.unexpected,
            r.writes,
            r.orphans,
            r.leaked,
            r.plan
        ));
    }
    out
}

/// A copy of the quickstart as project `name`, with `fusion.toml` as given, and a temp dir
/// (`TMPDIR` of every command run here) whose leftovers count as leaked files.
fn project(name: &str, toml: &str) -> (TestEnv, PathBuf) {
    let env = TestEnv::example("quickstart");
    env.write(&[("fusion.toml", &toml.replace("NAME", name))]);
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    (env, tmp)
}

/// `after` offsets every `every` seconds, alternating alone and fused, `switches` times.
fn alternating_phases(switches: u32, every: u64) -> String {
    let mut toml = String::from(
        "[project]\nname = \"NAME\"\n\n[tasks]\ntaska = \"tasks/taska\"\ntaskb = \"tasks/taskb\"\n",
    );
    for k in 0..=switches {
        let groups = if k % 2 == 0 {
            "[[\"taska\"], [\"taskb\"]]"
        } else {
            "[[\"taska\", \"taskb\"]]"
        };
        toml.push_str(&format!(
            "\n[[phase]]\nafter = \"{}s\"\ngroups = {groups}\n",
            u64::from(k) * every
        ));
    }
    toml
}

fn spawn_serve(env: &TestEnv, tmp: &Path, args: &[&str]) -> Serve {
    Serve::spawn(env, &[("TMPDIR", tmp.to_str().unwrap())], args)
}

/// A `fusionizer` command in the project, with the soak's `TMPDIR` and venv cache.
fn command(env: &TestEnv, tmp: &Path, args: &[&str]) -> std::process::Output {
    env.cmd()
        .env("TMPDIR", tmp)
        .env("FUSIONIZER_CACHE_DIR", cache_dir())
        .args(args)
        .output()
        .unwrap()
}

/// Stops serve with SIGTERM; checks it exits 0 after a full drain (nothing cut off).
fn stop(mut serve: Serve, what: &str, problems: &mut Problems) {
    serve.signal("TERM");
    let code = serve.wait_exit();
    let log = serve.log();
    problems.check(code == Some(0), || {
        format!("{what}: serve exited {code:?} on SIGTERM\n{log}")
    });
    problems.check(!log.contains("cutting them off"), || {
        format!("{what}: the shutdown cut requests off\n{log}")
    });
}

/// Workers of `project` still running once a deadline passed (they may take a moment to go).
fn orphans(project: &str) -> usize {
    poll_within(Duration::from_secs(30), || workers_of(project).is_empty())
        .map_or_else(|| workers_of(project).len(), |()| 0)
}

/// Files a clean stop must not leave: socket directories in the soak's `TMPDIR`, run records,
/// store entries no function links to, staging and aside directories of uploads.
fn leaked(env: &TestEnv, tmp: &Path) -> Vec<String> {
    let state = env.project().join(".fusionizer");
    let local = state.join("local");
    let mut found: Vec<String> = entries(tmp)
        .into_iter()
        .map(|e| format!("$TMPDIR/{e}"))
        .collect();
    found.extend(
        entries(&local.join("run"))
            .into_iter()
            .map(|e| format!("local/run/{e}")),
    );
    let linked: Vec<String> = entries(&local.join("functions"))
        .into_iter()
        .filter_map(|f| {
            let target = std::fs::read_link(local.join("functions").join(f)).ok()?;
            Some(target.file_name()?.to_string_lossy().into_owned())
        })
        .collect();
    found.extend(
        entries(&local.join("store"))
            .into_iter()
            .filter(|e| !linked.contains(e))
            .map(|e| format!("local/store/{e}")),
    );
    found.extend(
        entries(&state.join("uploads"))
            .into_iter()
            .filter(|e| e.starts_with('.'))
            .map(|e| format!("uploads/{e}")),
    );
    found
}

/// `plan --detailed-exitcode` with `args`: "clean" when it finds nothing to change.
fn plan(env: &TestEnv, tmp: &Path, args: &[&str], what: &str, problems: &mut Problems) -> String {
    let mut all = vec!["plan", "--detailed-exitcode"];
    all.extend_from_slice(args);
    let out = command(env, tmp, &all);
    let clean = out.status.code() == Some(0);
    problems.check(clean, || {
        format!(
            "{what}: plan is not clean\n{}",
            crate::support::transcript(&out)
        )
    });
    if clean { "clean" } else { "CHANGES" }.to_string()
}

/// Records orphans and leaked files into `row`, as problems when there are any.
fn check_leftovers(
    row: &mut Row,
    env: &TestEnv,
    tmp: &Path,
    project: &str,
    what: &str,
    problems: &mut Problems,
) {
    let left = orphans(project);
    problems.check(left == 0, || {
        format!("{what}: {left} worker(s) left running")
    });
    row.orphans += left;
    let files = leaked(env, tmp);
    problems.check(files.is_empty(), || format!("{what}: leaked {files:?}"));
    row.leaked += files.len();
}

/// Regroup under load with a crash injected mid-switch.
fn regroup_with_crashes(size: &Size, problems: &mut Problems) -> Row {
    let name = "soak-regroup";
    let every = 3;
    let (env, tmp) = project(name, &alternating_phases(size.switches, every));
    let mut row = Row {
        scenario: "regroup under load, worker killed mid-switch",
        rounds: size.switches,
        ..Row::default()
    };
    let serve = Arc::new({
        let mut serve = spawn_serve(&env, &tmp, &[]);
        serve.wait_healthy();
        serve
    });
    let load = Load::start_bounded(&serve, "taska", 2, MAX_REQUESTS, |n, i, sum| sum == n + i);
    // The crash injector: whenever a function's workers appear for a switch, a worker of a
    // function that serves (one in the route table) is killed.
    let injector = {
        let prefix = format!("{name}-");
        let switches = size.switches;
        let routes_url = serve.url("/-/routes");
        std::thread::spawn(move || {
            let function = |args: &[String]| {
                args.windows(2)
                    .find(|w| w[0] == "--function")
                    .map(|w| w[1].clone())
                    .unwrap_or_default()
            };
            // The functions serve routes to now: ready, serving.
            let routed = || -> std::collections::BTreeSet<String> {
                client()
                    .get(&routes_url)
                    .send()
                    .ok()
                    .and_then(|r| r.json::<serde_json::Value>().ok())
                    .and_then(|doc| {
                        Some(
                            doc["routes"]
                                .as_object()?
                                .values()
                                .filter_map(|r| r["function"].as_str().map(str::to_string))
                                .collect(),
                        )
                    })
                    .unwrap_or_default()
            };
            let mut known: std::collections::BTreeSet<String> =
                workers_of(&prefix[..prefix.len() - 1])
                    .iter()
                    .map(|(_, args)| function(args))
                    .collect();
            let mut kills = 0;
            let deadline =
                Instant::now() + Duration::from_secs(60 + 3 * every * u64::from(switches));
            while kills < switches && Instant::now() < deadline {
                let workers = workers_of(&prefix[..prefix.len() - 1]);
                let now: std::collections::BTreeSet<String> =
                    workers.iter().map(|(_, args)| function(args)).collect();
                if now.iter().any(|f| !known.contains(f)) {
                    // A function that reappears while routed is a worker that restarted (after
                    // a kill of ours), not a switch. Only a routed function is killed: a switch
                    // may start more than one new function, and killing one of those before it
                    // is ready fails the deploy (which is right, but not what this scenario
                    // injects).
                    let routed = routed();
                    if now
                        .iter()
                        .any(|f| !known.contains(f) && !routed.contains(f))
                    {
                        if let Some((pid, _)) = workers
                            .iter()
                            .find(|(_, args)| routed.contains(&function(args)))
                        {
                            let _ = Command::new("kill")
                                .args(["-KILL", &pid.to_string()])
                                .status();
                            kills += 1;
                        }
                    }
                }
                known = now;
                std::thread::sleep(Duration::from_millis(10));
            }
            kills
        })
    };
    let expected = f64::from(size.switches) + 1.0;
    wait_for(
        "every scheduled regroup",
        Duration::from_secs(120 + every * u64::from(size.switches) * 4),
        || (serve.metric("fusionizer_transitions_total", "") >= expected).then_some(()),
    );
    let kills: u32 = injector.join().unwrap();
    let killed = kills as usize;
    let report = load.finish();
    row.requests = report.ok + report.failures.len() as u64;
    let transitions_failed = serve.metric("fusionizer_transitions_total", "result=\"failed\"");
    problems.check(transitions_failed == 0.0, || {
        format!(
            "regroup: {transitions_failed} regroup(s) failed\n{}",
            serve.log()
        )
    });
    // A killed worker may cost the request it was running (a 502, seen through `taska` when
    // `taskb`'s worker dies), and nothing else.
    let (crashed, other): (Vec<&String>, Vec<&String>) =
        report.failures.iter().partition(|f| f.starts_with("502:"));
    row.allowed = crashed.len().min(killed);
    row.unexpected = other.len() + crashed.len().saturating_sub(killed);
    problems.check(row.unexpected == 0, || {
        format!(
            "regroup: {} unexpected failure(s) ({kills} worker(s) killed): {:?}",
            row.unexpected,
            &report.failures[..report.failures.len().min(5)]
        )
    });
    problems.check(kills == size.switches, || {
        format!(
            "regroup: only {kills} of {} crashes injected",
            size.switches
        )
    });
    let serve = Arc::into_inner(serve).unwrap();
    stop(serve, "regroup", problems);
    check_leftovers(&mut row, &env, &tmp, name, "regroup", problems);
    let last = (size.switches + 1).to_string();
    row.plan = plan(&env, &tmp, &["--phase", &last], "regroup", problems);
    row
}

/// What a wave of uploads and deletes can leave the task as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Absent,
    Version(i64),
}

/// The upload task's state as served and as stored.
fn observe(serve: &Serve, env: &TestEnv) -> (State, State) {
    let response = client()
        .post(serve.url("/up"))
        .json(&serde_json::json!({"value1": 0, "value2": 0}))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().unwrap();
    let served = match (status, result_of(&body)) {
        (200, Some(offset)) => State::Version(offset),
        (404, _) => State::Absent,
        _ => panic!("POST /up answered {status}: {body}"),
    };
    let stored = match std::fs::read_to_string(env.project().join(".fusionizer/uploads/up/main.py"))
    {
        Ok(code) => code
            .split("body[\"value2\"] + ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .map_or(State::Version(0), State::Version),
        Err(_) => State::Absent,
    };
    (served, stored)
}

/// Concurrent uploads (good and bad) and deletes of one task under load on another.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: its load, its actors and its checks"
)]
fn uploads_and_deletes(size: &Size, rng: &mut Rng, problems: &mut Problems) -> Row {
    let name = "soak-uploads";
    let (env, tmp) = project(
        name,
        "[project]\nname = \"NAME\"\n\n[tasks]\ntaskb = \"tasks/taskb\"\n",
    );
    let code = env.project().join("tasks/taskb");
    let version = |offset: i64| -> Vec<u8> {
        let dir = env.root().join(format!("v{offset}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(code.join("function.yaml"), dir.join("function.yaml")).unwrap();
        let main = std::fs::read_to_string(code.join("main.py"))
            .unwrap()
            .replace(
                "body[\"value1\"] + body[\"value2\"]",
                &format!("body[\"value1\"] + body[\"value2\"] + {offset}"),
            );
        std::fs::write(dir.join("main.py"), main).unwrap();
        zip_dir(&dir)
    };
    let bad = {
        let dir = env.root().join("bad");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(code.join("function.yaml"), dir.join("function.yaml")).unwrap();
        std::fs::write(dir.join("main.py"), "def handler(context, event:\n").unwrap();
        zip_dir(&dir)
    };
    let mut row = Row {
        scenario: "concurrent uploads and deletes under load",
        rounds: size.waves,
        ..Row::default()
    };
    let serve = Arc::new({
        let mut serve = spawn_serve(&env, &tmp, &[]);
        serve.wait_healthy();
        serve
    });
    let load = Load::start_bounded(&serve, "taskb", 2, MAX_REQUESTS, |n, i, sum| sum == n + i);
    let mut state = State::Absent;
    for wave in 1..=i64::from(size.waves) {
        // Two good versions, a bad one and a delete, in a random order, all at once.
        enum Op {
            Put(i64, Vec<u8>),
            Bad(Vec<u8>),
            Delete,
        }
        let mut ops = vec![
            Op::Put(wave * 1000, version(wave * 1000)),
            Op::Put(wave * 1000 + 1, version(wave * 1000 + 1)),
            Op::Bad(bad.clone()),
            Op::Delete,
        ];
        for i in (1..ops.len()).rev() {
            ops.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let barrier = Arc::new(std::sync::Barrier::new(ops.len()));
        let answers: Vec<(Option<State>, &'static str, u16, String)> = ops
            .into_iter()
            .map(|op| {
                let (serve, barrier) = (serve.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    match op {
                        Op::Put(offset, zip) => {
                            let (status, body) = put_zip(&serve, "up", zip, None);
                            (Some(State::Version(offset)), "good upload", status, body)
                        }
                        Op::Bad(zip) => {
                            let (status, body) = put_zip(&serve, "up", zip, None);
                            (None, "bad upload", status, body)
                        }
                        Op::Delete => {
                            let response = client().delete(serve.url("/up")).send().unwrap();
                            let status = response.status().as_u16();
                            (
                                Some(State::Absent),
                                "delete",
                                status,
                                response.text().unwrap(),
                            )
                        }
                    }
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let mut acknowledged = Vec::new();
        for (outcome, what, status, body) in &answers {
            let expected: &[u16] = match *what {
                "good upload" => &[200],
                "bad upload" => &[422],
                _ => &[200, 404],
            };
            problems.check(expected.contains(status), || {
                format!("uploads, wave {wave}: {what} answered {status}: {body}")
            });
            if *status == 200 {
                acknowledged.push(outcome.expect("only writes are acknowledged"));
            }
        }
        // The wave's requests ran one after another in some order; the task is now in the
        // state the last acknowledged one left (the one before the wave if none was).
        let possible = if acknowledged.is_empty() {
            vec![state]
        } else {
            acknowledged.clone()
        };
        let (served, stored) = observe(&serve, &env);
        row.writes += acknowledged.len();
        problems.check(served == stored && possible.contains(&served), || {
            format!(
                "uploads, wave {wave}: serves {served:?}, stores {stored:?}; acknowledged {acknowledged:?}"
            )
        });
        state = served;
    }
    let report = load.finish();
    row.requests = report.ok + report.failures.len() as u64;
    row.unexpected = report.failures.len();
    problems.check(report.failures.is_empty(), || {
        format!(
            "uploads: requests to the other task failed: {:?}",
            &report.failures[..report.failures.len().min(5)]
        )
    });
    let serve = Arc::into_inner(serve).unwrap();
    stop(serve, "uploads", problems);
    check_leftovers(&mut row, &env, &tmp, name, "uploads", problems);
    // `fusionizer plan` does not know uploads; serve does: a restart must find nothing to
    // change, and serve what was acknowledged last.
    let mut serve = spawn_serve(&env, &tmp, &[]);
    serve.wait_healthy();
    let (served, stored) = observe(&serve, &env);
    problems.check(served == state && stored == state, || {
        format!("uploads: after a restart serves {served:?}, stores {stored:?}, expected {state:?}")
    });
    let log = serve.log();
    // serve shows a `Planned …` line only for a plan with changes.
    let clean = !log.contains(" Planned ");
    problems.check(clean, || {
        format!("uploads: the restart changed functions\n{log}")
    });
    row.plan = if clean {
        "clean (as serve plans it)".to_string()
    } else {
        "CHANGES".to_string()
    };
    stop(serve, "uploads restart", problems);
    check_leftovers(&mut row, &env, &tmp, name, "uploads restart", problems);
    row
}

/// Splits load failures into those a shutdown may cause (a 503 refusal, or a connection the
/// server had not taken) and the others.
fn shutdown_failures(failures: &[String]) -> (usize, Vec<&String>) {
    let (refused, other): (Vec<&String>, Vec<&String>) = failures.iter().partition(|f| {
        f.starts_with("503: serve is shutting down") || !f.starts_with(|c: char| c.is_ascii_digit())
    });
    (refused.len(), other)
}

/// SIGTERM during start, mid-regroup under load, and under steady load.
fn sigterm_anywhere(size: &Size, rng: &mut Rng, problems: &mut Problems) -> Row {
    let name = "soak-sigterm";
    let (env, tmp) = project(name, &alternating_phases(size.rounds * 2 + 2, 2));
    let mut row = Row {
        scenario: "SIGTERM during start, regroup and steady load",
        rounds: size.rounds * 3,
        ..Row::default()
    };
    for round in 1..=size.rounds {
        // During the start.
        let serve = spawn_serve(&env, &tmp, &["--phase", "1", "--no-schedule"]);
        serve.wait_for_log("Deploying", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        stop(serve, &format!("sigterm round {round}, start"), problems);
        check_leftovers(&mut row, &env, &tmp, name, "sigterm at start", problems);

        // Mid-regroup, under load: once the next phase's function has workers.
        let serve = Arc::new({
            let mut serve = spawn_serve(&env, &tmp, &[]);
            serve.wait_healthy();
            serve
        });
        let load = Load::start_bounded(&serve, "taska", 2, MAX_REQUESTS, |n, i, sum| sum == n + i);
        let before: Vec<u32> = workers_of(name).iter().map(|(pid, _)| *pid).collect();
        wait_for("a regroup to start", Duration::from_secs(60), || {
            workers_of(name)
                .iter()
                .any(|(pid, _)| !before.contains(pid))
                .then_some(())
        });
        serve.signal("TERM");
        let report = load.finish();
        let (refused, other) = shutdown_failures(&report.failures);
        row.requests += report.ok + report.failures.len() as u64;
        row.allowed += refused;
        row.unexpected += other.len();
        problems.check(other.is_empty(), || {
            format!(
                "sigterm mid-regroup: failures {:?}",
                &other[..other.len().min(5)]
            )
        });
        let serve = Arc::into_inner(serve).unwrap();
        stop(serve, &format!("sigterm round {round}, regroup"), problems);
        check_leftovers(&mut row, &env, &tmp, name, "sigterm mid-regroup", problems);

        // Steady load.
        let serve = Arc::new({
            let mut serve = spawn_serve(&env, &tmp, &["--phase", "1", "--no-schedule"]);
            serve.wait_healthy();
            serve
        });
        let load = Load::start_bounded(&serve, "taska", 2, MAX_REQUESTS, |n, i, sum| sum == n + i);
        wait_for("some load", Duration::from_secs(60), || {
            (serve.metric("fusionizer_requests_total", "task=\"taska\"") >= 20.0).then_some(())
        });
        std::thread::sleep(Duration::from_millis(rng.below(1000)));
        serve.signal("TERM");
        let report = load.finish();
        let (refused, other) = shutdown_failures(&report.failures);
        row.requests += report.ok + report.failures.len() as u64;
        row.allowed += refused;
        row.unexpected += other.len();
        problems.check(other.is_empty(), || {
            format!(
                "sigterm under load: failures {:?}",
                &other[..other.len().min(5)]
            )
        });
        let serve = Arc::into_inner(serve).unwrap();
        stop(serve, &format!("sigterm round {round}, steady"), problems);
        check_leftovers(&mut row, &env, &tmp, name, "sigterm under load", problems);
    }
    // Whatever the signals interrupted, serve recovers it and `plan` agrees.
    let mut serve = spawn_serve(&env, &tmp, &["--phase", "1", "--no-schedule"]);
    serve.wait_healthy();
    stop(serve, "sigterm recovery", problems);
    check_leftovers(&mut row, &env, &tmp, name, "sigterm recovery", problems);
    row.plan = plan(&env, &tmp, &["--phase", "1"], "sigterm", problems);
    row
}

/// `kill -9` of `apply` at a random point, then `plan` and `apply` again.
fn kill_apply(size: &Size, rng: &mut Rng, problems: &mut Problems) -> Row {
    let name = "soak-apply";
    let (env, tmp) = project(name, &alternating_phases(1, 40));
    let mut row = Row {
        scenario: "kill -9 of apply, then plan and apply",
        rounds: size.rounds,
        ..Row::default()
    };
    let applied = command(&env, &tmp, &["apply", "--phase", "1", "--auto-approve"]);
    problems.check(applied.status.success(), || {
        crate::support::transcript(&applied)
    });
    for round in 1..=size.rounds {
        let phase = if round % 2 == 1 { "2" } else { "1" };
        let mut apply = env_command(&env, &tmp)
            .args(["apply", "--phase", phase, "--auto-approve"])
            .spawn()
            .unwrap();
        if round % 2 == 1 {
            // While its readiness check runs a worker.
            let before: Vec<u32> = workers_of(name).iter().map(|(pid, _)| *pid).collect();
            wait_for("apply's readiness check", Duration::from_secs(60), || {
                workers_of(name)
                    .iter()
                    .any(|(pid, _)| !before.contains(pid))
                    .then_some(())
            });
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(1500)));
        }
        let pid = apply.id();
        apply.kill().unwrap();
        apply.wait().unwrap();
        problems.check(!process_running(pid), || "apply still runs".to_string());
        let left = orphans(name);
        problems.check(left == 0, || {
            format!("kill -9 apply: {left} worker(s) left running")
        });
        row.orphans += left;
        // The next command cleans up after the dead one; then apply again.
        let planned = command(&env, &tmp, &["plan", "--phase", phase]);
        problems.check(planned.status.success(), || {
            crate::support::transcript(&planned)
        });
        let applied = command(&env, &tmp, &["apply", "--phase", phase, "--auto-approve"]);
        problems.check(applied.status.success(), || {
            crate::support::transcript(&applied)
        });
        check_leftovers(&mut row, &env, &tmp, name, "kill -9 apply", problems);
        row.plan = plan(&env, &tmp, &["--phase", phase], "kill -9 apply", problems);
    }
    row
}

/// A `fusionizer` command to spawn, set up like [`command`].
fn env_command(env: &TestEnv, tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fusionizer"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.root().join("home"))
        .env("NO_COLOR", "1")
        .env("TMPDIR", tmp)
        .env("FUSIONIZER_CACHE_DIR", cache_dir())
        .current_dir(env.project())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(python) = std::env::var_os("FUSIONIZER_PYTHON") {
        cmd.env("FUSIONIZER_PYTHON", python);
    }
    cmd
}

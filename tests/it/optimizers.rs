//! Optimizers inside serve (`[optimizer]`, docs/optimizers.md), end to end on `examples/iot`
//! with real workers: each program of `examples/optimizers/` regroups live under load without a
//! failed request; a broken program leaves the grouping alone and the log says why; the
//! `feedback` optimizer converges within three intervals and stays there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::{client, wait_for, Lazy, Serve, TestEnv};

/// The groupings on `examples/iot`: every task alone, and the synchronously connected tasks
/// together with `archive` (called asynchronously) apart.
const ALONE: &[&[&str]] = &[
    &["archive"],
    &["enrich"],
    &["ingest"],
    &["store"],
    &["validate"],
];
const PROPOSAL: &[&[&str]] = &[&["archive"], &["enrich", "ingest", "store", "validate"]];

fn groups(g: &[&[&str]]) -> Vec<Vec<String>> {
    g.iter()
        .map(|g| g.iter().map(ToString::to_string).collect())
        .collect()
}

/// `examples/iot` with `optimizer` appended to its fusion.toml.
fn iot(optimizer: &str) -> TestEnv {
    let env = TestEnv::example("iot");
    let toml = std::fs::read_to_string(env.project().join("fusion.toml")).unwrap();
    env.write(&[("fusion.toml", &format!("{toml}\n{optimizer}"))]);
    env
}

/// The live grouping (sorted) and who chose it, from `/-/routes`.
fn live(serve: &Serve) -> (Vec<Vec<String>>, String) {
    let routes: Value = serde_json::from_str(&serve.text("/-/routes")).unwrap();
    let mut by_function: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (task, route) in routes["routes"].as_object().unwrap() {
        by_function
            .entry(route["function"].as_str().unwrap().to_string())
            .or_default()
            .push(task.clone());
    }
    let grouping = fusionizer::schedule::Grouping::new(by_function.into_values()).into_groups();
    let source = routes["grouping"]["source"].as_str().unwrap().to_string();
    (grouping, source)
}

/// Closed-loop readings into `POST /ingest` from `clients` threads until [`Readings::finish`];
/// an answer counts as ok when it is 200 with the right Fahrenheit.
struct Readings {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Readings {
    fn start(serve: &Arc<Serve>, clients: u32) -> Readings {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|n| {
                let (serve, stop, ok, failures) =
                    (serve.clone(), stop.clone(), ok.clone(), failures.clone());
                std::thread::spawn(move || {
                    let client = client();
                    // Bounded in count as well as by `finish`.
                    for i in 0..50_000u32 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let celsius = f64::from(i % 60) - 10.0;
                        let outcome = client
                            .post(serve.url("/ingest"))
                            .json(&serde_json::json!({"device": format!("t-{n}"), "celsius": celsius}))
                            .send()
                            .map_err(|e| e.to_string())
                            .and_then(|r| {
                                let status = r.status().as_u16();
                                let body = r.text().map_err(|e| e.to_string())?;
                                let fahrenheit = serde_json::from_str::<Value>(&body)
                                    .ok()
                                    .and_then(|v| v["fahrenheit"].as_f64());
                                let want = (celsius * 9.0 / 5.0 + 32.0) * 100.0;
                                match fahrenheit {
                                    Some(f) if status == 200 && (f * 100.0 - want).abs() < 1.0 => {
                                        Ok(())
                                    }
                                    _ => Err(format!("{status}: {body}")),
                                }
                            });
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
        Readings {
            stop,
            ok,
            failures,
            threads,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop_and_join();
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.ok.load(Ordering::SeqCst), failures)
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Stops the clients when a test fails half-way too, so that they drop their handles on serve
/// and serve is stopped with the test.
impl Drop for Readings {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn optimizer_program(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/optimizers")
        .join(name)
        .display()
        .to_string()
}

/// Both example programs, each driven through serve: under load, the live grouping becomes the
/// synchronously connected tasks with `archive` apart (`hottest_edge.py` gets there one edge
/// per run), the routes and metrics say a `command` optimizer chose it, `fusionizer status`
/// warns that fusion.toml no longer describes it, and not a request fails.
#[test]
fn each_example_command_optimizer_regroups_live_under_load_without_a_failed_request() {
    for program in ["threshold.py", "hottest_edge.py"] {
        let env = iot(&format!(
            "[optimizer]\nkind = \"command\"\ncommand = [\"python3\", \"{}\"]\ninterval = \"1s\"\nmin-calls = 3\nstable-intervals = 1\ncooldown = \"1s\"\ntimeout = \"20s\"\n",
            optimizer_program(program)
        ));
        let serve = Arc::new(Serve::start(&env, &[]));
        assert_eq!(live(&serve), (groups(ALONE), "static".to_string()));
        let readings = Readings::start(&serve, 2);
        wait_for(
            format!("`{program}` to regroup to the proposal"),
            Duration::from_secs(240),
            || (live(&serve).0 == groups(PROPOSAL)).then_some(()),
        );
        // Some requests after the last switch, too.
        let after = readings.ok() + 20;
        wait_for(
            "requests after the regroup",
            Duration::from_secs(60),
            || (readings.ok() >= after).then_some(()),
        );
        let (ok, failures) = readings.finish();
        assert!(
            failures.is_empty(),
            "`{program}`: {} of {} requests failed: {:?}\n{}",
            failures.len(),
            ok + failures.len() as u64,
            &failures[..failures.len().min(5)],
            serve.log()
        );
        assert_eq!(live(&serve), (groups(PROPOSAL), "command".to_string()));
        let log = serve.log();
        assert!(log.contains("command optimizer, round "), "{log}");
        assert!(
            log.contains("Regrouping [archive] [enrich] [ingest] [store] [validate] -> "),
            "{log}"
        );
        // The regroup is counted when it ends, after its old functions are drained (the
        // routes switched before that).
        wait_for(
            Lazy(|| {
                format!(
                    "the command regroup to be counted:\n{}",
                    serve.text("/-/metrics")
                )
            }),
            Duration::from_secs(60),
            || serve.metric("fusionizer_transitions_total", "reason=\"command\"") >= 1.0,
        );
        // The regroup's old functions are drained and deleted after the switch: `status` reads
        // the live grouping once that is done.
        let mut last = String::new();
        let text = wait_for(
            "status to see the optimizer's grouping",
            Duration::from_secs(60),
            || {
                let out = env.cmd().arg("status").output().unwrap();
                last = String::from_utf8_lossy(&out.stdout).into_owned();
                last.contains("warning: fusion.toml no longer describes the live grouping: serve's `command` optimizer regrouped live at ")
                .then(|| last.clone())
            },
        );
        assert!(
            text.contains("  live:         [archive] [enrich, ingest, store, validate]\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "hint: `fusionizer optimize --from {} --live`",
                serve.base
            )),
            "{text}"
        );
        // The hint's command: the change that makes fusion.toml describe the live grouping.
        let out = env
            .cmd()
            .args([
                "optimize",
                "--from",
                &serve.base,
                "--live",
                "--detailed-exitcode",
            ])
            .output()
            .unwrap();
        let diff = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{diff}");
        assert!(
            diff.contains(
                "+groups = [[\"archive\"], [\"enrich\", \"ingest\", \"store\", \"validate\"]]"
            ),
            "{diff}"
        );
    }
}

/// A program that crashes, prints something that is not an answer, runs past its timeout, or
/// proposes an unknown task: each round is logged with the reason, and the grouping stays.
#[test]
fn a_broken_command_optimizer_leaves_the_grouping_unchanged_and_says_why() {
    let env = iot(
        "[optimizer]\nkind = \"command\"\ncommand = [\"python3\", \"broken.py\"]\ninterval = \"1s\"\nstable-intervals = 1\ncooldown = \"1s\"\ntimeout = \"2s\"\n",
    );
    // Misbehaves a different way each run (the count is kept next to it). Relative to the
    // project: the program runs in the project directory.
    env.write(&[(
        "broken.py",
        r#"import json, os, sys, time
count_file = "broken.count"
n = int(open(count_file).read()) if os.path.exists(count_file) else 0
open(count_file, "w").write(str(n + 1))
json.load(sys.stdin)
if n % 4 == 0:
    sys.stderr.write("boom: the optimizer fell over\n")
    sys.exit(3)
elif n % 4 == 1:
    print("this is not JSON")
elif n % 4 == 2:
    time.sleep(30)
else:
    print(json.dumps({"version": 1, "grouping": [["ingest", "nosuchtask"]], "reason": "?"}))
"#,
    )]);
    let serve = Serve::start(&env, &[]);
    for reason in [
        "optimizer command crashed",
        "boom: the optimizer fell over",
        "optimizer command printed invalid JSON",
        "optimizer command timed out after 2s and was killed",
        "unknown task `nosuchtask`",
    ] {
        serve.wait_for_log(reason, Duration::from_secs(120));
    }
    let log = serve.log();
    assert!(log.contains("the grouping stays as it is"), "{log}");
    assert!(!log.contains("Regrouping"), "{log}");
    assert_eq!(live(&serve), (groups(ALONE), "static".to_string()));
    assert_eq!(
        serve.metric("fusionizer_transitions_total", "reason=\"command\""),
        0.0
    );
    let out = env.cmd().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("warning:"), "{text}");
}

/// The `feedback` optimizer on `examples/iot` under steady load: it regroups to the proposal
/// by the third round (two consecutive rounds must agree), then keeps it for the rounds after
/// (a short cooldown, so only the stable proposal keeps it from moving again).
#[test]
fn the_feedback_optimizer_converges_on_iot_within_three_intervals_and_does_not_flap() {
    let env = iot(
        "[optimizer]\nkind = \"feedback\"\ninterval = \"2s\"\nmin-calls = 3\nmin-gain = 0.05\nstable-intervals = 2\ncooldown = \"1s\"\n",
    );
    // Each round's line is logged at info level.
    let serve = Arc::new(Serve::start_with(
        &env,
        &[("FUSIONIZER_LOG", "fusionizer=info")],
        &[],
    ));
    let readings = Readings::start(&serve, 2);
    let round = wait_for(
        "the feedback optimizer to regroup",
        Duration::from_secs(120),
        || {
            let log = serve.log();
            let line = log.lines().find(|l| l.contains("Regrouping "))?;
            let at = line.split("feedback optimizer, round ").nth(1)?;
            at.split(',').next()?.parse::<u32>().ok()
        },
    );
    assert!(round <= 3, "regrouped in round {round}:\n{}", serve.log());
    let last = round + 4;
    serve.wait_for_log(
        &format!("feedback optimizer, round {last}: "),
        Duration::from_secs(120),
    );
    let (ok, failures) = readings.finish();
    assert!(ok > 0);
    assert!(failures.is_empty(), "{failures:?}\n{}", serve.log());
    let log = serve.log();
    assert_eq!(
        log.matches("Regrouping ").count(),
        1,
        "regrouped more than once:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "feedback optimizer, round {}: keeping the grouping: the live grouping is the proposal",
            round + 1
        )),
        "{log}"
    );
    assert_eq!(live(&serve), (groups(PROPOSAL), "feedback".to_string()));
    assert_eq!(
        serve.metric("fusionizer_transitions_total", "reason=\"feedback\""),
        1.0
    );
}

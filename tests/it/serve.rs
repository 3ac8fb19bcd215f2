//! `fusionizer serve` end to end on the local platform: real worker processes, real HTTP on
//! 127.0.0.1, the quickstart in both call styles, regrouping under load, the original project's
//! upload scenario, and graceful shutdown.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{
    add, cache_dir, client, put_zip, result_of, wait_for, zip_dir, Load, Serve, TestEnv,
};

/// The quickstart (original call style) and the native example (`call_function`), alone and
/// fused: the right sum either way; only the unfused call reaches the proxy.
#[test]
fn quickstart_adds_alone_and_fused_in_both_call_styles() {
    for example in ["quickstart", "native"] {
        let env = TestEnv::example(example);
        // Phase 1: every task alone, so the call crosses the proxy. Phase 2: fused, so the same
        // call runs in-process and nothing reaches the proxy.
        let mut last = None;
        for (phase, proxied, in_process) in [("1", 1.0, 0.0), ("2", 0.0, 1.0)] {
            if let Some(serve) = last.take() {
                let code = Serve::terminate(serve);
                assert_eq!(code, Some(0), "{example}: serve did not exit 0 on SIGTERM");
            }
            let serve = Serve::start(&env, &["--phase", phase, "--no-schedule"]);
            let (status, body) = add(&serve, "taska", 40, 2);
            let context = format!("{example}, phase {phase}: {body}");
            assert_eq!(
                (status, result_of(&body)),
                (200, Some(42)),
                "{context}\n{}",
                serve.log()
            );
            let calls = |path| serve.metric("fusionizer_task_calls_total", path);
            assert_eq!(calls("proxied"), proxied, "{context}");
            assert_eq!(calls("in_process"), in_process, "{context}");
            last = Some(serve);
        }
        let serve = last.expect("phase 2 ran");
        let info = serve.text("/taska");
        assert!(
            info.contains("Currently deployed with other Tasks: taskb"),
            "{info}"
        );
        let (status, body) = add(&serve, "nope", 1, 1);
        assert_eq!(status, 404, "{body}");

        // `fusionizer invoke` prints the body; a non-2xx answer exits 1.
        let server = serve.base.trim_start_matches("http://").to_string();
        let out = env
            .cmd()
            .args([
                "invoke",
                "taska",
                "-d",
                r#"{"value1": 1, "value2": 2}"#,
                "--server",
                &server,
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            crate::support::transcript(&out)
        );
        assert_eq!(result_of(&String::from_utf8_lossy(&out.stdout)), Some(3));
        let out = env
            .cmd()
            .args(["invoke", "nope", "--server", &server])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    }
}

/// Issue: regrouping must never refuse or fail a request. Bounded concurrent load runs while
/// serve passes through at least three regroupings.
#[test]
fn regrouping_under_load_fails_no_request() {
    let env = TestEnv::example("quickstart");
    env.write(&[(
        "fusion.toml",
        r#"[project]
name = "loadtest"

[tasks]
taska = "tasks/taska"
taskb = "tasks/taskb"

[[phase]]
after = "0s"
groups = [["taska"], ["taskb"]]

[[phase]]
after = "4s"
groups = [["taska", "taskb"]]

[[phase]]
after = "8s"
groups = [["taska"], ["taskb"]]

[[phase]]
after = "12s"
groups = [["taska", "taskb"]]
"#,
    )]);
    // Warm the venv cache so the schedule, not the first build, dominates.
    drop(Serve::start(&env, &["--no-schedule"]));
    let serve = Arc::new(Serve::start(&env, &[]));
    let load = Load::start(&serve, "taska", 4, |n, i, sum| sum == n + i);
    // Start phase + three scheduled regroupings.
    let transitions = wait_for("three regroupings", Duration::from_secs(180), || {
        let n = serve.metric("fusionizer_transitions_total", "result=\"ok\"");
        (n >= 4.0).then_some(n)
    });
    let report = load.finish();
    eprintln!(
        "regroup under load: {} requests ok, {} failed, {} regroupings, max latency {} µs",
        report.ok,
        report.failures.len(),
        transitions - 1.0,
        report.max_latency_us
    );
    let failures = &report.failures;
    assert!(
        failures.is_empty(),
        "failed requests: {:?}\n{}",
        &failures[..failures.len().min(5)],
        serve.log()
    );
    assert!(report.ok > 0);
}

/// The original project's scenario over HTTP: upload two tasks, invoke, wait for fusion, invoke
/// again, delete one; the other is redeployed alone and still answers. Uploads survive restarts.
#[test]
fn original_upload_scenario() {
    let env = TestEnv::example("quickstart");
    let code = env.root().join("code");
    std::fs::rename(env.project().join("tasks"), &code).unwrap();
    env.write(&[(
        "fusion.toml",
        r#"[project]
name = "uploads"

[tasks]
taska = { upload = true }
taskb = { upload = true }

[[phase]]
after = "0s"
groups = [["taska"], ["taskb"]]

[[phase]]
after = "3s"
groups = [["taska", "taskb"]]
"#,
    )]);
    let serve = Serve::start(&env, &["--no-schedule"]);
    // Nothing uploaded yet: declared but absent.
    assert_eq!(add(&serve, "taska", 1, 1).0, 503);
    let (status, body) = put_zip(&serve, "taskb", zip_dir(&code.join("taskb")), None);
    assert_eq!(
        (status, body.trim()),
        (200, "Successfully deployed Task 'taskb'")
    );
    let (status, body) = put_zip(&serve, "taska", zip_dir(&code.join("taska")), None);
    assert_eq!(
        (status, body.trim()),
        (200, "Successfully deployed Task 'taska'")
    );
    assert_eq!(result_of(&add(&serve, "taska", 2, 3).1), Some(5));
    let info = serve.text("/taska");
    assert!(
        info.contains("Currently deployed with other Tasks: None"),
        "{info}"
    );
    drop(serve);

    // Restart with the schedule: the uploads are still there and get fused at 3s.
    let serve = Serve::start(&env, &[]);
    assert_eq!(result_of(&add(&serve, "taska", 2, 3).1), Some(5));
    wait_for("fusion", Duration::from_secs(120), || {
        let info = client().get(serve.url("/taska")).send().ok()?.text().ok()?;
        info.contains("Currently deployed with other Tasks: taskb")
            .then_some(())
    });
    assert_eq!(result_of(&add(&serve, "taska", 20, 22).1), Some(42));

    // Delete one: the other is redeployed alone and still answers.
    let response = client().delete(serve.url("/taska")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().unwrap().trim(),
        "Successfully deleted Task 'taska'"
    );
    assert_eq!(result_of(&add(&serve, "taskb", 4, 4).1), Some(8));
    let info = serve.text("/taskb");
    assert!(
        info.contains("Currently deployed with other Tasks: None"),
        "{info}"
    );
    assert!(!env.project().join(".fusionizer/uploads/taska").exists());
}

/// Uploads that try to escape, link or explode are refused with a 4xx and write nothing outside
/// their own directory; a path-declared task cannot be replaced or deleted over HTTP; with a
/// token configured, PUT/DELETE need it.
#[test]
fn upload_rejections_and_auth() {
    let env = TestEnv::example("quickstart");
    env.write(&[(
        "fusion.toml",
        "[project]\nname = \"guarded\"\n\n[tasks]\ntaskb = \"tasks/taskb\"\n\n[serve]\ntoken-env = \"TEST_TOKEN\"\n",
    )]);
    let serve = Serve::start_with(&env, &[("TEST_TOKEN", "s3cret")], &[]);
    let code = env.project().join("tasks");
    let good = zip_dir(&code.join("taskb"));
    assert_eq!(put_zip(&serve, "newtask", good.clone(), None).0, 401);
    assert_eq!(
        put_zip(&serve, "newtask", good.clone(), Some("nope")).0,
        401
    );
    let (status, body) = put_zip(&serve, "taskb", good.clone(), Some("s3cret"));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("fusion.toml"), "{body}");

    let mut evil = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut evil);
        zip.start_file("../../escaped.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"x").unwrap();
        zip.finish().unwrap();
    }
    let (status, body) = put_zip(&serve, "evil", evil.into_inner(), Some("s3cret"));
    assert_eq!(status, 422, "{body}");
    let mut link = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut link);
        zip.add_symlink(
            "function.yaml",
            "/etc/passwd",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.finish().unwrap();
    }
    assert_eq!(
        put_zip(&serve, "evil", link.into_inner(), Some("s3cret")).0,
        422
    );
    let mut bomb = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut bomb);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("zeros.bin", options).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..80 {
            zip.write_all(&chunk).unwrap();
        }
        zip.finish().unwrap();
    }
    assert_eq!(
        put_zip(&serve, "evil", bomb.into_inner(), Some("s3cret")).0,
        413
    );
    assert!(!env.root().join("escaped.py").exists());
    assert!(!env.project().join("escaped.py").exists());
    assert!(!env.project().join(".fusionizer/uploads/evil").exists());
    let response = client()
        .delete(serve.url("/taskb"))
        .bearer_auth("s3cret")
        .send()
        .unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(
        client()
            .delete(serve.url("/taskb"))
            .send()
            .unwrap()
            .status(),
        401
    );
}

/// `--watch`: a changed task file is redeployed without a restart; a change that fails to build
/// keeps the previous version serving (a failed regroup leaves the routes alone).
#[test]
fn watch_reloads_changed_tasks_and_keeps_old_routes_on_failure() {
    let env = TestEnv::example("quickstart");
    let serve = Serve::start(&env, &["--phase", "2", "--no-schedule", "--watch"]);
    assert_eq!(result_of(&add(&serve, "taska", 1, 2).1), Some(3));
    let main = env.project().join("tasks/taskb/main.py");
    let code = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        code.replace(
            "body[\"value1\"] + body[\"value2\"]",
            "body[\"value1\"] + body[\"value2\"] + 1000",
        ),
    )
    .unwrap();
    wait_for(
        "the edited task to answer",
        Duration::from_secs(120),
        || (result_of(&add(&serve, "taska", 1, 2).1) == Some(1003)).then_some(()),
    );

    let yaml = env.project().join("tasks/taskb/function.yaml");
    let spec = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(
        &yaml,
        spec.replace(
            "handler: \"main:handler\"",
            "handler: \"main:handler\"\n  build:\n    commands:\n      - \"exit 3\"",
        ),
    )
    .unwrap();
    wait_for("the failed regroup", Duration::from_secs(120), || {
        (serve.metric("fusionizer_transitions_total", "result=\"failed\"") >= 1.0).then_some(())
    });
    assert_eq!(
        result_of(&add(&serve, "taska", 1, 2).1),
        Some(1003),
        "{}",
        serve.log()
    );
}

/// serve refuses a non-loopback listen address unless a token is configured or `--insecure`
/// is given; it says how to fix it.
#[test]
fn non_loopback_listen_needs_a_token_or_insecure() {
    let env = TestEnv::example("quickstart");
    let out = env
        .cmd()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        crate::support::transcript(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on `0.0.0.0:0` (not loopback) without a token"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure"), "{stderr}");
}

/// With `[serve] self-heal = false`, a running serve picks up what a separate
/// `fusionizer apply --phase 2` wrote (within its resync interval) and routes to the new
/// functions, without a restart (with self-heal on, it would put its own grouping back).
#[test]
fn serve_picks_up_a_separate_apply() {
    let env = TestEnv::example("quickstart");
    let file = env.project().join("fusion.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\n[serve]\nself-heal = false\n")).unwrap();
    let serve = Serve::start(&env, &["--phase", "1", "--no-schedule"]);
    let info = serve.text("/taska");
    assert!(info.contains("Function: quickstart-taska\n"), "{info}");
    let out = env
        .cmd()
        .env("FUSIONIZER_CACHE_DIR", cache_dir())
        .args(["apply", "--phase", "2", "--auto-approve"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::transcript(&out)
    );
    wait_for(
        "serve to route to the fused function",
        Duration::from_secs(30),
        || {
            let info = client().get(serve.url("/taska")).send().ok()?.text().ok()?;
            info.contains("Function: quickstart-taska-taskb\n")
                .then_some(())
        },
    );
    assert_eq!(
        result_of(&add(&serve, "taska", 20, 22).1),
        Some(42),
        "{}",
        serve.log()
    );
    assert_eq!(
        serve.metric("fusionizer_task_calls_total", "in_process"),
        1.0
    );
}

/// serve takes the same advisory lock as `fusionizer apply` for each regroup: while another
/// apply holds it, an upload is refused with 503 and nothing changes; once it is free, the same
/// upload goes through.
#[test]
fn serve_regroups_wait_for_the_apply_lock() {
    let env = TestEnv::example("quickstart");
    let serve = Serve::start(&env, &["--phase", "1", "--no-schedule"]);
    let lock_path = {
        let ws = fusionizer::config::load(&env.project().join("fusion.toml")).unwrap();
        let platform = fusionizer::platform::open(&ws.config, None).unwrap();
        fusionizer::lock::lock_path(&ws.config.state_dir(), &platform.identity())
    };
    let zip = zip_dir(&env.project().join("tasks/taskb"));
    let held =
        fusionizer::lock::acquire(&lock_path, "fusionizer apply (test)", Duration::ZERO).unwrap();
    let (status, body) = put_zip(&serve, "extra", zip.clone(), None);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("another apply is changing the platform"),
        "{body}"
    );
    assert!(!env.project().join(".fusionizer/uploads/extra").exists());
    drop(held);
    let (status, body) = put_zip(&serve, "extra", zip, None);
    assert_eq!(
        (status, body.trim()),
        (200, "Successfully deployed Task 'extra'")
    );
    assert_eq!(result_of(&add(&serve, "extra", 2, 2).1), Some(4));
}

/// The original project's README commands, with curl exactly as written there (PUT with
/// `-H "Content-Type: multipart/form-data" -F "zip_file=@…"`, POST, GET, DELETE). Skipped, saying
/// so, where curl is not installed.
#[test]
fn original_readme_curl_commands_work() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let env = TestEnv::example("quickstart");
    env.write(&[("fusion.toml", "[project]\nname = \"curls\"\n\n[tasks]\n")]);
    let zip = env.root().join("taskb.zip");
    std::fs::write(&zip, zip_dir(&env.project().join("tasks/taskb"))).unwrap();
    let serve = Serve::start(&env, &[]);
    let port = serve.base.rsplit(':').next().unwrap().to_string();
    let url = format!("http://localhost:{port}/taskb");
    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl").arg("-sS").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let zip_arg = format!("zip_file=@{}", zip.display());
    let put = curl(&[
        "-X",
        "PUT",
        &url,
        "-H",
        "Content-Type: multipart/form-data",
        "-F",
        &zip_arg,
    ]);
    assert_eq!(put.trim(), "Successfully deployed Task 'taskb'");
    let post = curl(&[
        "-X",
        "POST",
        &url,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"value1": 5, "value2": 3}"#,
    ]);
    assert_eq!(result_of(&post), Some(8), "{post}");
    let get = curl(&["-X", "GET", &url]);
    assert!(
        get.starts_with("Task 'taskb':\nCurrently deployed with other Tasks: None\n"),
        "{get}"
    );
    let delete = curl(&["-X", "DELETE", &url]);
    assert_eq!(delete.trim(), "Successfully deleted Task 'taskb'");
    let after = curl(&["-X", "POST", &url, "-d", "{}"]);
    assert!(after.starts_with("no task `taskb`"), "{after}");
}

/// Re-uploading a task replaces its code without dropping a request: every answer under
/// concurrent load is either the old code's or the new code's, and none fails.
#[test]
fn reupload_under_load_drops_no_request() {
    let env = TestEnv::example("quickstart");
    env.write(&[("fusion.toml", "[project]\nname = \"reup\"\n\n[tasks]\n")]);
    let code = env.project().join("tasks/taskb");
    let v1 = zip_dir(&code);
    let main = code.join("main.py");
    let source = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        source.replace(
            "body[\"value1\"] + body[\"value2\"]",
            "body[\"value1\"] + body[\"value2\"] + 1000",
        ),
    )
    .unwrap();
    let v2 = zip_dir(&code);
    let serve = Arc::new(Serve::start(&env, &[]));
    assert_eq!(put_zip(&serve, "taskb", v1.clone(), None).0, 200);
    let load = Load::start(&serve, "taskb", 3, |n, i, r| {
        r == n + i || r == n + i + 1000
    });
    for zip in [v2.clone(), v1, v2] {
        let (status, body) = put_zip(&serve, "taskb", zip, None);
        assert_eq!(status, 200, "{body}");
    }
    let report = load.finish();
    let failures = &report.failures;
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(report.ok > 0);
    assert_eq!(result_of(&add(&serve, "taskb", 1, 1).1), Some(1002));
}

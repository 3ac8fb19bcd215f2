//! The dashboard (`/-/ui`) in a real browser: headless Chromium, driven over the `DevTools`
//! protocol, loads the page from a serve running a copy of the quickstart whose second phase
//! (the fusion) comes during the test. The rendered DOM must show the functions, the tasks and
//! the call graph's edge, then the regroup, without a reload. `/-/state` is checked against its
//! schema in docs/.
//!
//! Without Chromium the browser part prints why and passes, unless
//! `FUSIONIZER_REQUIRE_BROWSER=1` (CI installs Chromium and sets it). With
//! `FUSIONIZER_UPDATE_SCREENSHOT=1` the screenshot is also written to `docs/dashboard.png`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::support::{add, client, poll_within, result_of, wait_for, Lazy, Serve, TestEnv};

/// The quickstart (its fusion at +40 s: after serve is up and the page has loaded), with a
/// token configured.
const FUSION_TOML: &str = r#"[project]
name = "quickstart"

[tasks]
taska = "tasks/taska"
taskb = "tasks/taskb"

[serve]
token-env = "DASHBOARD_TOKEN"

[[phase]]
after = "0s"
groups = [["taska"], ["taskb"]]

[[phase]]
after = "40s"
groups = [["taska", "taskb"]]
"#;

/// What the test reads from the rendered page, after its scripts ran.
const READ_DOM: &str = r"(() => { try { return JSON.stringify({
  polls: Number(document.body.dataset.polls || 0),
  functions: [...document.querySelectorAll('[data-function]')]
    .map(f => f.dataset.function + ':' + f.dataset.tasks).sort(),
  tasks: [...document.querySelectorAll('tr[data-task]')].map(t => t.dataset.task).sort(),
  workers: document.querySelectorAll('[data-worker-state]').length,
  edges: [...document.querySelectorAll('[data-edge]')]
    .flatMap(e => {
      const edge = e.dataset.edge + ' ' + e.dataset.mode + ' ' + e.dataset.via;
      return [edge, edge + ' ' + e.dataset.count];
    }).sort(),
  current: (document.querySelector('.phase.current') || {dataset: {}}).dataset.phase || null,
  countdown: document.getElementById('countdown').textContent,
  transitions: [...document.querySelectorAll('tr[data-reason]')].map(r => r.dataset.reason),
  proposal: [...document.querySelectorAll('[data-proposal]')].map(p => p.dataset.proposal).join(),
  proposed: ['before', 'after'].map(side =>
    [...document.querySelectorAll('[data-side=' + side + '] .group')].map(g => g.textContent)),
  marker: window.fusionizerTestMarker || null,
  html: document.documentElement.outerHTML.length,
}) } catch (e) { return null } })()";

#[test]
#[expect(clippy::too_many_lines, reason = "one browser session, step by step")]
fn dashboard_shows_the_quickstart_fusing_live_in_a_browser() {
    let env = TestEnv::example("quickstart");
    env.write(&[("fusion.toml", FUSION_TOML)]);
    let serve = Serve::start_with(&env, &[("DASHBOARD_TOKEN", "s3cret")], &[]);

    // Task-to-task calls through the proxy (phase 1: each task alone); more than
    // `[optimizer] min-calls` (10), so the optimizer proposes to fuse the two.
    for i in 0..12 {
        let (status, body) = add(&serve, "taska", i, 3);
        assert_eq!((status, result_of(&body)), (200, Some(i + 3)), "{body}");
    }

    // From loopback `/-/state` needs no token even though one is configured.
    let state = get_json(&serve, "/-/state");
    check_schema(&state);
    assert_eq!(state["project"], "quickstart");
    assert_eq!(state["platform"], "local");
    assert_eq!(state["current_phase"], 1, "{state:#}");
    let functions: Vec<&str> = state["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["quickstart-taska", "quickstart-taskb"]);
    let workers = &state["functions"][0]["workers"];
    assert!(
        workers.as_array().is_some_and(|w| !w.is_empty()
            && w.iter()
                .all(|w| w["pid"].is_u64() || w["state"] == "starting")),
        "local workers with their pids: {workers}"
    );
    let taska = &state["tasks"][0];
    assert_eq!(taska["task"], "taska");
    assert_eq!(taska["requests"], 12, "{taska}");
    assert!(taska["p50_ms"].as_f64().unwrap() > 0.0, "{taska}");
    // The calls to taskb came through the proxy: taskb answered them too.
    assert_eq!(state["tasks"][1]["requests"], 12, "{state:#}");
    assert_eq!(state["transitions"][0]["reason"], "start (phase 1)");
    assert_eq!(state["next_change"]["phase"], 2);
    let proposal = &state["optimizer"]["proposal"];
    assert_eq!(state["optimizer"]["kind"], "static");
    assert_eq!(
        proposal["before"],
        json!([["taska"], ["taskb"]]),
        "{state:#}"
    );
    assert_eq!(proposal["after"], json!([["taska", "taskb"]]), "{state:#}");

    let Some(chromium) = find_chromium() else {
        let required = std::env::var("FUSIONIZER_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "FUSIONIZER_REQUIRE_BROWSER=1 but no Chromium was found (set FUSIONIZER_CHROMIUM or \
             install the `chromium` package)"
        );
        eprintln!(
            "skipping the browser part of the dashboard test: no Chromium found (install the \
             `chromium` package or set FUSIONIZER_CHROMIUM; FUSIONIZER_REQUIRE_BROWSER=1 makes \
             this a failure)"
        );
        return;
    };
    let mut browser = Browser::launch(&chromium);
    let mut page = browser.page();
    page.call("Page.enable", json!({}));
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 820, "deviceScaleFactor": 1, "mobile": false}),
    );
    page.call("Page.navigate", json!({"url": serve.url("/-/ui")}));

    // Phase 1, as the page renders it once its scripts have run: two functions, both tasks,
    // the proxied call, and the countdown to the fusion.
    let before = page.wait_for_dom("the page to show phase 1 and the proxied call", |dom| {
        dom["polls"].as_u64() > Some(0)
            && has_edge(dom, "taska>taskb sync proxy")
            && dom["tasks"] == json!(["taska", "taskb"])
    });
    assert_eq!(
        before["current"],
        "1",
        "the fusion came before the page loaded (the machine is too slow for a 40 s phase): {before:#}\n{}",
        serve.log()
    );
    assert_eq!(
        before["functions"],
        json!(["quickstart-taska:taska", "quickstart-taskb:taskb"]),
        "{before:#}"
    );
    assert!(
        before["countdown"]
            .as_str()
            .unwrap()
            .starts_with("phase 2 in "),
        "{before:#}"
    );
    assert!(before["workers"].as_u64() >= Some(2), "{before:#}");
    assert_eq!(before["proposal"], "some", "{before:#}");
    assert_eq!(
        before["proposed"],
        json!([["taska", "taskb"], ["taska + taskb"]]),
        "{before:#}"
    );
    page.evaluate("window.fusionizerTestMarker = 'loaded once'");
    let png = page.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    save_screenshot("dashboard-before.png", &png, true);

    // The fusion at +40 s shows up without a reload: one function holding both tasks.
    let after = page.wait_for_dom("the page to show the fused function", |dom| {
        dom["functions"] == json!(["quickstart-taska-taskb:taska,taskb"])
            && dom["transitions"]
                .as_array()
                .is_some_and(|t| t.iter().any(|r| r == "phase 2"))
    });
    assert_eq!(after["current"], "2", "{after:#}");
    assert_eq!(after["countdown"], "", "nothing is scheduled after phase 2");
    assert_eq!(after["marker"], "loaded once", "the page was reloaded");

    // The same call now runs in-process: the graph shows both ways it went.
    let (status, body) = add(&serve, "taska", 40, 2);
    assert_eq!((status, result_of(&body)), (200, Some(42)), "{body}");
    let fused = page.wait_for_dom("the in-process edge", |dom| {
        has_edge(dom, "taska>taskb sync in-process") && has_edge(dom, "taska>taskb sync proxy")
    });
    assert_eq!(fused["marker"], "loaded once", "the page was reloaded");
    check_schema(&get_json(&serve, "/-/state"));

    // Some traffic for the screenshot: the counts follow.
    for i in 0..20 {
        let (status, body) = add(&serve, "taska", i, 1);
        assert_eq!((status, result_of(&body)), (200, Some(i + 1)), "{body}");
    }
    // The proposal is live now: nothing left to propose.
    let settled = page.wait_for_dom("the in-process edge's count to follow", |dom| {
        has_edge(dom, "taska>taskb sync in-process 21") && dom["proposal"] == "none"
    });
    assert_eq!(settled["marker"], "loaded once", "the page was reloaded");
    save_screenshot("dashboard-after.png", &page.screenshot(), false);
    browser.close();
}

/// Writes a screenshot to the test's temp dir; `for_docs` also to `docs/dashboard.png` when
/// `FUSIONIZER_UPDATE_SCREENSHOT=1`.
fn save_screenshot(name: &str, png: &[u8], for_docs: bool) {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&out, png).unwrap();
    if for_docs && std::env::var("FUSIONIZER_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(&docs, png).unwrap();
        eprintln!("wrote {}", docs.display());
    }
}

/// Without the token, a request that is not from loopback is refused; the unit tests in
/// `serve::dashboard` cover that (a real non-loopback peer needs a second address). Here: the
/// page itself and a bad asset name.
#[test]
fn dashboard_assets_and_refusals() {
    let env = TestEnv::example("quickstart");
    env.write(&[(
        "fusion.toml",
        &FUSION_TOML.replace("after = \"40s\"", "after = \"1h\""),
    )]);
    let serve = Serve::start_with(&env, &[("DASHBOARD_TOKEN", "s3cret")], &["--no-schedule"]);
    let page = client().get(serve.url("/-/ui")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(page
        .text()
        .unwrap()
        .contains("<title>fusionizer serve</title>"));
    let redirect = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(serve.url("/-/ui/"))
        .send()
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "../ui");
    let missing = client().get(serve.url("/-/ui/app.js")).send().unwrap();
    assert_eq!(missing.status(), 404);
    // `--no-schedule`: phase 2 is never applied in this run, and nothing is next.
    let state = get_json(&serve, "/-/state");
    check_schema(&state);
    assert!(state["next_change"].is_null(), "{state:#}");
    assert!(state["phases"][1]["at"].is_null(), "{state:#}");
    assert!(state["phases"][0]["at"].is_string(), "{state:#}");
    // Read-only: the dashboard's paths take no other method.
    let post = client().post(serve.url("/-/state")).send().unwrap();
    assert_eq!(post.status(), 405);
}

fn get_json(serve: &Serve, path: &str) -> Value {
    let response = client().get(serve.url(path)).send().unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
}

fn has_edge(dom: &Value, edge: &str) -> bool {
    dom["edges"]
        .as_array()
        .is_some_and(|edges| edges.iter().any(|e| e == edge))
}

/// Checks `value` against docs/state.schema.json: the subset of JSON Schema it uses (`type`,
/// `properties`, `required`, `additionalProperties: false`, `items`, `enum`, `$ref` to
/// `#/$defs/…`).
fn check_schema(value: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/state.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut problems = Vec::new();
    check(&schema, &schema, value, "$", &mut problems);
    assert!(
        problems.is_empty(),
        "/-/state does not match docs/state.schema.json:\n{}\n{value:#}",
        problems.join("\n")
    );
}

fn check(root: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/$defs/");
        return check(root, &root["$defs"][name], value, at, problems);
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !ok {
            problems.push(format!("{at}: is {actual}, schema says {types:?}"));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                problems.push(format!("{at}: missing required `{name}`"));
            }
        }
        for (name, item) in object {
            match properties.get(name) {
                Some(sub) => check(root, sub, item, &format!("{at}.{name}"), problems),
                None if schema["additionalProperties"] == false => {
                    problems.push(format!("{at}: `{name}` is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(root, schema, item, &format!("{at}[{i}]"), problems);
        }
    }
}

/// Chromium: `FUSIONIZER_CHROMIUM`, or the first of the usual names on `PATH`.
pub(crate) fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FUSIONIZER_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A headless Chromium with the `DevTools` protocol on a loopback port; killed on drop.
pub(crate) struct Browser {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Browser {
    pub(crate) fn launch(chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                "--window-size=1280,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", chromium.display()));
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        let _ = tx.send(url.trim().to_string());
                    }
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                }
            });
        }
        let Ok(url) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!(
                "Chromium did not open its DevTools port:\n{}",
                log.lock().unwrap()
            );
        };
        let port = url
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in `{url}`"));
        Browser {
            child,
            port,
            _profile: profile,
            log,
        }
    }

    /// The first page target (the `about:blank` it started with).
    pub(crate) fn page(&mut self) -> Page {
        let list = format!("http://127.0.0.1:{}/json/list", self.port);
        let targets: Value = wait_for("Chromium's page target", Duration::from_secs(30), || {
            let targets: Value = client().get(&list).send().ok()?.json().ok()?;
            targets
                .as_array()?
                .iter()
                .any(|t| t["type"] == "page")
                .then_some(targets)
        });
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap()
            .to_string();
        let (socket, _) = tungstenite::connect(&url)
            .unwrap_or_else(|e| panic!("DevTools connection to {url}: {e}"));
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
        }
        Page {
            socket,
            next_id: 0,
            log: self.log.clone(),
        }
    }

    /// Asks Chromium to quit, then waits (bounded) for it.
    pub(crate) fn close(mut self) {
        let version = format!("http://127.0.0.1:{}/json/version", self.port);
        if let Some(url) = client()
            .get(&version)
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .and_then(|v| v["webSocketDebuggerUrl"].as_str().map(str::to_string))
        {
            if let Ok((mut socket, _)) = tungstenite::connect(&url) {
                let _ = socket.send(Message::text(
                    json!({"id": 1, "method": "Browser.close"}).to_string(),
                ));
            }
        }
        poll_within(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page, over its `DevTools` WebSocket.
pub(crate) struct Page {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Page {
    /// Sends a `DevTools` command and returns its result (events in between are skipped).
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.socket
            .send(Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .unwrap_or_else(|e| panic!("DevTools `{method}`: {e}"));
        loop {
            let message = self.socket.read().unwrap_or_else(|e| {
                panic!("DevTools `{method}`: {e}\n{}", self.log.lock().unwrap())
            });
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).unwrap();
            if reply["id"] != id {
                continue;
            }
            assert!(
                reply.get("error").is_none(),
                "DevTools `{method}` failed: {reply}"
            );
            return reply["result"].clone();
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    pub(crate) fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "`{expression}` threw: {result}"
        );
        result["result"]["value"].clone()
    }

    /// What [`READ_DOM`] reads from the page.
    fn dom(&mut self) -> Value {
        match self.evaluate(READ_DOM) {
            Value::String(text) => serde_json::from_str(&text).unwrap(),
            // The page is still loading (no body yet).
            _ => Value::Null,
        }
    }

    /// Reads the DOM until `done` holds for it, for at most 90 s.
    fn wait_for_dom(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let shown = std::cell::RefCell::new(Value::Null);
        wait_for(
            Lazy(|| format!("{what}; the page shows: {:#}", shown.borrow())),
            Duration::from_secs(90),
            || {
                let dom = self.dom();
                if dom.is_object() && done(&dom) {
                    return Some(dom);
                }
                *shown.borrow_mut() = dom;
                None
            },
        )
    }

    /// A PNG of the whole page.
    fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let result = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().unwrap())
            .unwrap()
    }
}

//! Web pages against serve (docs/security.md, "Browsers"): a page that rebinds its name to
//! 127.0.0.1 (its requests carry its own `Host`), a page of another origin (its requests carry
//! `Origin`), and methods a browser sends on its own (`OPTIONS` preflights). Nothing of it may
//! run a task or deploy an upload. The last test does it all from a real headless Chromium.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{addr, project, ran, raw, request};
use crate::dashboard::{find_chromium, Browser};
use crate::support::{wait_for, zip_dir, Serve};

/// A zip of task `evil` whose module, on import (at deploy time), writes `marker`.
fn evil_zip(marker: &std::path::Path) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("function.yaml"),
        "apiVersion: \"nuclio.io/v1beta1\"\nkind: \"NuclioFunction\"\nmetadata:\n  name: evil\n\
         spec:\n  runtime: \"python:3.11\"\n  handler: \"main:handler\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.py"),
        format!(
            "open({:?}, \"a\").write(\"DEPLOYED\\n\")\n\n\ndef handler(context, event):\n    return \"evil\"\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    zip_dir(dir.path())
}

/// `PUT /evil` with the zip as `multipart/form-data`, naming `host`.
fn put_evil(host: &str, zip: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"zip_file\"; filename=\"t.zip\"\r\n\
          Content-Type: application/zip\r\n\r\n",
    );
    body.extend_from_slice(zip);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let mut request = format!(
        "PUT /evil HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request
}

#[test]
fn a_rebound_host_name_can_neither_upload_nor_invoke() {
    let (env, marker) = project("");
    let serve = Serve::start(&env, &[]);
    let port = addr(&serve).rsplit(':').next().unwrap().to_string();
    let zip = evil_zip(&marker);

    // The page's own name, after its DNS answer changed to 127.0.0.1.
    for host in [
        format!("rebind.example.test:{port}"),
        "rebind.example.test".to_string(),
        format!("0.0.0.0:{port}"),
        format!("127.0.0.1.rebind.example.test:{port}"),
    ] {
        let (status, answer) = raw(&serve, &put_evil(&host, &zip));
        assert_eq!(status, 403, "PUT with Host {host}: {answer}");
        assert!(answer.contains("allowed-hosts"), "{answer}");
        let (status, answer) = raw(&serve, &request("POST", "/victim", &host, &[]));
        assert_eq!(status, 403, "POST with Host {host}: {answer}");
    }
    assert_eq!(
        ran(&marker),
        Vec::<String>::new(),
        "nothing ran, nothing deployed"
    );
    let (status, _) = raw(&serve, &request("GET", "/evil", &addr(&serve), &[]));
    assert_eq!(status, 404, "the upload was never deployed");
    assert!(serve.log().contains("refused a request for another host"));

    // The names of this server.
    for host in [
        addr(&serve),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, answer) = raw(&serve, &request("POST", "/victim", &host, &[]));
        assert_eq!(status, 200, "Host {host}: {answer}");
    }
    assert_eq!(ran(&marker), ["POST", "POST", "POST"]);
}

#[test]
fn a_page_of_another_origin_cannot_run_a_task_and_serves_own_can() {
    let (env, marker) = project("");
    let serve = Serve::start(&env, &[]);
    let host = addr(&serve);
    for origin in [
        "http://evil.example.test",
        "http://127.0.0.1:1",
        "null",
        "http://localhost:3000",
    ] {
        // A "simple" cross-origin POST: a browser sends it without asking first.
        let (status, answer) = raw(
            &serve,
            &request(
                "POST",
                "/victim",
                &host,
                &[&format!("Origin: {origin}"), "Content-Type: text/plain"],
            ),
        );
        assert_eq!(status, 403, "Origin {origin}: {answer}");
        assert!(answer.contains("allowed-origins"), "{answer}");
        let (status, answer) = raw(
            &serve,
            &request("DELETE", "/victim", &host, &[&format!("Origin: {origin}")]),
        );
        assert_eq!(status, 403, "DELETE from Origin {origin}: {answer}");
    }
    assert_eq!(ran(&marker), Vec::<String>::new());
    // serve's own pages (the dashboard).
    let (status, answer) = raw(
        &serve,
        &request(
            "POST",
            "/victim",
            &host,
            &[&format!("Origin: http://{host}")],
        ),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ran(&marker), ["POST"]);
}

#[test]
fn allowed_hosts_and_origins_let_the_listed_ones_in() {
    let (env, marker) = project(
        "allowed-hosts = [\"serve.example.test\", \"*.apps.example.test\"]\n\
         allowed-origins = [\"http://localhost:3000\"]",
    );
    let serve = Serve::start(&env, &[]);
    for (host, status) in [
        ("serve.example.test", 200),
        ("serve.example.test:8000", 200),
        ("a.apps.example.test", 200),
        ("apps.example.test", 403),
        ("other.example.test", 403),
    ] {
        let answer = raw(&serve, &request("POST", "/victim", host, &[]));
        assert_eq!(answer.0, status, "Host {host}: {}", answer.1);
    }
    for (origin, status) in [
        ("http://localhost:3000", 200),
        ("http://localhost:3001", 403),
    ] {
        let answer = raw(
            &serve,
            &request(
                "POST",
                "/victim",
                &addr(&serve),
                &[&format!("Origin: {origin}")],
            ),
        );
        assert_eq!(answer.0, status, "Origin {origin}: {}", answer.1);
    }
    assert_eq!(ran(&marker), ["POST", "POST", "POST", "POST"]);
}

#[test]
fn only_the_seeds_methods_act_on_a_task_and_a_preflight_runs_nothing() {
    let (env, marker) = project("");
    let serve = Serve::start(&env, &[]);
    let host = addr(&serve);
    // A browser's preflight: answered, without running anything and without granting CORS.
    let (status, answer) = raw(
        &serve,
        &request(
            "OPTIONS",
            "/victim",
            &host,
            &[
                "Origin: http://127.0.0.1:1",
                "Access-Control-Request-Method: PUT",
            ],
        ),
    );
    // The origin is refused first; without it, OPTIONS says what is allowed.
    assert_eq!(status, 403, "{answer}");
    for path in ["/victim", "/victim/sub/path"] {
        let (status, answer) = raw(&serve, &request("OPTIONS", path, &host, &[]));
        assert_eq!(status, 204, "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("\r\nallow: "), "{answer}");
        assert!(!lower.contains("access-control-"), "{answer}");
    }
    for method in ["PATCH", "TRACE", "FOO", "PROPFIND"] {
        let (status, answer) = raw(&serve, &request(method, "/victim", &host, &[]));
        assert_eq!(status, 405, "{method}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("allow: get, head, post, put, delete, options"),
            "{answer}"
        );
    }
    for method in ["GET", "PUT", "DELETE", "PATCH", "HEAD"] {
        let (status, answer) = raw(&serve, &request(method, "/victim/sub", &host, &[]));
        assert_eq!(status, 405, "{method} /victim/sub: {answer}");
        assert!(answer.to_ascii_lowercase().contains("allow: post, options"));
    }
    // CONNECT never reaches a task, whatever the server makes of its target.
    let (status, _) = raw(
        &serve,
        b"CONNECT victim:80 HTTP/1.1\r\nHost: victim:80\r\nConnection: close\r\n\r\n",
    );
    assert!((400..500).contains(&status), "CONNECT: {status}");
    let (status, answer) = raw(&serve, &request("HEAD", "/victim", &host, &[]));
    assert_eq!(status, 200, "HEAD describes: {answer}");
    assert_eq!(
        ran(&marker),
        Vec::<String>::new(),
        "none of those ran the task"
    );

    // POST invokes, on the task and below it; a task's own call (it names a known caller) is
    // delivered with its method, as Nuclio delivers it and as it runs when fused.
    assert_eq!(raw(&serve, &request("POST", "/victim", &host, &[])).0, 200);
    assert_eq!(
        raw(&serve, &request("POST", "/victim/a/b", &host, &[])).0,
        200
    );
    let call = request("PATCH", "/victim", &host, &["X-Fusionizer-Caller: victim"]);
    assert_eq!(raw(&serve, &call).0, 200);
    // A caller that is no task is a client like any other.
    let spoofed = request("PATCH", "/victim", &host, &["X-Fusionizer-Caller: nobody"]);
    assert_eq!(raw(&serve, &spoofed).0, 405);
    assert_eq!(ran(&marker), ["POST", "POST", "PATCH"]);
}

#[test]
fn state_needs_the_token_when_the_host_is_not_a_loopback_name() {
    let (env, _) = project("token-env = \"SEC_TOKEN\"\nallowed-hosts = [\"serve.example.test\"]");
    let serve = Serve::start_with(&env, &[("SEC_TOKEN", "s3cret")], &[]);
    let (status, answer) = raw(&serve, &request("GET", "/-/state", &addr(&serve), &[]));
    assert_eq!(status, 200, "loopback peer, loopback host: {answer}");
    // A local reverse proxy relaying a remote client: the peer is loopback, the name is not.
    let (status, answer) = raw(
        &serve,
        &request("GET", "/-/state", "serve.example.test", &[]),
    );
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = raw(
        &serve,
        &request(
            "GET",
            "/-/state",
            "serve.example.test",
            &["Authorization: Bearer s3cret"],
        ),
    );
    assert_eq!(status, 200, "{answer}");
}

/// A page server on a loopback port: every `GET` gets the page set last. Stops when dropped.
struct PageServer {
    port: u16,
    html: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PageServer {
    fn start() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let html = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (html, stop) = (html.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let page = html.lock().unwrap().clone();
                    answer(stream, &page);
                }
            })
        };
        PageServer {
            port,
            html,
            stop,
            thread: Some(thread),
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, html: String) {
        *self.html.lock().unwrap() = html;
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads a request's head and answers `page`.
fn answer(mut stream: std::net::TcpStream, page: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{page}",
        page.len()
    );
}

/// The attacker's page: against `target`, a no-cors `text/plain` POST (sent without a
/// preflight), a JSON POST and a PUT upload (each preflighted), a DELETE; each outcome goes
/// into `window.results`, and `window.done` says they are all settled.
fn attack_page(target: &str) -> String {
    format!(
        r#"<!doctype html><html><body><script>
const target = "{target}";
window.results = {{}};
async function attempt(name, url, init) {{
  try {{
    const r = await fetch(url, init);
    window.results[name] = "answered " + r.type + " " + r.status;
  }} catch (e) {{
    window.results[name] = "blocked " + e.name;
  }}
}}
(async () => {{
  await attempt("simple-post", target + "/victim", {{
    method: "POST", mode: "no-cors",
    headers: {{"Content-Type": "text/plain"}}, body: '{{"value1": 1, "value2": 2}}'}});
  await attempt("json-post", target + "/victim", {{
    method: "POST", headers: {{"Content-Type": "application/json"}}, body: "{{}}"}});
  const form = new FormData();
  form.append("zip_file", new Blob(["not a zip"]), "t.zip");
  await attempt("put", target + "/evil", {{method: "PUT", body: form}});
  await attempt("delete", target + "/victim", {{method: "DELETE"}});
  await attempt("patch", target + "/victim", {{method: "PATCH", body: "x"}});
  window.done = true;
}})();
</script></body></html>"#
    )
}

/// Loads the attack page from `pages` in Chromium and returns what its fetches saw.
fn attack_from_browser(chromium: &std::path::Path, pages: &PageServer) -> String {
    let mut browser = Browser::launch(chromium);
    let mut page = browser.page();
    page.call("Page.enable", serde_json::json!({}));
    page.call(
        "Page.navigate",
        serde_json::json!({"url": format!("{}/", pages.origin())}),
    );
    let results = wait_for("the attack page's fetches", Duration::from_secs(60), || {
        let done = page.evaluate("window.done === true");
        (done == serde_json::Value::Bool(true))
            .then(|| page.evaluate("JSON.stringify(window.results)"))
    });
    drop(page);
    browser.close();
    results.as_str().unwrap_or_default().to_string()
}

#[test]
fn a_web_page_in_a_real_browser_cannot_run_anything_through_serve() {
    let Some(chromium) = find_chromium() else {
        let required = std::env::var("FUSIONIZER_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "FUSIONIZER_REQUIRE_BROWSER=1 but no Chromium was found"
        );
        eprintln!("skipping the browser security test: no Chromium found");
        return;
    };
    let pages = PageServer::start();

    // With the defaults: nothing runs, nothing is deployed.
    let (env, marker) = project("");
    let serve = Serve::start(&env, &[]);
    pages.set(attack_page(&serve.base));
    let results = attack_from_browser(&chromium, &pages);
    assert_eq!(
        ran(&marker),
        Vec::<String>::new(),
        "the page ran the task: {results}"
    );
    let (status, _) = raw(&serve, &request("GET", "/evil", &addr(&serve), &[]));
    assert_eq!(status, 404, "the page deployed an upload: {results}");
    assert!(results.contains("simple-post"), "{results}");
    drop(serve);

    // The control: the same page, its origin allowed. The browser does send the simple POST
    // (so the refusal above is serve's doing), and still no preflighted request: serve grants
    // no CORS, so the browser never sends the JSON POST, the PUT, the DELETE or the PATCH.
    let (env, marker) = project(&format!("allowed-origins = [\"{}\"]", pages.origin()));
    let serve = Serve::start(&env, &[]);
    pages.set(attack_page(&serve.base));
    let results = attack_from_browser(&chromium, &pages);
    assert_eq!(ran(&marker), ["POST"], "{results}");
    for preflighted in ["json-post", "put", "delete", "patch"] {
        assert!(
            results.contains(&format!("\"{preflighted}\":\"blocked")),
            "{preflighted}: {results}"
        );
    }
}

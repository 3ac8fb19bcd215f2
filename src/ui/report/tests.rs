//! The rendering of progress events, driven without a terminal: a fixed width, colour on or
//! off, fixed durations, and the JSON clock filtered.

use std::time::Duration;

use serde_json::{json, Map};

use super::*;

fn status(verb: &str, subject: &str, tone: Tone) -> Event {
    Event::Status {
        verb: verb.into(),
        subject: subject.into(),
        tone,
    }
}

fn begin(id: &str, verb: &str, subject: &str) -> Event {
    Event::Begin {
        id: id.into(),
        verb: verb.into(),
        subject: subject.into(),
    }
}

fn end(id: &str, verb: &str, subject: &str, ms: u64) -> Event {
    Event::End {
        id: id.into(),
        verb: verb.into(),
        subject: subject.into(),
        elapsed: Some(Duration::from_millis(ms)),
        tone: Tone::Good,
        detail: Vec::new(),
    }
}

/// What a first `serve` of the quickstart emits, in order.
fn first_serve() -> Vec<Event> {
    vec![
        status(
            "Listening",
            "on http://127.0.0.1:8000 (local platform)",
            Tone::Good,
        ),
        status("Deploying", "phase 1", Tone::Good),
        status(
            "Planned",
            "2 to add, 0 to change, 0 to destroy (start (phase 1))",
            Tone::Info,
        ),
        begin("change:quickstart-taska", "Creating", "quickstart-taska"),
        begin("change:quickstart-taskb", "Creating", "quickstart-taskb"),
        Event::Step {
            id: "change:quickstart-taska".into(),
            message: "staging the artifact".into(),
        },
        begin(
            "env:quickstart-taska",
            "Building",
            "env quickstart-taska (pip: nuclio-sdk, requests)",
        ),
        Event::Step {
            id: "env:quickstart-taska".into(),
            message: "installing the runtime (nuclio-sdk, requests)".into(),
        },
        end(
            "env:quickstart-taska",
            "Built",
            "env quickstart-taska (pip: nuclio-sdk, requests)",
            4120,
        ),
        end(
            "change:quickstart-taska",
            "Deployed",
            "quickstart-taska",
            4630,
        ),
        end(
            "change:quickstart-taskb",
            "Deployed",
            "quickstart-taskb",
            612,
        ),
        Event::End {
            id: "switch:start".into(),
            verb: "Switched".into(),
            subject: "2 routes in 4.6s (start (phase 1))".into(),
            elapsed: None,
            tone: Tone::Good,
            detail: Vec::new(),
        },
        Event::Table {
            verb: "Routes".into(),
            subject: String::new(),
            rows: vec![
                vec!["ROUTE".into(), "FUNCTION".into(), "WITH".into()],
                vec!["/taska".into(), "quickstart-taska".into(), "-".into()],
                vec!["/taskb".into(), "quickstart-taskb".into(), "-".into()],
            ],
        },
        Event::Table {
            verb: "Schedule".into(),
            subject: String::new(),
            rows: vec![
                vec!["AFTER".into(), "PHASE".into()],
                vec!["+40s".into(), "phase 2".into()],
            ],
        },
        Event::TaskOutput {
            task: "taska".into(),
            function: "quickstart-taska".into(),
            stream: "log".into(),
            level: Level::Info,
            line: "taskb answered".into(),
            fields: Map::new(),
        },
        Event::Log {
            level: Level::Warn,
            target: "fusionizer::serve".into(),
            message: "request timed out".into(),
            fields: Map::from_iter([("task".to_string(), json!("taska"))]),
        },
        status(
            "Planned",
            "1 to add, 0 to change, 2 to destroy (phase 2)",
            Tone::Info,
        ),
        end(
            "change:quickstart-taska-taskb",
            "Deployed",
            "quickstart-taska-taskb",
            126,
        ),
        Event::End {
            id: "switch:phase 2".into(),
            verb: "Switched".into(),
            subject: "2 routes in 128ms (phase 2)".into(),
            elapsed: None,
            tone: Tone::Good,
            detail: vec![
                "taska: quickstart-taska → quickstart-taska-taskb".into(),
                "taskb: quickstart-taskb → quickstart-taska-taskb".into(),
            ],
        },
        end(
            "change:quickstart-taska",
            "Deleted",
            "quickstart-taska",
            158,
        ),
    ]
}

fn transcript(events: &[Event], opts: RenderOptions) -> String {
    events
        .iter()
        .filter_map(|e| render(e, opts))
        .map(|text| format!("{text}\n"))
        .collect()
}

/// ANSI escapes made visible (`␛[32m`), so the snapshots show where colour goes.
fn visible(text: &str) -> String {
    text.replace('\x1b', "␛")
}

#[test]
fn a_first_serve_off_a_terminal_is_plain_lines() {
    let text = transcript(
        &first_serve(),
        RenderOptions {
            width: None,
            color: false,
        },
    );
    assert!(!text.contains('\x1b'));
    assert_eq!(text.matches("Deployed quickstart-taska in").count(), 1);
    insta::assert_snapshot!("first_serve_plain", text);
}

#[test]
fn a_first_serve_on_a_narrow_colour_terminal_fits_its_width() {
    let opts = RenderOptions {
        width: Some(60),
        color: true,
    };
    let text = transcript(&first_serve(), opts);
    for line in text.lines() {
        let plain = line
            .replace("\x1b[32m", "")
            .replace("\x1b[36m", "")
            .replace("\x1b[33m", "")
            .replace("\x1b[2m", "")
            .replace("\x1b[0m", "");
        assert!(plain.chars().count() <= 60, "too wide: {plain:?}");
    }
    insta::assert_snapshot!("first_serve_tty_60", visible(&text));
}

#[test]
fn running_steps_draw_a_spinner_with_the_elapsed_time() {
    let mut frames = String::new();
    for (width, elapsed, step) in [
        (100, 0, None),
        (100, 3, Some("creating a Python virtualenv")),
        (
            100,
            12,
            Some("installing the runtime (nuclio-sdk, requests)"),
        ),
        (
            48,
            12,
            Some("installing the runtime (nuclio-sdk, requests)"),
        ),
    ] {
        let opts = RenderOptions {
            width: Some(width),
            color: false,
        };
        let line = frame(
            "Building",
            "env quickstart-taska (pip: nuclio-sdk, requests)",
            step,
            Duration::from_secs(elapsed),
            '⠙',
            opts,
        );
        assert!(line.chars().count() <= width, "too wide: {line:?}");
        frames.push_str(&format!("[{width}] {line}\n"));
    }
    insta::assert_snapshot!("running_frames", frames);
}

#[test]
fn json_lines_carry_a_timestamp_and_every_field() {
    let now = chrono::Utc::now();
    let text: String = first_serve()
        .iter()
        .map(|e| format!("{}\n", json_line(e, now)))
        .collect();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(value["ts"].is_string(), "{line}");
        assert!(value["event"].is_string(), "{line}");
        assert!(value["message"].is_string(), "{line}");
    }
    insta::with_settings!({filters => vec![
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "[TS]"),
    ]}, {
        insta::assert_snapshot!("first_serve_json", text);
    });
}

#[test]
fn durations_read_like_cargo() {
    assert_eq!(duration(Duration::from_millis(126)), "126ms");
    assert_eq!(duration(Duration::from_millis(4630)), "4.6s");
    assert_eq!(duration(Duration::from_secs(65)), "1m05s");
    assert_eq!(elapsed_short(Duration::from_millis(12_900)), "12s");
}

#[test]
fn a_step_shows_only_on_a_spinner() {
    let step = Event::Step {
        id: "x".into(),
        message: "pip".into(),
    };
    let opts = RenderOptions {
        width: None,
        color: false,
    };
    assert_eq!(render(&step, opts), None);
}

#[test]
fn a_failure_keeps_its_detail_lines_under_the_subject() {
    let event = Event::End {
        id: "change:f".into(),
        verb: "Failed".into(),
        subject: "create f after 2.0s: pip exited 1".into(),
        elapsed: None,
        tone: Tone::Bad,
        detail: vec!["output:".into(), "  | no such package".into()],
    };
    let opts = RenderOptions {
        width: None,
        color: true,
    };
    assert_eq!(
        visible(&render(&event, opts).unwrap()),
        "␛[31m      Failed␛[0m create f after 2.0s: pip exited 1\n             output:\n               | no such package"
    );
}

#[test]
fn lines_are_never_cut_off_a_terminal() {
    let long = "x".repeat(300);
    let opts = RenderOptions {
        width: None,
        color: false,
    };
    let text = render(&status("Listening", &long, Tone::Good), opts).unwrap();
    assert!(text.ends_with(&long));
}

/// The spinners as a terminal of a fixed size shows them (indicatif drawing into a virtual
/// terminal): lines above, the steps under way below, each collapsing into its line.
#[test]
fn spinners_collapse_into_lines_on_a_terminal() {
    use indicatif::{InMemoryTerm, ProgressDrawTarget};

    let term = InMemoryTerm::new(20, 90);
    let bars = Bars::new(ProgressDrawTarget::term_like(Box::new(term.clone())));
    let opts = RenderOptions {
        width: Some(90),
        color: false,
    };
    let mut screens = String::new();
    let mut shot = |title: &str, term: &InMemoryTerm, bars: &Bars| {
        // indicatif limits how often it draws; a forced redraw shows the current state.
        bars.multi.suspend(|| ());
        // The spinner glyph and the seconds depend on the clock: filtered.
        let text: String = term
            .contents()
            .lines()
            .map(|l| {
                let l = l.trim_end();
                match l.rfind(' ') {
                    Some(i) if l.ends_with('s') && l[i + 1..l.len() - 1].parse::<u64>().is_ok() => {
                        let head = l[..i].trim_end();
                        let head = head
                            .strip_suffix(|c: char| ('\u{2800}'..='\u{28FF}').contains(&c))
                            .unwrap_or(head);
                        format!("{head}[SPINNER] [SECS]\n")
                    }
                    _ => format!("{l}\n"),
                }
            })
            .collect();
        screens.push_str(&format!("--- {title}\n{}", text.trim_end_matches('\n')));
        screens.push('\n');
    };
    let events = first_serve();
    // Up to both deploys and the environment build under way.
    for event in &events[..8] {
        bars.show(event.clone(), opts);
    }
    shot("building", &term, &bars);
    for event in &events[8..10] {
        bars.show(event.clone(), opts);
    }
    shot("taska deployed, taskb still under way", &term, &bars);
    for event in &events[10..16] {
        bars.show(event.clone(), opts);
    }
    shot("serving", &term, &bars);
    insta::assert_snapshot!("spinners_on_a_terminal", screens);
}

//! How `fusionizer apply` shows progress on stderr: one indicatif spinner per function on a
//! terminal; one line per event elsewhere, so CI logs read `Creating shop-taska...` then
//! `shop-taska: ready (3.2s)`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::engine::{ApplyObserver, ChangeResult, Outcome};
use crate::plan::{Action, Change};
use crate::ui::{paint, Style, Ui};

fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "Creating",
        Action::Update => "Updating",
        Action::Replace => "Replacing",
        Action::Delete => "Deleting",
    }
}

fn done_word(action: Action) -> &'static str {
    match action {
        Action::Delete => "deleted",
        _ => "ready",
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The one-line outcome, e.g. `shop-taska: ready (3.2s)`.
pub fn outcome_line(result: &ChangeResult, color: bool) -> String {
    let name = &result.change.function;
    match &result.outcome {
        Outcome::Applied => format!(
            "{name}: {} ({})",
            paint(color, Style::Green, done_word(result.change.action)),
            seconds(result.elapsed)
        ),
        Outcome::Failed(message) => {
            let mut lines = message.lines();
            let mut text = format!(
                "{name}: {} ({}): {}",
                paint(color, Style::Red, "failed"),
                seconds(result.elapsed),
                lines.next().unwrap_or_default()
            );
            for line in lines {
                text.push_str("\n    ");
                text.push_str(line);
            }
            text
        }
        Outcome::NotAttempted(why) => format!(
            "{name}: {}: {why}",
            paint(
                color,
                Style::Yellow,
                if result.change.action == Action::Delete {
                    "not deleted"
                } else {
                    "not attempted"
                }
            )
        ),
    }
}

/// The stderr observer `apply` uses.
pub struct Progress {
    color: bool,
    quiet: bool,
    /// `Some` on a terminal: spinners; `None`: log lines.
    bars: Option<(MultiProgress, Mutex<BTreeMap<String, ProgressBar>>)>,
}

impl Progress {
    pub fn new(ui: &Ui) -> Progress {
        let bars = (ui.stderr_is_tty && !ui.quiet).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(BTreeMap::new()),
            )
        });
        Progress {
            color: ui.color_stderr,
            quiet: ui.quiet,
            bars,
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    fn bar(&self, change: &Change) -> Option<ProgressBar> {
        let (multi, bars) = self.bars.as_ref()?;
        let mut bars = bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(
            bars.entry(change.function.clone())
                .or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
                            .expect("valid template"),
                    );
                    bar.set_prefix(format!("{} {}", verb(change.action), change.function));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                })
                .clone(),
        )
    }
}

impl ApplyObserver for Progress {
    fn started(&self, change: &Change) {
        if self.bar(change).is_none() {
            self.line(&format!("{} {}...", verb(change.action), change.function));
        }
    }

    fn step(&self, change: &Change, message: &str) {
        match self.bar(change) {
            Some(bar) => bar.set_message(message.to_string()),
            None => self.line(&format!("{}: {message}", change.function)),
        }
    }

    fn finished(&self, result: &ChangeResult) {
        let line = outcome_line(result, self.color);
        if let Some((_, bars)) = &self.bars {
            let bar = bars
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&result.change.function);
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        }
        self.line(&line);
    }
}

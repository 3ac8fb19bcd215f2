//! How a plan being carried out is shown: each change as a long step of [`crate::ui::report`]
//! (`Creating quickstart-taska` with a spinner on a terminal, collapsing into
//! `Deployed quickstart-taska in 4.6s`), so `apply`, `destroy` and serve's regroups read alike.

use crate::apply::engine::{ApplyObserver, ChangeResult, Outcome};
use crate::plan::{Action, Change};
use crate::ui::report::{self, Event, RenderOptions, Tone};

/// The verb while a change runs.
fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "Creating",
        Action::Update => "Updating",
        Action::Replace => "Replacing",
        Action::Delete => "Deleting",
    }
}

/// The verb once a change applied.
fn done(action: Action) -> &'static str {
    match action {
        Action::Create => "Deployed",
        Action::Update => "Updated",
        Action::Replace => "Replaced",
        Action::Delete => "Deleted",
    }
}

fn id(change: &Change) -> String {
    format!("change:{}", change.function)
}

/// The event a change starts with.
pub fn begin_event(change: &Change) -> Event {
    Event::Begin {
        id: id(change),
        verb: verb(change.action).to_string(),
        subject: change.function.clone(),
    }
}

/// The event a change ends with: `Deployed shop-taska in 3.2s`, `Failed create shop-taska: …`
/// (the message's further lines as detail) or `Skipped delete shop-taska: why`.
pub fn end_event(result: &ChangeResult) -> Event {
    let change = &result.change;
    match &result.outcome {
        Outcome::Applied => Event::End {
            id: id(change),
            verb: done(change.action).to_string(),
            subject: change.function.clone(),
            elapsed: Some(result.elapsed),
            tone: Tone::Good,
            detail: Vec::new(),
        },
        Outcome::Failed(message) => {
            let mut lines = message.lines();
            Event::End {
                id: id(change),
                verb: "Failed".to_string(),
                subject: format!(
                    "{} {} after {}: {}",
                    change.action.word(),
                    change.function,
                    report::duration(result.elapsed),
                    lines.next().unwrap_or_default()
                ),
                elapsed: None,
                tone: Tone::Bad,
                detail: lines.map(str::to_string).collect(),
            }
        }
        Outcome::NotAttempted(why) => Event::End {
            id: id(change),
            verb: "Skipped".to_string(),
            subject: format!("{} {}: {why}", change.action.word(), change.function),
            elapsed: None,
            tone: Tone::Warn,
            detail: Vec::new(),
        },
    }
}

/// The one-line outcome as a log without a terminal shows it, e.g.
/// `    Deployed shop-taska in 3.2s`.
pub fn outcome_line(result: &ChangeResult, color: bool) -> String {
    report::render(&end_event(result), RenderOptions { width: None, color }).unwrap_or_default()
}

/// The observer `apply`, `destroy` and serve's regroups use: every change as a progress event.
pub struct Progress;

impl ApplyObserver for Progress {
    fn started(&self, change: &Change) {
        report::emit(begin_event(change));
    }

    fn step(&self, change: &Change, message: &str) {
        report::emit(Event::Step {
            id: id(change),
            message: message.to_string(),
        });
    }

    fn finished(&self, result: &ChangeResult) {
        report::emit(end_event(result));
    }
}

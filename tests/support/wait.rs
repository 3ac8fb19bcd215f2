//! Waiting for a condition, the one way tests wait: poll it until it holds or a deadline passes,
//! then fail naming what was awaited. No test sleeps to synchronise.

use std::fmt;
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// What a polled condition answers: `bool` (done or not) or `Option<T>` (done with a value).
pub(crate) trait Ready {
    /// What the wait returns once the condition holds.
    type Value;
    /// `Some` once the condition holds.
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// A description written only when shown, so a timeout reports the state at the timeout (e.g.
/// serve's log then), not at the start of the wait.
pub(crate) struct Lazy<F>(pub(crate) F);

impl<F: Fn() -> String> fmt::Display for Lazy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.0)())
    }
}

/// Polls `check` until it holds (`Some(value)`), or `None` once `timeout` has passed: for a
/// wait whose end is not a failure (e.g. giving a process time to go before looking).
pub(crate) fn poll_within<R: Ready>(
    timeout: Duration,
    mut check: impl FnMut() -> R,
) -> Option<R::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().ready() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `check` until it holds (`true`, or `Some(value)`: returned), or panics naming `what`
/// after `timeout`.
pub(crate) fn wait_for<R: Ready>(
    what: impl fmt::Display,
    timeout: Duration,
    check: impl FnMut() -> R,
) -> R::Value {
    poll_within(timeout, check).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// [`wait_for`] inside an async test: the pause between polls yields to the runtime, so what
/// the test waits for (running on the same runtime) goes on meanwhile.
pub(crate) async fn wait_for_async<R: Ready>(
    what: impl fmt::Display,
    timeout: Duration,
    mut check: impl FnMut() -> R,
) -> R::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().ready() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

#[test]
fn a_wait_returns_the_value_once_ready_and_names_what_it_awaited_on_timeout() {
    let mut polls = 0;
    let value = wait_for("the third poll", Duration::from_secs(10), || {
        polls += 1;
        (polls == 3).then_some(polls)
    });
    assert_eq!(value, 3);
    wait_for("true", Duration::ZERO, || true);
    let timeout = std::panic::catch_unwind(|| {
        wait_for(Lazy(|| "a state".to_string()), Duration::ZERO, || false);
    })
    .unwrap_err();
    assert_eq!(
        timeout.downcast_ref::<String>().map(String::as_str),
        Some("timed out waiting for a state")
    );
    assert_eq!(poll_within(Duration::ZERO, || false), None);
}

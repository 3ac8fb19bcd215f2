//! A count of work in flight that can be waited out: serve's requests (for its shutdown), a
//! function's requests (for the drain of a regroup) and a local pool's requests (for its stop)
//! each hold an [`InFlightGuard`] while they run, and [`InFlight::wait_idle`] waits, with a
//! deadline, until none is left.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts what is in flight; [`InFlight::wait_idle`] waits until nothing is.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Counts one piece of work until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    /// How many are in flight now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight, or `deadline` passes; whether nothing is.
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            // Registered before the count is read, so a guard dropped in between still wakes us.
            let idle = self.idle.notified();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}

/// Keeps one piece of work counted by its [`InFlight`].
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_the_last_guard_and_gives_up_at_the_deadline() {
        let inflight = Arc::new(InFlight::default());
        let soon = || tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(inflight.wait_idle(soon()).await);
        let (a, b) = (inflight.enter(), inflight.enter());
        assert_eq!(inflight.count(), 2);
        assert!(!inflight.wait_idle(soon()).await);
        drop(a);
        let waiting = {
            let inflight = inflight.clone();
            tokio::spawn(async move {
                inflight
                    .wait_idle(tokio::time::Instant::now() + Duration::from_secs(30))
                    .await
            })
        };
        drop(b);
        assert!(waiting.await.unwrap());
        assert_eq!(inflight.count(), 0);
    }
}

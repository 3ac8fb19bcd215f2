//! The bounded queue of asynchronous calls (`Prefer: respond-async`, RFC 7240): serve answers
//! `202 Accepted` at once and runs the call in the background.
//!
//! At most `capacity` calls are accepted and not yet finished (waiting or running); a call
//! beyond that is refused with 503 and `Retry-After`, and counted. At most `concurrency` of
//! them run at once. Each accepted call keeps serve's in-flight count up until it finishes, so
//! a graceful shutdown waits for it (up to `[serve] shutdown-timeout`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Asynchronous calls run at once by default.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// See the module docs.
pub struct Background {
    capacity: usize,
    accepted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// One accepted call's place in the queue, given back when the call finishes.
pub struct Ticket(#[allow(dead_code)] OwnedSemaphorePermit);

impl Background {
    pub fn new(capacity: usize, concurrency: usize) -> Self {
        Background {
            capacity,
            accepted: Arc::new(Semaphore::new(capacity)),
            running: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// How many calls may wait or run at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Calls accepted and not finished.
    pub fn queued(&self) -> usize {
        self.capacity - self.accepted.available_permits()
    }

    /// A place in the queue, or `None` when it is full.
    pub fn try_accept(&self) -> Option<Ticket> {
        self.accepted.clone().try_acquire_owned().ok().map(Ticket)
    }

    /// Waits for a turn to run.
    pub async fn turn(&self) -> OwnedSemaphorePermit {
        self.running
            .clone()
            .acquire_owned()
            .await
            .expect("the run semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_refuses_past_its_capacity_and_frees_on_finish() {
        let queue = Background::new(2, 1);
        let first = queue.try_accept().unwrap();
        let _second = queue.try_accept().unwrap();
        assert!(queue.try_accept().is_none());
        assert_eq!(queue.queued(), 2);
        drop(first);
        assert!(queue.try_accept().is_some());
    }
}

//! The bounded queue of asynchronous calls (`Prefer: respond-async`, RFC 7240): serve answers
//! `202 Accepted` at once and runs the call in the background.
//!
//! At most `capacity` calls are accepted and not yet finished (waiting or running), holding at
//! most `bytes` of request bodies between them (`[serve] async-queue` and `async-queue-size`); a
//! call beyond either is refused with 503 and `Retry-After`, and counted. A body larger than the
//! whole `bytes` could never be queued: it is refused with 413. At most `concurrency` of
//! them run at once. Each accepted call keeps serve's in-flight count up until it finishes, so
//! a graceful shutdown waits for it (up to `[serve] shutdown-timeout`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Asynchronous calls run at once by default.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// See the module docs.
pub struct Background {
    capacity: usize,
    bytes: u32,
    accepted: Arc<Semaphore>,
    held: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// One accepted call's place in the queue and its body's bytes, given back when the call
/// finishes.
pub struct Ticket(
    #[allow(dead_code)] OwnedSemaphorePermit,
    #[allow(dead_code)] Option<OwnedSemaphorePermit>,
);

/// Why a call was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `capacity` calls, or its bodies would pass `bytes`: retry later.
    Full,
    /// The body alone is larger than the queue may hold at all.
    TooLarge,
}

impl Background {
    /// A queue of at most `capacity` calls holding at most `bytes` of bodies (capped at 4 GiB),
    /// running `concurrency` at once.
    pub fn new(capacity: usize, bytes: u64, concurrency: usize) -> Self {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        Background {
            capacity,
            bytes,
            accepted: Arc::new(Semaphore::new(capacity)),
            held: Arc::new(Semaphore::new(bytes as usize)),
            running: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// The bytes of bodies the queue may hold.
    pub fn bytes(&self) -> u64 {
        u64::from(self.bytes)
    }

    /// How many calls may wait or run at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Calls accepted and not finished.
    pub fn queued(&self) -> usize {
        self.capacity - self.accepted.available_permits()
    }

    /// A place in the queue for a call with a body of `len` bytes.
    pub fn try_accept(&self, len: usize) -> Result<Ticket, Refused> {
        let len = u32::try_from(len)
            .ok()
            .filter(|len| *len <= self.bytes)
            .ok_or(Refused::TooLarge)?;
        let place = self
            .accepted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        let held = if len == 0 {
            None
        } else {
            Some(
                self.held
                    .clone()
                    .try_acquire_many_owned(len)
                    .map_err(|_| Refused::Full)?,
            )
        };
        Ok(Ticket(place, held))
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
        let queue = Background::new(2, 1024, 1);
        let first = queue.try_accept(0).unwrap();
        let _second = queue.try_accept(10).unwrap();
        assert_eq!(queue.try_accept(0).err(), Some(Refused::Full));
        assert_eq!(queue.queued(), 2);
        drop(first);
        assert!(queue.try_accept(0).is_ok());
    }

    #[test]
    fn the_queue_refuses_past_its_bytes_and_frees_them_on_finish() {
        let queue = Background::new(100, 1000, 1);
        let first = queue.try_accept(600).unwrap();
        assert_eq!(queue.try_accept(500).err(), Some(Refused::Full));
        let second = queue.try_accept(400).unwrap();
        assert_eq!(queue.try_accept(1).err(), Some(Refused::Full));
        // A refused call holds nothing: its place in the count was given back.
        assert_eq!(queue.queued(), 2);
        drop(first);
        assert!(queue.try_accept(600).is_ok());
        drop(second);
        // Larger than the whole queue: never.
        assert_eq!(queue.try_accept(1001).err(), Some(Refused::TooLarge));
    }
}

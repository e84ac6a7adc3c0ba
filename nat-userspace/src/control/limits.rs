//! What keeps the control socket and the metrics endpoint from being used to stall the
//! daemon: accept errors that back off instead of spinning, and warnings logged at most
//! once per interval however often their cause repeats.

use std::{
    io,
    time::{Duration, Instant},
};

/// How long an accept loop sleeps after running out of file descriptors (or memory):
/// nothing can be accepted until a connection closes, and retrying at once would spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The shortest time between two logged warnings of one kind.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A warning logged at most once per [`LOG_INTERVAL`], with the number of occurrences it
/// stands for.
#[derive(Debug, Default)]
pub struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    /// Counts one occurrence; returns how many there were since the last log line when a
    /// line is due now (the caller logs it), else `None`.
    pub fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        let due = self.last.is_none_or(|t| t.elapsed() >= LOG_INTERVAL);
        if due {
            self.last = Some(Instant::now());
            Some(std::mem::take(&mut self.count))
        } else {
            None
        }
    }
}

/// An accept(2) error in a listener's loop: out of file descriptors or memory backs off
/// for [`ACCEPT_BACKOFF`] with a warning (at most one per [`LOG_INTERVAL`]); anything else
/// (a connection reset before it was accepted) is only logged at debug level. Never returns
/// at once for a persistent error, so the loop cannot spin.
pub async fn accept_error(what: &str, e: &io::Error, log: &mut Throttled) {
    let exhausted = matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    );
    if exhausted {
        if let Some(n) = log.hit() {
            tracing::warn!(
                "{what}: cannot accept connections: {e} ({n} time(s) since the last message); \
                 retrying every {} ms (raise LimitNOFILE, or find who holds the connections)",
                ACCEPT_BACKOFF.as_millis()
            );
        }
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    } else {
        tracing::debug!("{what}: accept: {e}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_warning_is_due_once_per_interval_and_counts_the_rest() {
        let mut t = Throttled::default();
        assert_eq!(t.hit(), Some(1));
        for _ in 0..99 {
            assert_eq!(t.hit(), None);
        }
        t.last = Some(Instant::now() - LOG_INTERVAL);
        assert_eq!(t.hit(), Some(100));
    }
}

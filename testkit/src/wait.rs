//! Waits as polls against a deadline, never sleeps used as synchronisation: [`eventually`]
//! on tokio (on tokio's clock, so it also works on paused test time) and
//! [`eventually_blocking`] on a plain thread. Both panic, naming what was awaited, when the
//! deadline passes: they are for tests, where a panic is the failure report.

use std::time::Duration;

/// How often [`eventually`] checks.
pub const POLL: Duration = Duration::from_millis(5);

/// How often [`eventually_blocking`] checks (each check may be a syscall or a request).
pub const POLL_BLOCKING: Duration = Duration::from_millis(20);

/// Polls `cond` every [`POLL`] until it holds; panics after `within`, naming `what`.
pub async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `cond` every [`POLL_BLOCKING`] on this thread until it holds; panics after
/// `within`, naming `what`.
pub fn eventually_blocking(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        std::thread::sleep(POLL_BLOCKING);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn eventually_returns_once_the_condition_holds() {
        let polls = Cell::new(0);
        eventually("the third poll", Duration::from_secs(1), || {
            polls.set(polls.get() + 1);
            polls.get() == 3
        })
        .await;
        assert_eq!(polls.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 1s waiting for: never")]
    async fn eventually_names_what_never_came() {
        eventually("never", Duration::from_secs(1), || false).await;
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for: never")]
    fn eventually_blocking_names_what_never_came() {
        eventually_blocking("never", Duration::from_millis(50), || false);
    }
}

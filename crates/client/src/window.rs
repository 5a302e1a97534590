//! Knowing when replies have stopped arriving.
//!
//! MCollective waits a fixed two seconds for discovery replies. muster
//! waits until the replies go quiet: after each reply it allows a quiet
//! period scaled to what it has seen (the first round trip and the largest
//! gap between replies), never less than a floor, and never past the hard
//! timeout. A small fleet on one machine finishes in tens of milliseconds;
//! a large one as soon as its last reply lands.

use std::time::{Duration, Instant};

/// The adaptive quiet window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuietWindow {
    /// The shortest quiet period that ends collection.
    pub floor: Duration,
    /// The quiet period is at least this many first round trips...
    pub rtt_factor: u32,
    /// ...and at least this many of the largest gaps between replies.
    pub gap_factor: u32,
}

impl Default for QuietWindow {
    fn default() -> Self {
        QuietWindow {
            floor: Duration::from_millis(100),
            rtt_factor: 2,
            gap_factor: 4,
        }
    }
}

/// Arrival times seen so far.
#[derive(Debug, Clone)]
pub struct Arrivals {
    sent: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    largest_gap: Duration,
}

impl Arrivals {
    /// Starts counting from when the request was sent.
    pub fn new(sent: Instant) -> Arrivals {
        Arrivals {
            sent,
            first: None,
            last: None,
            largest_gap: Duration::ZERO,
        }
    }

    /// Notes a reply arriving at `at`.
    pub fn record(&mut self, at: Instant) {
        if let Some(last) = self.last {
            self.largest_gap = self.largest_gap.max(at.saturating_duration_since(last));
        } else {
            self.first = Some(at);
        }
        self.last = Some(at);
    }
}

impl QuietWindow {
    /// When to stop, given the arrivals so far and the hard deadline.
    pub fn deadline(&self, arrivals: &Arrivals, hard: Instant) -> Instant {
        let (Some(first), Some(last)) = (arrivals.first, arrivals.last) else {
            return hard;
        };
        let rtt = first.saturating_duration_since(arrivals.sent);
        let quiet = self
            .floor
            .max(rtt * self.rtt_factor)
            .max(arrivals.largest_gap * self.gap_factor);
        (last + quiet).min(hard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_for_the_hard_deadline_until_a_reply_arrives() {
        let sent = Instant::now();
        let hard = sent + 2000 * MS;
        assert_eq!(
            QuietWindow::default().deadline(&Arrivals::new(sent), hard),
            hard
        );
    }

    #[test]
    fn quick_replies_end_after_the_floor() {
        let sent = Instant::now();
        let mut arrivals = Arrivals::new(sent);
        arrivals.record(sent + MS);
        arrivals.record(sent + 2 * MS);
        let deadline = QuietWindow::default().deadline(&arrivals, sent + 2000 * MS);
        assert_eq!(deadline, sent + 102 * MS);
    }

    #[test]
    fn slow_round_trips_and_wide_gaps_stretch_the_window() {
        let sent = Instant::now();
        let mut arrivals = Arrivals::new(sent);
        arrivals.record(sent + 100 * MS);
        assert_eq!(
            QuietWindow::default().deadline(&arrivals, sent + 5000 * MS),
            sent + 300 * MS
        );
        arrivals.record(sent + 200 * MS);
        // The largest gap (100 ms) times 4 beats the round trip times 2.
        assert_eq!(
            QuietWindow::default().deadline(&arrivals, sent + 5000 * MS),
            sent + 600 * MS
        );
        // Never past the hard deadline.
        assert_eq!(
            QuietWindow::default().deadline(&arrivals, sent + 250 * MS),
            sent + 250 * MS
        );
    }
}

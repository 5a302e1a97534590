//! Knowing when replies have stopped arriving.
//!
//! MCollective waits a fixed two seconds for discovery replies. muster
//! waits until the replies go quiet: after each reply it allows a quiet
//! period scaled to what it has seen (the first round trip, the largest
//! gap between replies, and how widely the replies are spread), never less
//! than a floor, and never past the hard timeout. A small fleet on one
//! machine finishes in about a tenth of a second; a large one as soon as
//! its last reply lands.
//!
//! Over a wide-area network, sites answer in clusters: the local nodes at
//! once, a near site after tens of milliseconds, a far one after hundreds.
//! A few replies spread over a long time say that more may be on their
//! way, so the window widens with the spread; the same spread filled by
//! thousands of replies is a large fleet's burst, which has ended when it
//! stops, so that term shrinks with the square root of the count. No rule
//! can foresee a site that nobody has answered from yet: a known set does.

use std::time::{Duration, Instant};

/// The adaptive quiet window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuietWindow {
    /// The shortest quiet period that ends collection.
    pub floor: Duration,
    /// The quiet period is at least this many first round trips...
    pub rtt_factor: u32,
    /// ...and at least this many of the largest gaps between replies...
    pub gap_factor: u32,
    /// ...and at least this many times the spread of the replies (the
    /// first to the last), divided by the square root of their count.
    pub spread_factor: u32,
}

impl Default for QuietWindow {
    fn default() -> Self {
        QuietWindow {
            floor: Duration::from_millis(100),
            rtt_factor: 2,
            gap_factor: 4,
            // Two sites at 50 and 200 ms round trips, a few nodes each,
            // with the replies smeared by a busy machine: 8 keeps the far
            // site in (crates/cli/tests/it/wan.rs).
            spread_factor: 8,
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
    count: u32,
}

impl Arrivals {
    /// Starts counting from when the request was sent.
    pub fn new(sent: Instant) -> Arrivals {
        Arrivals {
            sent,
            first: None,
            last: None,
            largest_gap: Duration::ZERO,
            count: 0,
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
        self.count = self.count.saturating_add(1);
    }
}

impl QuietWindow {
    /// When to stop, given the arrivals so far and the hard deadline.
    pub fn deadline(&self, arrivals: &Arrivals, hard: Instant) -> Instant {
        match (arrivals.last, self.quiet(arrivals)) {
            (Some(last), Some(quiet)) => (last + quiet).min(hard),
            _ => hard,
        }
    }

    /// How long a silence after the last reply ends collection, given
    /// the arrivals so far; `None` until a reply arrives (then only the
    /// hard deadline ends it).
    pub fn quiet(&self, arrivals: &Arrivals) -> Option<Duration> {
        let (first, last) = (arrivals.first?, arrivals.last?);
        let rtt = first.saturating_duration_since(arrivals.sent);
        let spread = last
            .saturating_duration_since(first)
            .mul_f64(f64::from(self.spread_factor) / f64::from(arrivals.count.max(1)).sqrt());
        Some(
            self.floor
                .max(rtt * self.rtt_factor)
                .max(arrivals.largest_gap * self.gap_factor)
                .max(spread),
        )
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
        let window = QuietWindow {
            spread_factor: 0,
            ..QuietWindow::default()
        };
        let sent = Instant::now();
        let mut arrivals = Arrivals::new(sent);
        arrivals.record(sent + 100 * MS);
        assert_eq!(
            window.deadline(&arrivals, sent + 5000 * MS),
            sent + 300 * MS
        );
        arrivals.record(sent + 200 * MS);
        // The largest gap (100 ms) times 4 beats the round trip times 2.
        assert_eq!(
            window.deadline(&arrivals, sent + 5000 * MS),
            sent + 600 * MS
        );
        // Never past the hard deadline.
        assert_eq!(window.deadline(&arrivals, sent + 250 * MS), sent + 250 * MS);
    }

    #[test]
    fn no_quiet_period_before_the_first_reply() {
        let arrivals = Arrivals::new(Instant::now());
        assert_eq!(QuietWindow::default().quiet(&arrivals), None);
    }

    #[test]
    fn a_few_replies_spread_out_widen_the_window_for_a_farther_site() {
        // Local nodes at 5 and 40 ms (a busy machine smears them), a near
        // site at 55..80 ms: the largest gap, 35 ms, allows 140 ms...
        let sent = Instant::now();
        let mut arrivals = Arrivals::new(sent);
        for at in [5, 40, 55, 70, 80] {
            arrivals.record(sent + at * MS);
        }
        let quiet = QuietWindow::default().quiet(&arrivals).expect("replies");
        // ...but 5 replies over 75 ms: 8 × 75 / √5 ≈ 268 ms, so a far
        // site answering around 200 ms (and up to 340) is still waited for.
        assert!(quiet > 260 * MS && quiet < 270 * MS, "{quiet:?}");
        let without_spread = QuietWindow {
            spread_factor: 0,
            ..QuietWindow::default()
        };
        // ...closing at 220 ms, in the middle of the far site's replies.
        assert_eq!(without_spread.quiet(&arrivals), Some(140 * MS));
    }

    #[test]
    fn a_dense_burst_ends_soon_after_its_last_reply() {
        // 10 000 replies over 700 ms, one every 70 µs: a large fleet on one
        // machine. 8 × 700 / 100 = 56 ms: the floor decides.
        let sent = Instant::now();
        let mut arrivals = Arrivals::new(sent);
        for i in 0..10_000u32 {
            arrivals.record(sent + MS + Duration::from_micros(70) * i);
        }
        assert_eq!(QuietWindow::default().quiet(&arrivals), Some(100 * MS));
        // A single reply has no spread.
        let mut one = Arrivals::new(sent);
        one.record(sent + 10 * MS);
        assert_eq!(QuietWindow::default().quiet(&one), Some(100 * MS));
    }
}

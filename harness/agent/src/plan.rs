//! The agent's decisions that need no kernel: when a window is due, how far
//! the churn may go before the next round, whether a worker's ticket runs,
//! when the settle phase is over, when held fds are released, and how a
//! message goes on the wire. `workload.rs` does the syscalls and asks these;
//! the tests below pin each rule without a VM.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use repro_proto::{Message, SettleEnd, SettleSettings};

/// When the main loop probes: each time another `window` iterations have
/// finished, and once more when the churn (or its round) ends between two
/// boundaries, so the last namespaces are always probed.
#[derive(Debug)]
pub struct WindowClock {
    window: u64,
    next: u64,
    last: u64,
}

impl WindowClock {
    pub fn new(window: u64) -> WindowClock {
        let window = window.max(1);
        WindowClock { window, next: window, last: 0 }
    }

    pub fn due(&self, done: u64, paused: bool) -> bool {
        done >= self.next || (paused && done > self.last)
    }

    /// A window was taken with `done` iterations finished.
    pub fn taken(&mut self, done: u64) {
        self.last = done;
        self.next = (done / self.window + 1) * self.window;
    }

    /// Iterations finished at the last window.
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// How far the churn may go: all of it, or (sequential verdicts) up to the
/// first round and then each doubling of it, capped at the total.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    total: u64,
    limit: u64,
    /// Rounds grow by this much instead of doubling.
    step: Option<u64>,
}

impl Rounds {
    pub fn new(total: u64, first: Option<u64>, step: Option<u64>) -> Rounds {
        Rounds { total, limit: first.filter(|f| *f > 0).map_or(total, |f| f.min(total)), step: step.filter(|s| *s > 0) }
    }

    /// Tickets below this may run now.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The churn up to the limit is the whole run.
    pub fn is_last(&self) -> bool {
        self.limit >= self.total
    }

    pub fn advance(&mut self) {
        self.limit = match self.step {
            Some(step) => self.limit.saturating_add(step),
            None => self.limit.saturating_mul(2),
        }
        .min(self.total);
    }
}

/// What a worker does with the ticket it claimed.
#[derive(Debug, PartialEq, Eq)]
pub enum Ticket {
    /// Churn this iteration.
    Go,
    /// Beyond the current round: wait for the limit to rise.
    Wait,
    /// Beyond the run (or the run was stopped): the worker is done.
    Over,
}

pub fn admit(ticket: u64, limit: u64, total: u64, stopped: bool) -> Ticket {
    if ticket >= total || stopped {
        Ticket::Over
    } else if ticket < limit {
        Ticket::Go
    } else {
        Ticket::Wait
    }
}

/// The settle phase's rule, fed one poll of nr_dentry at a time. It ends
/// when the count is back near the baseline (cleanup complete); when,
/// cleanup having visibly started (a drop), it has made no new low for the
/// adaptive flat interval (the scenario's `flat`, or `flat_factor` times
/// the longest wait between two lows so far, if longer); after
/// `stable_polls` polls without a new low; or at `max`. A count flat from
/// the first poll gets no adaptive end: Debian's 6.1 under TCG has been
/// seen to start its cleanup more than 3 s after the churn, and a settle
/// that ended first called that fixed kernel regressed.
#[derive(Debug)]
pub struct SettleWatch {
    back_at: u64,
    low: u64,
    last_low_s: f64,
    longest_gap_s: f64,
    polls_since_low: u32,
    /// Significant drops seen: cleanup has started.
    drops: u32,
    /// A drop smaller than this is noise, not a cleanup batch: it does not
    /// restart the flat interval.
    min_drop: u64,
    flat_s: f64,
    flat_factor: f64,
    stable_polls: u32,
    max_s: f64,
}

impl SettleWatch {
    pub fn new(s: &SettleSettings, baseline: u64, iterations: u64, first: u64) -> SettleWatch {
        let back_at = baseline + (s.baseline_tolerance * iterations as f64) as u64;
        SettleWatch {
            back_at,
            low: first,
            last_low_s: 0.0,
            longest_gap_s: 0.0,
            polls_since_low: 0,
            drops: 0,
            min_drop: (first.saturating_sub(back_at) / 100).max(8),
            flat_s: s.flat_ms as f64 / 1000.0,
            flat_factor: s.flat_factor,
            stable_polls: s.stable_polls,
            max_s: s.max_ms as f64 / 1000.0,
        }
    }

    /// One poll: `nr` dentries at `t_s` seconds into the phase.
    pub fn observe(&mut self, t_s: f64, nr: u64) {
        if nr < self.low {
            if self.low - nr >= self.min_drop || nr <= self.back_at {
                self.longest_gap_s = self.longest_gap_s.max(t_s - self.last_low_s);
                self.last_low_s = t_s;
                self.drops += 1;
            }
            self.low = nr;
            self.polls_since_low = 0;
        } else {
            self.polls_since_low += 1;
        }
    }

    /// Whether the phase is over at `t_s`, and why.
    pub fn end(&self, t_s: f64) -> Option<SettleEnd> {
        let flat_for = t_s - self.last_low_s;
        if self.low <= self.back_at {
            Some(SettleEnd::Baseline)
        } else if self.drops > 0 && self.flat_s > 0.0 && flat_for >= self.flat_s.max(self.flat_factor * self.longest_gap_s) {
            Some(SettleEnd::Flat)
        } else if self.polls_since_low >= self.stable_polls {
            Some(SettleEnd::StablePolls)
        } else if t_s >= self.max_s {
            Some(SettleEnd::MaxTime)
        } else {
            None
        }
    }
}

/// Fds a worker holds for the namespaces it churned, released in order once
/// `after` has passed for each (or never, with None: until the run ends).
#[derive(Debug)]
pub struct Held<T> {
    after: Option<Duration>,
    queue: VecDeque<(Instant, T)>,
}

impl<T> Held<T> {
    pub fn new(after: Option<Duration>) -> Held<T> {
        Held { after, queue: VecDeque::new() }
    }

    pub fn hold(&mut self, at: Instant, item: T) {
        self.queue.push_back((at, item));
    }

    /// Drop what is due at `now`; returns how many were released.
    pub fn release_due(&mut self, now: Instant) -> usize {
        let Some(after) = self.after else { return 0 };
        let mut n = 0;
        while self.queue.front().is_some_and(|(t, _)| now.duration_since(*t) >= after) {
            self.queue.pop_front();
            n += 1;
        }
        n
    }

    /// The next item and how long until it is due (for the final wait).
    pub fn next_due(&mut self, now: Instant) -> Option<(Duration, T)> {
        let after = self.after?;
        self.queue.pop_front().map(|(t, item)| (after.saturating_sub(now.duration_since(t)), item))
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The open-file limit a holding run needs: one fd per held path per
/// iteration, and room for everything else.
pub fn fd_limit(iterations: u64, held_paths: usize) -> u64 {
    iterations.saturating_mul(held_paths as u64).saturating_add(256)
}

/// One message as it goes on the wire: a single line of JSON.
pub fn encode(msg: &Message) -> Option<String> {
    let mut line = serde_json::to_string(msg).ok()?;
    line.push('\n');
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use repro_proto::{HostMessage, ProbeStats, Settled, Window, MAX_LINE_BYTES};

    #[test]
    fn windows_fall_on_boundaries_and_once_at_a_pause() {
        let mut w = WindowClock::new(100);
        assert!(!w.due(99, false));
        assert!(w.due(100, false));
        // Workers raced past the boundary: the next one is the next multiple.
        w.taken(130);
        assert!(!w.due(199, false) && w.due(200, false));
        // A round or the run ends between boundaries: one more window, once.
        assert!(w.due(150, true));
        w.taken(150);
        assert!(!w.due(150, true));
        assert_eq!(w.last(), 150);
        assert!(WindowClock::new(0).due(1, false), "a zero window means every iteration");
    }

    #[test]
    fn rounds_double_up_to_the_total() {
        let mut r = Rounds::new(1000, Some(200), None);
        let mut limits = vec![r.limit()];
        while !r.is_last() {
            r.advance();
            limits.push(r.limit());
        }
        assert_eq!(limits, [200, 400, 800, 1000]);
        assert!(Rounds::new(1000, None, None).is_last());
        assert_eq!(Rounds::new(100, Some(500), None).limit(), 100);
        assert!(Rounds::new(100, Some(0), None).is_last());
    }

    #[test]
    fn a_checkpointed_run_pauses_every_step() {
        let mut r = Rounds::new(1000, Some(300), Some(300));
        let mut limits = vec![r.limit()];
        while !r.is_last() {
            r.advance();
            limits.push(r.limit());
        }
        assert_eq!(limits, [300, 600, 900, 1000]);
        assert_eq!(Rounds::new(1000, Some(300), Some(0)).step, None, "a zero step is no step: doublings");
    }

    #[test]
    fn tickets_run_within_the_round_wait_beyond_it_and_end_at_the_total() {
        assert_eq!(admit(0, 200, 1000, false), Ticket::Go);
        assert_eq!(admit(199, 200, 1000, false), Ticket::Go);
        assert_eq!(admit(200, 200, 1000, false), Ticket::Wait);
        assert_eq!(admit(1000, 2000, 1000, false), Ticket::Over);
        assert_eq!(admit(5, 200, 1000, true), Ticket::Over, "a stopped run churns no more");
    }

    fn settings(flat_ms: u64) -> SettleSettings {
        SettleSettings { poll_ms: 500, stable_polls: 30, max_ms: 120_000, baseline_tolerance: 0.1, flat_ms, flat_factor: 3.0 }
    }

    /// Feed polls every 0.5 s; the time the phase ends and why.
    fn run(s: &SettleSettings, baseline: u64, iterations: u64, polls: &[u64]) -> (f64, SettleEnd) {
        let mut w = SettleWatch::new(s, baseline, iterations, polls[0]);
        for (i, nr) in polls.iter().enumerate().skip(1) {
            let t = i as f64 * 0.5;
            if let Some(end) = w.end(t - 0.5) {
                return (t - 0.5, end);
            }
            w.observe(t, *nr);
        }
        let t = (polls.len() - 1) as f64 * 0.5;
        (t, w.end(t).expect("the polls given end the phase"))
    }

    #[test]
    fn a_kernel_back_at_its_baseline_has_settled_at_once() {
        assert_eq!(run(&settings(8000), 2750, 3000, &[2781]), (0.0, SettleEnd::Baseline));
    }

    #[test]
    fn a_count_flat_from_the_start_waits_out_the_bound_for_a_late_cleanup() {
        // 6.1-noprune: 20751 at every poll of its recorded trace; Debian's
        // 6.1 was once flat for over 3 s before its cleanup began. Nothing
        // tells them apart early, so both wait `stable_polls`.
        let (t, end) = run(&settings(8000), 2750, 3000, &[20751; 40]);
        assert_eq!((t, end), (15.0, SettleEnd::StablePolls));
        let mut late = vec![14036; 8];
        late.extend([10400; 40]);
        assert_eq!(run(&settings(8000), 10353, 3000, &late).1, SettleEnd::Baseline);
    }

    #[test]
    fn cleanup_in_batches_gets_the_flat_interval_or_three_times_its_longest_pause() {
        // Debian 6.1's recorded seed trace: drops at 0.5 s and 1 s, then
        // flat: 8 s after the last drop, not 15.
        let mut polls = vec![17390, 15000, 12218];
        polls.extend([12218; 40]);
        assert_eq!(run(&settings(8000), 10353, 3000, &polls), (9.0, SettleEnd::Flat));
        // A batch that comes 4 s after the one before stretches the wait to
        // three times that, 12 s after it.
        let mut polls = vec![17390, 15000, 12218];
        polls.extend([12218; 7]);
        polls.push(11000); // at 5 s
        polls.extend([11000; 40]);
        assert_eq!(run(&settings(8000), 10353, 3000, &polls), (17.0, SettleEnd::Flat));
    }

    #[test]
    fn dribbles_of_a_few_dentries_do_not_restart_the_flat_interval() {
        let mut polls = vec![25000];
        polls.extend((0..40).map(|i| 20751 - i));
        assert_eq!(run(&settings(8000), 2750, 3000, &polls), (8.5, SettleEnd::Flat));
    }

    #[test]
    fn the_bound_ends_a_phase_that_keeps_falling() {
        let mut s = settings(8000);
        s.max_ms = 2000;
        let polls: Vec<u64> = (0..20).map(|i| 100_000 - i * 1000).collect();
        assert_eq!(run(&s, 2750, 3000, &polls), (2.0, SettleEnd::MaxTime));
    }

    #[test]
    fn held_fds_are_released_in_order_when_due() {
        let t0 = Instant::now();
        let mut h = Held::new(Some(Duration::from_secs(10)));
        h.hold(t0, 1);
        h.hold(t0 + Duration::from_secs(5), 2);
        assert_eq!(h.release_due(t0 + Duration::from_secs(9)), 0);
        assert_eq!(h.release_due(t0 + Duration::from_secs(12)), 1);
        assert_eq!(h.next_due(t0 + Duration::from_secs(12)), Some((Duration::from_secs(3), 2)));
        assert!(h.is_empty());
        let mut forever = Held::new(None);
        forever.hold(t0, 1);
        assert_eq!(forever.release_due(t0 + Duration::from_secs(3600)), 0);
        assert!(forever.next_due(t0).is_none());
    }

    #[test]
    fn a_holding_run_asks_for_an_fd_per_held_path_and_iteration() {
        assert_eq!(fd_limit(3000, 2), 6256);
        assert_eq!(fd_limit(u64::MAX, 2), u64::MAX);
    }

    #[test]
    fn messages_are_single_json_lines_the_host_reads_back() {
        let w = Window {
            iteration: 200,
            elapsed_s: 1.5,
            churn_rate: 100.0,
            churn_errors: 0,
            nr_dentry: 4000,
            nr_unused: 10,
            probes: vec![ProbeStats::from_samples_ns("ipv6\nnewline", &mut [1000, 2000], 0)],
            chain_walk: None,
            mem_free_kib: None,
            slab_kib: None,
        };
        let msg = Message::Round(Settled {
            settle_s: 3.0,
            stable: true,
            ended: Some(SettleEnd::Flat),
            trace: vec![],
            window: w,
            barrier_failed: None,
            mounts: None,
        });
        let line = encode(&msg).unwrap();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
        assert!(line.len() < MAX_LINE_BYTES);
        assert_eq!(serde_json::from_str::<Message>(&line).unwrap(), msg);
        assert_eq!(serde_json::from_str::<HostMessage>(&HostMessage::Stop.line()).unwrap(), HostMessage::Stop);
    }
}

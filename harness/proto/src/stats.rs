use serde::{Deserialize, Serialize};

use crate::protocol::Window;

/// Latency of one probe path in one window, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStats {
    pub name: String,
    pub count: u32,
    /// Opens that failed (the path did not exist, say).
    pub errors: u32,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl ProbeStats {
    /// The fastest open a probe can time: a nanosecond.
    pub const MIN_US: f64 = 1e-3;
    /// The slowest one it may report: an hour.
    pub const MAX_US: f64 = 3.6e9;

    /// Whether these are figures a probe can have measured: each latency
    /// within a nanosecond to an hour (all zero for a window without a
    /// successful open) and in order. A guest's figures are outside data,
    /// checked here where they enter before anything plots or fits them.
    pub fn check(&self) -> Result<(), String> {
        let v = [self.min_us, self.p50_us, self.p90_us, self.p99_us, self.max_us];
        if self.name.is_empty() || self.name.len() > 64 {
            return Err("a probe with no name, or one over 64 bytes".into());
        }
        if self.count == 0 {
            return match v.iter().all(|x| *x == 0.0) {
                true => Ok(()),
                false => Err(format!("probe {}: latencies without a single timed open", self.name)),
            };
        }
        if let Some(x) = v.iter().find(|x| !(x.is_finite() && (Self::MIN_US..=Self::MAX_US).contains(*x))) {
            return Err(format!("probe {}: {x} us is outside a nanosecond to an hour", self.name));
        }
        if v.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("probe {}: min, p50, p90, p99 and max out of order", self.name));
        }
        Ok(())
    }

    /// Ten opens whose median is `p50_us`, the rest at or above a
    /// microsecond: a window's figures as tests and examples write them.
    pub fn around(name: &str, p50_us: f64) -> ProbeStats {
        let hi = p50_us.max(1.0);
        ProbeStats { name: name.into(), count: 10, errors: 0, min_us: p50_us.min(1.0), p50_us, p90_us: hi, p99_us: hi, max_us: hi }
    }

    /// Exact order statistics of one window's samples (nanoseconds).
    ///
    /// A window holds at most a few hundred samples, so sorting them gives
    /// exact percentiles for less than a histogram's bucketing would cost.
    pub fn from_samples_ns(name: &str, samples_ns: &mut [u64], errors: u32) -> ProbeStats {
        samples_ns.sort_unstable();
        let us = |p: f64| percentile_nearest_rank(samples_ns, p).map_or(0.0, |ns| ns as f64 / 1e3);
        ProbeStats {
            name: name.to_string(),
            count: samples_ns.len() as u32,
            errors,
            min_us: us(0.0),
            p50_us: us(50.0),
            p90_us: us(90.0),
            p99_us: us(99.0),
            max_us: us(100.0),
        }
    }
}

/// Nearest-rank percentile of an ascending slice; `p` in 0..=100.
pub fn percentile_nearest_rank(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Window {
    /// Whether a window says what a probe and a churn can have measured
    /// ([`ProbeStats::check`] for each probe; times and rates finite).
    pub fn check(&self) -> Result<(), String> {
        if !(self.elapsed_s.is_finite() && self.elapsed_s >= 0.0 && self.churn_rate.is_finite() && self.churn_rate >= 0.0) {
            return Err(format!("window at iteration {}: elapsed or churn rate not a finite, non-negative number", self.iteration));
        }
        if self.probes.len() > 64 {
            return Err(format!("window at iteration {}: {} probes", self.iteration, self.probes.len()));
        }
        self.probes.iter().try_for_each(ProbeStats::check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_nearest_rank(&v, 0.0), Some(1));
        assert_eq!(percentile_nearest_rank(&v, 50.0), Some(50));
        assert_eq!(percentile_nearest_rank(&v, 99.0), Some(99));
        assert_eq!(percentile_nearest_rank(&v, 100.0), Some(100));
        assert_eq!(percentile_nearest_rank(&[], 50.0), None);
    }

    #[test]
    fn stats_sort_and_convert_to_microseconds() {
        let mut s = vec![3_000, 1_000, 2_000];
        let st = ProbeStats::from_samples_ns("ipv6", &mut s, 1);
        assert_eq!((st.count, st.errors), (3, 1));
        assert_eq!((st.min_us, st.p50_us, st.max_us), (1.0, 2.0, 3.0));
    }
}

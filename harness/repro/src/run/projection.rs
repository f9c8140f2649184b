//! How long the churn will take. On a kernel with the bug every new
//! namespace's own lookups walk the chain, so each iteration costs more
//! than the last and a run's time grows with the square of its length: a
//! line through the windows' (iteration, 1/churn rate) gives the cost per
//! iteration at chain length x, t0 + k*x, and its integral the finish.

use repro_proto::{Projection, Window};

/// The write-up's chain: 799,259 entries.
pub(crate) const WRITEUP_CHAIN: f64 = 799_259.0;

/// Windows before a projection is made.
pub(crate) const MIN_WINDOWS: usize = 5;

/// Seconds a run of `n` namespaces takes when each iteration costs
/// `t0 + k * x` seconds at chain length x (every new namespace's own
/// lookups walk the chain too): the integral, t0*n + k*n^2/2.
pub(crate) fn churn_seconds(t0: f64, k: f64, n: f64) -> f64 {
    t0 * n + k * n * n / 2.0
}

/// (t0, k) of the per-iteration cost from windows' (iteration, churn rate):
/// a least-squares line through (x, 1/rate). None without 3 windows.
pub(crate) fn iteration_cost(windows: &[(f64, f64)]) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> = windows.iter().filter(|(_, r)| *r > 0.0).map(|&(x, r)| (x, 1.0 / r)).collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = pts.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return Some((my, 0.0));
    }
    let k = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / sxx;
    Some((my - k * mx, k.max(0.0)))
}

/// Dentries per iteration the windows must gain for the chain to be
/// growing: the bug leaves about 6 per namespace, a fixed kernel about 0
/// (its cleanup lagging under TCG has shown 2). A churn that slows while
/// the count stays put is a busy host, not a chain.
pub(crate) const MIN_GROWTH_PER_ITERATION: f64 = 1.0;

/// The projection from a run's windows so far, when the chain grows
/// ([`MIN_GROWTH_PER_ITERATION`]) and the churn visibly slows with it (the
/// last window's iteration costs at least half again the first's); None
/// otherwise, or before [`MIN_WINDOWS`].
pub(crate) fn project(windows: &[Window], total: u64) -> Option<Projection> {
    if windows.len() < MIN_WINDOWS {
        return None;
    }
    let (first, last_w) = (windows.first()?, windows.last()?);
    let span = last_w.iteration.saturating_sub(first.iteration).max(1) as f64;
    if (last_w.nr_dentry as f64 - first.nr_dentry as f64) / span < MIN_GROWTH_PER_ITERATION {
        return None;
    }
    let pts: Vec<(f64, f64)> = windows.iter().map(|w| (w.iteration as f64, w.churn_rate)).collect();
    let (t0, k) = iteration_cost(&pts)?;
    let last = windows.last()?.iteration as f64;
    if t0 <= 0.0 || k * last < 0.5 * t0 {
        return None;
    }
    let p = Projection {
        at_iteration: last as u64,
        t0_s: t0,
        per_entry_s: k,
        finish_s: churn_seconds(t0, k, total as f64),
        writeup_chain_s: churn_seconds(t0, k, WRITEUP_CHAIN),
    };
    // JSON has no infinity: a projection that overflows is no projection
    // (serde_json would write null, which no reader of the summary accepts).
    [p.t0_s, p.per_entry_s, p.finish_s, p.writeup_chain_s].iter().all(|x| x.is_finite()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(iteration: u64, churn_rate: f64, nr_dentry: u64) -> Window {
        Window {
            iteration,
            elapsed_s: 0.0,
            churn_rate,
            churn_errors: 0,
            nr_dentry,
            nr_unused: 0,
            probes: vec![],
            chain_walk: None,
            mem_free_kib: None,
            slab_kib: None,
        }
    }

    #[test]
    fn a_churn_that_slows_while_the_count_stays_put_is_no_growing_chain() {
        // Debian 11's 5.10 built from source, on a busy host: 45/s down to
        // 27/s over 200 namespaces, the dentry count flat (fixed kernel).
        let flat: Vec<Window> =
            [(40, 45.0), (80, 38.0), (120, 33.0), (160, 32.0), (200, 27.0)].iter().map(|&(i, r)| window(i, r, 10_400 - i / 25)).collect();
        assert!(project(&flat, 1000).is_none());
        // The same slowdown with 6 stale dentries a namespace: projected.
        let growing: Vec<Window> = flat.iter().map(|w| window(w.iteration, w.churn_rate, 10_000 + 6 * w.iteration)).collect();
        assert!(project(&growing, 1000).is_some());
    }

    #[test]
    fn a_churn_that_slows_linearly_takes_quadratic_time() {
        // 6.1-noprune under TCG: 85/s at the start, about 7 us more per
        // iteration for every stale entry (31/s at 3,000).
        let windows: Vec<(f64, f64)> = (0..10).map(|i| i as f64 * 300.0).map(|x| (x, 1.0 / (1.0 / 85.0 + 7e-6 * x))).collect();
        let (t0, k) = iteration_cost(&windows).unwrap();
        assert!((t0 - 1.0 / 85.0).abs() < 1e-6 && (k - 7e-6).abs() < 1e-9, "{t0} {k}");
        let n = 100_000.0;
        assert!((churn_seconds(t0, k, n) - (n / 85.0 + 7e-6 * n * n / 2.0)).abs() < 1.0);
    }
}

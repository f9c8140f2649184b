//! What a lookup costs on a chain of length x, fitted so that it can bend:
//! `p50(x) = a + b * x^c`. A straight line through a short run is biased
//! low, because each entry costs more as the chain outgrows the caches
//! (measured on CentOS 7.3's kernel: 0.41 us per entry from a 1,500-
//! namespace run, 1.03 us from a 10,000-namespace one). The exponent is
//! chosen on a grid, a and b by least squares on relative error (the
//! noise of an open's p50 grows with it); the interval is a bootstrap over
//! the windows. Hand-written: the fit is a dozen lines of arithmetic, which
//! no statistics crate makes shorter, and the bootstrap needs only a
//! deterministic generator, so the report is reproducible.

/// The write-up's machine: one open() of an ipv6 sysctl took 0.456366 s with
/// 799,259 entries on the chain.
pub(crate) const WRITEUP_OPEN_S: f64 = 0.456366;
pub(crate) const WRITEUP_CHAIN: f64 = 799_259.0;

/// A fitted cost curve and the range of chain lengths it was fitted on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fit {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub x_min: f64,
    pub x_max: f64,
    pub points: usize,
}

/// Exponents tried: 0.5 (sublinear) to 2.5, in steps of 0.01.
fn exponents() -> impl Iterator<Item = f64> {
    (50..=250).map(|i| i as f64 / 100.0)
}

impl Fit {
    /// Fit `points` (chain length, p50 us); None with fewer than 4 usable
    /// points or no spread in x.
    pub(crate) fn new(points: &[(f64, f64)]) -> Option<Fit> {
        let pts: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| *x > 0.0 && *y > 0.0 && y.is_finite()).collect();
        if pts.len() < 4 {
            return None;
        }
        let (x_min, x_max) = pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| (lo.min(*x), hi.max(*x)));
        if x_max <= x_min {
            return None;
        }
        exponents()
            .filter_map(|c| {
                let (a, b, sse) = weighted_line(&pts, c)?;
                (b >= 0.0).then_some((sse, Fit { a, b, c, x_min, x_max, points: pts.len() }))
            })
            .min_by(|p, q| p.0.total_cmp(&q.0))
            .map(|(_, f)| f)
    }

    /// The cost in us at chain length `x`.
    pub(crate) fn predict(&self, x: f64) -> f64 {
        self.a + self.b * x.powf(self.c)
    }

    /// Cost per chain entry at `x`, in us (the curve's slope there).
    pub(crate) fn per_entry_us(&self, x: f64) -> f64 {
        self.b * self.c * x.powf(self.c - 1.0)
    }

    /// A 5-95% interval of the prediction at `x`: the fit redone on
    /// `rounds` resamplings of `points` with replacement.
    pub(crate) fn interval(points: &[(f64, f64)], x: f64, rounds: usize) -> Option<(f64, f64)> {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut preds: Vec<f64> = (0..rounds)
            .filter_map(|_| {
                let sample: Vec<(f64, f64)> = (0..points.len()).map(|_| points[rng.below(points.len())]).collect();
                Fit::new(&sample).map(|f| f.predict(x))
            })
            .collect();
        if preds.len() < rounds / 2 {
            return None;
        }
        preds.sort_by(f64::total_cmp);
        let at = |q: f64| preds[((preds.len() - 1) as f64 * q).round() as usize];
        Some((at(0.05), at(0.95)))
    }
}

/// Least squares of y = a + b * x^c with weights 1/y^2 (relative error):
/// (a, b, weighted sum of squared relative residuals).
fn weighted_line(pts: &[(f64, f64)], c: f64) -> Option<(f64, f64, f64)> {
    let (mut sw, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x, y) in pts {
        let (u, w) = (x.powf(c), 1.0 / (y * y));
        sw += w;
        sx += w * u;
        sy += w * y;
        sxx += w * u * u;
        sxy += w * u * y;
    }
    let det = sw * sxx - sx * sx;
    if det.abs() < f64::EPSILON * sw * sxx {
        return None;
    }
    let b = (sw * sxy - sx * sy) / det;
    let a = (sy - b * sx) / sw;
    let sse = pts.iter().map(|&(x, y)| ((a + b * x.powf(c) - y) / y).powi(2)).sum();
    Some((a, b, sse))
}

/// xorshift64: a deterministic stream for the bootstrap.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A run's probe p50 (us) against the chain length of each window: one
/// stale entry per namespace churned. None for a probe that times no
/// lookup (a namespace's life): there is no chain to extrapolate.
pub(crate) fn curve(s: &repro_proto::Summary) -> Vec<(f64, f64)> {
    let Some(probe) = s.scenario_definition.judged_probe().filter(|p| p.op.grows_with_churn()) else { return Vec::new() };
    s.windows.iter().filter_map(|w| Some((w.iteration as f64, w.probes.iter().find(|p| p.name == probe.name)?.p50_us))).collect()
}

/// The fitted curve of a regressed run, evaluated at the write-up's chain,
/// with the straight line through the same run beside it, as one report line.
pub(crate) fn line(s: &repro_proto::Summary, linear_per_1k: Option<f64>) -> Option<String> {
    let pts = curve(s);
    let f = Fit::new(&pts)?;
    let at = f.predict(WRITEUP_CHAIN) / 1e6;
    let interval =
        Fit::interval(&pts, WRITEUP_CHAIN, 200).map_or(String::new(), |(lo, hi)| format!(" (5-95%: {:.2}-{:.2} s)", lo / 1e6, hi / 1e6));
    let straight = linear_per_1k.zip(pts.first()).map_or(String::new(), |(slope, (_, first))| {
        format!("; a straight line through the same run: {:.3} s", (first + slope / 1000.0 * WRITEUP_CHAIN) / 1e6)
    });
    Some(format!(
        "p50 = a + b*x^{:.2} fitted on chains of {:.0}-{:.0} entries ({} windows): {at:.3} s at {} entries{interval}, \
         {:.2} us per entry there{straight}. Write-up: {WRITEUP_OPEN_S:.3} s ({:.2} us per entry), on its hardware",
        f.c,
        f.x_min,
        f.x_max,
        f.points,
        WRITEUP_CHAIN as u64,
        f.per_entry_us(WRITEUP_CHAIN),
        WRITEUP_OPEN_S / WRITEUP_CHAIN * 1e6,
    ))
}

/// A long run checks the extrapolation: the curve fitted on its windows up
/// to `fit_upto` entries, predicted at its last window, against the median
/// p50 of its last three windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Validation {
    pub fit: Fit,
    pub at: f64,
    pub predicted_us: f64,
    pub interval_us: Option<(f64, f64)>,
    pub measured_us: f64,
    /// Predicted over measured, minus one.
    pub error: f64,
    /// The same for a straight line through the same short range.
    pub straight_error: Option<f64>,
}

pub(crate) fn validate(s: &repro_proto::Summary, fit_upto: f64) -> Option<Validation> {
    let pts = curve(s);
    let &(at, _) = pts.last()?;
    if at < 5.0 * fit_upto {
        return None;
    }
    let short: Vec<(f64, f64)> = pts.iter().copied().filter(|(x, _)| *x <= fit_upto).collect();
    let fit = Fit::new(&short)?;
    let mut tail: Vec<f64> = pts.iter().rev().take(3).map(|(_, y)| *y).collect();
    tail.sort_by(f64::total_cmp);
    let measured_us = tail[tail.len() / 2];
    let predicted_us = fit.predict(at);
    let straight_error = straight_line(&short).map(|(a, b)| (a + b * at) / measured_us - 1.0);
    Some(Validation {
        fit,
        at,
        predicted_us,
        interval_us: Fit::interval(&short, at, 200),
        measured_us,
        error: predicted_us / measured_us - 1.0,
        straight_error,
    })
}

/// For a run whose churn went on past its first hour (a soak): the chain
/// its last window within that hour reached, the range "the extrapolation
/// made from the first hour" is fitted on.
pub(crate) fn first_hour_chain(s: &repro_proto::Summary) -> Option<f64> {
    const HOUR_S: f64 = 3600.0;
    if s.windows.last()?.elapsed_s <= HOUR_S {
        return None;
    }
    s.windows.iter().take_while(|w| w.elapsed_s <= HOUR_S).last().map(|w| w.iteration as f64)
}

/// Ordinary least squares, for the comparison.
fn straight_line(pts: &[(f64, f64)]) -> Option<(f64, f64)> {
    weighted_line(pts, 1.0).map(|(a, b, _)| (a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (1..=20).map(|i| i as f64 * 100.0).map(|x| (x, f(x))).collect()
    }

    #[test]
    fn a_straight_line_is_found_as_one() {
        let f = Fit::new(&series(|x| 30.0 + 0.5 * x)).unwrap();
        assert!((f.c - 1.0).abs() < 0.02, "{f:?}");
        assert!((f.predict(800_000.0) / (30.0 + 0.5 * 800_000.0) - 1.0).abs() < 0.1, "{f:?}");
    }

    #[test]
    fn a_curve_that_bends_up_is_extrapolated_above_the_straight_line() {
        let truth = |x: f64| 30.0 + 0.01 * x.powf(1.3);
        let pts = series(truth);
        let f = Fit::new(&pts).unwrap();
        assert!((f.c - 1.3).abs() < 0.05, "{f:?}");
        let at = 20_000.0;
        assert!((f.predict(at) / truth(at) - 1.0).abs() < 0.05, "{} vs {}", f.predict(at), truth(at));
        // The straight line through the same points falls short.
        let slope = (truth(2000.0) - truth(100.0)) / 1900.0;
        assert!(truth(100.0) + slope * (at - 100.0) < 0.8 * f.predict(at));
        assert_eq!((f.x_min, f.x_max, f.points), (100.0, 2000.0, 20));
    }

    #[test]
    fn the_interval_brackets_the_prediction_and_widens_with_noise() {
        let clean = series(|x| 30.0 + 0.5 * x);
        let noisy: Vec<(f64, f64)> = clean.iter().enumerate().map(|(i, &(x, y))| (x, y * if i % 2 == 0 { 1.3 } else { 0.75 })).collect();
        let f = Fit::new(&noisy).unwrap();
        let (lo, hi) = Fit::interval(&noisy, 20_000.0, 200).unwrap();
        assert!(lo <= f.predict(20_000.0) && f.predict(20_000.0) <= hi, "{lo} {} {hi}", f.predict(20_000.0));
        let (clo, chi) = Fit::interval(&clean, 20_000.0, 200).unwrap();
        assert!(chi - clo < hi - lo);
    }

    #[test]
    fn only_a_lookup_has_a_chain_to_extrapolate() {
        use repro_proto::{Namespace, ProbeOp, ProbePath, ProbeStats, Scenario, Window};
        let probe = |op| ProbePath { name: "p".into(), path: String::new(), control: false, op };
        let windows: Vec<Window> = (1..=10)
            .map(|i| Window { iteration: i * 100, probes: vec![ProbeStats::around("p", 30.0 * i as f64)], ..Default::default() })
            .collect();
        let of = |op| {
            let scenario = Scenario { probes: vec![probe(op)], ..Default::default() };
            let mut s = crate::run::summary::new_summary("d", "k", scenario, 1000, 1, 100);
            s.windows = windows.clone();
            s
        };
        assert_eq!(curve(&of(ProbeOp::Open)).len(), 10);
        let life = of(ProbeOp::Lifecycle { unshare: vec![Namespace::Ipc], after: None });
        assert!(curve(&life).is_empty() && line(&life, Some(1.0)).is_none(), "a namespace's life is no chain");
    }

    #[test]
    fn a_soak_is_checked_against_what_its_first_hour_predicted() {
        let w = |iteration: u64, elapsed_s: f64| repro_proto::Window { iteration, elapsed_s, ..Default::default() };
        let scenario = repro_proto::Scenario::default();
        let mut s = crate::run::summary::new_summary("d", "k", scenario, 100_000, 1, 1000);
        s.windows = vec![w(1000, 600.0), w(2000, 1800.0), w(3000, 3500.0)];
        assert_eq!(first_hour_chain(&s), None, "a run of under an hour has no first hour to check");
        s.windows.extend([w(4000, 3700.0), w(9000, 20_000.0)]);
        assert_eq!(first_hour_chain(&s), Some(3000.0));
        s.windows = vec![w(50_000, 4000.0)];
        assert_eq!(first_hour_chain(&s), None, "no window inside the first hour");
    }

    #[test]
    fn too_few_points_fit_nothing() {
        assert!(Fit::new(&[(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]).is_none());
        assert!(Fit::new(&[(5.0, 1.0); 6]).is_none());
    }
}

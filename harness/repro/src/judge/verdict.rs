//! From a run's numbers to an answer: `regressed`, `clean` or
//! `inconclusive`, with the evidence and the rule that decided.
//!
//! The deciding evidence is what remains once namespace cleanup has
//! settled: stale dentries per churned namespace (`residual`). A kernel with
//! the bug keeps about six per namespace; a fixed one returns to its
//! baseline. Latency is reported beside it (the slope of the probe's p50
//! against iteration, robustly fitted; last/first window; ipv6/ipv4) and
//! must not contradict it. Thresholds come from the scenario's [verdict].
//! The verdict's types are proto's (verdict.json is a contract with CI).

use crate::text::first_line;
pub(crate) use repro_proto::{Agreement, Evidence, Outcome, Rule, Verdict};
use repro_proto::{ProbeOp, Residual, Settled, Summary, VerdictBasis, VerdictSettings};

/// Median, or None for no values.
fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

/// The most points the slope is taken over: at most 1,999,000 pairs (16
/// MB of slopes) however many windows a run has. Longer series are thinned
/// evenly, first and last point kept; the median of pairwise slopes is
/// robust to that as it is to outliers.
pub(crate) const THEIL_SEN_MAX_POINTS: usize = 2000;

/// Theil-Sen estimator: the median of the slopes between every pair of
/// points. Robust to the outlying windows TCG produces; hand-written
/// because it is a dozen lines and no maintained crate offers it.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let thinned: Vec<(f64, f64)>;
    let points = if points.len() > THEIL_SEN_MAX_POINTS {
        let step = (points.len() - 1) as f64 / (THEIL_SEN_MAX_POINTS - 1) as f64;
        thinned = (0..THEIL_SEN_MAX_POINTS).map(|i| points[((i as f64 * step).round() as usize).min(points.len() - 1)]).collect();
        &thinned[..]
    } else {
        points
    };
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    median(&mut slopes)
}

pub(crate) fn evidence<'a>(s: &'a Summary) -> Evidence {
    let judged = s.scenario_definition.judged_probe();
    let probe = judged.map(|p| p.name.clone());
    let control = s.scenario_definition.control_probe().map(|p| p.name.clone());
    let stats = |w: &'a repro_proto::Window, name: &Option<String>| name.as_ref().and_then(|n| w.probes.iter().find(|p| &p.name == n));
    let p50 = |w, name: &Option<String>| stats(w, name).map(|p| p.p50_us);
    let points: Vec<(f64, f64)> = s.windows.iter().filter_map(|w| Some((w.iteration as f64 / 1000.0, p50(w, &probe)?))).collect();
    let first = s.windows.first().and_then(|w| p50(w, &probe));
    let last = s.windows.last().and_then(|w| p50(w, &probe));
    let last_control = s.windows.last().and_then(|w| p50(w, &control));
    let settled = s.settled.as_ref().map(|st| &st.window);
    // The settled ratio compares the figure the judged probe's kind calls for, on both sides.
    let op = judged.map(|p| p.op.clone()).unwrap_or_default();
    let figure = |w, name: &Option<String>| stats(w, name).map(|p| op.settled_us(p));
    let settled_ratio = settled.and_then(|w| figure(w, &probe).zip(figure(w, &control))).filter(|(_, c)| *c > 0.0).map(|(p, c)| p / c);
    Evidence {
        residual_per_iteration: s.residual.as_ref().map(|r| r.per_iteration),
        slope_us_per_1k: theil_sen(&points),
        p50_first_us: first,
        p50_last_us: last,
        last_over_first: first.zip(last).filter(|(f, _)| *f > 0.0).map(|(f, l)| l / f),
        probe_over_control: last.zip(last_control).filter(|(_, c)| *c > 0.0).map(|(l, c)| l / c),
        settled_probe_over_control: settled_ratio,
        probe,
        windows: s.windows.len(),
        iterations: s.iterations_done,
        seconds: s.duration_s,
        stopped_early: s.stopped_early,
        mounts: s.settled.as_ref().and_then(|st| st.mounts),
    }
}

/// Sequential verdicts: whether the churn may stop at this round. The run
/// so far, judged as if it ended with `round`'s settled state, must reach
/// a verdict, and on the residual it rests on the verdict must hold even if
/// `early_margin_dentries` of the count were noise (the margin per
/// namespace shrinks as the run grows). A verdict on the probe/control
/// ratio stands at once where what the probe times does not grow with the
/// churn (a namespace's life: the round's settled window is as good as the
/// last); on an open's ratio it waits for more churn, as does an
/// inconclusive one.
pub(crate) fn decided_at_round(s: &Summary, round: &Settled) -> bool {
    let t = &s.scenario_definition.verdict;
    let mut at = s.clone();
    at.settled = Some(round.clone());
    at.residual = s.baseline.and_then(|b| Residual::compute(b.nr_dentry, round.window.nr_dentry, round.window.iteration));
    at.iterations_done = round.window.iteration;
    at.complete = true;
    let v = decide(&at, t);
    if v.outcome == Outcome::Inconclusive {
        return false;
    }
    if t.basis == VerdictBasis::SettledRatio {
        return s.scenario_definition.judged_probe().is_some_and(|p| !p.op.grows_with_churn());
    }
    if t.basis == VerdictBasis::Mounts {
        // A count that more churn does not change.
        return true;
    }
    let Some(r) = at.residual.as_ref().map(|r| r.per_iteration) else { return false };
    let margin = t.early_margin_dentries / round.window.iteration.max(1) as f64;
    match v.outcome {
        Outcome::Regressed => r - margin >= t.residual_regressed,
        Outcome::Clean => r + margin <= t.residual_clean,
        Outcome::Inconclusive => false,
    }
}

pub(crate) fn decide(s: &Summary, t: &VerdictSettings) -> Verdict {
    let e = evidence(s);
    let verdict = |outcome, by: Rule, rule: String| Verdict { outcome, rule, decided_by: Some(by), evidence: e.clone() };
    if !s.complete {
        let why = s.error.as_ref().map_or("it did not finish".to_string(), |err| format!("{}: {}", err.kind, first_line(&err.message)));
        return verdict(Outcome::Inconclusive, Rule::Incomplete, format!("the run is incomplete ({why})"));
    }
    if e.iterations < t.min_iterations || e.windows < t.min_windows as usize {
        return verdict(
            Outcome::Inconclusive,
            Rule::TooShort,
            format!(
                "too short: {} iterations in {} windows, the scenario needs at least {} iterations and {} windows",
                e.iterations, e.windows, t.min_iterations, t.min_windows
            ),
        );
    }
    let latency = format!(
        "{} p50 slope {} us per 1k iterations, last/first {}",
        e.probe.as_deref().unwrap_or("probe"),
        e.slope_us_per_1k.map_or("?".into(), |x| format!("{x:.1}")),
        e.last_over_first.map_or("?".into(), |x| format!("{x:.2}x")),
    );
    match t.basis {
        VerdictBasis::SettledRatio => {
            let op = e.probe.as_deref().map(|p| s.scenario_definition.op_of(p)).unwrap_or_default();
            by_settled_ratio(&e, t, &op, &latency, verdict)
        }
        VerdictBasis::Residual => by_residual(s, &e, t, &latency, verdict),
        VerdictBasis::Mounts => by_mounts(&e, verdict),
    }
}

/// A scenario judged by how far its propagation grew one mount namespace
/// ([`repro_proto::MountReach::judge`]); the words here.
fn by_mounts(e: &Evidence, verdict: impl Fn(Outcome, Rule, String) -> Verdict) -> Verdict {
    let limit = repro_proto::MountReach::FIX_LIMIT;
    let Some(m) = e.mounts else {
        return verdict(Outcome::Inconclusive, Rule::NoEvidence, "no mount count: the settle did not grow the propagation tree".into());
    };
    let (outcome, rule) = m.judge();
    let words = match rule {
        Rule::MountsRegressed => format!(
            "{} binds of a shared mount made {} mounts in one namespace, past the {limit} the fix allows (fs.mount-max): \
             propagation is unbounded",
            m.binds, m.mounts
        ),
        Rule::MountsClean => {
            format!("bind {} was refused with ENOSPC at {} mounts, within the fix's limit of {limit} (fs.mount-max)", m.binds + 1, m.mounts)
        }
        _ => format!(
            "the propagation tree stopped at {} mounts after {} binds{}, neither past the fix's limit nor refused by it",
            m.mounts,
            m.binds,
            m.refused.map_or(String::new(), |e| format!(" (errno {e})"))
        ),
    };
    verdict(outcome, rule, words)
}

/// A scenario judged by what the probe costs against its control once
/// cleanup settled (held fds: the stale entries are alive, not leftovers).
fn by_settled_ratio(
    e: &Evidence,
    t: &VerdictSettings,
    op: &ProbeOp,
    latency: &str,
    verdict: impl Fn(Outcome, Rule, String) -> Verdict,
) -> Verdict {
    let probe = e.probe.as_deref().unwrap_or("probe");
    let timed = op.timed();
    let why = op.slower_because();
    let figure = op.settled_figure();
    match e.settled_probe_over_control {
        None => verdict(Outcome::Inconclusive, Rule::NoEvidence, "no settled probe/control ratio: the settle phase did not report both".into()),
        Some(r) if r >= t.settled_ratio_regressed => verdict(
            Outcome::Regressed, Rule::RatioRegressed,
            format!(
                "after settling the {probe} {timed} costs {r:.2}x the control's ({figure}s, >= {}): {why}; {latency}",
                t.settled_ratio_regressed
            ),
        ),
        Some(r) if r <= t.settled_ratio_clean => verdict(
            Outcome::Clean, Rule::RatioClean,
            format!("after settling the {probe} {timed} costs {r:.2}x the control's ({figure}s, <= {}); {latency}", t.settled_ratio_clean),
        ),
        Some(r) => verdict(
            Outcome::Inconclusive, Rule::TooNoisy,
            format!(
                "too noisy to separate: after settling the {probe} {timed} costs {r:.2}x the control's ({figure}s), between clean (<= {}) and regressed (>= {})",
                t.settled_ratio_clean, t.settled_ratio_regressed
            ),
        ),
    }
}

/// A scenario judged by the stale dentries per namespace left once cleanup
/// settled, with the settled probe/control ratio deciding the gray zone.
fn by_residual(
    s: &Summary,
    e: &Evidence,
    t: &VerdictSettings,
    latency: &str,
    verdict: impl Fn(Outcome, Rule, String) -> Verdict,
) -> Verdict {
    let Some(residual) = e.residual_per_iteration else {
        return verdict(Outcome::Inconclusive, Rule::NoEvidence, "no residual: the settle phase did not report".into());
    };
    if residual >= t.residual_regressed {
        return verdict(
            Outcome::Regressed,
            Rule::ResidualRegressed,
            format!("{residual:.2} stale dentries per namespace remain after cleanup settled (>= {}); {latency}", t.residual_regressed),
        );
    }
    if residual <= t.residual_clean {
        let settled = s.settled.as_ref().is_some_and(|st| st.stable);
        if !settled {
            return verdict(
                Outcome::Inconclusive,
                Rule::Unsettled,
                format!("residual {residual:.2} looks clean but cleanup had not settled within the scenario's bound; {latency}"),
            );
        }
        return verdict(
            Outcome::Clean,
            Rule::ResidualClean,
            format!("{residual:.2} dentries per namespace remain after cleanup settled (<= {}); {latency}", t.residual_clean),
        );
    }
    // Between the thresholds: the leftover dentries may be anywhere (proc
    // pid entries of the churn's children, say). Whether they sit on the
    // probed chain shows in what the probe costs against its control once
    // everything settled.
    let stable = s.settled.as_ref().is_some_and(|st| st.stable);
    match e.settled_probe_over_control {
        Some(ratio) if stable && ratio <= t.settled_ratio_clean => verdict(
            Outcome::Clean,
            Rule::GrayOffChain,
            format!(
                "residual {residual:.2} per namespace is between clean (<= {}) and regressed (>= {}), but after settling the {} open \
                 costs {ratio:.2}x the control's (<= {}): the leftover dentries are not on the probed chain; {latency}",
                t.residual_clean,
                t.residual_regressed,
                e.probe.as_deref().unwrap_or("probe"),
                t.settled_ratio_clean
            ),
        ),
        ratio => verdict(
            Outcome::Inconclusive,
            Rule::TooNoisy,
            format!(
                "too noisy to separate: residual {residual:.2} per namespace is between clean (<= {}) and regressed (>= {}), \
                 and after settling the probe costs {} the control's; {latency}",
                t.residual_clean,
                t.residual_regressed,
                ratio.map_or("?".into(), |r| format!("{r:.2}x"))
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic run: `n` windows whose ipv6 p50 follows `ipv6(i)`.
    fn run(n: u64, ipv6: impl Fn(u64) -> f64, residual: f64, complete: bool) -> Summary {
        let text = include_str!("../../../../results/seed/6.1-src-3000/summary.json");
        let mut s: Summary = serde_json::from_str(text).unwrap();
        s.windows = (1..=n)
            .map(|k| {
                let mut w = s.windows[0].clone();
                w.iteration = k * 100;
                w.probes[0].p50_us = ipv6(k);
                w.probes[1].p50_us = 50.0;
                w
            })
            .collect();
        s.iterations_done = n * 100;
        s.complete = complete;
        // Settled: the probe where the last window left it, the control flat.
        let st = s.settled.as_mut().unwrap();
        st.stable = true;
        // A flat window: every sample the same, so both figures agree.
        (st.window.probes[0].min_us, st.window.probes[0].p50_us) = (ipv6(n), ipv6(n));
        (st.window.probes[1].min_us, st.window.probes[1].p50_us) = (50.0, 50.0);
        s.residual = Residual::compute(10_000, 10_000 + (residual * (n * 100) as f64) as u64, n * 100);
        s
    }

    fn t() -> VerdictSettings {
        VerdictSettings { residual_regressed: 1.0, ..VerdictSettings::default() }
    }

    /// Deterministic noise in [-1, 1].
    fn noise(k: u64) -> f64 {
        ((k.wrapping_mul(2654435761) % 1000) as f64 / 500.0) - 1.0
    }

    #[test]
    fn theil_sen_ignores_outliers_that_least_squares_would_follow() {
        let mut pts: Vec<(f64, f64)> = (0..20).map(|x| (x as f64, 2.0 * x as f64 + 1.0)).collect();
        pts[19].1 = 10_000.0;
        pts[3].1 = -500.0;
        assert!((theil_sen(&pts).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(theil_sen(&[(1.0, 1.0)]), None);
    }

    #[test]
    fn theil_sen_of_a_hundred_thousand_windows_is_bounded_and_still_right() {
        // --window 1 -n 100000 asked for 5e9 slopes (40 GB) before.
        let pts: Vec<(f64, f64)> = (0..100_000).map(|x| (x as f64, 3.0 * x as f64 + 20.0 * noise(x))).collect();
        let m = theil_sen(&pts).unwrap();
        assert!((m - 3.0).abs() < 0.01, "{m}");
    }

    #[test]
    fn flat_noisy_series_with_no_residual_is_clean() {
        let v = decide(&run(20, |k| 60.0 + 20.0 * noise(k), 0.01, true), &t());
        assert_eq!(v.outcome, Outcome::Clean, "{}", v.rule);
        assert!(v.evidence.slope_us_per_1k.unwrap().abs() < 10.0);
    }

    #[test]
    fn linear_growth_with_stale_dentries_is_regressed() {
        let v = decide(&run(20, |k| 60.0 + 60.0 * k as f64 + 10.0 * noise(k), 6.0, true), &t());
        assert_eq!(v.outcome, Outcome::Regressed, "{}", v.rule);
        assert!((v.evidence.slope_us_per_1k.unwrap() - 600.0).abs() < 20.0, "{:?}", v.evidence);
        assert_eq!(v.decided_by, Some(Rule::ResidualRegressed));
    }

    #[test]
    fn short_incomplete_or_gray_runs_are_inconclusive() {
        let short = decide(&run(1, |_| 60.0, 6.0, true), &t());
        assert_eq!(short.outcome, Outcome::Inconclusive);
        assert_eq!(short.decided_by, Some(Rule::TooShort));
        let incomplete = decide(&run(20, |k| 60.0 * k as f64, 6.0, false), &t());
        assert_eq!(incomplete.outcome, Outcome::Inconclusive);
        assert_eq!(incomplete.decided_by, Some(Rule::Incomplete));
        let gray = decide(&run(20, |k| 60.0 + 10.0 * k as f64, 0.8, true), &t());
        assert_eq!(gray.outcome, Outcome::Inconclusive);
        assert_eq!(gray.decided_by, Some(Rule::TooNoisy));
        assert!((gray.evidence.settled_probe_over_control.unwrap() - 5.2).abs() < 0.01, "{:?}", gray.evidence);
    }

    #[test]
    fn settled_ratio_basis_ignores_the_residual_of_held_dentries() {
        let t = VerdictSettings { basis: VerdictBasis::SettledRatio, ..VerdictSettings::default() };
        // Held fds keep ~3 dentries per namespace allocated on every kernel.
        let unhashed = decide(&run(20, |k| 60.0 + 5.0 * noise(k), 3.0, true), &t);
        assert_eq!(unhashed.outcome, Outcome::Clean, "{}", unhashed.rule);
        let on_chain = decide(&run(20, |k| 60.0 + 60.0 * k as f64, 3.0, true), &t);
        assert_eq!(on_chain.outcome, Outcome::Regressed, "{}", on_chain.rule);
        assert_eq!(on_chain.decided_by, Some(Rule::RatioRegressed));
        let between = decide(&run(20, |_| 150.0, 3.0, true), &t);
        assert_eq!(between.outcome, Outcome::Inconclusive, "{}", between.rule);
    }

    #[test]
    fn a_ratio_stops_the_churn_at_a_round_only_where_the_probe_does_not_grow_with_it() {
        let ratio =
            VerdictSettings { basis: VerdictBasis::SettledRatio, min_iterations: 100, min_windows: 2, ..VerdictSettings::default() };
        let mut s = run(3, |_| 600.0, 0.0, false);
        s.scenario_definition.verdict = ratio;
        let round = s.settled.clone().unwrap();
        // An open's ratio (held-fd's) grows with the churn: it waits.
        assert!(!decided_at_round(&s, &round));
        // A namespace's life (netns-lock, ipc-teardown) costs the same at any round.
        s.scenario_definition.probes[0].op = ProbeOp::Lifecycle { unshare: vec![repro_proto::Namespace::Net], after: None };
        assert!(decided_at_round(&s, &round));
        // Between the thresholds: inconclusive, more churn.
        let mut gray = round.clone();
        (gray.window.probes[0].min_us, gray.window.probes[0].p50_us) = (150.0, 150.0);
        assert!(!decided_at_round(&s, &gray));
    }

    #[test]
    fn a_namespace_life_is_judged_by_its_least_samples_and_an_open_by_its_median() {
        let ratio = VerdictSettings { basis: VerdictBasis::SettledRatio, settled_ratio_regressed: 3.0, ..VerdictSettings::default() };
        let mut s = run(20, |_| 60.0, 0.0, true);
        s.scenario_definition.verdict = ratio.clone();
        // Beside a CI run, a fixed kernel (6.1-ipc-src at load 7): the busy
        // host lifted most IPC samples, the floors are the same.
        let st = &mut s.settled.as_mut().unwrap().window;
        (st.probes[0].min_us, st.probes[0].p50_us) = (1_520.0, 9_350.0);
        (st.probes[1].min_us, st.probes[1].p50_us) = (1_320.0, 1_630.0);
        let open = decide(&s, &ratio);
        assert_eq!(open.outcome, Outcome::Regressed, "an open's median: {}", open.rule);
        s.scenario_definition.probes[0].op = ProbeOp::Lifecycle { unshare: vec![repro_proto::Namespace::Ipc], after: None };
        let life = decide(&s, &ratio);
        assert_eq!(life.outcome, Outcome::Clean, "{}", life.rule);
        assert!(life.rule.contains("least samples"), "{}", life.rule);
        assert!((life.evidence.settled_probe_over_control.unwrap() - 1_520.0 / 1_320.0).abs() < 1e-9);
        // With the bug every IPC life waits a grace period: the floor moves.
        let st = &mut s.settled.as_mut().unwrap().window;
        (st.probes[0].min_us, st.probes[0].p50_us) = (15_200.0, 22_100.0);
        assert_eq!(decide(&s, &ratio).outcome, Outcome::Regressed);
    }

    #[test]
    fn gray_residual_off_the_probed_chain_is_clean() {
        // Debian 6.1 under TCG: 0.62 dentries per namespace left, but the
        // settled ipv6 open costs what the ipv4 one does.
        let v = decide(&run(20, |k| 60.0 + 5.0 * noise(k), 0.62, true), &t());
        assert_eq!(v.outcome, Outcome::Clean, "{}", v.rule);
        assert_eq!(v.decided_by, Some(Rule::GrayOffChain));
        assert!(v.evidence.settled_probe_over_control.unwrap() < 2.0);
    }
}

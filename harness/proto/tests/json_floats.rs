//! Every number the host, the agent and the disk exchange is JSON, and a
//! value read back must be the value written: a scenario's thresholds, a
//! sample's latency, a checkpoint's saved summary. serde_json's default
//! float parser is fast but can be one unit in the last place off; the
//! workspace asks for `float_roundtrip`. (Found by the scenario_toml fuzzer.)

use proptest::prelude::*;
use repro_proto::Scenario;

proptest! {
    #[test]
    fn every_finite_float_reads_back_as_written(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        prop_assert_eq!(back.to_bits(), x.to_bits());
    }

    #[test]
    fn a_scenarios_thresholds_survive_the_trip_to_the_agent(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let mut s = Scenario::default();
        s.verdict.residual_regressed = x;
        let back: Scenario = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        prop_assert_eq!(back, s);
    }
}

/// A value the default parser read one unit in the last place off
/// (proptest's shrunk finding).
#[test]
fn a_known_hard_value_reads_back_exactly() {
    let x = -1.071890677900195e264_f64;
    let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
    assert_eq!(back.to_bits(), x.to_bits());
}

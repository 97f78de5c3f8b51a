use super::*;

#[test]
fn fixed_point_rounds_exactly_like_round() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    // Exact halves in fixed units (FIXED is a power of two), just below and above them, and extremes.
    let mut values: Vec<f64> =
        [0.5, -0.5, 1.5, 2.5, -2.5, 0.5f64.next_down(), 0.5f64.next_up(), -(2.5f64.next_down())].iter().map(|x| x / FIXED).collect();
    values.extend([0.0, -0.0, 1e300, -1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 123.4567891234, -0.3]);
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        values.push((u - 0.5) * 10f64.powi((state % 24) as i32 - 12));
    }
    for x in values {
        assert_eq!(fixed(x), (x * FIXED).round() as i64, "{x:e}");
    }
    // One logarithm for 0/1 labels gives the same log loss as the general form.
    for p in [1e-12f64, 0.1, 0.37, 0.5, 0.93, 1.0 - 1e-12] {
        for y in [0.0f64, 1.0] {
            let general = -(y * p.ln() + (1.0 - y) * (1.0 - p).ln());
            let one = if y == 1.0 { -p.ln() } else { -(1.0 - p).ln() };
            assert_eq!(general.to_bits(), one.to_bits(), "p {p}, y {y}");
        }
    }
}
use crate::simulate::replay::Output;

/// The scale the metrics' and the controllers' tests share: probabilities, threshold 0.5, a false
/// negative five times a false positive.
pub(crate) fn scale() -> Scale {
    Scale {
        bins: ScoreBins::new((0.0, 1.0)),
        threshold: 0.5,
        cost: Cost { true_positive: 0.0, false_positive: 1.0, false_negative: 5.0, true_negative: 0.0 },
        binary: true,
    }
}

#[test]
fn packed_and_dense_statistics_agree_exactly() {
    let scale = scale();
    let (mut dense, mut packed) = (ArmStats::default(), Packed::default());
    for i in 0..500 {
        let out = Output {
            error: i % 17 == 0,
            score: (i % 17 != 0).then(|| (i as f64 * 0.618).fract()),
            latency_ms: Some(5.0 + (i % 23) as f64),
        };
        let c = scale.contribution(&out);
        dense.add(&c);
        packed.add(&c);
        if let Some(q) = scale.quality(&out, f64::from(u8::from(i % 3 == 0))) {
            dense.add_quality(&q);
            packed.add_quality(&q);
        }
    }
    let mut from_packed = ArmStats::default();
    packed.add_to(&mut from_packed);
    assert_eq!(dense, from_packed);
    // Encoded, after another summary (negative scores and costs included), and read back.
    let mut other = Packed::default();
    let negative = Scale { cost: Cost { true_positive: -2.0, ..scale.cost }, binary: false, ..scale };
    for i in 0..40 {
        let out = Output { error: false, score: Some(-3.0 + i as f64 * 0.1), latency_ms: (i % 3 == 0).then_some(0.5) };
        other.add(&negative.contribution(&out));
        other.add_quality(&negative.quality(&out, 1.0).unwrap());
    }
    let mut bytes = Vec::new();
    other.encode(&Needs::ALL, &mut bytes);
    let first = bytes.len();
    packed.encode(&Needs::ALL, &mut bytes);
    let (mut a, mut b) = (ArmStats::default(), ArmStats::default());
    assert_eq!(a.add_encoded(&bytes, &Needs::ALL), first);
    assert_eq!(a.add_encoded(&bytes[first..], &Needs::ALL), bytes.len() - first);
    assert_eq!(a, {
        packed.add_to(&mut b);
        other.add_to(&mut b);
        b
    });
    assert_eq!((Packed::encoded_requests(&bytes), Packed::encoded_requests(&bytes[first..])), (40, 500));
    // Folded in parts (a key's labels as they arrive): the same bytes as folded at once.
    for needs in [Needs::ALL, Needs::of([Metric::Auc]), Needs::of([Metric::LatencyP95, Metric::ScoreMean])] {
        let mut both = packed.clone();
        both.s.merge(&other.s);
        both.bins.extend(&other.bins);
        let (mut at_once, mut earlier, mut in_parts) = (Vec::new(), Vec::new(), Vec::new());
        both.encode(&needs, &mut at_once);
        other.encode(&needs, &mut earlier);
        packed.encode_after(&earlier, &needs, &mut in_parts);
        assert_eq!(in_parts, at_once);
    }
    // Kept for log loss alone: log loss and the counts as before, no histogram, fewer bytes.
    let mut lean = Vec::new();
    packed.encode(&Needs::of([Metric::LogLoss]), &mut lean);
    let mut read = ArmStats::default();
    read.add_encoded(&lean, &Needs::of([Metric::LogLoss]));
    assert_eq!(
        (read.value(Metric::LogLoss), read.value(Metric::ErrorRate), read.n(Metric::LogLoss)),
        (dense.value(Metric::LogLoss), dense.value(Metric::ErrorRate), dense.n(Metric::LogLoss))
    );
    assert_eq!((read.value(Metric::Auc), read.value(Metric::LatencyP99), read.value(Metric::Brier)), (None, None, None));
    assert!(lean.len() * 10 < bytes.len() - first, "{} bytes for log loss alone", lean.len());
    assert!(Needs::ALL.covers(&Needs::of([Metric::Auc, Metric::Ece])) && !Needs::of([Metric::LogLoss]).covers(&Needs::of([Metric::Auc])));
    let unpacked = std::mem::size_of::<Packed>() + packed.bins.len() * std::mem::size_of::<u32>();
    assert!((bytes.len() - first) * 2 < unpacked, "{} bytes encoded, {unpacked} unpacked", bytes.len() - first);
    assert_eq!(dense.value(Metric::ErrorRate), Some(30.0 / 500.0));
}

#[test]
fn contributions_stay_small_and_round_trip() {
    // The fast path keeps two per request of a sparse key.
    assert_eq!(std::mem::size_of::<Contribution>(), 24);
    let c = scale().contribution(&Output { error: true, score: None, latency_ms: Some(12.5) });
    assert!(c.error());
    assert_eq!(c.score(), None);
    assert_eq!(c.latency().map(|(_, ms)| unfixed(i128::from(ms))), Some(12.5));
    let c = scale().contribution(&Output { error: false, score: Some(0.25), latency_ms: None });
    assert_eq!((c.error(), c.latency()), (false, None));
    assert_eq!(c.score().map(|(bin, s)| (bin, unfixed(i128::from(s)))), Some((7, 0.25)));
}

#[test]
fn metrics_match_direct_computation() {
    let scale = scale();
    let mut arm = ArmStats::default();
    let scores = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.7, 0.05];
    let labels = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0];
    for (s, y) in scores.iter().zip(labels) {
        let out = Output { error: false, score: Some(*s), latency_ms: Some(10.0) };
        arm.add(&scale.contribution(&out));
        arm.add_quality(&scale.quality(&out, y).unwrap());
    }
    let ll = crate::stats::quality::log_loss(&labels, &scores).unwrap();
    assert!((arm.value(Metric::LogLoss).unwrap() - ll).abs() < 1e-6);
    assert!((arm.value(Metric::Auc).unwrap() - crate::stats::quality::auc(&labels, &scores).unwrap()).abs() < 1e-12);
    assert_eq!(arm.value(Metric::Accuracy), Some(0.875));
    // Cost: one false negative (0.35, positive) at 5, no false positives.
    assert!((arm.value(Metric::ExpectedCost).unwrap() - 5.0 / 8.0).abs() < 1e-6);
    let p99 = arm.value(Metric::LatencyP99).unwrap();
    assert!((p99 / 10.0 - 1.0).abs() < 0.02, "{p99}");
    let ece = crate::stats::quality::expected_calibration_error(&labels, &scores, 10).unwrap();
    assert!((arm.value(Metric::Ece).unwrap() - ece).abs() < 1e-6);
}

/// Σx² is written as what exceeds ⌊(Σx)²/n⌋: read back exactly for any values (negative, as
/// large as the sums hold), never negative, and a single value's Σx² takes no bytes.
#[test]
fn sums_of_squares_are_written_as_their_excess_and_read_back_exactly() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for case in 0..2_000 {
        let n = 1 + next() % if case % 2 == 0 { 3 } else { 300 };
        let mut sums = Sums::default();
        for _ in 0..n {
            // Up to ±2⁵⁸, so 300 squares stay within Σx²'s i128.
            let x = match next() % 4 {
                0 => (1 << 58) - (next() % 3) as i64,
                1 => -(1 << 58) + (next() % 3) as i64,
                _ => (next() >> (6 + next() % 58)) as i64 * if next() % 2 == 0 { 1 } else { -1 },
            };
            sums.add(x);
        }
        let packed = Packed { s: Scalars { latency: sums, log_loss: sums, ..Scalars::default() }, bins: Vec::new() };
        let mut bytes = Vec::new();
        packed.encode(&Needs::ALL, &mut bytes);
        let mut read = ArmStats::default();
        assert_eq!(read.add_encoded(&bytes, &Needs::ALL), bytes.len());
        assert_eq!((read.s.latency, read.s.log_loss), (sums, sums), "case {case}");
        assert!(packed::least_sum_sq(sums.n, sums.sum) <= sums.sum_sq, "case {case}");
        // The floor itself, where (Σx)² fits in 128 bits.
        let a = sums.sum.unsigned_abs();
        if a < 1 << 63 {
            assert_eq!(packed::least_sum_sq(sums.n, sums.sum), (a * a / u128::from(sums.n)) as i128, "case {case}");
        }
    }
    // One log loss: requests, n and Σx — no Σx².
    let mut one = Packed::default();
    one.s.log_loss.add(fixed(0.69));
    let mut bytes = Vec::new();
    one.encode(&Needs::of([Metric::LogLoss]), &mut bytes);
    let mut read = ArmStats::default();
    read.add_encoded(&bytes, &Needs::of([Metric::LogLoss]));
    assert_eq!(read.s.log_loss, one.s.log_loss);
    // The mask of the fields written (one byte: log loss's needs keep 7 fields), n (1), Σx (4);
    // no bins.
    assert_eq!(bytes.len(), 6);
}

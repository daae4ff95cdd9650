//! Latency summaries: nearest-rank percentiles over every recorded sample,
//! and the Mann–Whitney U test for telling two latency samples apart.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Self {
            count: sorted.len(),
            p50_ms: millis(percentile(&sorted, 50.0)),
            p95_ms: millis(percentile(&sorted, 95.0)),
            p99_ms: millis(percentile(&sorted, 99.0)),
            max_ms: millis(sorted.last().copied().unwrap_or_default()),
        }
    }

    /// `p50 … / p95 … / p99 …` for the table.
    pub fn short(&self) -> String {
        format!(
            "p50 {} / p95 {} / p99 {}",
            ms(self.p50_ms),
            ms(self.p95_ms),
            ms(self.p99_ms)
        )
    }
}

/// The nearest-rank percentile of `sorted` (ascending); zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The two-sided p-value of the Mann–Whitney U test that `a` and `b` come
/// from the same distribution (normal approximation with tie correction,
/// good for the hundreds of samples the bench takes). A small p-value means
/// an observer could tell the two apart.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, true))
        .chain(b.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let (mut rank_sum_a, mut ties, mut i) = (0.0, 0.0, 0);
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let rank = (i + j + 2) as f64 / 2.0;
        let group = (j - i + 1) as f64;
        ties += group.powi(3) - group;
        rank_sum_a += rank * all[i..=j].iter().filter(|(_, from_a)| *from_a).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let total = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let z = (u - n1 * n2 / 2.0).abs() / variance.sqrt();
    erfc(z / std::f64::consts::SQRT_2).min(1.0)
}

/// The complementary error function (Numerical Recipes' `erfcc`, relative
/// error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A duration in milliseconds, with precision that suits its size.
pub fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.0} ms")
    }
}

/// A count with thousands separated by spaces, for reading.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

/// A rate, with thousands separated by spaces for reading.
pub fn per_second(value: f64) -> String {
    if value >= 1000.0 {
        format!("{}/s", count(value.round() as u64))
    } else if value >= 100.0 {
        format!("{value:.0}/s")
    } else {
        format!("{value:.1}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples = ms_list(&(1..=100).collect::<Vec<_>>());
        let latency = Latency::of(&samples);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p95_ms, 95.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(Latency::of(&[]), Latency::default());
        let one = Latency::of(&ms_list(&[7]));
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (7.0, 7.0, 7.0));
        let unsorted = Latency::of(&ms_list(&[30, 10, 20]));
        assert_eq!((unsorted.p50_ms, unsorted.max_ms), (20.0, 30.0));
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(per_second(71.26), "71.3/s");
        assert_eq!(per_second(512.4), "512/s");
        assert_eq!(per_second(9412.0), "9 412/s");
        assert_eq!(per_second(123_456.0), "123 456/s");
        assert_eq!(count(1_000_000), "1 000 000");
        assert_eq!(count(999), "999");
    }

    #[test]
    fn mann_whitney_tells_shifted_samples_apart_and_not_equal_ones() {
        let a: Vec<f64> = (0..200).map(|i| f64::from(i % 50)).collect();
        let same: Vec<f64> = (0..200).map(|i| f64::from((i * 7) % 50)).collect();
        assert!(mann_whitney_p(&a, &same) > 0.5);
        let shifted: Vec<f64> = a.iter().map(|v| v + 10.0).collect();
        assert!(mann_whitney_p(&a, &shifted) < 0.001);
        assert!((erfc(0.0) - 1.0).abs() < 1e-6);
        assert!((erfc(1.0) - 0.157_299_2).abs() < 1e-6);
    }
}

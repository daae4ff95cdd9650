//! Latency summaries: nearest-rank percentiles over every recorded sample.

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
}

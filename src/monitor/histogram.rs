//! A fixed-size log-scale histogram of milliseconds.
//!
//! Bucket 0 holds values below 0.1 ms (0 included); buckets `1..=LOG_BUCKETS`
//! cover `[0.1 * 1.1^k, 0.1 * 1.1^(k+1))` ms for `k = 0..LOG_BUCKETS`, up to
//! about 62 minutes; the last bucket holds anything longer. A percentile is
//! the geometric middle of its bucket, clamped to the smallest and largest
//! value seen, so its relative error is at most `sqrt(1.1) - 1` (4.9 %).

/// Smallest value with its own log bucket (ms).
const MIN_MS: f64 = 0.1;
/// Ratio between the bounds of one log bucket.
const GROWTH: f64 = 1.1;
/// Log buckets: `0.1 * 1.1^183` ms is about 62.5 minutes.
const LOG_BUCKETS: usize = 183;
/// All buckets: underflow, log buckets, overflow.
pub(crate) const BUCKETS: usize = LOG_BUCKETS + 2;

/// Counts of durations in fixed log-scale buckets, with count, sum, min and
/// max; about 1.5 KiB whatever the number of values.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
  counts: [u64; BUCKETS],
  count: u64,
  sum: f64,
  min: f64,
  max: f64,
}

impl Default for Histogram {
  fn default() -> Self {
    Histogram {
      counts: [0; BUCKETS],
      count: 0,
      sum: 0.0,
      min: f64::INFINITY,
      max: 0.0,
    }
  }
}

/// The bucket of a value (ms).
pub(crate) fn bucket(v: f64) -> usize {
  if v.is_nan() || v < MIN_MS {
    return 0;
  }
  let k = ((v / MIN_MS).ln() / GROWTH.ln()).floor();
  if k >= LOG_BUCKETS as f64 {
    BUCKETS - 1
  } else {
    1 + k as usize
  }
}

impl Histogram {
  /// Counts one value (ms). O(1).
  #[cfg(test)]
  pub(crate) fn record(&mut self, v: f64) {
    self.record_in(bucket(v), v);
  }

  /// Counts one value whose [`bucket`] the caller computed (so one value
  /// counted in several histograms takes one logarithm).
  pub(crate) fn record_in(&mut self, b: usize, v: f64) {
    let v = if v.is_finite() && v > 0.0 { v } else { 0.0 };
    self.counts[b.min(BUCKETS - 1)] += 1;
    self.count += 1;
    self.sum += v;
    self.min = self.min.min(v);
    self.max = self.max.max(v);
  }

  /// Adds another histogram's counts into this one.
  pub(crate) fn merge(&mut self, o: &Histogram) {
    for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
      *a += b;
    }
    self.count += o.count;
    self.sum += o.sum;
    self.min = self.min.min(o.min);
    self.max = self.max.max(o.max);
  }

  /// Values counted.
  pub(crate) fn count(&self) -> u64 {
    self.count
  }

  /// Smallest value, if any.
  pub(crate) fn min(&self) -> Option<f64> {
    (self.count > 0).then_some(self.min)
  }

  /// Largest value, if any.
  pub(crate) fn max(&self) -> Option<f64> {
    (self.count > 0).then_some(self.max)
  }

  /// Mean value, if any.
  pub(crate) fn avg(&self) -> Option<f64> {
    (self.count > 0).then(|| self.sum / self.count as f64)
  }

  /// Sum of the values (ms).
  pub(crate) fn sum(&self) -> f64 {
    self.sum
  }

  /// The `p`-th percentile (nearest rank, `p` in 0..=100), if any value.
  pub(crate) fn percentile(&self, p: f64) -> Option<f64> {
    if self.count == 0 {
      return None;
    }
    let rank = ((p.clamp(0.0, 100.0) / 100.0 * self.count as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    let mut idx = BUCKETS - 1;
    for (i, c) in self.counts.iter().enumerate() {
      seen += c;
      if seen >= rank {
        idx = i;
        break;
      }
    }
    let v = match idx {
      0 => 0.0,
      i if i == BUCKETS - 1 => self.max,
      i => MIN_MS * GROWTH.powf((i - 1) as f64 + 0.5),
    };
    Some(v.clamp(self.min, self.max))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn buckets_are_monotonic_and_bounded() {
    let mut last = 0;
    for i in 0..100_000u32 {
      let b = bucket(f64::from(i) * 0.37);
      assert!(b >= last && b < BUCKETS);
      last = b;
    }
    assert_eq!(bucket(0.0), 0);
    assert_eq!(bucket(f64::NAN), 0);
    assert_eq!(bucket(1e12), BUCKETS - 1);
    assert!(
      bucket(3_600_000.0) < BUCKETS - 1,
      "one hour has a log bucket"
    );
  }
}

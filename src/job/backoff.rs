//! Retry delays: exponential or fixed, capped, with optional jitter.

/// How the delay grows between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffKind {
  /// `delayMs * 2^(failedAttempt - 1)`
  Exponential,
  /// `delayMs` every time.
  Fixed,
}

/// A retry policy's delays. `jitter` in `[0, 1]` takes up to that fraction
/// off each delay at random.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
  pub kind: BackoffKind,
  pub delay_ms: u32,
  pub max_delay_ms: u32,
  pub jitter: f32,
}

impl Default for Backoff {
  fn default() -> Self {
    Backoff {
      kind: BackoffKind::Exponential,
      delay_ms: 1_000,
      max_delay_ms: 60_000,
      jitter: 0.0,
    }
  }
}

impl Backoff {
  /// The delay after failed attempt number `attempt` (1-based); `rand` in
  /// `[0, 1)` drives the jitter.
  pub fn delay(&self, attempt: u32, rand: f64) -> u64 {
    let base = match self.kind {
      BackoffKind::Fixed => self.delay_ms as u64,
      BackoffKind::Exponential => {
        let shift = attempt.saturating_sub(1).min(40);
        (self.delay_ms as u64).saturating_mul(1u64 << shift)
      }
    };
    let capped = if self.max_delay_ms > 0 {
      base.min(self.max_delay_ms as u64)
    } else {
      base
    };
    let cut = (capped as f64 * self.jitter as f64 * rand.clamp(0.0, 1.0)) as u64;
    capped - cut.min(capped)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn exponential_doubles_and_caps() {
    let b = Backoff {
      kind: BackoffKind::Exponential,
      delay_ms: 100,
      max_delay_ms: 1_000,
      jitter: 0.0,
    };
    let d: Vec<u64> = (1..=6).map(|a| b.delay(a, 0.5)).collect();
    assert_eq!(d, vec![100, 200, 400, 800, 1_000, 1_000]);
    assert_eq!(b.delay(1_000, 0.0), 1_000);
  }

  #[test]
  fn fixed_stays_fixed() {
    let b = Backoff {
      kind: BackoffKind::Fixed,
      delay_ms: 250,
      max_delay_ms: 0,
      jitter: 0.0,
    };
    assert!((1..10).all(|a| b.delay(a, 0.9) == 250));
  }

  #[test]
  fn jitter_takes_at_most_its_fraction() {
    let b = Backoff {
      kind: BackoffKind::Fixed,
      delay_ms: 1_000,
      max_delay_ms: 0,
      jitter: 0.5,
    };
    assert_eq!(b.delay(1, 0.0), 1_000);
    assert!((500..=501).contains(&b.delay(1, 0.999_999)));
    for i in 0..100 {
      let d = b.delay(1, i as f64 / 100.0);
      assert!((500..=1_000).contains(&d));
    }
  }
}

//! Time sources. The core never reads the system time itself: every decision
//! takes `now` (epoch milliseconds) from a [`Clock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where `now` comes from.
#[derive(Debug)]
pub enum Clock {
  /// The system's wall clock.
  System,
  /// A clock that only moves when told to (`advanceTime` in tests).
  Manual(AtomicU64),
}

impl Clock {
  /// A manual clock starting at `start_ms`.
  pub fn manual(start_ms: u64) -> Self {
    Clock::Manual(AtomicU64::new(start_ms))
  }

  /// Now, in epoch milliseconds.
  pub fn now(&self) -> u64 {
    match self {
      Clock::System => system_now_ms(),
      Clock::Manual(t) => t.load(Ordering::Acquire),
    }
  }

  /// True for a manual clock.
  pub fn is_manual(&self) -> bool {
    matches!(self, Clock::Manual(_))
  }

  /// Moves a manual clock to `to_ms` (never backwards); no effect on the system clock.
  pub fn set(&self, to_ms: u64) {
    if let Clock::Manual(t) = self {
      t.fetch_max(to_ms, Ordering::AcqRel);
    }
  }
}

/// The system time in epoch milliseconds.
pub fn system_now_ms() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_millis() as u64)
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn manual_clock_only_moves_forward() {
    let c = Clock::manual(1_000);
    assert_eq!(c.now(), 1_000);
    c.set(5_000);
    assert_eq!(c.now(), 5_000);
    c.set(4_000);
    assert_eq!(c.now(), 5_000);
    assert!(c.is_manual());
  }

  #[test]
  fn system_clock_is_after_2020() {
    assert!(Clock::System.now() > 1_577_836_800_000);
  }
}

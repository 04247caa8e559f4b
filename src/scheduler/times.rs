//! Fire-time sequences: which times a schedule fires at, before its bounds
//! (`endAt`, `maxRuns`) and policies are applied.
//!
//! A sequence starts at a known fire time `first` (the schedule's
//! `next_run_at`, which may lie off the pattern: a one-time schedule created
//! after its `scheduledAt` fires at the time it was created) and continues
//! with [`Seq::after`]. All arithmetic saturates or is checked: a time that
//! does not fit in a `u64` ends the sequence.

use std::collections::VecDeque;

use crate::cron::CronExpr;

/// The first window [`Seq::last_in`] searches backwards for cron fire times;
/// it grows fourfold until it holds enough of them.
const CRON_WINDOW_MS: u64 = 60_000;

/// The fire times of one schedule kind.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seq<'a> {
  /// A single fire time (a one-time schedule): nothing follows it.
  Once,
  /// `anchor + k * every` for k >= 0 (an interval schedule; no drift).
  Grid { anchor: u64, every: u64 },
  /// The expression's fire times at or after `not_before` (`startAt`).
  Cron { expr: &'a CronExpr, not_before: u64 },
}

impl Seq<'_> {
  /// The first fire time at or after `t` (None for a one-time schedule,
  /// whose single time is kept by the schedule itself).
  pub(super) fn at_or_after(&self, t: u64) -> Option<u64> {
    match *self {
      Seq::Once => None,
      Seq::Grid { anchor, every } => grid_at_or_after(anchor, every, t),
      Seq::Cron { expr, not_before } => expr.next_after(t.max(not_before).saturating_sub(1)),
    }
  }

  /// The first fire time strictly after `t`.
  pub(super) fn after(&self, t: u64) -> Option<u64> {
    t.checked_add(1).and_then(|t| self.at_or_after(t))
  }

  /// The last `k` fire times within `[lo, hi]` (oldest first) of the
  /// sequence that starts at `first` and continues with [`Seq::after`].
  pub(super) fn last_in(&self, first: u64, lo: u64, hi: u64, k: usize) -> Vec<u64> {
    let lo = lo.max(first);
    if k == 0 || lo > hi {
      return Vec::new();
    }
    match *self {
      Seq::Once if lo == first => vec![first],
      Seq::Once => Vec::new(),
      Seq::Grid { anchor, every } => grid_last_in(anchor, every, first, lo, hi, k),
      Seq::Cron { .. } => self.cron_last_in(first, lo, hi, k),
    }
  }

  /// [`Seq::last_in`] for a cron sequence, which can only be walked forwards:
  /// walks a window ending at `hi`, growing it until it holds `k` fire times
  /// or reaches `lo` (so a long downtime does not walk every missed time).
  fn cron_last_in(&self, first: u64, lo: u64, hi: u64, k: usize) -> Vec<u64> {
    let mut width = CRON_WINDOW_MS;
    loop {
      let start = hi.saturating_sub(width).max(lo);
      let mut last = VecDeque::new();
      let mut total = 0usize;
      let mut at = if start == first {
        Some(first)
      } else {
        self.at_or_after(start)
      };
      while let Some(t) = at.filter(|&t| t <= hi) {
        if last.len() == k {
          last.pop_front();
        }
        last.push_back(t);
        total = total.saturating_add(1);
        at = self.after(t).filter(|&next| next > t);
      }
      if total >= k || start == lo {
        return last.into();
      }
      width = width.saturating_mul(4);
    }
  }
}

/// The first grid time `anchor + k * every` (k >= 0) at or after `t`.
fn grid_at_or_after(anchor: u64, every: u64, t: u64) -> Option<u64> {
  if every == 0 {
    return None;
  }
  if t <= anchor {
    return Some(anchor);
  }
  (t - anchor)
    .div_ceil(every)
    .checked_mul(every)?
    .checked_add(anchor)
}

/// The last grid time at or before `t`.
fn grid_at_or_before(anchor: u64, every: u64, t: u64) -> Option<u64> {
  if every == 0 || t < anchor {
    return None;
  }
  Some(anchor + (t - anchor) / every * every)
}

/// [`Seq::last_in`] for a grid: computed, not walked. `lo >= first`.
fn grid_last_in(anchor: u64, every: u64, first: u64, lo: u64, hi: u64, k: usize) -> Vec<u64> {
  let mut out = Vec::new();
  // Grid times after `first` (which may itself be off the grid).
  let lower = lo.max(first.saturating_add(1));
  if let (Some(from), Some(to)) = (
    grid_at_or_after(anchor, every, lower),
    grid_at_or_before(anchor, every, hi),
  ) {
    if from <= to {
      let count = (to - from) / every + 1;
      let take = count.min(u64::try_from(k).unwrap_or(u64::MAX));
      let start = to - (take - 1) * every;
      out.extend((0..take).map(|i| start + i * every));
    }
  }
  if out.len() < k && lo == first {
    out.insert(0, first);
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn grid_bounds() {
    assert_eq!(grid_at_or_after(100, 10, 0), Some(100));
    assert_eq!(grid_at_or_after(100, 10, 101), Some(110));
    assert_eq!(grid_at_or_after(100, 10, 110), Some(110));
    assert_eq!(grid_at_or_after(100, 0, 110), None);
    assert_eq!(grid_at_or_after(0, 10, u64::MAX), None);
    assert_eq!(grid_at_or_before(100, 10, 99), None);
    assert_eq!(grid_at_or_before(100, 10, 129), Some(120));
  }

  #[test]
  fn grid_last_in_takes_the_most_recent() {
    let seq = Seq::Grid {
      anchor: 0,
      every: 10,
    };
    assert_eq!(seq.last_in(0, 0, 100, 3), vec![80, 90, 100]);
    assert_eq!(seq.last_in(0, 0, 25, 10), vec![0, 10, 20]);
    assert_eq!(seq.last_in(0, 5, 25, 10), vec![10, 20]);
    // `first` off the grid comes first.
    assert_eq!(seq.last_in(5, 0, 25, 10), vec![5, 10, 20]);
    assert_eq!(seq.last_in(5, 0, 25, 2), vec![10, 20]);
    assert!(seq.last_in(50, 0, 25, 2).is_empty());
  }

  #[test]
  fn cron_last_in_walks_back_from_hi() {
    let expr = CronExpr::parse("0 * * * *", Some("UTC")).expect("valid");
    let seq = Seq::Cron {
      expr: &expr,
      not_before: 0,
    };
    let hour = 3_600_000;
    let first = 1_000 * hour;
    let got = seq.last_in(first, first, first + 100 * hour + 5, 3);
    assert_eq!(
      got,
      vec![first + 98 * hour, first + 99 * hour, first + 100 * hour]
    );
    let all = seq.last_in(first, first, first + 5 * hour, usize::MAX);
    assert_eq!(all.len(), 6);
    assert_eq!(all[0], first);
  }
}

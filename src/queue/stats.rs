//! Fixed-size per-second counters for the queue's statistics: nothing here
//! grows with the number of jobs.

/// Seconds kept.
const WINDOW: usize = 60;

#[derive(Debug, Clone, Copy, Default)]
struct Second {
  /// Which second (epoch s) this slot holds.
  sec: u64,
  finished: u32,
  run_ms: u64,
  started: u32,
  wait_ms: u64,
}

/// Throughput, wait and run times over the last minute.
#[derive(Debug, Clone)]
pub struct Stats {
  ring: [Second; WINDOW],
  /// When counting began (epoch ms).
  since: u64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsView {
  /// Finished jobs per second over the window.
  pub throughput: f64,
  /// Average ms from due to start, over the window.
  pub avg_wait_ms: f64,
  /// Average ms from start to finish, over the window.
  pub avg_run_ms: f64,
}

impl Stats {
  /// Empty counters starting at `now`.
  pub fn new(now: u64) -> Stats {
    Stats {
      ring: [Second::default(); WINDOW],
      since: now,
    }
  }

  fn slot(&mut self, now: u64) -> &mut Second {
    let sec = now / 1000;
    let s = &mut self.ring[(sec % WINDOW as u64) as usize];
    if s.sec != sec {
      *s = Second {
        sec,
        ..Second::default()
      };
    }
    s
  }

  /// An attempt started after waiting `wait_ms`.
  pub fn started(&mut self, now: u64, wait_ms: u64) {
    let s = self.slot(now);
    s.started += 1;
    s.wait_ms += wait_ms;
  }

  /// An attempt finished after running `run_ms`.
  pub fn finished(&mut self, now: u64, run_ms: u64) {
    let s = self.slot(now);
    s.finished += 1;
    s.run_ms += run_ms;
  }

  /// The figures over the last minute (or since counting began, if later).
  pub fn view(&self, now: u64) -> StatsView {
    let sec = now / 1000;
    let (mut fin, mut run, mut st, mut wait) = (0u64, 0u64, 0u64, 0u64);
    for s in self
      .ring
      .iter()
      .filter(|s| s.sec + (WINDOW as u64) > sec && s.sec <= sec)
    {
      fin += s.finished as u64;
      run += s.run_ms;
      st += s.started as u64;
      wait += s.wait_ms;
    }
    let span_ms = now
      .saturating_sub(self.since)
      .clamp(1_000, WINDOW as u64 * 1000);
    let avg = |sum: u64, n: u64| if n == 0 { 0.0 } else { sum as f64 / n as f64 };
    StatsView {
      throughput: fin as f64 * 1000.0 / span_ms as f64,
      avg_wait_ms: avg(wait, st),
      avg_run_ms: avg(run, fin),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn counts_the_last_minute_only() {
    let mut s = Stats::new(0);
    for i in 0..120u64 {
      s.started(i * 1000, 10);
      s.finished(i * 1000 + 5, 4);
    }
    let v = s.view(119_999);
    assert!((v.throughput - 1.0).abs() < 1e-9, "{v:?}");
    assert_eq!(v.avg_wait_ms, 10.0);
    assert_eq!(v.avg_run_ms, 4.0);
    let later = s.view(1_000_000);
    assert_eq!(later.throughput, 0.0);
  }

  #[test]
  fn young_stats_divide_by_their_age() {
    let mut s = Stats::new(10_000);
    for _ in 0..50 {
      s.finished(12_000, 1);
    }
    assert!((s.view(15_000).throughput - 10.0).abs() < 1e-9);
  }
}

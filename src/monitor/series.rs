//! Fixed-size rings of time slots: the per-second and per-minute series of
//! the whole queue, the per-minute history of each calculation, and the
//! per-minute duration histograms behind the recent percentiles.
//!
//! A slot is reused when its ring position comes round again: writing to a
//! slot whose stored index is not the current one clears it first, and a read
//! ignores slots whose index is outside the asked range. Nothing grows.

use super::histogram::Histogram;

/// Index of a slot that was never written.
const EMPTY: u64 = u64::MAX;

/// What happened during one slot (one second or one minute).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Slot {
  /// Which slot (`now / slot_ms`); `EMPTY` if never written.
  pub t: u64,
  /// Queue samples taken.
  pub samples: u32,
  /// Sum and largest of the sampled queue lengths.
  pub queued_sum: u64,
  pub queued_max: u64,
  /// Largest sampled wait of the oldest pending job (ms).
  pub oldest_wait_max: u64,
  /// Sums of the sampled busy workers and worker capacity.
  pub busy_sum: u64,
  pub capacity_sum: u64,
  /// Finished attempts by outcome.
  pub completed: u32,
  pub failed: u32,
  pub timed_out: u32,
  pub cancelled: u32,
  /// Durations counted (completed, failed, timed out), their sum and maximum.
  pub runs: u32,
  pub run_ms_sum: u64,
  pub run_ms_max: u64,
  /// Sum of the waits of the counted runs (ms).
  pub wait_ms_sum: u64,
}

impl Default for Slot {
  fn default() -> Self {
    Slot {
      t: EMPTY,
      samples: 0,
      queued_sum: 0,
      queued_max: 0,
      oldest_wait_max: 0,
      busy_sum: 0,
      capacity_sum: 0,
      completed: 0,
      failed: 0,
      timed_out: 0,
      cancelled: 0,
      runs: 0,
      run_ms_sum: 0,
      run_ms_max: 0,
      wait_ms_sum: 0,
    }
  }
}

impl Slot {
  fn fresh(t: u64) -> Slot {
    Slot {
      t,
      ..Slot::default()
    }
  }

  /// Adds another slot's figures (the index is left alone).
  pub(crate) fn add(&mut self, o: &Slot) {
    self.samples += o.samples;
    self.queued_sum += o.queued_sum;
    self.queued_max = self.queued_max.max(o.queued_max);
    self.oldest_wait_max = self.oldest_wait_max.max(o.oldest_wait_max);
    self.busy_sum += o.busy_sum;
    self.capacity_sum += o.capacity_sum;
    self.completed += o.completed;
    self.failed += o.failed;
    self.timed_out += o.timed_out;
    self.cancelled += o.cancelled;
    self.runs += o.runs;
    self.run_ms_sum += o.run_ms_sum;
    self.run_ms_max = self.run_ms_max.max(o.run_ms_max);
    self.wait_ms_sum += o.wait_ms_sum;
  }

  /// Completed, failed and timed-out attempts (cancelled ones are not
  /// counted in rates).
  pub(crate) fn finished(&self) -> u32 {
    self.completed + self.failed + self.timed_out
  }

  /// Percent of finished attempts that failed or timed out.
  pub(crate) fn error_rate(&self) -> Option<f64> {
    let n = self.finished();
    (n > 0).then(|| f64::from(self.failed + self.timed_out) * 100.0 / f64::from(n))
  }

  /// Percent of finished attempts that timed out.
  pub(crate) fn timeout_rate(&self) -> Option<f64> {
    let n = self.finished();
    (n > 0).then(|| f64::from(self.timed_out) * 100.0 / f64::from(n))
  }

  /// Mean duration of the counted runs (ms).
  pub(crate) fn avg_run_ms(&self) -> Option<f64> {
    (self.runs > 0).then(|| self.run_ms_sum as f64 / f64::from(self.runs))
  }

  /// Largest duration (ms).
  pub(crate) fn max_run_ms(&self) -> Option<f64> {
    (self.runs > 0).then_some(self.run_ms_max as f64)
  }

  /// Mean wait of the counted runs (ms).
  pub(crate) fn avg_wait_ms(&self) -> Option<f64> {
    (self.runs > 0).then(|| self.wait_ms_sum as f64 / f64::from(self.runs))
  }

  /// Mean sampled queue length.
  pub(crate) fn avg_queued(&self) -> Option<f64> {
    (self.samples > 0).then(|| self.queued_sum as f64 / f64::from(self.samples))
  }

  /// Mean sampled busy workers.
  pub(crate) fn avg_busy(&self) -> Option<f64> {
    (self.samples > 0).then(|| self.busy_sum as f64 / f64::from(self.samples))
  }

  /// Mean sampled idle workers.
  pub(crate) fn avg_available(&self) -> Option<f64> {
    (self.samples > 0)
      .then(|| self.capacity_sum.saturating_sub(self.busy_sum) as f64 / f64::from(self.samples))
  }

  /// Busy workers over capacity, in percent, over the samples.
  pub(crate) fn utilization(&self) -> Option<f64> {
    (self.capacity_sum > 0).then(|| self.busy_sum as f64 * 100.0 / self.capacity_sum as f64)
  }
}

/// A ring of `len` slots of `slot_ms` each.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
  slot_ms: u64,
  slots: Box<[Slot]>,
}

impl Ring {
  /// `len` empty slots (at least one) of `slot_ms` (at least 1) each.
  pub(crate) fn new(slot_ms: u64, len: usize) -> Ring {
    Ring {
      slot_ms: slot_ms.max(1),
      slots: vec![Slot::default(); len.max(1)].into_boxed_slice(),
    }
  }

  /// Milliseconds per slot.
  pub(crate) fn slot_ms(&self) -> u64 {
    self.slot_ms
  }

  /// Slots kept.
  pub(crate) fn len(&self) -> usize {
    self.slots.len()
  }

  /// The slot holding `now`, cleared first if it held an older slot.
  pub(crate) fn at(&mut self, now: u64) -> &mut Slot {
    let t = now / self.slot_ms;
    let n = self.slots.len() as u64;
    let s = &mut self.slots[(t % n) as usize];
    if s.t != t {
      *s = Slot::fresh(t);
    }
    s
  }

  /// The slots from the one holding `now - window_ms` to the one holding
  /// `now` (so at least the window, at most one slot more), added up; never
  /// more than the ring keeps.
  pub(crate) fn window(&self, now: u64, window_ms: u64) -> Slot {
    let hi = now / self.slot_ms;
    let lo = (now.saturating_sub(window_ms) / self.slot_ms)
      .max((hi + 1).saturating_sub(self.slots.len() as u64));
    let mut sum = Slot::fresh(hi);
    for s in self
      .slots
      .iter()
      .filter(|s| s.t != EMPTY && s.t >= lo && s.t <= hi)
    {
      sum.add(s);
    }
    sum
  }

  /// The written slots among the last `len` up to the one holding `now`,
  /// oldest first.
  pub(crate) fn points(&self, now: u64) -> impl Iterator<Item = &Slot> + '_ {
    let hi = now / self.slot_ms;
    let n = self.slots.len() as u64;
    let lo = (hi + 1).saturating_sub(n);
    (lo..=hi).filter_map(move |t| {
      let s = &self.slots[(t % n) as usize];
      (s.t == t).then_some(s)
    })
  }
}

/// Duration histograms of the last few minutes, one per minute, for the
/// recent percentiles in the health check.
#[derive(Debug, Clone)]
pub(crate) struct RecentHistograms {
  minutes: Box<[(u64, Histogram)]>,
}

impl RecentHistograms {
  /// Keeps `n` minutes (at least one).
  pub(crate) fn new(n: usize) -> RecentHistograms {
    RecentHistograms {
      minutes: vec![(EMPTY, Histogram::default()); n.max(1)].into_boxed_slice(),
    }
  }

  /// Counts one duration at `now`, in bucket `b` (see [`Histogram::record_in`]). O(1).
  pub(crate) fn record_in(&mut self, now: u64, b: usize, ms: f64) {
    let m = now / 60_000;
    let n = self.minutes.len() as u64;
    let (t, h) = &mut self.minutes[(m % n) as usize];
    if *t != m {
      *t = m;
      *h = Histogram::default();
    }
    h.record_in(b, ms);
  }

  /// The durations of the current minute and the `n - 1` before it.
  pub(crate) fn merged(&self, now: u64) -> Histogram {
    let m = now / 60_000;
    let lo = (m + 1).saturating_sub(self.minutes.len() as u64);
    let mut out = Histogram::default();
    for (_, h) in self
      .minutes
      .iter()
      .filter(|(t, _)| *t != EMPTY && *t >= lo && *t <= m)
    {
      out.merge(h);
    }
    out
  }
}

//! Samples the monitor: every second (every health check with a manual
//! clock) the queue's length, oldest wait and busy workers go to the
//! monitor's time series; every health-check interval its alert rules are
//! evaluated and the alerts that fired or resolved go to their channels and
//! to JavaScript. Failed webhook or email deliveries are reported here too.
//! The storage's state is read at each sample; when it changed, the rules
//! are evaluated at once (the `storageDegraded` alert).

use super::Chore;
use crate::queue::{Queue, RunState};
use crate::wire::json_str;

/// When the monitor next samples and evaluates, and how often.
#[derive(Debug, Clone, Copy)]
pub(in crate::queue) struct Sampling {
  pub(in crate::queue) next_sample: u64,
  pub(in crate::queue) next_evaluate: u64,
  /// Sampling period (1 s; the health-check interval with a manual clock).
  pub(in crate::queue) sample_ms: u64,
  pub(in crate::queue) evaluate_ms: u64,
}

impl Default for Sampling {
  fn default() -> Self {
    Sampling {
      next_sample: u64::MAX,
      next_evaluate: u64::MAX,
      sample_ms: 1_000,
      evaluate_ms: 30_000,
    }
  }
}

/// Samples the queue and evaluates alert rules when due; alert events are
/// always recorded (the log channel needs them even with no listener).
pub(in crate::queue) struct SampleMonitor;

impl Chore for SampleMonitor {
  fn run(q: &mut Queue, now: u64) {
    if q.state != RunState::Started || q.monitor.is_none() {
      return;
    }
    if now >= q.sampling.next_sample {
      let queued = q.queued();
      let busy = q.running_count();
      let max = q.cfg.max_workers as usize;
      let oldest = q.store.oldest_due().map_or(0, |t| now.saturating_sub(t));
      if let Some(m) = q.monitor.as_deref_mut() {
        m.sample(now, queued, oldest, busy, max);
      }
      if q.sync_storage_health() {
        // The storage alert fires (or resolves) now, not at the next check.
        q.sampling.next_evaluate = now;
      }
      q.sampling.next_sample = now.saturating_add(q.sampling.sample_ms);
    }
    if now >= q.sampling.next_evaluate {
      let events = q
        .monitor
        .as_deref_mut()
        .map(|m| m.evaluate(now))
        .unwrap_or_default();
      for e in events {
        q.alert_event(&e);
      }
      q.sampling.next_evaluate = now.saturating_add(q.sampling.evaluate_ms);
    }
    // Failed deliveries (found on the delivery thread) go to the JS log.
    if let Some(d) = &q.alert_out {
      for msg in d.take_failures() {
        q.events.service("alertDeliveryFailed", &json_str(&msg));
      }
    }
  }

  fn next_wake(q: &Queue) -> u64 {
    if q.state == RunState::Started && q.monitor.is_some() {
      q.sampling.next_sample.min(q.sampling.next_evaluate)
    } else {
      u64::MAX
    }
  }
}

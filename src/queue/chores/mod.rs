//! The periodic chores of [`Queue::tick`], one small component each (as
//! Oban's plugins are): each does one job at a tick and says when it next
//! needs one, and [`Queue::plan_wake`] sleeps until the earliest of them.
//!
//! | chore | its one job |
//! |---|---|
//! | [`fire::FireSchedules`] | adds the jobs of the schedules due now (through the insert path `add` uses) |
//! | [`sample::SampleMonitor`] | samples the queue for the monitor and evaluates its alert rules |
//! | [`promote::PromoteDue`] | moves delayed jobs that are due into line |
//! | [`timeouts::TimeOut`] | aborts attempts past their deadline (a retry or `timeout`) |
//! | [`prune::Prune`] | removes finished jobs older than `maxJobAge`, every `cleanupInterval` |
//!
//! A tick runs them in that order. None of them moves a job from pending to
//! running: that is [`Queue::take`], called by JavaScript.

pub(super) mod fire;
pub(super) mod promote;
pub(super) mod prune;
pub(super) mod sample;
pub(super) mod timeouts;

use super::Queue;

/// A periodic chore of the queue.
pub(super) trait Chore {
  /// Does the chore's work that is due at `now`.
  fn run(q: &mut Queue, now: u64);

  /// When the chore next has work (epoch ms; `u64::MAX`: nothing planned).
  fn next_wake(q: &Queue) -> u64;
}

/// Runs every chore at `now`, in order.
pub(super) fn run_all(q: &mut Queue, now: u64) {
  fire::FireSchedules::run(q, now);
  sample::SampleMonitor::run(q, now);
  promote::PromoteDue::run(q, now);
  timeouts::TimeOut::run(q, now);
  prune::Prune::run(q, now);
}

/// The earliest time a chore has work.
pub(super) fn next_wake(q: &Queue) -> u64 {
  [
    fire::FireSchedules::next_wake(q),
    sample::SampleMonitor::next_wake(q),
    promote::PromoteDue::next_wake(q),
    timeouts::TimeOut::next_wake(q),
    prune::Prune::next_wake(q),
  ]
  .into_iter()
  .min()
  .unwrap_or(u64::MAX)
}

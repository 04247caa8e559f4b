//! Times out attempts that passed their deadline (`timeout` of the job): the
//! handler's signal is aborted and the attempt fails with `ERR_JOB_TIMEOUT`
//! (retried while attempts are left, else the job ends as `timeout`).

use super::Chore;
use crate::job::{JobError, JobErrorCode};
use crate::queue::{Abort, Queue};
use crate::storage::FailKind;

/// Aborts the running attempts whose deadline is at or before `now`.
pub(in crate::queue) struct TimeOut;

impl Chore for TimeOut {
  fn run(q: &mut Queue, now: u64) {
    for slot in 0..q.slots.len() as u32 {
      let Some(r) = q.slots[slot as usize] else {
        continue;
      };
      if r.deadline > now {
        continue;
      }
      q.abort(slot, r.seq, Abort::Timeout);
      let Some(job) = q.job(r.id) else {
        continue;
      };
      let (started, attempts, timeout) = (job.started_at, job.attempts, job.timeout_ms);
      q.stats.finished(now, now.saturating_sub(started));
      let err = JobError::system(
        "TimeoutError",
        JobErrorCode::JobTimeout,
        format!("attempt {attempts} timed out after {timeout} ms"),
        attempts,
      );
      q.fail_attempt(&r, err, FailKind::Timeout, now);
    }
  }

  fn next_wake(q: &Queue) -> u64 {
    q.slots
      .iter()
      .flatten()
      .map(|r| r.deadline)
      .min()
      .unwrap_or(u64::MAX)
  }
}

//! Listing jobs ([`Store::list_jobs`](super::Store::list_jobs)): the filter,
//! and the id-ordered index the memory store answers it from.
//!
//! A page is the jobs matching a [`JobFilter`] in id order (ids are UUID v7:
//! creation order), newest first unless `ascending`, strictly after the
//! cursor (the last id of the previous page). A backend answers it with one
//! range read on its id key (SQL: `WHERE id < $cursor AND ... ORDER BY id
//! DESC LIMIT $n`), never by skipping an offset, and copies the payloads of
//! the jobs it returns only.

use crate::job::{Job, JobExtra, JobId, Status, Text};

/// Which jobs a listing returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
  /// Bit `1 << status` set for each status wanted (`0x7f`: any).
  pub statuses: u8,
  /// The calculation's name index (`None`: any).
  pub name: Option<u32>,
  /// `created_at >= since`.
  pub since: Option<u64>,
  /// `created_at < until`.
  pub until: Option<u64>,
  /// Only jobs after this id in the listing's order (the previous page's
  /// last job).
  pub after: Option<JobId>,
  /// Oldest first (default: newest first).
  pub ascending: bool,
  /// At most this many jobs.
  pub limit: usize,
  /// With `data` and `result` (else they are left empty, never copied).
  pub include_data: bool,
}

/// Every status.
pub const ANY_STATUS: u8 = 0x7f;

impl Default for JobFilter {
  fn default() -> Self {
    JobFilter {
      statuses: ANY_STATUS,
      name: None,
      since: None,
      until: None,
      after: None,
      ascending: false,
      limit: usize::MAX,
      include_data: true,
    }
  }
}

impl JobFilter {
  /// True when jobs in `status` may match.
  pub fn admits(&self, status: Status) -> bool {
    self.statuses & (1 << status as u8) != 0
  }

  /// True when `job` matches everything but the cursor.
  pub fn matches(&self, job: &Job) -> bool {
    self.admits(job.status)
      && self.name.is_none_or(|n| n == job.name)
      && self.since.is_none_or(|t| job.created_at >= t)
      && self.until.is_none_or(|t| job.created_at < t)
  }

  /// True when `id` comes after the cursor in the listing's order.
  pub fn after_cursor(&self, id: JobId) -> bool {
    match self.after {
      None => true,
      Some(c) if self.ascending => id > c,
      Some(c) => id < c,
    }
  }

  /// The job as listed: a copy, without its data and result unless
  /// `include_data`.
  pub fn copy(&self, job: &Job) -> Job {
    if self.include_data {
      return job.clone();
    }
    let extra = job.extra.as_deref().map(|e| {
      Box::new(JobExtra {
        result: None,
        progress: e.progress.clone(),
        errors: e.errors.clone(),
        deps: e.deps.clone(),
        context: e.context.clone(),
        keys: e.keys.clone(),
      })
    });
    Job {
      id: job.id,
      name: job.name,
      priority: job.priority,
      status: job.status,
      attempts: job.attempts,
      max_retries: job.max_retries,
      timeout_ms: job.timeout_ms,
      backoff: job.backoff,
      gen: job.gen,
      created_at: job.created_at,
      run_at: job.run_at,
      started_at: job.started_at,
      finished_at: job.finished_at,
      data: Text::EMPTY,
      extra,
    }
  }

  /// Merges two pages of this listing (each in its order, no id in both)
  /// into one of at most `limit` jobs.
  pub fn merge(&self, a: Vec<Job>, b: Vec<Job>) -> Vec<Job> {
    if b.is_empty() {
      return a;
    }
    let mut out = Vec::with_capacity((a.len() + b.len()).min(self.limit));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while out.len() < self.limit {
      let take_a = match (a.peek(), b.peek()) {
        (Some(x), Some(y)) => (x.id < y.id) == self.ascending,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => break,
      };
      out.extend(if take_a { a.next() } else { b.next() });
    }
    out
  }
}

/// How far jobs' `created_at` strays from their id's timestamp: ids made in
/// one millisecond beyond the 4,096 its counter holds, or after the clock
/// went back, are ahead of it. Bounds a time filter to a range of ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skew {
  /// The most an id's timestamp is ahead of its job's `created_at`.
  pub ahead: u64,
  /// The most it is behind.
  pub behind: u64,
}

impl Skew {
  /// Takes a job's id and creation time into account.
  pub fn note(&mut self, id: JobId, created_at: u64) {
    let ts = id.timestamp_ms();
    self.ahead = self.ahead.max(ts.saturating_sub(created_at));
    self.behind = self.behind.max(created_at.saturating_sub(ts));
  }

  /// The id timestamps (`lo..=hi`) of jobs that `f`'s time bounds may admit.
  pub fn id_times(&self, f: &JobFilter) -> (u64, u64) {
    let lo = f.since.map_or(0, |t| t.saturating_sub(self.behind));
    let hi = f
      .until
      .map_or(u64::MAX, |t| t.saturating_add(self.ahead).saturating_sub(1));
    (lo, hi)
  }
}

/// Ids in order, for listing: appended as jobs arrive (mostly in order),
/// sorted when a listing finds them out of order; ids of removed jobs are
/// skipped by the reader and compacted away once they are half.
#[derive(Debug, Default)]
pub(crate) struct Order {
  ids: Vec<u128>,
  sorted_len: usize,
  removed: usize,
  skew: Skew,
}

impl Order {
  /// A job arrived.
  pub(crate) fn push(&mut self, id: JobId, created_at: u64) {
    if self.sorted_len == self.ids.len() && self.ids.last().is_none_or(|&l| l < id.0) {
      self.sorted_len += 1;
    }
    self.ids.push(id.0);
    self.skew.note(id, created_at);
  }

  /// A job left.
  pub(crate) fn removed(&mut self) {
    self.removed += 1;
  }

  /// Sorts, and drops removed ids (`live` says which are still there) when
  /// they are half or more.
  fn tidy(&mut self, live: &dyn Fn(u128) -> bool) {
    if self.sorted_len != self.ids.len() {
      self.ids.sort_unstable();
      self.ids.dedup();
      self.sorted_len = self.ids.len();
    }
    self.compact(live);
  }

  /// Drops removed ids once they are half or more (so the index holds at
  /// most twice the jobs stored, listed or not).
  pub(crate) fn compact(&mut self, live: &dyn Fn(u128) -> bool) {
    if self.removed > 0 && self.removed * 2 >= self.ids.len() {
      let sorted = self.sorted_len == self.ids.len();
      self.ids.retain(|&id| live(id));
      self.ids.shrink_to(self.ids.len() * 2);
      self.sorted_len = if sorted { self.ids.len() } else { 0 };
      self.removed = 0;
    }
  }

  /// The page `f` selects: `find` gives the job with an id (`None` once
  /// removed); only matching jobs are copied.
  pub(crate) fn page<'a>(
    &mut self,
    f: &JobFilter,
    find: &dyn Fn(u128) -> Option<&'a Job>,
  ) -> Vec<Job> {
    self.tidy(&|id| find(id).is_some());
    let (lo_ts, hi_ts) = self.skew.id_times(f);
    let mut lo = (lo_ts.min(0xffff_ffff_ffff) as u128) << 80;
    let mut hi = if hi_ts >= 0xffff_ffff_ffff {
      u128::MAX
    } else {
      ((hi_ts as u128 + 1) << 80) - 1
    };
    let mut out = Vec::new();
    match f.after {
      Some(c) if f.ascending => match c.0.checked_add(1) {
        Some(next) => lo = lo.max(next),
        None => return out,
      },
      Some(c) => match c.0.checked_sub(1) {
        Some(prev) => hi = hi.min(prev),
        None => return out,
      },
      None => {}
    }
    if lo > hi || f.limit == 0 {
      return out;
    }
    let start = self.ids.partition_point(|&id| id < lo);
    let end = self.ids.partition_point(|&id| id <= hi);
    let range = &self.ids[start..end];
    let mut visit = |id: &u128| {
      if let Some(job) = find(*id).filter(|j| f.matches(j)) {
        out.push(f.copy(job));
      }
      out.len() < f.limit
    };
    if f.ascending {
      for id in range {
        if !visit(id) {
          break;
        }
      }
    } else {
      for id in range.iter().rev() {
        if !visit(id) {
          break;
        }
      }
    }
    out
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn skew_bounds_cover_every_job_a_time_filter_admits() {
    let mut s = Skew::default();
    let id = |ts: u64| JobId((ts as u128) << 80);
    s.note(id(100), 100);
    assert_eq!(
      s.id_times(&JobFilter {
        since: Some(50),
        until: Some(60),
        ..JobFilter::default()
      }),
      (50, 59)
    );
    s.note(id(120), 110);
    s.note(id(90), 95);
    let (lo, hi) = s.id_times(&JobFilter {
      since: Some(50),
      until: Some(60),
      ..JobFilter::default()
    });
    assert_eq!((lo, hi), (45, 69));
  }

  #[test]
  fn a_page_skips_removed_jobs_and_sorts_late_arrivals() {
    let jobs: Vec<Job> = (1..=6u64)
      .map(|i| Job::new(JobId((i as u128) << 80), 0, i, i, "1".into()))
      .collect();
    let mut o = Order::default();
    for i in [0, 1, 4, 2, 3, 5] {
      o.push(jobs[i].id, jobs[i].created_at);
    }
    o.removed();
    let find = |id: u128| jobs.iter().find(|j| j.id.0 == id && id != 3 << 80);
    let ids = |v: Vec<Job>| v.iter().map(|j| j.created_at).collect::<Vec<_>>();
    let f = JobFilter {
      limit: 2,
      ..JobFilter::default()
    };
    assert_eq!(ids(o.page(&f, &find)), vec![6, 5]);
    let f = JobFilter {
      after: Some(JobId(5 << 80)),
      ..f
    };
    assert_eq!(ids(o.page(&f, &find)), vec![4, 2]);
    let f = JobFilter {
      ascending: true,
      after: Some(JobId(1 << 80)),
      limit: 10,
      ..f
    };
    assert_eq!(ids(o.page(&f, &find)), vec![2, 4, 5, 6]);
  }

  #[test]
  fn removed_ids_are_dropped_once_they_are_half_without_any_listing() {
    let mut o = Order::default();
    for i in 1..=8u128 {
      o.push(JobId(i << 80), i as u64);
    }
    for _ in 0..3 {
      o.removed();
    }
    o.compact(&|id| id > 3 << 80);
    assert_eq!(o.ids.len(), 8, "fewer than half removed: kept");
    o.removed();
    o.compact(&|id| id > 4 << 80);
    assert_eq!(o.ids, (5..=8u128).map(|i| i << 80).collect::<Vec<_>>());
    assert_eq!((o.sorted_len, o.removed), (4, 0));
  }
}

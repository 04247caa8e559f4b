//! Engine fuzz: random sequences of operations on the core [`Queue`] (memory
//! and SQLite stores, manual time), checked after every step against a naive
//! model of the jobs.
//!
//! Operations: add (delay, priority, retries, timeout, `dependsOn`, ignore),
//! settle ok / error / unrecoverable, a late outcome (for an attempt that
//! already ended), time passing (timeouts, retries, delays, cleanup), cancel,
//! retry, stop + start (SQLite: the file closed and opened again), and for
//! SQLite a crash (the process dies; the file is opened by a new queue).
//!
//! The harness drives the queue as the service does: the timer task runs
//! `tick` at the time `plan_wake` returned (at once when a change made the
//! timer dirty) and wakes JavaScript when there is news or work;
//! JavaScript drains aborts and takes due jobs after each call it makes.
//!
//! Invariants: at most `maxWorkers` attempts run; every due job with met
//! dependencies is handed out at the first take after its due time while a
//! worker is free (so the timer woke for it); every aborted attempt
//! (timeout, cancel, stop) is reported by `drain` once, with its reason; an
//! outcome for an attempt that ended changes nothing and is counted; counts
//! per status equal the model's; the queue's own invariants hold.
//!
//! `cargo test --test engine_fuzz` runs a fixed number of cases from a fixed
//! seed; `JOBWERK_FUZZ_CASES=5000` runs more, `JOBWERK_FUZZ_SEED=<n>` another
//! sequence.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Value};

use jobwerk::job::{Backoff, BackoffKind, JobId, Status};
use jobwerk::queue::{JobOptions, NewJob, Queue, QueueConfig};
#[cfg(feature = "sqlite")]
use jobwerk::storage::{Durability, SqliteOptions, SqliteStore};
use jobwerk::storage::{MemoryStore, Names, Store};

/// Where a SQLite case keeps its file (nothing without the `sqlite` feature).
#[cfg(feature = "sqlite")]
type Db = SqliteOptions;
#[cfg(not(feature = "sqlite"))]
#[derive(Debug, Clone)]
struct Db;

const MAX_QUEUE: usize = 12;
const BACKOFF_MS: u64 = 40;
const CLEANUP_MS: u64 = 1_500;
const MAX_AGE_MS: u64 = 2_000;
const START: u64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
  Add {
    delay: u64,
    priority: u8,
    retries: u32,
    timeout: u32,
    deps: Vec<usize>,
    ignore: bool,
  },
  /// kind: 0 error, 1 ok, 2 unrecoverable.
  Settle {
    pick: usize,
    kind: u8,
  },
  Late {
    pick: usize,
  },
  Advance {
    ms: u64,
  },
  Cancel {
    pick: usize,
  },
  Retry {
    pick: usize,
  },
  Restart,
  Crash,
}

fn op() -> impl Strategy<Value = Op> {
  prop_oneof![
    5 => (
      prop_oneof![3 => Just(0u64), 2 => 1u64..600],
      0u8..4,
      0u32..3,
      prop_oneof![2 => Just(0u32), 1 => 30u32..400],
      proptest::collection::vec(0usize..64, 0..3),
      any::<bool>(),
    )
      .prop_map(|(delay, priority, retries, timeout, deps, ignore)| Op::Add {
        delay,
        priority,
        retries,
        timeout,
        deps,
        ignore,
      }),
    5 => (0usize..16, 0u8..3).prop_map(|(pick, kind)| Op::Settle { pick, kind }),
    1 => (0usize..16).prop_map(|pick| Op::Late { pick }),
    4 => prop_oneof![1u64..80, 80u64..700, 700u64..2_500].prop_map(|ms| Op::Advance { ms }),
    1 => (0usize..64).prop_map(|pick| Op::Cancel { pick }),
    2 => (0usize..64).prop_map(|pick| Op::Retry { pick }),
    1 => Just(Op::Restart),
    1 => Just(Op::Crash),
  ]
}

/// A job as the model sees it.
#[derive(Debug, Clone)]
struct MJob {
  id: JobId,
  status: Status,
  attempts: u32,
  retries: u32,
  run_at: u64,
  timeout: u32,
  deps: Vec<usize>,
  ignore: bool,
  finished_at: u64,
  pruned: bool,
}

/// An attempt handed out.
#[derive(Debug, Clone, Copy)]
struct Attempt {
  job: usize,
  slot: u32,
  seq: u32,
  deadline: u64,
}

struct Harness {
  q: Queue,
  cfg: QueueConfig,
  calc: u32,
  now: u64,
  timer_at: u64,
  next_cleanup: u64,
  jobs: Vec<MJob>,
  running: Vec<Attempt>,
  /// Attempts that ended (settled or aborted): their outcomes are late.
  ended: Vec<(u32, u32)>,
  /// Aborts the next drain must report: (slot, seq, why).
  aborts: Vec<(u32, u32, u8)>,
  late: u64,
  sqlite: Option<Db>,
  log: Vec<String>,
}

type R = Result<(), TestCaseError>;

fn fail(h: &Harness, msg: String) -> TestCaseError {
  let tail: Vec<&String> = h.log.iter().rev().take(12).collect();
  let jobs: Vec<String> = h
    .jobs
    .iter()
    .enumerate()
    .map(|(i, j)| {
      format!(
        "{i}: {:?}{} run_at {} fin {} deps {:?}{}",
        j.status,
        if j.pruned { " (pruned)" } else { "" },
        j.run_at,
        j.finished_at,
        j.deps,
        if j.ignore { " ignore" } else { "" }
      )
    })
    .collect();
  TestCaseError::fail(format!(
    "{msg}\nlast steps (newest first): {tail:#?}\nmodel: {jobs:#?}"
  ))
}

macro_rules! check {
  ($h:expr, $cond:expr, $($fmt:tt)*) => {
    if !$cond {
      return Err(fail($h, format!($($fmt)*)));
    }
  };
}

fn config(max_workers: u32) -> QueueConfig {
  QueueConfig {
    max_workers,
    max_queue_size: MAX_QUEUE,
    default_timeout_ms: 0,
    default_retries: 0,
    default_backoff: Backoff {
      kind: BackoffKind::Fixed,
      delay_ms: BACKOFF_MS as u32,
      max_delay_ms: 0,
      jitter: 0.0,
    },
    cleanup_interval_ms: CLEANUP_MS,
    max_job_age_ms: MAX_AGE_MS,
    ..QueueConfig::default()
  }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(opts: &Db, names: &mut Names, now: u64) -> Box<dyn Store> {
  match SqliteStore::open(opts, names, now) {
    Ok(s) => Box::new(s),
    Err(e) => panic!("cannot open {}: {e}", opts.path.display()),
  }
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_: &Db, _: &mut Names, _: u64) -> Box<dyn Store> {
  unreachable!("the SQLite fuzz needs the sqlite feature")
}

/// A new file in a directory of its own, with `hot_pending` pending jobs in
/// memory.
#[cfg(feature = "sqlite")]
fn new_db(hot_pending: usize) -> Db {
  use std::sync::atomic::{AtomicUsize, Ordering};
  static N: AtomicUsize = AtomicUsize::new(0);
  let dir = std::env::temp_dir().join(format!(
    "jobwerk-engine-fuzz-{}-{}",
    std::process::id(),
    N.fetch_add(1, Ordering::SeqCst)
  ));
  let _ = std::fs::remove_dir_all(&dir);
  let mut opts = SqliteOptions::new(dir.join("jobs.db"), Durability::Normal);
  opts.hot_pending = hot_pending;
  opts
}

#[cfg(not(feature = "sqlite"))]
fn new_db(_: usize) -> Db {
  panic!("the SQLite fuzz needs the sqlite feature")
}

#[cfg(feature = "sqlite")]
fn db_dir(opts: &Db) -> Option<PathBuf> {
  opts.path.parent().map(PathBuf::from)
}

#[cfg(not(feature = "sqlite"))]
fn db_dir(_: &Db) -> Option<PathBuf> {
  None
}

impl Harness {
  fn new(max_workers: u32, sqlite: bool, hot_pending: usize) -> Harness {
    let cfg = config(max_workers);
    let (q, sqlite) = if sqlite {
      let opts = new_db(hot_pending);
      let mut names = Names::default();
      let store = open_sqlite(&opts, &mut names, START);
      (
        Queue::with_store(cfg.clone(), START, store, names),
        Some(opts),
      )
    } else {
      (
        Queue::with_store(
          cfg.clone(),
          START,
          Box::new(MemoryStore::new()),
          Names::default(),
        ),
        None,
      )
    };
    let mut h = Harness {
      q,
      cfg,
      calc: 0,
      now: START,
      timer_at: u64::MAX,
      next_cleanup: START + CLEANUP_MS,
      jobs: Vec::new(),
      running: Vec::new(),
      ended: Vec::new(),
      aborts: Vec::new(),
      late: 0,
      sqlite,
      log: Vec::new(),
    };
    h.boot();
    h
  }

  /// Registers the calculation and starts (as the service's `start()`).
  fn boot(&mut self) {
    self.calc = self.q.register("calc", &Value::Null).expect("register");
    self.q.start(self.now);
    self.q.end_batch();
    self.q.take_timer_dirty();
    self.timer_at = self.q.plan_wake();
  }

  fn index_of(&self, id: &str) -> Option<usize> {
    self.jobs.iter().position(|j| j.id.to_string() == id)
  }

  fn queued(&self) -> usize {
    self
      .jobs
      .iter()
      .filter(|j| !j.pruned && matches!(j.status, Status::Waiting | Status::Pending))
      .count()
  }

  // ---- the model ----

  /// Settles a waiting job's dependencies as the store does: `Some(true)`
  /// failed, `Some(false)` pending, `None` still waiting. `fail_on_failed`:
  /// false for a retried (or restored) job, which waits for a failed
  /// dependency's retry.
  fn settle_waiting(&mut self, j: usize, now: u64, fail_on_failed: bool) -> Option<bool> {
    if self.jobs[j].status != Status::Waiting {
      return None;
    }
    let mut all_done = true;
    let mut failed = false;
    for &d in &self.jobs[j].deps {
      let dep = &self.jobs[d];
      if dep.pruned || dep.status == Status::Completed {
        continue;
      }
      if dep.status.is_finished() {
        if self.jobs[j].ignore {
          continue;
        }
        if fail_on_failed {
          failed = true;
          break;
        }
      }
      all_done = false;
    }
    let job = &mut self.jobs[j];
    if failed {
      job.status = Status::Failed;
      job.finished_at = now;
      return Some(true);
    }
    if !all_done {
      return None;
    }
    job.status = Status::Pending;
    job.run_at = job.run_at.max(now);
    Some(false)
  }

  /// Job `d` finished (or was pruned): its waiting dependants are looked at.
  fn release(&mut self, d: usize, now: u64) {
    let mut todo = vec![d];
    while let Some(done) = todo.pop() {
      for j in 0..self.jobs.len() {
        if self.jobs[j].status == Status::Waiting
          && self.jobs[j].deps.contains(&done)
          && self.settle_waiting(j, now, true) == Some(true)
        {
          todo.push(j);
        }
      }
    }
  }

  fn finish(&mut self, j: usize, status: Status, now: u64) {
    self.jobs[j].status = status;
    self.jobs[j].finished_at = now;
    self.release(j, now);
  }

  /// A failed attempt of job `j` at `now`: retried with the fixed backoff
  /// while attempts are left, else finished as `last`.
  fn attempt_failed(&mut self, j: usize, now: u64, retry: bool, last: Status) {
    let job = &mut self.jobs[j];
    if retry && job.attempts <= job.retries {
      job.status = Status::Pending;
      job.run_at = now + BACKOFF_MS;
    } else {
      self.finish(j, last, now);
    }
  }

  fn end_attempt(&mut self, k: usize) -> Attempt {
    let a = self.running.remove(k);
    self.ended.push((a.slot, a.seq));
    a
  }

  // ---- the service around the queue ----

  /// The timer task's step at `t` (as `Engine::on_timer`), then JavaScript
  /// if it was woken.
  fn timer(&mut self, t: u64) -> R {
    self.now = t;
    // The model of `tick`: timeouts, then cleanup.
    let mut k = 0;
    while k < self.running.len() {
      if self.running[k].deadline <= t {
        let a = self.end_attempt(k);
        self.aborts.push((a.slot, a.seq, 0));
        self.attempt_failed(a.job, t, true, Status::Timeout);
      } else {
        k += 1;
      }
    }
    if t >= self.next_cleanup {
      let before = t.saturating_sub(MAX_AGE_MS);
      let mut pruned = Vec::new();
      for (i, j) in self.jobs.iter_mut().enumerate() {
        if !j.pruned && j.status.is_finished() && j.finished_at <= before {
          j.pruned = true;
          if j.status != Status::Completed {
            pruned.push(i);
          }
        }
      }
      // Only a retried dependant waits for a failed job: a pruned one
      // counts as done for it.
      for i in pruned {
        for j in 0..self.jobs.len() {
          let job = &self.jobs[j];
          if job.status == Status::Waiting
            && !job.ignore
            && job.deps.contains(&i)
            && self.settle_waiting(j, before, true) == Some(true)
          {
            self.release(j, before);
          }
        }
      }
      self.next_cleanup = t + CLEANUP_MS;
    }
    self.q.tick(t);
    let wake = self.q.has_news() || self.q.has_work(t);
    self.q.end_batch();
    self.q.take_timer_dirty();
    self.timer_at = self.q.plan_wake();
    if wake {
      self.js()?;
    }
    Ok(())
  }

  /// After a call: a dirty timer runs its step now; JavaScript drains and
  /// takes.
  fn after_call(&mut self) -> R {
    self.q.end_batch();
    if self.q.take_timer_dirty() {
      let now = self.now;
      self.timer(now)?;
    }
    self.js()
  }

  /// JavaScript's pull: drain (aborts must match), then take due jobs.
  fn js(&mut self) -> R {
    let drained: Value = serde_json::from_str(&self.q.drain()).expect("drain json");
    let flat: Vec<u64> = drained[0]
      .as_array()
      .map(|a| a.iter().filter_map(Value::as_u64).collect())
      .unwrap_or_default();
    let mut got: Vec<(u32, u32, u8)> = flat
      .chunks(3)
      .map(|c| (c[0] as u32, c[1] as u32, c[2] as u8))
      .collect();
    let mut want = std::mem::take(&mut self.aborts);
    got.sort_unstable();
    want.sort_unstable();
    check!(
      self,
      got == want,
      "aborts drained {got:?}, expected {want:?}"
    );
    let free = self.cfg.max_workers as usize - self.running.len();
    let mut out = String::new();
    let n = self.q.take(free.max(1), self.now, &mut out);
    self.q.end_batch();
    if self.q.take_timer_dirty() {
      self.timer_at = self.q.plan_wake();
    }
    let items: Vec<Value> =
      serde_json::from_str(&format!("[{}]", out.trim_end_matches(','))).expect("take json");
    check!(
      self,
      items.len() == n * 7,
      "take returned {n} jobs in {} items",
      items.len()
    );
    for t in items.chunks(7) {
      let (slot, seq) = (
        t[0].as_u64().unwrap_or(0) as u32,
        t[1].as_u64().unwrap_or(0) as u32,
      );
      let id = t[2].as_str().unwrap_or("");
      let Some(j) = self.index_of(id) else {
        return Err(fail(self, format!("took an unknown job {id}")));
      };
      let job = &self.jobs[j];
      check!(
        self,
        job.status == Status::Pending && !job.pruned && job.run_at <= self.now,
        "took job {j} that is {:?}, due at {} (now {})",
        job.status,
        job.run_at,
        self.now
      );
      let attempt = t[4].as_u64().unwrap_or(0) as u32;
      check!(
        self,
        attempt == job.attempts + 1,
        "job {j}: attempt {attempt}, model {}",
        job.attempts + 1
      );
      let deadline = if job.timeout == 0 {
        u64::MAX
      } else {
        self.now + u64::from(job.timeout)
      };
      let job = &mut self.jobs[j];
      job.status = Status::Running;
      job.attempts += 1;
      self.running.push(Attempt {
        job: j,
        slot,
        seq,
        deadline,
      });
    }
    Ok(())
  }

  /// Everything the queue must agree with after a step.
  fn check(&mut self) -> R {
    check!(
      self,
      self.q.running_count() <= self.cfg.max_workers as usize,
      "{} running with maxWorkers {}",
      self.q.running_count(),
      self.cfg.max_workers
    );
    if let Err(e) = self.q.check_invariants() {
      return Err(fail(self, format!("queue invariants: {e}")));
    }
    for s in Status::ALL {
      let model = self
        .jobs
        .iter()
        .filter(|j| !j.pruned && j.status == s)
        .count();
      let real = self.q.count(s);
      check!(
        self,
        model == real,
        "{} {s:?} jobs, the model has {model}",
        real
      );
    }
    check!(
      self,
      self.q.late_outcomes() == self.late,
      "{} late outcomes, the model has {}",
      self.q.late_outcomes(),
      self.late
    );
    if self.running.len() < self.cfg.max_workers as usize {
      let now = self.now;
      if let Some((i, j)) = self
        .jobs
        .iter()
        .enumerate()
        .find(|(_, j)| !j.pruned && j.status == Status::Pending && j.run_at <= now)
      {
        return Err(fail(
          self,
          format!(
            "job {i} due at {} is not handed out at {now} with a worker free (timer at {})",
            j.run_at, self.timer_at
          ),
        ));
      }
    }
    for (i, j) in self.jobs.iter().enumerate() {
      if j.pruned {
        continue;
      }
      let real = self.q.get(j.id).map(|x| (x.status, x.attempts));
      check!(
        self,
        real == Some((j.status, j.attempts)),
        "job {i} is {real:?}, the model has {:?}",
        (j.status, j.attempts)
      );
    }
    Ok(())
  }

  // ---- operations ----

  fn step(&mut self, op: &Op) -> R {
    self.log.push(format!("t={} {op:?}", self.now));
    match op {
      Op::Add {
        delay,
        priority,
        retries,
        timeout,
        deps,
        ignore,
      } => self.add(*delay, *priority, *retries, *timeout, deps, *ignore)?,
      Op::Settle { pick, kind } => {
        if self.running.is_empty() {
          return Ok(());
        }
        let k = pick % self.running.len();
        let a = self.end_attempt(k);
        let json = match kind {
          1 => format!("[{},{},1,{{\"ok\":true}}]", a.slot, a.seq),
          k => format!(
            "[{},{},{k},{{\"name\":\"Error\",\"message\":\"boom\",\"stack\":\"\"}}]",
            a.slot, a.seq
          ),
        };
        self.q.settle(&json, self.now).expect("settle");
        match kind {
          1 => self.finish(a.job, Status::Completed, self.now),
          0 => self.attempt_failed(a.job, self.now, true, Status::Failed),
          _ => self.attempt_failed(a.job, self.now, false, Status::Failed),
        }
      }
      Op::Late { pick } => {
        if self.ended.is_empty() {
          return Ok(());
        }
        let (slot, seq) = self.ended[pick % self.ended.len()];
        // The slot may hold a newer attempt now: only its own seq counts.
        if self.running.iter().any(|a| a.slot == slot && a.seq == seq) {
          return Ok(());
        }
        self
          .q
          .settle(&format!("[{slot},{seq},1,\"late\"]"), self.now)
          .expect("settle");
        self.late += 1;
      }
      Op::Advance { ms } => return self.advance(*ms),
      Op::Cancel { pick } => {
        if self.jobs.is_empty() {
          return Ok(());
        }
        let j = pick % self.jobs.len();
        let now = self.now;
        let got = self.q.cancel(self.jobs[j].id, now).expect("cancel");
        let job = &self.jobs[j];
        let want = !job.pruned
          && matches!(
            job.status,
            Status::Waiting | Status::Pending | Status::Running
          );
        check!(
          self,
          got == want,
          "cancel of job {j} ({:?}) returned {got}",
          job.status
        );
        if want {
          if let Some(k) = self.running.iter().position(|a| a.job == j) {
            let a = self.end_attempt(k);
            self.aborts.push((a.slot, a.seq, 1));
          }
          self.finish(j, Status::Cancelled, now);
        }
      }
      Op::Retry { pick } => {
        if self.jobs.is_empty() {
          return Ok(());
        }
        let j = pick % self.jobs.len();
        let now = self.now;
        let got = self.q.retry(self.jobs[j].id, now);
        let job = &self.jobs[j];
        let retryable = !job.pruned
          && matches!(
            job.status,
            Status::Failed | Status::Timeout | Status::Cancelled
          );
        if !retryable {
          check!(
            self,
            matches!(got, Ok(false)),
            "retry of job {j} ({:?}): {got:?}",
            job.status
          );
        } else if self.queued() >= MAX_QUEUE {
          check!(self, got.is_err(), "retry over maxQueueSize: {got:?}");
        } else {
          check!(self, matches!(got, Ok(true)), "retry of job {j}: {got:?}");
          let job = &mut self.jobs[j];
          job.attempts = 0;
          job.run_at = now;
          job.finished_at = 0;
          if job.deps.is_empty() {
            job.status = Status::Pending;
          } else {
            job.status = Status::Waiting;
            self.settle_waiting(j, now, false);
          }
        }
      }
      Op::Restart => self.restart(),
      Op::Crash => self.crash(),
    }
    self.after_call()?;
    self.check()
  }

  fn add(
    &mut self,
    delay: u64,
    priority: u8,
    retries: u32,
    timeout: u32,
    deps: &[usize],
    ignore: bool,
  ) -> R {
    let deps: Vec<usize> = if self.jobs.is_empty() {
      Vec::new()
    } else {
      let mut d: Vec<usize> = deps.iter().map(|d| d % self.jobs.len()).collect();
      d.sort_unstable();
      d.dedup();
      d
    };
    let prio = ["high", "medium", "low"]
      .get(priority as usize)
      .map_or(json!(7), |p| json!(p));
    let ids: Vec<String> = deps.iter().map(|&d| self.jobs[d].id.to_string()).collect();
    let opts = json!({
      "delay": delay,
      "priority": prio,
      "retries": retries,
      "timeout": timeout,
      "dependsOn": ids,
      "onDependencyFailure": if ignore { "ignore" } else { "fail" },
    });
    let options = JobOptions::parse(&opts, "options", self.cfg.default_backoff).expect("options");
    let data = self.jobs.len().to_string();
    let got = self.q.add(
      &[NewJob {
        calc: self.calc,
        data: &data,
        context: "{}",
        options,
      }],
      self.now,
    );
    if self.queued() >= MAX_QUEUE {
      check!(self, got.is_err(), "add over maxQueueSize: {got:?}");
      return Ok(());
    }
    if deps.iter().any(|&d| self.jobs[d].pruned) {
      check!(self, got.is_err(), "add with a pruned dependency: {got:?}");
      return Ok(());
    }
    let ids = match got {
      Ok(ids) => ids,
      Err(e) => return Err(fail(self, format!("add failed: {e}"))),
    };
    let now = self.now;
    self.jobs.push(MJob {
      id: ids[0],
      status: if deps.is_empty() {
        Status::Pending
      } else {
        Status::Waiting
      },
      attempts: 0,
      retries,
      run_at: now + delay,
      timeout,
      deps,
      ignore,
      finished_at: 0,
      pruned: false,
    });
    let j = self.jobs.len() - 1;
    if self.settle_waiting(j, now, true) == Some(true) {
      self.release(j, now);
    }
    Ok(())
  }

  /// Time passes: the timer fires at each time it planned up to `now + ms`.
  fn advance(&mut self, ms: u64) -> R {
    let target = self.now + ms;
    let mut steps = 0;
    while self.timer_at <= target {
      let t = self.timer_at.max(self.now);
      self.timer(t)?;
      self.check()?;
      steps += 1;
      check!(self, steps < 10_000, "the timer does not move on from {t}");
    }
    self.now = target;
    self.check()
  }

  /// `stop()` then `start()`: running attempts are aborted and go back to
  /// pending (the attempt not counted); SQLite closes its file and opens it
  /// again.
  fn restart(&mut self) {
    let now = self.now;
    self.q.begin_stop();
    let n = self.q.finish_stop(now);
    assert_eq!(n, self.running.len(), "finish_stop aborted {n}");
    for a in std::mem::take(&mut self.running) {
      self.ended.push((a.slot, a.seq));
      self.aborts.push((a.slot, a.seq, 2));
      let job = &mut self.jobs[a.job];
      job.status = Status::Pending;
      job.attempts -= 1;
      job.run_at = now;
    }
    if let Some(opts) = self.sqlite.clone() {
      self
        .q
        .reopen_store(|names| Ok(open_sqlite(&opts, names, now)))
        .expect("reopen");
    }
    self.q.start(now);
    self.next_cleanup = now + CLEANUP_MS;
  }

  /// The process dies (SQLite only): what was committed is opened by a new
  /// queue; running jobs are interrupted (the attempt counted).
  fn crash(&mut self) {
    let Some(opts) = self.sqlite.clone() else {
      return;
    };
    let now = self.now;
    jobwerk::storage::wait_flushed(self.q.store_mut()).expect("sync");
    let mut names = Names::default();
    let fresh = Queue::with_store(
      self.cfg.clone(),
      now,
      Box::new(MemoryStore::new()),
      Names::default(),
    );
    // The old queue (and its file lock) goes before the file is opened again.
    drop(std::mem::replace(&mut self.q, fresh));
    let store = open_sqlite(&opts, &mut names, now);
    self.q = Queue::with_store(self.cfg.clone(), now, store, names);
    self.calc = self.q.register("calc", &Value::Null).expect("register");
    self.q.start(now);
    self.next_cleanup = now + CLEANUP_MS;
    // JavaScript died with the process: no aborts, no late outcomes.
    self.aborts.clear();
    self.ended.clear();
    self.late = 0;
    for a in std::mem::take(&mut self.running) {
      self.attempt_failed(a.job, now, true, Status::Failed);
      if self.jobs[a.job].status == Status::Pending {
        self.jobs[a.job].run_at = now;
      }
    }
  }
}

impl Drop for Harness {
  fn drop(&mut self) {
    if let Some(dir) = self.sqlite.as_ref().and_then(db_dir) {
      let _ = std::fs::remove_dir_all(dir);
    }
  }
}

fn env_u64(name: &str, default: u64) -> u64 {
  std::env::var(name)
    .ok()
    .and_then(|v| v.parse().ok())
    .unwrap_or(default)
}

/// Runs `cases` random sequences (seeded by `JOBWERK_FUZZ_SEED`).
fn fuzz(cases: u32, sqlite: bool) {
  let seed = env_u64("JOBWERK_FUZZ_SEED", 17).to_le_bytes();
  let mut seed32 = [0u8; 32];
  seed32[..8].copy_from_slice(&seed);
  seed32[8] = sqlite as u8;
  let config = Config {
    cases,
    failure_persistence: None,
    ..Config::default()
  };
  let mut runner =
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed32));
  let strategy = (
    1u32..4,
    prop_oneof![Just(2048usize), 1usize..4],
    proptest::collection::vec(op(), 1..90),
  );
  let result = runner.run(&strategy, |(workers, hot, ops)| {
    let mut h = Harness::new(workers, sqlite, hot);
    h.check()?;
    for op in &ops {
      h.step(op)?;
    }
    // Everything that can still run does.
    h.advance(20_000)?;
    Ok(())
  });
  if let Err(e) = result {
    panic!("{e}");
  }
}

#[test]
fn engine_fuzz_memory() {
  fuzz(env_u64("JOBWERK_FUZZ_CASES", 200) as u32, false);
}

#[cfg(feature = "sqlite")]
#[test]
fn engine_fuzz_sqlite() {
  fuzz((env_u64("JOBWERK_FUZZ_CASES", 200) / 4).max(1) as u32, true);
}

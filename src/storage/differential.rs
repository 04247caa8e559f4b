//! The differential property test: a naive model of the store (a plain
//! `Vec` of jobs that sorts the due ones on every claim) against
//! [`MemoryStore`] and [`SqliteStore`] (hot, and cold: one pending job in
//! memory, the rest in the file), driven by the same random operations.
//! After every step the jobs claimed (in order), the answers of every
//! transition and the status and attempts of every job must agree, so an
//! ordering bug in a production store cannot pass by agreeing with itself.
//!
//! Fixed seed; `JOBWERK_DIFF_CASES=<n>` runs more cases,
//! `JOBWERK_DIFF_SEED=<n>` other ones. Without the `sqlite` feature the
//! model is compared with the memory store alone.
#![cfg_attr(not(feature = "sqlite"), allow(unused_mut, clippy::clone_on_copy))]

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use super::*;
use crate::job::{Backoff, BackoffKind, Dependencies, IdGen, JobExtra, JobKeys, Priority};

/// The backoff of every job: fixed, no jitter (a retry is due 10 ms later).
const DELAY: u64 = 10;

#[derive(Debug, Clone)]
enum Op {
  /// A new job: priority (0..3), delay, retries, dependencies (indices of
  /// earlier jobs), their failure ignored, a unique key (one of three).
  Insert {
    prio: u8,
    delay: u64,
    retries: u32,
    deps: Vec<usize>,
    ignore: bool,
    key: Option<u8>,
  },
  /// Time passes by `advance`, then a claim of up to `max` jobs.
  Claim {
    max: usize,
    advance: u64,
  },
  Complete(usize),
  /// 0: error, 1: unrecoverable error, 2: timeout, 3: stop.
  Fail(usize, u8),
  Cancel(usize),
  Retry(usize),
  /// A late outcome under a lease that is no longer current (complete or fail).
  Late(usize, bool),
  /// The durable stores are closed and opened again (memory: its running
  /// jobs are recovered as a new process would).
  Reopen,
}

fn op() -> impl Strategy<Value = Op> {
  prop_oneof![
    6 => (
      0u8..3,
      prop_oneof![3 => Just(0u64), 1 => 1u64..40],
      0u32..3,
      proptest::collection::vec(0usize..64, 0..3),
      any::<bool>(),
      prop_oneof![3 => Just(None), 1 => (0u8..3).prop_map(Some)],
    )
      .prop_map(|(prio, delay, retries, deps, ignore, key)| Op::Insert {
        prio,
        delay,
        retries,
        deps,
        ignore,
        key
      }),
    5 => (1usize..5, prop_oneof![Just(0u64), 1u64..25])
      .prop_map(|(max, advance)| Op::Claim { max, advance }),
    3 => (0usize..16).prop_map(Op::Complete),
    2 => (0usize..16, 0u8..4).prop_map(|(i, k)| Op::Fail(i, k)),
    1 => (0usize..64).prop_map(Op::Cancel),
    1 => (0usize..64).prop_map(Op::Retry),
    1 => (0usize..64, any::<bool>()).prop_map(|(i, c)| Op::Late(i, c)),
    1 => Just(Op::Reopen),
  ]
}

/// One job of the model.
#[derive(Debug, Clone)]
struct MJob {
  id: JobId,
  weight: i32,
  run_at: u64,
  status: Status,
  attempts: u32,
  retries: u32,
  deps: Vec<usize>,
  ignore: bool,
  key: Option<u8>,
}

/// The naive model: every rule written out plainly, nothing indexed.
#[derive(Debug, Default)]
struct Model {
  jobs: Vec<MJob>,
}

impl Model {
  fn claim(&mut self, max: usize, now: u64) -> Vec<JobId> {
    let mut due: Vec<usize> = (0..self.jobs.len())
      .filter(|&i| self.jobs[i].status == Status::Pending && self.jobs[i].run_at <= now)
      .collect();
    // By priority weight, then due time, then insertion.
    due.sort_by_key(|&i| (self.jobs[i].weight, self.jobs[i].run_at, i));
    due.truncate(max);
    for &i in &due {
      let j = &mut self.jobs[i];
      j.status = Status::Running;
      j.attempts += 1;
    }
    due.iter().map(|&i| self.jobs[i].id).collect()
  }

  /// Settles waiting jobs until nothing changes: a dependency that ended
  /// otherwise than completed fails its dependants (unless ignored); all
  /// done, the job is pending, due no earlier than now.
  fn settle(&mut self, now: u64) {
    loop {
      let mut changed = false;
      for i in 0..self.jobs.len() {
        if self.jobs[i].status != Status::Waiting {
          continue;
        }
        let (mut open, mut failed) = (false, false);
        for &d in &self.jobs[i].deps {
          match self.jobs[d].status {
            Status::Completed => {}
            s if s.is_finished() => failed |= !self.jobs[i].ignore,
            _ => open = true,
          }
          if failed {
            break;
          }
        }
        let j = &mut self.jobs[i];
        if failed {
          j.status = Status::Failed;
          changed = true;
        } else if !open {
          j.status = Status::Pending;
          j.run_at = j.run_at.max(now);
          changed = true;
        }
      }
      if !changed {
        return;
      }
    }
  }

  fn fail(&mut self, i: usize, kind: u8, now: u64) -> Status {
    let j = &mut self.jobs[i];
    let left = j.attempts <= j.retries;
    match kind {
      0 | 2 if left => {
        j.status = Status::Pending;
        j.run_at = now + DELAY;
      }
      0 | 1 => j.status = Status::Failed,
      2 => j.status = Status::Timeout,
      _ => {
        j.status = Status::Pending;
        j.attempts -= 1;
        j.run_at = now;
      }
    }
    let s = j.status;
    self.settle(now);
    s
  }

  /// The running jobs, by insertion.
  fn running(&self) -> Vec<usize> {
    (0..self.jobs.len())
      .filter(|&i| self.jobs[i].status == Status::Running)
      .collect()
  }

  fn keyed(&self, key: u8) -> Option<JobId> {
    self
      .jobs
      .iter()
      .filter(|j| j.key == Some(key) && !j.status.is_finished())
      .map(|j| j.id)
      .max()
  }
}

fn names() -> Names {
  let mut n = Names::default();
  n.intern("a");
  n
}

#[cfg(feature = "sqlite")]
type Durable = SqliteOptions;
#[cfg(not(feature = "sqlite"))]
type Durable = ();

/// The stores under test, each with every lease it handed out per job.
struct Stores {
  stores: Vec<Box<dyn Store>>,
  /// Options of the durable ones (`None`: memory).
  opts: Vec<Option<Durable>>,
  leases: Vec<HashMap<JobId, Vec<Lease>>>,
  dir: std::path::PathBuf,
}

impl Drop for Stores {
  fn drop(&mut self) {
    self.stores.clear();
    let _ = std::fs::remove_dir_all(&self.dir);
  }
}

impl Stores {
  fn new(case: usize) -> Stores {
    let dir = std::env::temp_dir().join(format!(
      "jobwerk-differential-{}-{case}",
      std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut stores: Vec<Box<dyn Store>> = vec![Box::new(MemoryStore::new())];
    let mut opts = vec![None];
    #[cfg(feature = "sqlite")]
    for (name, hot) in [("hot", None), ("cold", Some(1))] {
      let mut o = SqliteOptions::new(dir.join(name).join("jobs.db"), Durability::Normal);
      if let Some(h) = hot {
        o.hot_pending = h;
      }
      stores.push(Box::new(
        SqliteStore::open(&o, &mut names(), 0).expect("open"),
      ));
      opts.push(Some(o));
    }
    let leases = vec![HashMap::new(); stores.len()];
    Stores {
      stores,
      opts,
      leases,
      dir,
    }
  }
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
  if cond {
    Ok(())
  } else {
    Err(TestCaseError::fail(what()))
  }
}

fn storage(e: crate::error::Error) -> TestCaseError {
  TestCaseError::fail(format!("storage error: {e}"))
}

struct Run {
  model: Model,
  s: Stores,
  ids: IdGen,
  now: u64,
}

impl Run {
  fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
    let now = self.now;
    match op {
      Op::Insert {
        prio,
        delay,
        retries,
        deps,
        ignore,
        key,
      } => {
        let n = self.model.jobs.len();
        let mut deps: Vec<usize> = if n == 0 {
          vec![]
        } else {
          deps.iter().map(|d| d % n).collect()
        };
        deps.sort_unstable();
        deps.dedup();
        let priority = [Priority::High, Priority::Medium, Priority::Low][*prio as usize];
        let id = self.ids.next(now);
        let mut job = Job {
          priority,
          max_retries: *retries,
          backoff: Backoff {
            kind: BackoffKind::Fixed,
            delay_ms: DELAY as u32,
            max_delay_ms: 0,
            jitter: 0.0,
          },
          ..Job::new(id, 0, now, now + delay, "1".into())
        };
        if !deps.is_empty() {
          job.extra = JobExtra::of(
            Some(Dependencies {
              ids: deps.iter().map(|&d| self.model.jobs[d].id).collect(),
              ignore_failure: *ignore,
            }),
            "{}",
          );
        }
        // As the queue does: a key held by an unfinished job is not given
        // to another one (at most one holder at a time).
        let key = key.filter(|&k| self.model.keyed(k).is_none());
        let key_text = key.map(|k| format!("k{k}"));
        job.set_keys(JobKeys::of(key_text.as_deref(), None, None));
        for s in &mut self.s.stores {
          s.insert(vec![job.clone()], &names()).map_err(storage)?;
        }
        self.model.jobs.push(MJob {
          id,
          weight: [1, 2, 3][*prio as usize],
          run_at: now + delay,
          status: if deps.is_empty() {
            Status::Pending
          } else {
            Status::Waiting
          },
          attempts: 0,
          retries: *retries,
          deps,
          ignore: *ignore,
          key,
        });
        self.model.settle(now);
      }
      Op::Claim { max, advance } => {
        self.now += advance;
        let now = self.now;
        let want = self.model.claim(*max, now);
        for (k, s) in self.s.stores.iter_mut().enumerate() {
          let mut got = Vec::new();
          let leases = &mut self.s.leases[k];
          s.claim(*max, now, &|_| true, &mut |job, lease| {
            got.push(job.id);
            leases.entry(job.id).or_default().push(lease);
          })
          .map_err(storage)?;
          check(got == want, || {
            format!("store {k} claimed {got:?} at {now}, the model {want:?}")
          })?;
        }
      }
      Op::Complete(i) => {
        let running = self.model.running();
        if running.is_empty() {
          return Ok(());
        }
        let m = running[i % running.len()];
        let id = self.model.jobs[m].id;
        for (k, s) in self.s.stores.iter_mut().enumerate() {
          let lease = *self.s.leases[k]
            .get(&id)
            .and_then(|l| l.last())
            .ok_or_else(|| TestCaseError::fail("no lease"))?;
          let r = s.complete(lease, id, "2", now).map_err(storage)?;
          check(r == Settled::Applied(()), || {
            format!("store {k}: complete of running {id} was {r:?}")
          })?;
        }
        self.model.jobs[m].status = Status::Completed;
        self.model.settle(now);
      }
      Op::Fail(i, kind) => {
        let running = self.model.running();
        if running.is_empty() {
          return Ok(());
        }
        let m = running[i % running.len()];
        let id = self.model.jobs[m].id;
        let want = self.model.fail(m, *kind, now);
        let fk = match kind {
          0 => FailKind::Error {
            unrecoverable: false,
          },
          1 => FailKind::Error {
            unrecoverable: true,
          },
          2 => FailKind::Timeout,
          _ => FailKind::Stop,
        };
        for (k, s) in self.s.stores.iter_mut().enumerate() {
          let lease = *self.s.leases[k]
            .get(&id)
            .and_then(|l| l.last())
            .ok_or_else(|| TestCaseError::fail("no lease"))?;
          let err = JobError {
            name: "Error".into(),
            message: "boom".into(),
            ..JobError::default()
          };
          let r = s.fail(lease, id, err, fk, now, 0.5).map_err(storage)?;
          let got = r.applied().map(|f| f.status);
          check(got == Some(want), || {
            format!("store {k}: fail {kind} of {id}: {got:?}, the model {want:?}")
          })?;
        }
      }
      Op::Cancel(i) => {
        if self.model.jobs.is_empty() {
          return Ok(());
        }
        let m = i % self.model.jobs.len();
        let j = &mut self.model.jobs[m];
        let id = j.id;
        let want = (!j.status.is_finished()).then_some(j.status);
        if want.is_some() {
          j.status = Status::Cancelled;
        }
        self.model.settle(now);
        for (k, s) in self.s.stores.iter_mut().enumerate() {
          let got = s.cancel(id, now).map_err(storage)?;
          check(got == want, || {
            format!("store {k}: cancel of {id} was {got:?}, the model {want:?}")
          })?;
        }
      }
      Op::Retry(i) => {
        if self.model.jobs.is_empty() {
          return Ok(());
        }
        let m = i % self.model.jobs.len();
        let j = &mut self.model.jobs[m];
        // (A job with dependencies waits for them again: not modelled. A
        // job whose key another unfinished job holds now is not retried:
        // the model keeps one holder per key, as the queue's adds do.)
        let taken = j.key.is_some_and(|k| self.model.keyed(k).is_some());
        if !self.model.jobs[m].deps.is_empty() || taken {
          return Ok(());
        }
        let j = &mut self.model.jobs[m];
        let id = j.id;
        let want = matches!(
          j.status,
          Status::Failed | Status::Timeout | Status::Cancelled
        );
        if want {
          j.status = Status::Pending;
          j.attempts = 0;
          j.run_at = now;
        }
        for (k, s) in self.s.stores.iter_mut().enumerate() {
          let got = s.retry(id, now).map_err(storage)?;
          check(got == want, || {
            format!("store {k}: retry of {id} was {got}, the model {want}")
          })?;
        }
      }
      Op::Late(i, complete) => {
        // A lease that is not current: every lease of a job that does not
        // run, every one but the last of a job that runs.
        let mut stale = Vec::new();
        for (m, j) in self.model.jobs.iter().enumerate() {
          let n = self.s.leases[0].get(&j.id).map_or(0, Vec::len);
          let current = usize::from(j.status == Status::Running);
          for c in 0..n.saturating_sub(current) {
            stale.push((m, c));
          }
        }
        if stale.is_empty() {
          return Ok(());
        }
        let (m, c) = stale[i % stale.len()];
        let id = self.model.jobs[m].id;
        for (k, s) in self.s.stores.iter_mut().enumerate() {
          let lease = self.s.leases[k]
            .get(&id)
            .and_then(|l| l.get(c).copied())
            .ok_or_else(|| TestCaseError::fail("no such lease"))?;
          let fenced = if *complete {
            s.complete(lease, id, "\"late\"", now)
              .map_err(storage)?
              .is_applied()
          } else {
            let err = JobError {
              name: "Error".into(),
              message: "late".into(),
              ..JobError::default()
            };
            s.fail(lease, id, err, FailKind::Timeout, now, 0.5)
              .map_err(storage)?
              .is_applied()
          };
          check(!fenced, || {
            format!("store {k}: a late outcome of {id} (claim {c}) was applied")
          })?;
        }
      }
      Op::Reopen => {
        // The model: a new process finds the running jobs interrupted.
        for m in self.model.running() {
          let j = &mut self.model.jobs[m];
          if j.attempts <= j.retries {
            j.status = Status::Pending;
            j.run_at = now;
          } else {
            j.status = Status::Failed;
          }
        }
        self.model.settle(now);
        for k in 0..self.s.stores.len() {
          match self.s.opts[k].clone() {
            None => {
              self.s.stores[k].recover_interrupted(now).map_err(storage)?;
            }
            #[cfg(feature = "sqlite")]
            Some(o) => {
              let mut old = std::mem::replace(&mut self.s.stores[k], Box::new(MemoryStore::new()));
              old.end_batch();
              wait_flushed(&mut *old).map_err(storage)?;
              old.close();
              drop(old);
              let s = SqliteStore::open(&o, &mut names(), now).map_err(storage)?;
              self.s.stores[k] = Box::new(s);
            }
            #[cfg(not(feature = "sqlite"))]
            Some(_) => {}
          }
        }
      }
    }
    for s in &mut self.s.stores {
      s.end_batch();
    }
    self.compare()
  }

  /// Every job's status and attempts, the counts, and the unique keys agree.
  fn compare(&mut self) -> Result<(), TestCaseError> {
    let mut counts = [0usize; 7];
    for j in &self.model.jobs {
      counts[j.status as usize] += 1;
    }
    for (k, s) in self.s.stores.iter_mut().enumerate() {
      for j in &self.model.jobs {
        let got = s
          .get(j.id)
          .map_err(storage)?
          .map(|g| (g.status, g.attempts));
        let want = Some((j.status, j.attempts));
        check(got == want, || {
          format!("store {k}: job {} is {got:?}, the model {want:?}", j.id)
        })?;
      }
      let c = s.counts();
      check(c == counts, || {
        format!("store {k}: counts {c:?}, the model {counts:?}")
      })?;
      for key in 0..3u8 {
        let got = s.keyed(&format!("k{key}"));
        let want = self.model.keyed(key);
        check(got == want, || {
          format!("store {k}: key k{key} held by {got:?}, the model {want:?}")
        })?;
      }
      s.check_invariants().map_err(TestCaseError::fail)?;
    }
    Ok(())
  }
}

fn env_u64(name: &str, default: u64) -> u64 {
  std::env::var(name)
    .ok()
    .and_then(|v| v.parse().ok())
    .unwrap_or(default)
}

#[test]
fn stores_agree_with_the_naive_model() {
  let seed = env_u64("JOBWERK_DIFF_SEED", 11).to_le_bytes();
  let mut seed32 = [0u8; 32];
  seed32[..8].copy_from_slice(&seed);
  let config = Config {
    cases: env_u64("JOBWERK_DIFF_CASES", 12) as u32,
    failure_persistence: None,
    ..Config::default()
  };
  let mut runner =
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed32));
  let case = std::sync::atomic::AtomicUsize::new(0);
  let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
    let n = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut run = Run {
      model: Model::default(),
      s: Stores::new(n),
      ids: IdGen::default(),
      now: 1_000,
    };
    for op in &ops {
      run.step(op)?;
    }
    // Whatever can still run is claimed, in order, until nothing is left.
    for _ in 0..40 {
      run.step(&Op::Claim {
        max: 3,
        advance: DELAY,
      })?;
      if run.model.running().is_empty() {
        continue;
      }
      run.step(&Op::Complete(0))?;
    }
    Ok(())
  });
  if let Err(e) = result {
    panic!("{e}");
  }
}

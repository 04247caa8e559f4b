//! The schedules of [`PgBackend`]: shared by the cluster, each fire once
//! per cluster ([`PgStore::fire`]), never waited for on the queue's thread.
//!
//! Every process evaluates every schedule with its own scheduler (no
//! leader); correctness rests on the database: a fire is the
//! compare-and-set of `schedule.last_fire` plus the job's insert in one
//! statement, so whichever process gets there first adds the job and the
//! others' fires of that time are lost (not counted, not alerted; their
//! schedulers have moved on already).
//!
//! One **schedule task** per backend, on the engine's runtime, does all of
//! it in order (a catch-up batch's fires must not overtake each other):
//!
//! * **Saves and deletes**: the queue stores a schedule whenever its
//!   scheduler changed it; only a change of the *definition* (what
//!   `schedule*CalculationJob`, `setScheduledJobEnabled` and
//!   `cancelScheduledJob` change) is written: the run state is the
//!   cluster's, moved by the fires. The NOTIFY `s:<id>` goes in the saving
//!   transaction.
//! * **Fires** ([`Store::record_fire`]): the queue hands over the validated
//!   job; the task runs the CAS and reports what became of it in the next
//!   [`Store::take_schedule_news`] (the job's id, recorded as the
//!   schedule's last job, or nothing). The write is covered by
//!   [`Store::flush_mark`] like inserts and outcomes.
//! * **Reads**: every schedule of the cluster with its `last_fire`, and the
//!   status of each one's last job, at open, when a NOTIFY `s:` is heard
//!   (by the claimer's LISTEN connection), and every `poll` (1 s: the
//!   fallback, and behind a transaction-mode PgBouncer the only way). A
//!   read that differs from the last one is news; the queue merges it into
//!   its scheduler (`Scheduler::merge_cluster`: schedules added, changed or
//!   removed elsewhere; next runs moved past the cluster's last fire, so a
//!   process that starts applies the misfire policy to the times the whole
//!   cluster missed) and `getScheduledJobs` answers from it (at most a
//!   poll old; `lastStatus` from the read).
//!
//! Writes are retried until they commit when the connection is lost
//! (`conn.rs`: saves and deletes are idempotent; a fire retried after a
//! commit whose answer was lost finds its time used up, so its job is not
//! added twice); a failed read is tried again at the next poll.
//!
//! A read does not show this process's own saves queued after it began:
//! those ids are [`ScheduleNews::fresh`] and keep their local state.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::store::{ClusterClock, Shared};
use super::{Fire, NewJob, PgStore};
use crate::error::{Error, Result};
use crate::job::{Job, JobId, Status};
use crate::scheduler::Schedule;
use crate::storage::{FireHandoff, FireRecord, Names, ScheduleNews, SharedSchedule};

/// The schedule task's name in the connection's health (`conn.rs`).
const TASK: &str = "schedules";

/// Called when a read of the cluster's schedules brought news (the
/// binding wakes the engine's timer, which merges it).
pub type NewsHook = Arc<dyn Fn() + Send + Sync>;

/// One write of the schedule task; `mark` is its flush mark.
enum Op {
  Save {
    seq: u64,
    mark: u64,
    id: String,
    json: String,
  },
  Delete {
    seq: u64,
    mark: u64,
    id: String,
  },
  Fire {
    seq: u64,
    mark: u64,
    fire: FireRecord,
    job: Box<NewJob>,
  },
}

/// What the task found, waiting for [`Store::take_schedule_news`].
#[derive(Default)]
struct News {
  fired: Vec<(String, u64, Option<JobId>)>,
  /// The last read that differed from the one before, and the sequence
  /// number of the last write done before it began.
  all: Option<(Vec<SharedSchedule>, u64)>,
}

/// What the backend and its schedule task share.
#[derive(Default)]
struct CronShared {
  news: Mutex<News>,
  /// The status of each schedule's last job, as last read.
  statuses: Mutex<HashMap<JobId, Status>>,
  on_news: Mutex<Option<NewsHook>>,
}

/// The backend's side of the schedules (see the module docs).
pub(super) struct CronSide {
  ops: mpsc::UnboundedSender<Op>,
  state: Arc<CronShared>,
  /// Per schedule id, the definition last written or read (see
  /// [`definition`]): a save that changes only the run state is not
  /// written.
  saved: HashMap<String, String>,
  /// Per schedule id, the sequence number of its last save or delete.
  written: HashMap<String, u64>,
  seq: u64,
}

/// A schedule's JSON with its run state left out: what a save must write.
/// Unreadable JSON is its own definition.
fn definition(json: &str) -> String {
  match serde_json::from_str::<Schedule>(json) {
    Ok(mut s) => {
      s.run_count = 0;
      s.last_run_at = None;
      s.next_run_at = None;
      s.last_job_id = None;
      s.skipped_fires = 0;
      s.created_at = 0;
      s.updated_at = 0;
      serde_json::to_string(&s).unwrap_or_else(|_| json.to_string())
    }
    Err(_) => json.to_string(),
  }
}

/// Every schedule of the cluster, and the status of each one's last job.
async fn read(pg: &PgStore) -> Result<(Vec<SharedSchedule>, HashMap<JobId, Status>)> {
  let rows = pg.schedules().await?;
  let last: Vec<JobId> = rows
    .iter()
    .filter_map(|r| {
      let v: serde_json::Value = serde_json::from_str(&r.spec).ok()?;
      JobId::parse(v.get("lastJobId")?.as_str()?)
    })
    .collect();
  let statuses = pg.statuses(&last).await?;
  let all = rows
    .into_iter()
    .map(|r| SharedSchedule {
      json: r.spec,
      last_fire: r.last_fire,
    })
    .collect();
  Ok((all, statuses))
}

impl CronSide {
  /// Reads the cluster's schedules (the first news) and starts the
  /// schedule task on `rt`.
  pub(super) async fn open(
    pg: &PgStore,
    shared: Arc<Shared>,
    clock: ClusterClock,
    poll: Duration,
    rt: &Handle,
  ) -> Result<CronSide> {
    let (all, statuses) = read(pg).await?;
    let state = Arc::new(CronShared::default());
    let saved = all
      .iter()
      .filter_map(|s| {
        let id = serde_json::from_str::<Schedule>(&s.json).ok()?.id;
        Some((id, definition(&s.json)))
      })
      .collect();
    *state.statuses.lock() = statuses;
    state.news.lock().all = Some((all.clone(), 0));
    let (ops, rx) = mpsc::unbounded_channel();
    rt.spawn(task(
      pg.clone(),
      shared,
      state.clone(),
      clock,
      poll,
      all,
      rx,
    ));
    Ok(CronSide {
      ops,
      state,
      saved,
      written: HashMap::new(),
      seq: 0,
    })
  }

  /// See [`PgBackend::set_on_schedules`](super::PgBackend::set_on_schedules).
  pub(super) fn set_on_news(&self, f: NewsHook) {
    *self.state.on_news.lock() = Some(f);
  }

  fn send(&mut self, shared: &Shared, op: impl FnOnce(u64, u64) -> Op) -> Result<u64> {
    self.seq += 1;
    let mark = shared.issue();
    if self.ops.send(op(self.seq, mark)).is_err() {
      shared.finish(mark, Some("the schedule task stopped".into()));
      return Err(Error::Storage(
        "PostgreSQL: the schedule task stopped".into(),
      ));
    }
    Ok(self.seq)
  }

  /// [`Store::save_schedule`]: written only when the definition changed.
  pub(super) fn save(&mut self, shared: &Shared, id: &str, json: &str) -> Result<()> {
    let def = definition(json);
    if self.saved.get(id) == Some(&def) {
      return Ok(());
    }
    self.saved.insert(id.to_string(), def);
    let (id_s, json) = (id.to_string(), json.to_string());
    let seq = self.send(shared, |seq, mark| Op::Save {
      seq,
      mark,
      id: id_s,
      json,
    })?;
    self.written.insert(id.to_string(), seq);
    Ok(())
  }

  /// [`Store::delete_schedule`].
  pub(super) fn delete(&mut self, shared: &Shared, id: &str) -> Result<()> {
    self.saved.remove(id);
    let id_s = id.to_string();
    let seq = self.send(shared, |seq, mark| Op::Delete {
      seq,
      mark,
      id: id_s,
    })?;
    self.written.insert(id.to_string(), seq);
    Ok(())
  }

  /// [`Store::record_fire`]: handed to the task.
  pub(super) fn fire(
    &mut self,
    shared: &Shared,
    fire: &FireRecord,
    job: &Job,
    names: &Names,
    weights: &[i32; 3],
  ) -> Result<FireHandoff> {
    let name = names
      .get(job.name)
      .ok_or_else(|| Error::Storage(format!("job {}: unknown calculation {}", job.id, job.name)))?;
    let mut row = NewJob::from_job(job, name, weights);
    row.key = job.key().map(str::to_string);
    row.concurrency_key = job.concurrency_key().map(str::to_string);
    row.on_dup = job.keys().map(|k| k.on_dup).unwrap_or_default();
    let fire = fire.clone();
    self.send(shared, |seq, mark| Op::Fire {
      seq,
      mark,
      fire,
      job: Box::new(row),
    })?;
    Ok(FireHandoff::Handed)
  }

  /// [`Store::take_schedule_news`].
  pub(super) fn news(&mut self) -> Option<ScheduleNews> {
    let (fired, all) = {
      let mut n = self.state.news.lock();
      if n.fired.is_empty() && n.all.is_none() {
        return None;
      }
      (std::mem::take(&mut n.fired), n.all.take())
    };
    let mut news = ScheduleNews {
      fired,
      ..ScheduleNews::default()
    };
    if let Some((all, done)) = all {
      news.fresh = self
        .written
        .iter()
        .filter(|(_, &seq)| seq > done)
        .map(|(id, _)| id.clone())
        .collect();
      self.written.retain(|_, seq| *seq > done);
      for s in &all {
        if let Ok(sch) = serde_json::from_str::<Schedule>(&s.json) {
          if !news.fresh.contains(&sch.id) {
            self.saved.insert(sch.id, definition(&s.json));
          }
        }
      }
      news.all = Some(all);
    }
    Some(news)
  }

  /// [`Store::schedule_job_status`].
  pub(super) fn status(&self, id: JobId) -> Option<Status> {
    self.state.statuses.lock().get(&id).copied()
  }
}

/// The schedule task (see the module docs): writes in order, reads on a
/// NOTIFY and every `poll`. Ends when the backend is dropped, or at a poll
/// once it is closed and every write sent was done.
async fn task(
  pg: PgStore,
  shared: Arc<Shared>,
  state: Arc<CronShared>,
  clock: ClusterClock,
  poll: Duration,
  mut last: Vec<SharedSchedule>,
  mut rx: mpsc::UnboundedReceiver<Op>,
) {
  let mut done = 0u64;
  // Per schedule: a fire of its current batch added its job here.
  let mut batches: HashMap<String, bool> = HashMap::new();
  let mut every = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
  every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
  loop {
    tokio::select! {
      biased;
      op = rx.recv() => match op {
        Some(op) => done = write(&pg, &shared, &state, &clock, &mut batches, op).await,
        None => return,
      },
      _ = shared.schedules.notified() => {}
      _ = every.tick() => {
        if shared.closed.load(Ordering::Acquire) {
          while let Ok(op) = rx.try_recv() {
            write(&pg, &shared, &state, &clock, &mut batches, op).await;
          }
          return;
        }
      }
    }
    if !rx.is_empty() {
      continue;
    }
    // A failed read is tried again at the next poll.
    if let Ok((all, statuses)) = read(&pg).await {
      *state.statuses.lock() = statuses;
      if all != last {
        last = all.clone();
        state.news.lock().all = Some((all, done));
        let f = state.on_news.lock().clone();
        if let Some(f) = f {
          f();
        }
      }
    }
  }
}

/// Does one write; returns its sequence number. `batches`: per schedule,
/// whether a fire of its current batch added its job (the batch's later
/// fires then skip the overlap rule: a batch does not overlap itself, but a
/// fire of it another process won does not count).
async fn write(
  pg: &PgStore,
  shared: &Shared,
  state: &CronShared,
  clock: &ClusterClock,
  batches: &mut HashMap<String, bool>,
  op: Op,
) -> u64 {
  let (seq, mark, r) = match op {
    Op::Save {
      seq,
      mark,
      id,
      json,
    } => {
      let now = clock();
      let r = pg
        .retrying(TASK, || pg.save_schedule(&id, &json, now))
        .await;
      (seq, mark, r)
    }
    Op::Delete { seq, mark, id } => {
      let r = pg.retrying(TASK, || pg.delete_schedule(&id)).await;
      (seq, mark, r.map(|_| ()))
    }
    Op::Fire {
      seq,
      mark,
      fire,
      job,
    } => {
      let ours = batches.entry(fire.schedule.clone()).or_default();
      if fire.first {
        *ours = false;
      }
      let overlap = fire.overlap && !*ours;
      // A retry after a commit whose answer was lost finds the time used
      // up (`Lost`): the job is there once, and the next read names it.
      let r = pg
        .retrying(TASK, || pg.fire(&fire.schedule, fire.at, &job, overlap))
        .await;
      let r = r.map(|f| {
        let added = match f {
          Fire::Fired(id) => Some(id),
          Fire::Lost | Fire::Skipped => None,
        };
        if added.is_some() {
          batches.insert(fire.schedule.clone(), true);
        }
        state
          .news
          .lock()
          .fired
          .push((fire.schedule, fire.at, added));
      });
      (seq, mark, r)
    }
  };
  shared.finish(mark, r.err().map(|e| e.to_string()));
  seq
}

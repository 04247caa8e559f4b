//! The file format: a file of the previous schema migrates with everything
//! in it, and a corrupt stored value is an error naming the job.

use std::path::PathBuf;

use rusqlite::Connection;
use serde_json::Value;

use super::*;
use crate::job::{Backoff, BackoffKind, IdGen, JobId, Priority, Status};
use crate::storage::StoreExt;

/// A directory of its own, removed on drop.
struct Dir(PathBuf);

impl Dir {
  fn new(what: &str) -> Dir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
      "jobwerk-sqlite-{what}-{}-{}",
      std::process::id(),
      N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    Dir(dir)
  }
  fn file(&self, name: &str) -> PathBuf {
    self.0.join(name)
  }
}

impl Drop for Dir {
  fn drop(&mut self) {
    let _ = fs::remove_dir_all(&self.0);
  }
}

fn fixture(name: &str) -> PathBuf {
  PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    .join("tests")
    .join("fixtures")
    .join(name)
}

fn open(path: &Path, hot_pending: usize, now: u64) -> (Result<SqliteStore>, Names) {
  let mut opts = SqliteOptions::new(path, Durability::Normal);
  opts.hot_pending = hot_pending;
  let mut names = Names::default();
  (SqliteStore::open(&opts, &mut names, now), names)
}

fn json(text: Option<&str>) -> Value {
  text.map_or(Value::Null, |t| {
    serde_json::from_str(t).expect("stored JSON")
  })
}

/// `tests/fixtures/sqlite-v3.db` was written by the release of schema 3
/// (tests/fixtures/make-sqlite-fixture.js 3, with the commit before the split);
/// `sqlite-v3.expected.json` is how that release read it back.
#[test]
fn a_file_of_schema_3_migrates_with_its_jobs_results_errors_progress_and_schedules() {
  migrates_with_everything_in_it("v3");
}

/// `tests/fixtures/sqlite-v4.db` was written by the build of schema 4
/// (tests/fixtures/make-sqlite-fixture.js 4, the same jobs as the v3 file);
/// `sqlite-v4.expected.json` is how that build read it back. Its jobs have
/// no key, concurrency key or schedule id.
#[test]
fn a_file_of_schema_4_migrates_with_its_jobs_results_errors_progress_and_schedules() {
  migrates_with_everything_in_it("v4");
}

/// Opens a copy of `tests/fixtures/sqlite-<v>.db` and checks it reads as
/// `sqlite-<v>.expected.json` says, then that the file is of this schema.
fn migrates_with_everything_in_it(v: &str) {
  let expected: Value = serde_json::from_str(
    &fs::read_to_string(fixture(&format!("sqlite-{v}.expected.json"))).expect("expected reading"),
  )
  .expect("expected JSON");
  let now = expected["readAt"].as_u64().expect("readAt");
  let ids = expected["ids"].as_object().expect("ids");
  // Every job in memory, then every plain pending one left in the file.
  for hot in [HOT_PENDING, 1] {
    let dir = Dir::new(v);
    let db = dir.file("jobs.db");
    fs::copy(fixture(&format!("sqlite-{v}.db")), &db).expect("copy");
    let (store, names) = open(&db, hot, now);
    let mut store = store.expect("the old file opens");
    for (k, id) in ids {
      let want = &expected["jobs"][k];
      let id = JobId::parse(id.as_str().expect("id")).expect("id");
      let job = store
        .get(id)
        .expect("read")
        .unwrap_or_else(|| panic!("{k} {id} missing"));
      assert_eq!(job.keys(), None, "{k}: no key after the migration");
      let extra = job.extra.as_deref();
      let got = serde_json::json!({
        "name": names.get(job.name),
        "status": job.status.as_str(),
        "priority": serde_json::from_str::<Value>(&job.priority.to_json()).expect("priority"),
        "attempts": job.attempts,
        "maxRetries": job.max_retries,
        "timeout": job.timeout_ms,
        "createdAt": job.created_at,
        "runAt": job.run_at,
        "startedAt": (job.started_at > 0).then_some(job.started_at),
        "finishedAt": (job.finished_at > 0).then_some(job.finished_at),
        "data": json(Some(&job.data)),
        "context": json(Some(job.context_json())),
        "result": json(extra.and_then(|e| e.result.as_deref())),
        "progress": json(extra.and_then(|e| e.progress.as_deref())),
        "errors": extra.map_or(vec![], |e| {
          e.errors.iter().map(|e| (e.message.clone(), e.attempt)).collect::<Vec<_>>()
        }),
      });
      let mut want_errors = vec![];
      for e in want["errors"].as_array().expect("errors") {
        want_errors.push((
          e["message"].as_str().expect("message").to_string(),
          e["attempt"].as_u64().expect("attempt") as u32,
        ));
      }
      let want = serde_json::json!({
        "name": want["name"], "status": want["status"], "priority": want["priority"],
        "attempts": want["attempts"], "maxRetries": want["maxRetries"], "timeout": want["timeout"],
        "createdAt": want["createdAt"], "runAt": want["runAt"], "startedAt": want["startedAt"],
        "finishedAt": want["finishedAt"], "data": want["data"], "context": want["context"],
        "result": want["result"], "progress": want["progress"], "errors": want_errors,
      });
      assert_eq!(got, want, "job {k} (hot {hot})");
    }
    // Dependencies came along.
    let dep = |k: &str| JobId::parse(ids[k].as_str().expect("id")).expect("id");
    let waiting = store
      .get(dep("waitingFail"))
      .expect("read")
      .expect("waitingFail");
    let deps = waiting.deps().expect("deps");
    assert_eq!(deps.ids, vec![dep("delayed"), dep("weighted")]);
    assert!(!deps.ignore_failure);
    let ignoring = store
      .get(dep("waitingIgnore"))
      .expect("read")
      .expect("waitingIgnore");
    assert!(ignoring.deps().expect("deps").ignore_failure);
    // Backoffs, which the reading does not show.
    let b = store
      .get(dep("weighted"))
      .expect("read")
      .expect("weighted")
      .backoff;
    assert_eq!(
      (b.kind, b.delay_ms, b.max_delay_ms, b.jitter),
      (BackoffKind::Fixed, 400, 300, 0.25)
    );
    let b = store
      .get(dep("retryWaiting"))
      .expect("read")
      .expect("retryWaiting")
      .backoff;
    assert_eq!(
      (b.kind, b.delay_ms, b.max_delay_ms),
      (BackoffKind::Exponential, 60_000, 600_000)
    );
    // Counts per status.
    let counts = store.counts();
    for st in Status::ALL {
      assert_eq!(
        counts[st as usize] as u64,
        expected["stats"][st.as_str()].as_u64().expect("count"),
        "{} (hot {hot})",
        st.as_str()
      );
    }
    // Schedules, byte for byte.
    let mut schedules: Vec<String> = store
      .schedules()
      .iter()
      .map(|s| {
        let v: Value = serde_json::from_str(s).expect("schedule JSON");
        v["id"].as_str().expect("schedule id").to_string()
      })
      .collect();
    schedules.sort();
    let mut want: Vec<String> = expected["schedules"]
      .as_object()
      .expect("schedules")
      .values()
      .map(|v| v.as_str().expect("id").to_string())
      .collect();
    want.sort();
    assert_eq!(schedules, want);
    // Every pending job is claimable (from the file when cold).
    let mut claimed = 0;
    store
      .claim(100, now, &|_| true, &mut |_, _| claimed += 1)
      .expect("claim");
    assert_eq!(
      claimed as u64,
      expected["stats"]["pending"].as_u64().expect("pending")
    );
    store.close();
    drop(store);

    // The file is of this schema now, in the documented forms.
    let c = Connection::open(&db).expect("raw open");
    let version: i64 = c
      .query_row("PRAGMA user_version", [], |r| r.get(0))
      .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 5);
    let rows: Vec<(String, String, String)> = c
      .prepare(
        "SELECT status, priority, backoff FROM jobwerk_jobs
         WHERE job_key IS NULL AND concurrency_key IS NULL AND schedule_id IS NULL",
      )
      .expect("select")
      .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
      .expect("rows")
      .collect::<rusqlite::Result<_>>()
      .expect("rows");
    assert_eq!(rows.len(), ids.len());
    for (status, priority, backoff) in rows {
      assert!(Status::parse(&status).is_some(), "status {status:?}");
      assert!(
        ["high", "medium", "low"].contains(&&*priority) || priority.parse::<i32>().is_ok(),
        "priority {priority:?}"
      );
      assert!(
        codec::parse_backoff(&backoff).is_some(),
        "backoff {backoff:?}"
      );
    }
  }
}

/// A file of this schema with three due plain jobs (the last two cold when
/// one pending job is kept in memory); returns their ids.
fn three_jobs(db: &Path) -> Vec<JobId> {
  let (store, mut names) = open(db, HOT_PENDING, 1_000);
  let mut store = store.expect("open");
  let calc = names.intern("calc");
  let mut gen = IdGen::default();
  let jobs: Vec<Job> = (0..3)
    .map(|i| Job {
      backoff: Backoff {
        kind: BackoffKind::Fixed,
        delay_ms: 5,
        max_delay_ms: 0,
        jitter: 0.0,
      },
      ..Job::new(
        gen.next(1_000),
        calc,
        1_000,
        1_000,
        format!("{{\"i\":{i}}}").into(),
      )
    })
    .collect();
  let ids = jobs.iter().map(|j| j.id).collect();
  store.insert(jobs, &names).expect("insert");
  store.sync().expect("sync");
  store.close();
  ids
}

fn set(db: &Path, id: JobId, column: &str, value: &dyn rusqlite::ToSql) {
  let c = Connection::open(db).expect("raw open");
  let n = c
    .execute(
      &format!("UPDATE jobwerk_jobs SET {column} = ?2 WHERE k = ?1"),
      rusqlite::params![codec::key(id), value],
    )
    .expect("update");
  assert_eq!(n, 1);
}

/// Values a file can hold but no jobwerk writes: each is an ERR_STORAGE
/// that names the job and the column, never a default.
const CORRUPT: &[(&str, &str)] = &[
  ("status", "finished"),
  ("status", "3"),
  ("priority", "urgent"),
  ("priority", "\"high\""),
  ("priority", "1.5"),
  ("backoff", "exponential,1000,60000,0"),
  ("backoff", "e,1000"),
  ("backoff", "linear,1,2,0"),
  ("backoff", "f,-1,0,0"),
  ("backoff", "f,1,0,2"),
  ("backoff", "f,1,0,0,"),
  ("errors", "[{\"name\":"),
  ("errors", "{}"),
  ("deps", "f|not-an-id"),
  ("deps", "x|01a24282-c69c-7000-8e17-dc77008213ff"),
  ("deps", "f|"),
  ("context", "{oops"),
  ("result", "nope{"),
  ("progress", "{"),
];

#[test]
fn a_corrupt_stored_value_is_a_storage_error_naming_the_job() {
  for (column, value) in CORRUPT {
    let dir = Dir::new("corrupt");
    let db = dir.file("jobs.db");
    let ids = three_jobs(&db);
    set(&db, ids[0], column, value);
    let (store, _) = open(&db, HOT_PENDING, 2_000);
    let err = store.expect_err(&format!("{column} = {value:?} opens"));
    assert_eq!(err.code(), "ERR_STORAGE", "{column} = {value:?}");
    let msg = err.to_string();
    assert!(
      msg.contains(&ids[0].to_string()) && msg.contains(column),
      "{column} = {value:?}: {msg}"
    );
  }
}

#[test]
fn a_corrupt_value_in_a_cold_job_fails_the_store_naming_the_job() {
  for (column, value) in [
    ("backoff", "x,5,0,0"),
    ("backoff", "f,5,0"),
    ("context", "{"),
  ] {
    let dir = Dir::new("cold-corrupt");
    let db = dir.file("jobs.db");
    let ids = three_jobs(&db);
    // The last job stays in the file on open (one pending job in memory).
    set(&db, ids[2], column, &value);
    let (store, _) = open(&db, 1, 2_000);
    let mut store = store.expect("opens: the cold job is read when it is needed");
    let mut claimed = vec![];
    store
      .claim(10, 2_000, &|_| true, &mut |j, _| claimed.push(j.id))
      .expect("claim");
    assert!(!claimed.contains(&ids[2]), "{column} = {value:?}");
    let failure = store.failure().unwrap_or_default();
    assert!(
      failure.contains(&ids[2].to_string()) && failure.contains(column),
      "{column} = {value:?}: {failure:?}"
    );
  }
}

#[test]
fn priorities_and_backoffs_round_trip_in_their_documented_forms() {
  for p in [
    Priority::High,
    Priority::Medium,
    Priority::Low,
    Priority::Weight(7),
    Priority::Weight(-3),
    Priority::Weight(i32::MIN),
  ] {
    assert_eq!(codec::parse_priority(&codec::priority_text(p)), Some(p));
  }
  assert_eq!(codec::priority_text(Priority::High), "high");
  assert_eq!(codec::priority_text(Priority::Weight(-3)), "-3");
  for b in [
    Backoff {
      kind: BackoffKind::Exponential,
      delay_ms: 1000,
      max_delay_ms: 60_000,
      jitter: 0.0,
    },
    Backoff {
      kind: BackoffKind::Fixed,
      delay_ms: u32::MAX,
      max_delay_ms: 0,
      jitter: 0.125,
    },
  ] {
    let text = codec::backoff_text(&b);
    let back = codec::parse_backoff(&text).expect("parses");
    assert_eq!(
      (back.kind, back.delay_ms, back.max_delay_ms, back.jitter),
      (b.kind, b.delay_ms, b.max_delay_ms, b.jitter),
      "{text}"
    );
  }
  assert_eq!(
    codec::backoff_text(&Backoff {
      kind: BackoffKind::Exponential,
      delay_ms: 1000,
      max_delay_ms: 60_000,
      jitter: 0.25,
    }),
    "e,1000,60000,0.25"
  );
}

#[test]
fn the_column_constants_name_the_columns_in_order() {
  let listed: Vec<&str> = codec::JOB_COLUMNS.split(',').map(str::trim).collect();
  assert_eq!(listed, codec::COLUMN_NAMES);
  let cold: Vec<&str> = codec::COLD_COLUMNS.split(',').map(str::trim).collect();
  assert_eq!(cold.len(), codec::COLUMN_NAMES.len());
  for (c, name) in cold.iter().zip(codec::COLUMN_NAMES) {
    assert!(*c == "NULL" || *c == name, "{c} at the place of {name}");
  }
  let c = Connection::open_in_memory().expect("memory db");
  for m in schema::MIGRATIONS {
    c.execute_batch(m).expect("migration");
  }
  for columns in [codec::JOB_COLUMNS, codec::COLD_COLUMNS] {
    let mut stmt = c
      .prepare(&format!("SELECT {columns} FROM jobwerk_jobs"))
      .expect("every column exists");
    assert_eq!(stmt.column_count(), codec::COLUMN_NAMES.len());
    let _ = stmt.query([]).expect("query");
  }
}

/// Jobs with a unique key, a concurrency key or a schedule id never stay in
/// the file only: the key index and the concurrency gate work on memory. A
/// plain job beside them does, when it is added and when the file is opened.
#[test]
fn keyed_jobs_are_never_cold() {
  use crate::job::JobKeys;
  let dir = Dir::new("keyed-cold");
  let db = dir.file("jobs.db");
  let (store, mut names) = open(&db, 1, 1_000);
  let mut store = store.expect("open");
  let calc = names.intern("calc");
  let mut gen = IdGen::default();
  let mut job = |keys: Option<Box<JobKeys>>| {
    let mut j = Job::new(gen.next(1_000), calc, 1_000, 1_000, "1".into());
    j.set_keys(keys);
    j
  };
  let plain = [job(None), job(None)];
  let keyed = [
    job(JobKeys::of(Some("k"), None, None)),
    job(JobKeys::of(None, Some("c"), None)),
    job(JobKeys::of(None, None, Some("sched"))),
  ];
  let keyed_ids: Vec<JobId> = keyed.iter().map(|j| j.id).collect();
  store
    .insert(plain.into_iter().chain(keyed).collect(), &names)
    .expect("insert");
  assert_eq!(store.cold.count, 1, "only the second plain job is cold");
  for id in &keyed_ids {
    assert!(store.mem.contains(*id), "keyed job {id} is in memory");
  }
  store.sync().expect("sync");
  store.close();
  drop(store);
  let (store, _) = open(&db, 1, 1_000);
  let mut store = store.expect("reopen");
  assert_eq!(store.cold.count, 1, "after a reopen too");
  for id in &keyed_ids {
    assert!(
      store.mem.contains(*id),
      "keyed job {id} is in memory after a reopen"
    );
  }
  assert_eq!(store.keyed("k"), Some(keyed_ids[0]));
  assert_eq!(store.counts()[Status::Pending as usize], 5);
}

/// A store of its own for the tests of finished jobs kept in the file.
struct Finished {
  _dir: Dir,
  db: PathBuf,
  store: SqliteStore,
  names: Names,
  ids: IdGen,
  now: u64,
}

impl Finished {
  fn new(hot_pending: usize) -> Finished {
    let dir = Dir::new("finished");
    let db = dir.file("jobs.db");
    let (store, mut names) = open(&db, hot_pending, 1_000);
    names.intern("calc");
    Finished {
      _dir: dir,
      db,
      store: store.expect("open"),
      names,
      ids: IdGen::default(),
      now: 1_000,
    }
  }

  /// Adds `n` plain jobs (with `deps` when given); returns their ids.
  fn add(&mut self, n: usize, deps: Option<(Vec<JobId>, bool)>) -> Vec<JobId> {
    let jobs: Vec<Job> = (0..n)
      .map(|i| Job {
        extra: deps.clone().and_then(|(ids, ignore_failure)| {
          crate::job::JobExtra::of(
            Some(crate::job::Dependencies {
              ids,
              ignore_failure,
            }),
            "",
          )
        }),
        ..Job::new(
          self.ids.next(self.now),
          0,
          self.now,
          self.now,
          format!("{{\"i\":{i}}}").into(),
        )
      })
      .collect();
    let ids = jobs.iter().map(|j| j.id).collect();
    self.store.insert(jobs, &self.names).expect("insert");
    self.store.end_batch();
    ids
  }

  /// Claims up to `n` due jobs.
  fn claim(&mut self, n: usize) -> Vec<JobId> {
    let mut got = Vec::new();
    self
      .store
      .claim(n, self.now, &|_| true, &mut |j, _| got.push(j.id))
      .expect("claim");
    got
  }

  /// Everything written, and the finished jobs out of memory.
  fn settle(&mut self) {
    self.store.sync().expect("sync");
    self.store.end_batch();
    self.store.check_invariants().expect("invariants");
  }

  fn status(&mut self, id: JobId) -> Option<Status> {
    self.store.get(id).expect("read").map(|j| j.status)
  }

  fn reopen(&mut self) {
    self.store.sync().expect("sync");
    self.store.close();
    let (store, names) = open(&self.db, self.store.hot_pending, self.now);
    self.store = store.expect("reopen");
    self.names = names;
  }
}

fn fail(msg: &str) -> JobError {
  JobError {
    name: "Error".into(),
    message: msg.into(),
    ..JobError::default()
  }
}

const UNRECOVERABLE: FailKind = FailKind::Error {
  unrecoverable: true,
};

#[test]
fn memory_holds_the_live_jobs_whatever_the_number_finished() {
  let mut f = Finished::new(64);
  let mut done = 0;
  for round in 0..40 {
    f.add(250, None);
    for id in f.claim(250) {
      assert!(f.store.complete_current(id, "1", f.now));
      done += 1;
    }
    f.now += 1;
    f.settle();
    assert_eq!(f.store.resident(), 0, "round {round}: no live job is left");
  }
  assert_eq!(f.store.counts()[Status::Completed as usize], done);
  // With jobs left pending, those in memory are the hot window only.
  f.add(1_000, None);
  f.settle();
  assert_eq!(f.store.resident(), 64);
  assert_eq!(f.store.counts()[Status::Pending as usize], 1_000);
  // Until their rows are committed, finished jobs are read from memory.
  let ids = f.claim(10);
  for id in &ids {
    f.store.complete_current(*id, "2", f.now);
  }
  for id in &ids {
    let j = f.store.get(*id).expect("read").expect("the job");
    assert_eq!(j.status, Status::Completed);
    assert_eq!(
      j.extra.as_ref().and_then(|e| e.result.as_deref()),
      Some("2")
    );
  }
  f.settle();
  assert_eq!(
    f.store.resident(),
    64 - 10,
    "the pending window, no finished job"
  );
  assert_eq!(f.store.counts()[Status::Completed as usize], done + 10);
}

#[test]
fn finished_jobs_are_read_retried_listed_counted_and_pruned_from_the_file() {
  let mut f = Finished::new(HOT_PENDING);
  let ids = f.add(6, None);
  assert_eq!(f.claim(6), ids);
  f.store.complete_current(ids[0], "{\"r\":0}", f.now);
  f.store.complete_current(ids[1], "{\"r\":1}", f.now);
  let failed = f
    .store
    .fail_current(ids[2], fail("boom"), UNRECOVERABLE, f.now, 0.0);
  assert_eq!(failed.map(|x| x.status), Some(Status::Failed));
  f.store
    .fail_current(ids[3], fail("t"), FailKind::Timeout, f.now, 0.0);
  assert_eq!(
    f.store.cancel(ids[4], f.now).expect("cancel"),
    Some(Status::Running)
  );
  f.now += 10;
  f.store.complete_current(ids[5], "5", f.now);
  f.settle();
  assert_eq!(f.store.resident(), 0, "all of them are in the file only");
  for round in 0..2 {
    let c = f.store.counts();
    assert_eq!(
      (c[Status::Completed as usize], c[Status::Failed as usize]),
      (3, 1),
      "round {round}"
    );
    assert_eq!(
      (c[Status::Timeout as usize], c[Status::Cancelled as usize]),
      (1, 1)
    );
    let j = f.store.get(ids[1]).expect("read").expect("job 1");
    assert_eq!(
      (j.status, j.attempts, j.started_at, j.finished_at),
      (Status::Completed, 1, 1_000, 1_000)
    );
    assert_eq!(
      j.extra.as_ref().and_then(|e| e.result.as_deref()),
      Some("{\"r\":1}")
    );
    assert_eq!(&*j.data, "{\"i\":1}");
    let j = f.store.get(ids[2]).expect("read").expect("job 2");
    assert_eq!(j.last_error().map(|e| e.message.as_str()), Some("boom"));
    assert_eq!(f.status(ids[4]), Some(Status::Cancelled));
    // Listing: by status, newest first, from the file.
    let done = f
      .store
      .list_jobs(
        &JobFilter {
          statuses: 1 << Status::Completed as u8,
          ..JobFilter::default()
        },
        &f.names,
      )
      .expect("list");
    let listed: Vec<JobId> = done.iter().map(|j| j.id).collect();
    assert_eq!(listed, vec![ids[5], ids[1], ids[0]]);
    assert_eq!(
      f.store.list(None, usize::MAX),
      ids.clone(),
      "every id, oldest first"
    );
    // Cancelling a finished job changes nothing.
    assert_eq!(f.store.cancel(ids[0], f.now).expect("cancel"), None);
    f.reopen();
  }
  // A retry brings the failed job back as pending, and it runs again.
  assert!(f.store.retry(ids[2], f.now).expect("retry"));
  assert!(
    !f.store.retry(ids[0], f.now).expect("retry"),
    "a completed job is not retried"
  );
  assert_eq!(f.status(ids[2]), Some(Status::Pending));
  assert_eq!(f.store.counts()[Status::Failed as usize], 0);
  assert_eq!(f.claim(5), vec![ids[2]]);
  f.store.complete_current(ids[2], "2", f.now);
  f.settle();
  assert_eq!(f.store.resident(), 0);
  assert_eq!(f.store.counts()[Status::Completed as usize], 4);
  // Prune: those that finished at 1,000 go, from the file.
  assert_eq!(f.store.prune(1_000).expect("prune"), 4);
  for id in &ids[..5] {
    if *id != ids[2] {
      assert_eq!(f.status(*id), None, "pruned");
    }
  }
  assert_eq!(f.status(ids[5]), Some(Status::Completed));
  assert_eq!(f.status(ids[2]), Some(Status::Completed));
  let c = f.store.counts();
  assert_eq!(c.iter().sum::<usize>(), 2);
  f.reopen();
  assert_eq!(f.store.counts(), c);
  assert_eq!(f.store.prune(f.now).expect("prune"), 2);
  assert_eq!(f.store.counts(), [0; 7]);
}

#[test]
fn dependencies_on_finished_jobs_see_their_outcome_from_the_file() {
  let mut f = Finished::new(HOT_PENDING);
  let ids = f.add(2, None);
  let (ok, bad) = (ids[0], ids[1]);
  f.claim(2);
  f.store.complete_current(ok, "1", f.now);
  f.store
    .fail_current(bad, fail("no"), UNRECOVERABLE, f.now, 0.0);
  f.settle();
  assert_eq!(f.store.resident(), 0);
  // On a completed one: runs; on a failed one: fails, unless ignored.
  let runs = f.add(1, Some((vec![ok], false)))[0];
  let fails = f.add(1, Some((vec![ok, bad], false)))[0];
  let ignores = f.add(1, Some((vec![bad], true)))[0];
  assert_eq!(f.status(runs), Some(Status::Pending));
  assert_eq!(f.status(fails), Some(Status::Failed));
  assert_eq!(f.status(ignores), Some(Status::Pending));
  assert_eq!(f.claim(5), vec![runs, ignores]);
  f.store.complete_current(runs, "1", f.now);
  f.store.complete_current(ignores, "1", f.now);
  f.settle();
  assert_eq!(f.store.resident(), 0);
  // Retried, the failed dependant waits for its failed dependency again,
  // across a restart, and runs once that one is retried and completes.
  assert!(f.store.retry(fails, f.now).expect("retry"));
  assert_eq!(f.status(fails), Some(Status::Waiting));
  f.settle();
  f.reopen();
  assert_eq!(f.status(fails), Some(Status::Waiting));
  assert_eq!(f.store.resident(), 1, "the waiting job only");
  assert!(f.store.retry(bad, f.now).expect("retry"));
  assert_eq!(f.claim(5), vec![bad]);
  f.store.complete_current(bad, "1", f.now);
  assert_eq!(f.status(fails), Some(Status::Pending));
  assert_eq!(f.claim(5), vec![fails]);
  // A waiting job whose failed dependency is pruned goes on (a pruned
  // dependency counts as done, as in memory).
  f.store.complete_current(fails, "1", f.now);
  let ids = f.add(1, None);
  f.claim(1);
  f.store
    .fail_current(ids[0], fail("no"), UNRECOVERABLE, f.now, 0.0);
  let w = f.add(1, Some((vec![ids[0]], false)))[0];
  assert_eq!(f.status(w), Some(Status::Failed));
  assert!(f.store.retry(w, f.now).expect("retry"));
  f.settle();
  assert_eq!(f.status(w), Some(Status::Waiting));
  f.now += 1;
  assert!(f.store.prune(f.now).expect("prune") > 0);
  assert_eq!(f.status(ids[0]), None);
  assert_eq!(f.status(w), Some(Status::Pending));
  f.store.check_invariants().expect("invariants");
}

#[test]
fn a_prune_reads_the_rows_up_to_a_key_only() {
  let dir = Dir::new("plan");
  let db = dir.file("jobs.db");
  three_jobs(&db);
  let c = Connection::open(&db).expect("raw open");
  let plan: Vec<String> = c
    .prepare(&format!(
      "EXPLAIN QUERY PLAN DELETE FROM jobwerk_jobs WHERE k <= ?2 AND status IN ({}) AND finished_at <= ?1",
      writer::FINISHED_SQL
    ))
    .expect("plan")
    .query_map([0, 1], |r| r.get::<_, String>(3))
    .expect("plan")
    .collect::<rusqlite::Result<_>>()
    .expect("plan");
  assert!(
    plan.iter().any(|p| p.contains("PRIMARY KEY (rowid<?)")),
    "{plan:?}"
  );
}

#[test]
fn a_prune_finds_jobs_whose_ids_ran_ahead_of_their_creation_time() {
  let mut f = Finished::new(HOT_PENDING);
  for reopen in [false, true] {
    // As after the clock went back: the id's timestamp is 500 ms ahead.
    let id = JobId((((f.now + 500) as u128) << 80) | 1);
    let job = Job::new(id, 0, f.now, f.now, "1".into());
    f.store.insert(vec![job], &f.names).expect("insert");
    f.store.end_batch();
    if reopen {
      f.reopen();
    }
    assert_eq!(f.claim(1), vec![id]);
    f.store.complete_current(id, "1", f.now + 1);
    f.settle();
    if reopen {
      // The skew is read back from the file.
      f.reopen();
    }
    assert_eq!(
      f.store.prune(f.now + 1).expect("prune"),
      1,
      "reopened: {reopen}"
    );
    assert_eq!(f.status(id), None);
    assert_eq!(f.store.counts(), [0; 7]);
    f.now += 1_000;
  }
}

#[test]
fn a_corrupt_finished_job_is_a_storage_error_naming_it_and_the_store_goes_on() {
  let mut f = Finished::new(HOT_PENDING);
  let ids = f.add(2, None);
  f.claim(2);
  for id in &ids {
    f.store.complete_current(*id, "1", f.now);
  }
  f.settle();
  assert_eq!(f.store.resident(), 0);
  set(&f.db, ids[0], "result", &"nope{");
  let err = f.store.get(ids[0]).expect_err("a corrupt result");
  assert_eq!(err.code(), "ERR_STORAGE");
  let msg = err.to_string();
  assert!(
    msg.contains(&ids[0].to_string()) && msg.contains("result"),
    "{msg}"
  );
  assert!(f.store.list_jobs(&JobFilter::default(), &f.names).is_err());
  assert_eq!(f.store.failure(), None, "the store goes on");
  assert_eq!(f.status(ids[1]), Some(Status::Completed));
  assert_eq!(f.add(1, None).len(), 1);
}

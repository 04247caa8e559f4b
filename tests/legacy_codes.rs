//! A SQLite file written by 0.1.0 holds a cancelled job's error as
//! `ERR_CANCELLED` and a stopped one's as `ERR_INTERRUPTED`; opened today,
//! they read with today's codes (`ERR_JOB_CANCELLED`, `ERR_SERVICE_STOPPED`,
//! the codes the handler's signal carried). The old rows are made by writing
//! a job with today's code and rewriting its stored JSON as 0.1.0 wrote it.
#![cfg(feature = "sqlite")]

use serde_json::Value;

use jobwerk::job::JobErrorCode;
use jobwerk::queue::{JobOptions, NewJob, Queue, QueueConfig};
use jobwerk::storage::{Durability, MemoryStore, Names, SqliteOptions, SqliteStore};

const NOW: u64 = 1_000_000;

fn open(opts: &SqliteOptions) -> Queue {
  let mut names = Names::default();
  let store = SqliteStore::open(opts, &mut names, NOW).expect("open");
  let mut q = Queue::with_store(QueueConfig::default(), NOW, Box::new(store), names);
  q.register("calc", &Value::Null).expect("register");
  q
}

fn error_code(q: &mut Queue, id: jobwerk::job::JobId) -> String {
  let status: Value =
    serde_json::from_str(&q.status_json(id).expect("read").expect("the job")).expect("json");
  status["error"]["code"]
    .as_str()
    .expect("a code")
    .to_string()
}

#[test]
fn a_cancel_stored_by_0_1_0_reads_as_err_job_cancelled() {
  let dir = std::env::temp_dir().join(format!("jobwerk-legacy-codes-{}", std::process::id()));
  let _ = std::fs::remove_dir_all(&dir);
  let opts = SqliteOptions::new(dir.join("jobs.db"), Durability::Normal);

  let mut q = open(&opts);
  let ids = q
    .add(
      &[NewJob {
        calc: 0,
        data: "1",
        context: "{}",
        options: JobOptions::default(),
      }],
      NOW,
    )
    .expect("add");
  assert!(q.cancel(ids[0], NOW).expect("cancel"));
  q.end_batch();
  jobwerk::storage::wait_flushed(q.store_mut()).expect("sync");
  assert_eq!(
    error_code(&mut q, ids[0]),
    JobErrorCode::JobCancelled.as_str()
  );
  drop(std::mem::replace(
    &mut q,
    Queue::with_store(
      QueueConfig::default(),
      NOW,
      Box::new(MemoryStore::new()),
      Names::default(),
    ),
  ));

  // As 0.1.0 wrote it.
  let conn = rusqlite::Connection::open(&opts.path).expect("raw open");
  let n = conn
    .execute(
      "UPDATE jobwerk_jobs SET errors = replace(errors, 'ERR_JOB_CANCELLED', 'ERR_CANCELLED')",
      [],
    )
    .expect("rewrite");
  assert_eq!(n, 1);
  let raw: String = conn
    .query_row("SELECT errors FROM jobwerk_jobs", [], |r| r.get(0))
    .expect("errors");
  assert!(raw.contains("\"ERR_CANCELLED\""), "{raw}");
  drop(conn);

  let mut q = open(&opts);
  assert_eq!(error_code(&mut q, ids[0]), "ERR_JOB_CANCELLED");
  drop(q);
  let _ = std::fs::remove_dir_all(&dir);
}

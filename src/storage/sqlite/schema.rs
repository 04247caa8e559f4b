//! The schema and its migrations. Schema versions are `PRAGMA
//! user_version`; a file written by a newer schema is refused, never
//! rewritten, and nothing is written to a file that is not already a jobwerk
//! database or empty.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{sql_err, Durability, SqliteOptions};
use crate::error::{Error, Result};

/// The schema version this build writes (and the newest it reads).
pub const SCHEMA_VERSION: i64 = 4;

/// Migrations, one per version, applied in order in one transaction (a
/// new file runs them all). The forms the columns hold are in the docs of
/// [`super::codec`].
pub(super) const MIGRATIONS: &[&str] = &[
  // 1: jobs. `k` is the id's upper 64 bits (time + counter: unique and
  // ordered within one file), `lo` its lower 64.
  "CREATE TABLE jobwerk_jobs (
     k INTEGER PRIMARY KEY,
     lo INTEGER NOT NULL,
     name TEXT NOT NULL,
     priority TEXT NOT NULL,
     status INTEGER NOT NULL,
     attempts INTEGER NOT NULL,
     max_retries INTEGER NOT NULL,
     timeout_ms INTEGER NOT NULL,
     backoff TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     run_at INTEGER NOT NULL,
     started_at INTEGER NOT NULL,
     finished_at INTEGER NOT NULL,
     data TEXT NOT NULL,
     context TEXT NOT NULL,
     result TEXT,
     progress TEXT,
     errors TEXT
   );",
  // 2: dependencies (`f|id,id` or `i|id,id` to ignore their failures).
  "ALTER TABLE jobwerk_jobs ADD COLUMN deps TEXT;",
  // 3: schedules, one JSON text each. A fire and the job it creates commit
  // in one transaction, so a crash neither loses nor doubles it.
  "CREATE TABLE jobwerk_schedules (id TEXT PRIMARY KEY, body TEXT NOT NULL);",
  // 4: status as TypeScript names it (was its index, 0 = waiting ...),
  // priority without JSON quotes (was `"high"`); backoffs keep their form.
  // Any other value is carried over as it is and read as corrupt, naming
  // the job. SQLite cannot change a column's type: the
  // table is copied.
  "CREATE TABLE jobwerk_jobs_v4 (
     k INTEGER PRIMARY KEY,
     lo INTEGER NOT NULL,
     name TEXT NOT NULL,
     priority TEXT NOT NULL,
     status TEXT NOT NULL,
     attempts INTEGER NOT NULL,
     max_retries INTEGER NOT NULL,
     timeout_ms INTEGER NOT NULL,
     backoff TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     run_at INTEGER NOT NULL,
     started_at INTEGER NOT NULL,
     finished_at INTEGER NOT NULL,
     data TEXT NOT NULL,
     context TEXT NOT NULL,
     result TEXT,
     progress TEXT,
     errors TEXT,
     deps TEXT
   );
   INSERT INTO jobwerk_jobs_v4 (k, lo, name, priority, status, attempts, max_retries, timeout_ms,
     backoff, created_at, run_at, started_at, finished_at, data, context, result, progress, errors, deps)
   SELECT k, lo, name,
     CASE priority WHEN '\"high\"' THEN 'high' WHEN '\"medium\"' THEN 'medium'
       WHEN '\"low\"' THEN 'low' ELSE priority END,
     CASE status WHEN 0 THEN 'waiting' WHEN 1 THEN 'pending' WHEN 2 THEN 'running'
       WHEN 3 THEN 'completed' WHEN 4 THEN 'failed' WHEN 5 THEN 'timeout' WHEN 6 THEN 'cancelled'
       ELSE CAST(status AS TEXT) END,
     attempts, max_retries, timeout_ms,
     backoff,
     created_at, run_at, started_at, finished_at, data, context, result, progress, errors, deps
   FROM jobwerk_jobs;
   DROP TABLE jobwerk_jobs;
   ALTER TABLE jobwerk_jobs_v4 RENAME TO jobwerk_jobs;",
];

/// Opens (creating if needed) and migrates the database.
pub(super) fn open_connection(opts: &SqliteOptions, open_path: &Path) -> Result<Connection> {
  let path = &opts.path;
  if path.is_dir() {
    return Err(Error::Storage(format!(
      "'{}' is a directory; storage.path must name a file",
      path.display()
    )));
  }
  let conn = Connection::open_with_flags(
    open_path,
    OpenFlags::SQLITE_OPEN_READ_WRITE
      | OpenFlags::SQLITE_OPEN_CREATE
      | OpenFlags::SQLITE_OPEN_NO_MUTEX,
  )
  .map_err(|e| sql_err(path, "cannot open", e))?;
  let not_ours = |e: rusqlite::Error| {
    Error::Storage(format!(
      "'{}' is not a usable SQLite database ({e}); it was left untouched",
      path.display()
    ))
  };
  // Reading the header first: a file that is not SQLite fails here, before
  // anything is written.
  let version: i64 = conn
    .query_row("PRAGMA user_version", [], |r| r.get(0))
    .map_err(not_ours)?;
  let tables: i64 = conn
    .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
    .map_err(not_ours)?;
  if version > SCHEMA_VERSION {
    return Err(Error::Storage(format!(
      "'{}' was written by jobwerk schema version {version}; this jobwerk reads up to version {SCHEMA_VERSION}. \
       Upgrade jobwerk, or point storage.path at another file",
      path.display()
    )));
  }
  if version > 0 {
    let ours: i64 = conn
      .query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'jobwerk_jobs'",
        [],
        |r| r.get(0),
      )
      .map_err(not_ours)?;
    if ours == 0 {
      return Err(Error::Storage(format!(
        "'{}' is an SQLite database of something else (user_version {version} but no jobwerk tables); it was left untouched",
        path.display()
      )));
    }
  }
  if version == 0 && tables > 0 {
    return Err(Error::Storage(format!(
      "'{}' is an SQLite database of something else (it has tables but no jobwerk schema); it was left untouched",
      path.display()
    )));
  }
  if version == 0 {
    conn
      .execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
      .map_err(|e| sql_err(path, "cannot set up", e))?;
  }
  conn
    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
    .map_err(|e| sql_err(path, "cannot switch to WAL", e))?;
  let sync = match opts.durability {
    Durability::Normal => "NORMAL",
    Durability::Full => "FULL",
  };
  conn
    .execute_batch(&format!(
      "PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; PRAGMA wal_autocheckpoint = 10000;"
    ))
    .map_err(|e| sql_err(path, "cannot configure", e))?;
  if version < SCHEMA_VERSION {
    let mut sql = String::from("BEGIN IMMEDIATE;");
    for m in &MIGRATIONS[version as usize..] {
      sql.push_str(m);
    }
    sql.push_str(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"));
    if let Err(e) = conn.execute_batch(&sql) {
      let _ = conn.execute_batch("ROLLBACK");
      return Err(sql_err(path, "cannot create the schema in", e));
    }
  }
  Ok(conn)
}

/// A second connection, for reading cold jobs back on the JavaScript thread
/// while the writer writes (WAL). Read-write, though it only reads: the last
/// connection to close removes the WAL, whichever it is.
pub(super) fn open_reader(file: &Path) -> rusqlite::Result<Connection> {
  let r = Connection::open_with_flags(
    file,
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
  )?;
  r.execute_batch("PRAGMA cache_size = -256; PRAGMA busy_timeout = 5000;")?;
  Ok(r)
}

/// Reads every schedule's JSON.
pub(super) fn load_schedules(conn: &Connection, path: &Path) -> Result<Vec<String>> {
  let bad = |e: rusqlite::Error| sql_err(path, "cannot read the schedules of", e);
  let mut stmt = conn
    .prepare("SELECT body FROM jobwerk_schedules ORDER BY id")
    .map_err(bad)?;
  let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(bad)?;
  rows.collect::<rusqlite::Result<Vec<String>>>().map_err(bad)
}

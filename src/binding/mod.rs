//! The N-API binding: the only code that names napi. It converts, forwards to
//! the core and maps [`crate::Error`] to a JavaScript `Error` whose `code` is
//! the error's stable code. `lib/service.js` wraps this in the public API.
//!
//! Data crosses as JSON text in both directions (one `JSON.parse` per batch
//! on the JS side beats building objects through N-API).

mod codes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::clock::{system_now_ms, Clock};
use crate::error::{Error, ErrorCode};
use crate::job::JobId;
use crate::queue::{
  Engine, JobOptions, JobQuery, NewJob, Queue, RunState, ServiceConfig, StorageConfig, Waker,
};
use crate::storage::{Durability, SqliteOptions, SqliteStore, Store};
use crate::wire;

/// The `code` of a JavaScript error thrown from here.
pub struct Code(&'static str);

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    self.0
  }
}

/// A failed N-API call of our own (only making the wake-up function can
/// fail, when its argument is not a usable function): `ERR_INVALID_ARGUMENT`.
impl From<Status> for Code {
  fn from(_: Status) -> Self {
    Code(ErrorCode::InvalidArgument.as_str())
  }
}

fn js_err(e: Error) -> napi::Error<Code> {
  napi::Error::new(Code(e.code()), e.to_string())
}

/// Throws `e` as a JavaScript `Error` with its `code` and, for a cron
/// error, the `field` it names (`err.field`); returns the error napi-rs
/// then leaves alone (an exception is pending: it is not thrown twice).
/// Falls back to [`js_err`] (without `field`) if the object cannot be made.
fn throw_err(env: &Env, e: Error) -> napi::Error<Code> {
  let thrown = env
    .create_error(napi::Error::from_reason(e.to_string()))
    .and_then(|mut obj| {
      obj.set("code", e.code())?;
      if let Some(field) = e.field() {
        obj.set("field", field)?;
      }
      env.throw(obj)
    });
  match thrown {
    // napi-rs skips throwing an error whose status reads PendingException.
    Ok(()) => napi::Error::new(Code("PendingException"), String::new()),
    Err(_) => js_err(e),
  }
}

/// Wakes the JavaScript dispatcher through a weak threadsafe function: it
/// never keeps Node alive by itself.
struct JsWaker(ThreadsafeFunction<u32, (), u32, Status, false, true>);

impl Waker for JsWaker {
  fn wake(&self) -> bool {
    self.0.call(0, ThreadsafeFunctionCallMode::NonBlocking) != Status::Closing
  }
}

/// One service's core. Private to `lib/` (the dispatcher and the service).
#[napi]
pub struct Core {
  engine: Arc<Engine>,
  /// The SQLite file. The constructor does not open it: `start()` or the
  /// first call that reads or writes jobs or schedules does (see
  /// [`Core::open_storage`]); `start()` after `stop()` reopens it.
  sqlite: Option<SqliteOptions>,
  /// Set once the file was opened (it may have been closed by `stop()` since).
  opened: AtomicBool,
  /// Why the last attempt to open the file failed; cleared when one succeeds.
  storage_error: Mutex<Option<Error>>,
  /// PostgreSQL (preview): the config, and the reader of the open backend.
  #[cfg(feature = "postgres")]
  pg: Option<PgSide>,
}

/// The PostgreSQL side of a [`Core`].
#[cfg(feature = "postgres")]
struct PgSide {
  cfg: crate::storage::postgres::PgConfig,
  reader: Mutex<Option<crate::storage::postgres::PgReader>>,
  /// Jobs cancelled in the database that may run here: the next `poll`
  /// (JavaScript, woken for it) aborts their slots. The backend's hook only
  /// records them: it runs on the runtime, which must never wait for the
  /// queue lock (the JavaScript thread may hold it while it waits on the
  /// runtime).
  cancelled: Arc<Mutex<Vec<JobId>>>,
}

/// The answer of an async method: `value` (JSON or null) or `error`
/// (`code`, `message`): async methods cannot throw a custom code.
#[napi(object)]
pub struct AsyncAnswer {
  pub value: Option<String>,
  pub code: Option<String>,
  pub message: Option<String>,
}

impl AsyncAnswer {
  fn ok(value: Option<String>) -> Self {
    AsyncAnswer {
      value,
      code: None,
      message: None,
    }
  }
}

impl From<Result<Option<String>, Error>> for AsyncAnswer {
  fn from(r: Result<Option<String>, Error>) -> Self {
    match r {
      Ok(v) => AsyncAnswer::ok(v),
      Err(e) => AsyncAnswer {
        value: None,
        code: Some(e.code().to_string()),
        message: Some(e.to_string()),
      },
    }
  }
}

/// The flags `settle` and `poll` return (see [`wire::flag`]): how many jobs
/// (and schedules with a next run: [`Queue::keeps_alive`]) still need the
/// service, and whether aborts or events wait for `drain()`.
fn flags(q: &Queue) -> u32 {
  wire::flags(q.keeps_alive(), q.has_news())
}

/// Why an attempt was aborted: the `why` of each abort `drain()` returns.
#[napi(object)]
#[cfg_attr(test, allow(dead_code))]
pub struct WireAbort {
  /// The attempt passed its deadline.
  pub timeout: u32,
  /// `cancelJob`.
  pub cancel: u32,
  /// The service stopped.
  pub stop: u32,
}

/// The `kind` of an outcome passed to `settle()`.
#[napi(object)]
#[cfg_attr(test, allow(dead_code))]
pub struct WireOutcomeKind {
  /// The handler threw: the value is `{name, message, stack}`; retried while attempts are left.
  pub error: u32,
  /// The handler returned: the value is its result.
  pub ok: u32,
  /// The handler threw an `UnrecoverableError`: not retried.
  pub unrecoverable: u32,
}

/// The bits of the number `settle()` and `poll()` return.
#[napi(object)]
#[cfg_attr(test, allow(dead_code))]
pub struct WireFlag {
  /// Aborts or events wait for `drain()`.
  pub news: u32,
  /// (`settle` only) every outcome was current: the caller emits their `completed` events.
  pub emit_completed: u32,
  /// `flags >>> activeShift` is how many jobs and schedules still need the service.
  pub active_shift: u32,
}

/// The bridge's numbers, defined once in Rust (`src/wire.rs`).
#[napi(object)]
#[cfg_attr(test, allow(dead_code))]
pub struct Wire {
  pub abort: WireAbort,
  pub outcome: WireOutcomeKind,
  pub flag: WireFlag,
  /// Items a job takes in `take()`'s array.
  pub take_fields: u32,
  /// Items an outcome takes in `settle()`'s array.
  pub outcome_fields: u32,
  /// Items an abort takes in `drain()`'s first array.
  pub abort_fields: u32,
}

/// The bridge's numbers (abort reasons, outcome kinds, flag bits, tuple
/// sizes) for `lib/dispatcher.js` to read once at load. Private to it.
#[napi]
#[cfg_attr(test, allow(dead_code))]
pub fn wire() -> Wire {
  use crate::wire::{Abort, OutcomeKind};
  Wire {
    abort: WireAbort {
      timeout: Abort::Timeout as u32,
      cancel: Abort::Cancel as u32,
      stop: Abort::Stop as u32,
    },
    outcome: WireOutcomeKind {
      error: OutcomeKind::Error as u32,
      ok: OutcomeKind::Ok as u32,
      unrecoverable: OutcomeKind::Unrecoverable as u32,
    },
    flag: WireFlag {
      news: wire::flag::NEWS,
      emit_completed: wire::flag::EMIT_COMPLETED,
      active_shift: wire::flag::ACTIVE_SHIFT,
    },
    take_fields: wire::TAKE_FIELDS as u32,
    outcome_fields: wire::OUTCOME_FIELDS as u32,
    abort_fields: wire::ABORT_FIELDS as u32,
  }
}

#[napi]
impl Core {
  /// `configJson`: the service config as JSON; `wake`: called (at most once
  /// until the next `take`/`drain`) when the timer has work for JavaScript.
  #[napi(constructor)]
  pub fn new(config_json: String, wake: Function<'_, u32, ()>) -> napi::Result<Self, Code> {
    let v: Value = serde_json::from_str(&config_json).map_err(|e| {
      js_err(Error::InvalidConfig(format!(
        "config is not JSON-serializable: {e}"
      )))
    })?;
    let cfg = ServiceConfig::from_json(&v, system_now_ms()).map_err(js_err)?;
    let clock = match cfg.manual_clock {
      Some(t) => Clock::manual(t),
      None => Clock::System,
    };
    let tsfn = wake
      .build_threadsafe_function::<u32>()
      .weak::<true>()
      .callee_handled::<false>()
      .build()
      .map_err(|e| napi::Error::new(Code::from(e.status), e.reason.clone()))?;
    let now = clock.now();
    let mut queue = Queue::new(cfg.queue, now);
    #[cfg(feature = "postgres")]
    let mut pg = None;
    let sqlite = match cfg.storage {
      StorageConfig::Memory => None,
      #[cfg(feature = "postgres")]
      StorageConfig::Postgres(c) => {
        queue.await_store("postgres");
        pg = Some(PgSide {
          cfg: *c,
          reader: Mutex::new(None),
          cancelled: Arc::new(Mutex::new(Vec::new())),
        });
        None
      }
      StorageConfig::Sqlite { path, full } => {
        let durability = if full {
          Durability::Full
        } else {
          Durability::Normal
        };
        queue.await_store("sqlite");
        Some(SqliteOptions::new(path, durability))
      }
    };
    queue.set_schedules_enabled(cfg.schedules_on);
    queue.set_monitor(
      cfg.monitoring,
      cfg.alert_channels,
      cfg.manual_clock.is_some(),
      now,
    );
    let engine = Engine::with_queue(queue, clock);
    engine.set_max_sleep(cfg.check_interval_ms);
    engine.set_waker(Box::new(JsWaker(tsfn)));
    Ok(Core {
      engine,
      sqlite,
      opened: AtomicBool::new(false),
      storage_error: Mutex::new(None),
      #[cfg(feature = "postgres")]
      pg,
    })
  }

  /// True when the storage is PostgreSQL (reads and admin calls are then
  /// the `*Async` methods).
  #[napi]
  pub fn is_async(&self) -> bool {
    #[cfg(feature = "postgres")]
    return self.pg.is_some();
    #[cfg(not(feature = "postgres"))]
    return false;
  }

  /// The open backend's reader, or `ERR_STORAGE` before `start()`.
  #[cfg(feature = "postgres")]
  fn pg_reader(&self) -> Result<crate::storage::postgres::PgReader, Error> {
    self
      .pg
      .as_ref()
      .and_then(|p| p.reader.lock().clone())
      .ok_or_else(|| Error::Storage("PostgreSQL is not connected yet: await start() first".into()))
  }

  /// PostgreSQL: connects on the engine's runtime (never on the JS thread),
  /// migrates, registers this process and installs the backend (an error
  /// comes back in the [`AsyncAnswer`]). Nothing to do on other storages.
  #[napi]
  pub async fn open_async(&self) -> napi::Result<AsyncAnswer> {
    #[cfg(feature = "postgres")]
    if let Some(side) = &self.pg {
      let r = self.open_pg(side).await;
      let r = self.record_open(r);
      return Ok(AsyncAnswer::from(r.map(|()| None)));
    }
    Ok(AsyncAnswer::ok(None))
  }

  #[cfg(feature = "postgres")]
  async fn open_pg(&self, side: &PgSide) -> Result<(), Error> {
    use crate::storage::postgres::{BackendOptions, ClusterClock, PgBackend, PgStore};
    let open = side.reader.lock().is_some() && !self.engine.with(|q, _| q.store().is_closed());
    if open {
      return Ok(());
    }
    let (names, max_buffered) = self
      .engine
      .with(|q, _| (q.names_snapshot(), q.config().max_queue_size));
    let weak = Arc::downgrade(&self.engine);
    let clock: ClusterClock = Arc::new(move || match weak.upgrade() {
      Some(e) => e.clock().now(),
      None => system_now_ms(),
    });
    let cfg = side.cfg.clone();
    let rt = crate::queue::runtime()?;
    let mut backend = rt
      .spawn(async move {
        let pg = PgStore::connect(&cfg).await?;
        let opts = BackendOptions {
          heartbeat: Some(cfg.heartbeat),
          dead_after_ms: cfg.dead_after_ms,
          poll: cfg.poll,
          // During an outage `add` buffers up to maxQueueSize jobs.
          max_buffered,
          ..BackendOptions::default()
        };
        PgBackend::open(pg, names, clock, opts).await
      })
      .await
      .map_err(|e| Error::Storage(format!("PostgreSQL: the connect task failed: {e}")))??;
    let weak = Arc::downgrade(&self.engine);
    backend.set_on_ready(Arc::new(move || {
      if let Some(e) = weak.upgrade() {
        e.wake_js();
      }
    }));
    let weak = Arc::downgrade(&self.engine);
    let cancelled = side.cancelled.clone();
    backend.set_on_cancel(Arc::new(move |id| {
      cancelled.lock().push(id);
      if let Some(e) = weak.upgrade() {
        e.wake_js();
      }
    }));
    let weak = Arc::downgrade(&self.engine);
    backend.set_on_schedules(Arc::new(move || {
      if let Some(e) = weak.upgrade() {
        e.nudge();
      }
    }));
    *side.reader.lock() = Some(backend.reader());
    self.engine.with(|q, _| {
      q.open_store(|names| {
        backend.set_names(names.clone());
        Ok(Box::new(backend) as Box<dyn Store>)
      })
    })
  }

  /// PostgreSQL: the job's status as JSON, or null.
  #[napi]
  pub async fn status_async(&self, id: String) -> napi::Result<AsyncAnswer> {
    #[cfg(feature = "postgres")]
    {
      let Some(id) = JobId::parse(&id) else {
        return Ok(AsyncAnswer::ok(None));
      };
      let r = async {
        let reader = self.pg_reader()?;
        if let Some(job) = reader.local_decided(id).await {
          return Ok(Some(self.engine.with(|q, _| q.render_job(&job))));
        }
        let pg = reader.pg().clone();
        let got = on_runtime("read", async move { pg.get(id).await }).await?;
        Ok(got.map(|j| {
          self.engine.with(|q, _| {
            let job = j.into_job(q.names_for_read());
            q.render_job(&job)
          })
        }))
      }
      .await;
      Ok(AsyncAnswer::from(r))
    }
    #[cfg(not(feature = "postgres"))]
    {
      let _ = id;
      Ok(no_postgres())
    }
  }

  /// PostgreSQL: one page of jobs (`getJobs`) for the whole cluster.
  #[napi]
  pub async fn jobs_async(&self, filter_json: String) -> napi::Result<AsyncAnswer> {
    #[cfg(feature = "postgres")]
    {
      let r = async {
        let v: Value = serde_json::from_str(&filter_json)
          .map_err(|e| Error::arg(format!("getJobs(filter): filter is not JSON: {e}")))?;
        let query = JobQuery::parse(&v)?;
        let reader = self.pg_reader()?;
        let (filter, names) = self
          .engine
          .with(|q, _| (q.jobs_filter(&query), q.names_snapshot()));
        let Some(filter) = filter else {
          return Ok(Some(self.engine.with(|q, _| q.render_jobs(&query, &[]))));
        };
        let pg = reader.pg().clone();
        let got = on_runtime("read", async move { pg.list(&filter, &names).await }).await?;
        Ok(Some(self.engine.with(|q, _| {
          let jobs: Vec<_> = got
            .into_iter()
            .map(|j| j.into_job(q.names_for_read()))
            .collect();
          q.render_jobs(&query, &jobs)
        })))
      }
      .await;
      Ok(AsyncAnswer::from(r))
    }
    #[cfg(not(feature = "postgres"))]
    {
      let _ = filter_json;
      Ok(no_postgres())
    }
  }

  /// PostgreSQL: cancels a job anywhere in the cluster; `value` is "true"
  /// or "false". A handler running here is aborted once the cancel
  /// commits; one running in another process is aborted there when it
  /// hears the NOTIFY.
  #[napi]
  pub async fn cancel_async(&self, id: String) -> napi::Result<AsyncAnswer> {
    #[cfg(feature = "postgres")]
    {
      let Some(id) = JobId::parse(&id) else {
        return Ok(AsyncAnswer::ok(Some("false".into())));
      };
      let r = async {
        let reader = self.pg_reader()?;
        let got = on_runtime("cancel", async move { reader.cancel_job(id).await }).await?;
        if let Some(c) = got.as_ref().filter(|c| !c.dependants_failed.is_empty()) {
          // Its dependants failed in the cancel's transaction: their
          // `failed` events fire here, as on the other storages.
          self
            .engine
            .with(|q, _| q.failed_in_store(&c.dependants_failed));
        }
        if let Some(c) = got
          .as_ref()
          .filter(|c| c.was != crate::job::Status::Running)
        {
          // It ran nowhere: its `cancelled` event fires here (a running
          // one's fires where it ran, when its slot is aborted).
          self
            .engine
            .with(|q, _| q.cancelled_unstarted(id, &c.name, c.attempt));
        }
        Ok(Some(got.is_some().to_string()))
      }
      .await;
      Ok(AsyncAnswer::from(r))
    }
    #[cfg(not(feature = "postgres"))]
    {
      let _ = id;
      Ok(no_postgres())
    }
  }

  /// PostgreSQL: puts a failed, timed-out or cancelled job back in line
  /// (`retryJob`); `value` is "true" or "false".
  #[napi]
  pub async fn retry_async(&self, id: String) -> napi::Result<AsyncAnswer> {
    #[cfg(feature = "postgres")]
    {
      let Some(id) = JobId::parse(&id) else {
        return Ok(AsyncAnswer::ok(Some("false".into())));
      };
      let r = async {
        if self.engine.with(|q, _| {
          matches!(
            q.run_state(),
            crate::queue::RunState::Stopping | crate::queue::RunState::Stopped
          )
        }) {
          return Err(Error::Stopped);
        }
        // maxQueueSize, as on the other storages (the cluster's counts, as
        // `add` checks them).
        self.engine.with(|q, _| q.check_room(1))?;
        let reader = self.pg_reader()?;
        let ok = on_runtime("retry", async move { reader.retry(id).await }).await?;
        Ok(Some(ok.to_string()))
      }
      .await;
      Ok(AsyncAnswer::from(r))
    }
    #[cfg(not(feature = "postgres"))]
    {
      let _ = id;
      Ok(no_postgres())
    }
  }

  /// Opens the SQLite file the first time it is needed; a failure is kept
  /// for the status (and returned), and the next call tries again. A
  /// stopping or stopped service opens it only for `start()` (`starting`).
  fn open_storage(&self, starting: bool) -> Result<(), Error> {
    let Some(opts) = &self.sqlite else {
      return Ok(());
    };
    if self.opened.load(Ordering::Acquire) {
      return Ok(());
    }
    let r = self.engine.with(|q, now| {
      if !starting && matches!(q.run_state(), RunState::Stopping | RunState::Stopped) {
        return None;
      }
      Some(q.open_store(|names| {
        SqliteStore::open(opts, names, now).map(|s| Box::new(s) as Box<dyn Store>)
      }))
    });
    match r {
      Some(r) => self.record_open(r),
      None => Ok(()),
    }
  }

  fn record_open(&self, r: Result<(), Error>) -> Result<(), Error> {
    let mut err = self.storage_error.lock();
    match r {
      Ok(()) => {
        self.opened.store(true, Ordering::Release);
        *err = None;
        Ok(())
      }
      Err(e) => {
        *err = Some(e.clone());
        Err(e)
      }
    }
  }

  fn check_storage(&self) -> napi::Result<(), Code> {
    self.open_storage(false).map_err(js_err)
  }

  /// The storage as JSON `{ type, state, error }`: `state` is `ok` (memory),
  /// `closed` (not opened yet, or closed by `stop()`), `open`, or `error`
  /// (the last attempt to open it failed: `error` is why). Opens nothing.
  #[napi]
  pub fn storage(&self) -> String {
    #[cfg(feature = "postgres")]
    let is_pg = self.pg.is_some();
    #[cfg(not(feature = "postgres"))]
    let is_pg = false;
    let (kind, state) = match &self.sqlite {
      None if is_pg => {
        let state = if self.storage_error.lock().is_some() {
          "error"
        } else if !self.opened.load(Ordering::Acquire)
          || self.engine.with(|q, _| q.store().is_closed())
        {
          "closed"
        } else {
          "open"
        };
        ("postgres", state)
      }
      None => ("memory", "ok"),
      Some(_) if self.storage_error.lock().is_some() => ("sqlite", "error"),
      Some(_) if !self.opened.load(Ordering::Acquire) => ("sqlite", "closed"),
      Some(_) if self.engine.with(|q, _| q.store().is_closed()) => ("sqlite", "closed"),
      Some(_) => ("sqlite", "open"),
    };
    let error = match &*self.storage_error.lock() {
      Some(e) => serde_json::to_string(&e.to_string()).unwrap_or_else(|_| "null".into()),
      None => "null".into(),
    };
    format!("{{\"type\":\"{kind}\",\"state\":\"{state}\",\"error\":{error}}}")
  }

  /// Resolves once every write made before the call is committed: with
  /// `null`, or with the storage error's message (lib/service.js throws it as
  /// `ERR_STORAGE`; async methods cannot carry a custom code).
  #[napi]
  pub async fn flush(&self) -> napi::Result<Option<String>> {
    if let Err(e) = self.open_storage(false) {
      return Ok(Some(e.to_string()));
    }
    let Some((mark, mut rx)) = self.engine.with(|q, _| q.store_mut().flush_mark()) else {
      return Ok(None);
    };
    let res = rx.wait_for(|c| c.seq >= mark || c.error.is_some()).await;
    Ok(match res {
      Ok(c) => c.error.clone().map(|e| Error::Storage(e).to_string()),
      Err(_) => None,
    })
  }

  /// Registers a calculation name with its defaults (JSON); returns its index.
  #[napi]
  pub fn register(&self, name: String, defaults_json: String) -> napi::Result<u32, Code> {
    let v: Value = serde_json::from_str(&defaults_json)
      .map_err(|e| js_err(Error::arg(format!("calculation options: {e}"))))?;
    self
      .engine
      .with(|q, _| q.register(&name, &v))
      .map_err(js_err)
  }

  /// Makes `take` hand calculation `calc`'s data and context over as JSON
  /// strings (for the worker-thread pool); false for an unregistered one.
  #[napi]
  pub fn set_raw_data(&self, calc: u32, raw: bool) -> bool {
    self.engine.with(|q, _| q.set_raw(calc, raw))
  }

  /// Adds jobs given as JSON `[[calc, data, context, options|null], ...]`,
  /// all or none; returns their ids joined by commas.
  #[napi]
  pub fn add(&self, batch_json: String) -> napi::Result<String, Code> {
    self.check_storage()?;
    type Item<'a> = (u32, &'a RawValue, &'a RawValue, Option<Value>);
    let items: Vec<Item<'_>> = serde_json::from_str(&batch_json)
      .map_err(|e| js_err(Error::arg(format!("malformed job batch: {e}"))))?;
    let mut backoff = None;
    let mut batch = Vec::with_capacity(items.len());
    for (i, (calc, data, context, options)) in items.iter().enumerate() {
      let options = match options {
        Some(o) => {
          let field = if items.len() == 1 {
            "options".to_string()
          } else {
            format!("jobs[{i}].options")
          };
          let backoff = *backoff
            .get_or_insert_with(|| self.engine.with_deferred(|q, _| q.config().default_backoff));
          JobOptions::parse(o, &field, backoff).map_err(js_err)?
        }
        None => JobOptions::default(),
      };
      batch.push(NewJob {
        calc: *calc,
        data: data.get(),
        context: context.get(),
        options,
      });
    }
    self.add_batch(&batch)
  }

  /// Adds jobs of one calculation with no context or options, given as the
  /// JSON array of their data, all or none; returns their ids joined by
  /// commas.
  #[napi]
  pub fn add_data(&self, calc: u32, datas_json: String) -> napi::Result<String, Code> {
    self.check_storage()?;
    let datas: Vec<&RawValue> = serde_json::from_str(&datas_json)
      .map_err(|e| js_err(Error::arg(format!("malformed job batch: {e}"))))?;
    let batch: Vec<NewJob<'_>> = datas
      .iter()
      .map(|d| NewJob {
        calc,
        data: d.get(),
        context: "{}",
        options: JobOptions::default(),
      })
      .collect();
    self.add_batch(&batch)
  }

  /// Adds `batch`, all or none; returns the ids joined by commas.
  fn add_batch(&self, batch: &[NewJob<'_>]) -> napi::Result<String, Code> {
    // While started, the dispatcher pumps right after an add and sends the
    // writes once the job's handler has started (sendWrites).
    let ids = self
      .engine
      .with_deferred(|q, now| {
        let r = q.add(batch, now);
        if !q.is_started() {
          q.end_batch();
        }
        r
      })
      .map_err(js_err)?;
    let mut out = String::with_capacity(ids.len() * 37);
    for (i, id) in ids.iter().enumerate() {
      if i > 0 {
        out.push(',');
      }
      id.write_to(&mut out);
    }
    Ok(out)
  }

  /// Starts running jobs.
  #[napi]
  pub fn start(&self) -> napi::Result<(), Code> {
    self.open_storage(true).map_err(js_err)?;
    if let Some(opts) = &self.sqlite {
      let r = self.engine.with(|q, now| {
        q.reopen_store(|names| {
          SqliteStore::open(opts, names, now).map(|s| Box::new(s) as Box<dyn Store>)
        })
      });
      self.record_open(r).map_err(js_err)?;
    }
    if let Some(f) = self.engine.with(|q, _| q.store_failure()) {
      return Err(js_err(Error::Storage(f)));
    }
    self.engine.start().map_err(js_err)?;
    self.engine.wake_js();
    Ok(())
  }

  /// Stops taking new jobs; running ones go on.
  #[napi]
  pub fn begin_stop(&self) {
    self.engine.with(|q, _| q.begin_stop());
  }

  /// Aborts what still runs (back to pending); returns how many.
  #[napi]
  pub fn finish_stop(&self) -> u32 {
    self.engine.with(|q, now| q.finish_stop(now)) as u32
  }

  /// Up to `max` due jobs as a JSON array of 7-tuples
  /// `slot, seq, id, calc, attempt, data, context`; "" when none.
  #[napi]
  pub fn take(&self, max: u32) -> String {
    self.engine.pulled();
    let mut out = String::from("[");
    let n = self
      .engine
      .with_deferred(|q, now| q.take(max as usize, now, &mut out));
    if n == 0 {
      return String::new();
    }
    out.pop();
    out.push(']');
    out
  }

  /// Applies outcomes (JSON `[slot, seq, kind, value, ...]`, `kind` from
  /// `wire().outcome`); returns the `wire().flag` bits. With `emitCompleted` the caller
  /// emits the `completed` events of these outcomes itself when `emit` comes
  /// back set (every outcome was current); otherwise they are drained as usual.
  #[napi]
  pub fn settle(&self, outcomes_json: String, emit_completed: bool) -> napi::Result<u32, Code> {
    self
      .engine
      .with_deferred(|q, now| {
        let (_, emit) = q.settle_with(&outcomes_json, now, emit_completed)?;
        let emit = if emit { wire::flag::EMIT_COMPLETED } else { 0 };
        Ok(flags(q) | emit)
      })
      .map_err(js_err)
  }

  /// Sends the writes that `add`, `take` and `settle` left for after the
  /// handlers started (a durable store's writer thread is woken once).
  #[napi]
  pub fn send_writes(&self) {
    self.engine.send_writes();
  }

  /// The `wire().flag` bits (never `emitCompleted`); also re-arms the wake-up.
  #[napi]
  pub fn poll(&self) -> u32 {
    self.engine.pulled();
    #[cfg(feature = "postgres")]
    let cancelled: Vec<JobId> = match &self.pg {
      Some(side) => std::mem::take(&mut *side.cancelled.lock()),
      None => Vec::new(),
    };
    self.engine.with(|q, now| {
      #[cfg(feature = "postgres")]
      for id in cancelled {
        q.abort_cancelled(id, now);
      }
      let _ = now;
      flags(q)
    })
  }

  /// Aborts and events since the last call: `[[slot, seq, ...], [[kind, id, name, attempt, extra], ...]]`.
  #[napi]
  pub fn drain(&self) -> String {
    self.engine.pulled();
    self.engine.with(|q, _| q.drain())
  }

  /// Records events only while someone listens.
  #[napi]
  pub fn set_events(&self, on: bool) {
    self.engine.with(|q, _| q.set_events(on));
  }

  /// Cancels a job; false for unknown or finished ones.
  #[napi]
  pub fn cancel(&self, id: String) -> napi::Result<bool, Code> {
    let _ = self.open_storage(false);
    match JobId::parse(&id) {
      Some(id) => self.engine.with(|q, now| q.cancel(id, now)).map_err(js_err),
      None => Ok(false),
    }
  }

  /// Re-queues a failed, timed-out or cancelled job.
  #[napi]
  pub fn retry(&self, id: String) -> napi::Result<bool, Code> {
    let _ = self.open_storage(false);
    match JobId::parse(&id) {
      Some(id) => self.engine.with(|q, now| q.retry(id, now)).map_err(js_err),
      None => Ok(false),
    }
  }

  /// The job's status as JSON, or null (`ERR_STORAGE` when its stored
  /// row cannot be read).
  #[napi]
  pub fn status(&self, id: String) -> napi::Result<Option<String>, Code> {
    let Some(id) = JobId::parse(&id) else {
      return Ok(None);
    };
    let _ = self.open_storage(false);
    self.engine.with(|q, _| q.status_json(id)).map_err(js_err)
  }

  /// One page of jobs (`getJobs`; the filter as JSON) as
  /// `{"jobs":[...],"nextCursor":...}` JSON.
  #[napi]
  pub fn jobs(&self, filter_json: String) -> napi::Result<String, Code> {
    let v: Value = serde_json::from_str(&filter_json).map_err(|e| {
      js_err(Error::arg(format!(
        "getJobs(filter): filter is not JSON: {e}"
      )))
    })?;
    let q = JobQuery::parse(&v).map_err(js_err)?;
    let _ = self.open_storage(false);
    self
      .engine
      .with(|queue, _| queue.jobs_json(&q))
      .map_err(js_err)
  }

  /// Queue statistics as JSON. `open: false` (the system status) does not
  /// open the file (the counts are then those of no job).
  #[napi]
  pub fn stats(&self, open: Option<bool>) -> String {
    if open != Some(false) {
      let _ = self.open_storage(false);
    }
    self.engine.with(|q, now| q.stats_json(now))
  }

  /// Records progress (JSON) of a running attempt; false once it ended.
  #[napi]
  pub fn progress(&self, slot: u32, seq: u32, json: String) -> bool {
    self.engine.with(|q, _| q.progress(slot, seq, &json))
  }

  /// Moves a manual clock forward.
  #[napi]
  pub fn advance(&self, ms: f64) -> napi::Result<(), Code> {
    if !(0.0..=1e15).contains(&ms) {
      return Err(js_err(Error::arg(format!(
        "advanceTime(ms): ms must be a finite number >= 0, got {ms}"
      ))));
    }
    self.engine.advance(ms as u64).map_err(js_err)
  }

  /// One manual-clock step towards `target` (epoch ms); true while steps remain.
  #[napi]
  pub fn advance_to(&self, target: f64) -> napi::Result<bool, Code> {
    if !(0.0..=8.64e15).contains(&target) {
      return Err(js_err(Error::arg(format!(
        "advanceTime: bad target time {target}"
      ))));
    }
    self.engine.advance_step(target as u64).map_err(js_err)
  }

  /// Adds or updates a schedule (JSON) for calculation `calc`; returns its public JSON.
  #[napi]
  pub fn schedule(&self, env: &Env, calc: u32, json: String) -> napi::Result<String, Code> {
    self.check_storage()?;
    let v: Value = serde_json::from_str(&json)
      .map_err(|e| js_err(Error::InvalidSchedule(format!("schedule is not JSON: {e}"))))?;
    self
      .engine
      .with(|q, now| q.schedule(calc, &v, now))
      .map_err(|e| throw_err(env, e))
  }

  /// Removes a schedule; false for unknown ids.
  #[napi]
  pub fn unschedule(&self, id: String) -> bool {
    let _ = self.open_storage(false);
    self.engine.with(|q, _| q.unschedule(&id))
  }

  /// Enables or disables a schedule; false for unknown ids.
  #[napi]
  pub fn set_schedule_enabled(&self, id: String, enabled: bool) -> bool {
    let _ = self.open_storage(false);
    self
      .engine
      .with(|q, now| q.set_schedule_enabled(&id, enabled, now))
  }

  /// The schedules matching a filter (JSON) as a JSON array (`open: false`:
  /// see [`Core::stats`]).
  #[napi]
  pub fn schedules(&self, filter_json: String, open: Option<bool>) -> napi::Result<String, Code> {
    let v: Value = serde_json::from_str(&filter_json)
      .map_err(|e| js_err(Error::arg(format!("filter is not JSON: {e}"))))?;
    if open != Some(false) {
      let _ = self.open_storage(false);
    }
    self
      .engine
      .with(|q, _| q.schedules_json(&v))
      .map_err(js_err)
  }

  /// A monitor view as JSON (`health`, `performance`, `summary`, `series`,
  /// `alerts`, `rules`), or null when monitoring is disabled.
  #[napi]
  pub fn monitor(&self, what: String) -> Option<String> {
    self.engine.with(|q, now| {
      if what == "health" {
        q.sync_storage_health();
      }
      let m = q.monitor()?;
      Some(match what.as_str() {
        "health" => m.health_json(now),
        "performance" => m.performance_json(now),
        "summary" => m.summary_json(now),
        "series" => m.series_json(now),
        "alerts" => m.active_alerts_json(),
        "rules" => m.rules_json(),
        "delivery" => q.alert_delivery_json()?,
        _ => return None,
      })
    })
  }

  /// Prometheus text exposition, or null when monitoring is disabled.
  #[napi]
  pub fn prometheus(&self) -> Option<String> {
    self.engine.with(|q, now| {
      q.sync_storage_health();
      q.prometheus(now)
    })
  }

  /// Acknowledges an alert; false for unknown ids.
  #[napi]
  pub fn acknowledge_alert(&self, id: String, by: String) -> bool {
    self.engine.with(|q, now| {
      q.monitor_mut()
        .is_some_and(|m| m.acknowledge(&id, &by, now))
    })
  }

  /// Resolves an alert by hand; false for unknown or resolved ids.
  #[napi]
  pub fn resolve_alert(&self, id: String) -> bool {
    self
      .engine
      .with(|q, now| q.monitor_mut().is_some_and(|m| m.resolve(&id, now)))
  }

  /// The alert history (filter as JSON), or null when monitoring is disabled.
  #[napi]
  pub fn alert_history(&self, filter_json: String) -> napi::Result<Option<String>, Code> {
    let v: Value = serde_json::from_str(&filter_json)
      .map_err(|e| js_err(Error::arg(format!("filter is not JSON: {e}"))))?;
    self
      .engine
      .with(|q, _| q.monitor().map(|m| m.history_json(&v)).transpose())
      .map_err(js_err)
  }

  /// Adds an alert rule (JSON); returns its id.
  #[napi]
  pub fn add_alert_rule(&self, rule_json: String) -> napi::Result<String, Code> {
    let v: Value = serde_json::from_str(&rule_json)
      .map_err(|e| js_err(Error::arg(format!("rule is not JSON: {e}"))))?;
    self
      .engine
      .with(|q, _| match q.monitor_mut() {
        Some(m) => m.add_rule(&v),
        None => Err(Error::arg(
          "monitoring is disabled (monitoring.enabled: false)",
        )),
      })
      .map_err(js_err)
  }

  /// Removes an alert rule; false for unknown ids.
  #[napi]
  pub fn remove_alert_rule(&self, id: String) -> bool {
    self
      .engine
      .with(|q, now| q.monitor_mut().is_some_and(|m| m.remove_rule(&id, now)))
  }

  /// The service's clock, epoch ms.
  #[napi]
  pub fn now(&self) -> f64 {
    self.engine.clock().now() as f64
  }

  /// Attempts running now.
  #[napi]
  pub fn running_count(&self) -> u32 {
    self.engine.with(|q, _| q.running_count() as u32)
  }

  /// Stops the timer for good.
  #[napi]
  pub fn close(&self) {
    self.engine.close();
  }
}

impl Drop for Core {
  fn drop(&mut self) {
    self.engine.close();
  }
}

/// The next `count` fire times (epoch ms) of a cron expression strictly
/// after `from_ms`, in time zone `tz` (IANA; the process's zone if absent),
/// computed by the scheduler's own code.
#[napi]
#[cfg_attr(test, allow(dead_code))]
pub fn next_cron_runs(
  env: &Env,
  expression: String,
  tz: Option<String>,
  from_ms: f64,
  count: u32,
) -> napi::Result<Vec<f64>, Code> {
  if !(0.0..=253_402_300_799_999.0).contains(&from_ms) {
    return Err(js_err(Error::arg(format!(
      "nextCronRuns: from must be a valid date, got {from_ms}"
    ))));
  }
  let cron =
    crate::cron::CronExpr::parse(&expression, tz.as_deref()).map_err(|e| throw_err(env, e))?;
  Ok(
    cron
      .next_runs(from_ms as u64, count.min(10_000) as usize)
      .into_iter()
      .map(|t| t as f64)
      .collect(),
  )
}

/// Runs a PostgreSQL call on the engine's runtime (never on the JS thread);
/// `what` names it in the error if the task itself fails.
#[cfg(feature = "postgres")]
async fn on_runtime<T: Send + 'static>(
  what: &str,
  call: impl std::future::Future<Output = crate::error::Result<T>> + Send + 'static,
) -> crate::error::Result<T> {
  crate::queue::runtime()?
    .spawn(call)
    .await
    .map_err(|e| Error::Storage(format!("PostgreSQL {what} task: {e}")))?
}

/// The answer of a PostgreSQL-only call in a build without PostgreSQL.
#[cfg(not(feature = "postgres"))]
fn no_postgres() -> AsyncAnswer {
  AsyncAnswer::from(Err(Error::Storage(
    "PostgreSQL is not in this build".into(),
  )))
}

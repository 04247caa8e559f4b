//! [`Engine`]: a [`Queue`] behind a lock, driven by a timer task on the
//! process's one tokio runtime, waking JavaScript through a [`Waker`] only
//! when there is something for it to do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::runtime::Runtime;
use tokio::sync::{watch, Notify};

use super::{Queue, QueueConfig};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::storage::Commit;

/// Tells the JavaScript side to pull (`take`/`drain`). Called from the timer
/// thread; returns false when the JavaScript environment is gone.
pub trait Waker: Send + Sync {
  /// Asks JavaScript to pull; false when it can no longer be reached.
  fn wake(&self) -> bool;
}

/// The longest the timer sleeps without being told of a deadline (the
/// default `scheduler.checkInterval`).
pub const MAX_SLEEP_MS: u64 = 60_000;

/// The process's runtime: one worker thread, so the other core stays with
/// Node's main thread.
pub fn runtime() -> Result<&'static Runtime> {
  static RT: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
  RT.get_or_init(|| {
    tokio::runtime::Builder::new_multi_thread()
      .worker_threads(1)
      .thread_name("jobwerk")
      // Time, and I/O for the PostgreSQL backend's connections.
      .enable_all()
      .build()
      .map_err(|e| e.to_string())
  })
  .as_ref()
  .map_err(|e| Error::Storage(format!("cannot start the jobwerk runtime: {e}")))
}

/// One service's queue, its clock and its timer.
pub struct Engine {
  queue: Mutex<Queue>,
  clock: Clock,
  notify: Arc<Notify>,
  waker: Mutex<Option<Box<dyn Waker>>>,
  /// A wake-up was sent and JavaScript has not pulled since.
  wake_pending: AtomicBool,
  /// Bumped each time a timer task starts; an older task sees it and ends.
  timer_gen: AtomicU64,
  closed: AtomicBool,
  /// Upper bound of one timer sleep (`scheduler.checkInterval`).
  max_sleep_ms: AtomicU64,
  /// This engine, for the tasks it starts.
  me: Weak<Engine>,
  /// A watcher waits for the commit of held events (see [`Engine::watch_held`]).
  held_armed: AtomicBool,
}

impl std::fmt::Debug for Engine {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Engine")
      .field("clock", &self.clock)
      .finish_non_exhaustive()
  }
}

impl Engine {
  /// A new engine over an in-memory store; its timer starts with [`Engine::start`].
  pub fn new(cfg: QueueConfig, clock: Clock) -> Arc<Engine> {
    let now = clock.now();
    Engine::with_queue(Queue::new(cfg, now), clock)
  }

  /// A new engine over `queue`.
  pub fn with_queue(queue: Queue, clock: Clock) -> Arc<Engine> {
    Arc::new_cyclic(|me| Engine {
      me: me.clone(),
      held_armed: AtomicBool::new(false),
      queue: Mutex::new(queue),
      clock,
      notify: Arc::new(Notify::new()),
      waker: Mutex::new(None),
      wake_pending: AtomicBool::new(false),
      timer_gen: AtomicU64::new(0),
      closed: AtomicBool::new(true),
      max_sleep_ms: AtomicU64::new(MAX_SLEEP_MS),
    })
  }

  /// Bounds one timer sleep (`scheduler.checkInterval`, ms).
  pub fn set_max_sleep(&self, ms: u64) {
    self.max_sleep_ms.store(ms.max(1), Ordering::Release);
  }

  /// Sets how JavaScript is woken.
  pub fn set_waker(&self, w: Box<dyn Waker>) {
    *self.waker.lock() = Some(w);
  }

  /// The engine's clock.
  pub fn clock(&self) -> &Clock {
    &self.clock
  }

  /// Runs `f` on the locked queue with the current time, then tells the
  /// timer if `f` made a deadline earlier than the one it sleeps towards.
  pub fn with<R>(&self, f: impl FnOnce(&mut Queue, u64) -> R) -> R {
    self.run(f, true)
  }

  /// Like [`Engine::with`], but the store's writes wait for the next
  /// [`Engine::send_writes`] (or any other operation): the dispatcher starts
  /// its handlers first and wakes the writer thread after, so a durable store
  /// adds no thread wake-up to the time a job takes to start. Durability is
  /// unchanged: writes are committed asynchronously either way.
  pub fn with_deferred<R>(&self, f: impl FnOnce(&mut Queue, u64) -> R) -> R {
    self.run(f, false)
  }

  fn run<R>(&self, f: impl FnOnce(&mut Queue, u64) -> R, send: bool) -> R {
    let (r, dirty, held) = {
      let mut q = self.queue.lock();
      let now = self.clock.now();
      let r = f(&mut q, now);
      if send {
        q.end_batch();
      } else {
        q.end_batch_deferred();
      }
      (r, q.take_timer_dirty(), self.held_to_watch(&mut q))
    };
    if dirty {
      self.notify.notify_one();
    }
    self.watch_held(held);
    r
  }

  /// What a new watcher of held events waits for, if events are held and
  /// no watcher runs (see [`Engine::watch_held`]).
  fn held_to_watch(&self, q: &mut Queue) -> Option<(u64, watch::Receiver<Commit>)> {
    if !q.has_held() || self.held_armed.swap(true, Ordering::AcqRel) {
      return None;
    }
    let w = q.held_watch();
    if w.is_none() {
      self.held_armed.store(false, Ordering::Release);
    }
    w
  }

  /// Events of outcomes wait for their commit (a store that commits late,
  /// PostgreSQL): one task on the runtime waits for the mark of the newest
  /// and wakes JavaScript once, whose next call releases every event
  /// covered by then (and starts the next watcher if more wait). It never
  /// takes the queue lock.
  fn watch_held(&self, held: Option<(u64, watch::Receiver<Commit>)>) {
    let Some((mark, mut rx)) = held else {
      return;
    };
    let Ok(rt) = runtime() else {
      self.held_armed.store(false, Ordering::Release);
      return;
    };
    let me = self.me.clone();
    rt.spawn(async move {
      let _ = rx.wait_for(|c| c.seq >= mark || c.error.is_some()).await;
      if let Some(e) = me.upgrade() {
        e.held_armed.store(false, Ordering::Release);
        e.wake_js();
      }
    });
  }

  /// Sends the writes deferred by [`Engine::with_deferred`].
  pub fn send_writes(&self) {
    self.with(|_, _| ());
  }

  /// JavaScript is pulling now: the next event needs a new wake-up.
  pub fn pulled(&self) {
    self.wake_pending.store(false, Ordering::Release);
  }

  /// Starts running jobs, and the timer (system clock only).
  pub fn start(self: &Arc<Self>) -> Result<()> {
    self.with(|q, now| q.start(now));
    if self.closed.swap(false, Ordering::AcqRel) && !self.clock.is_manual() {
      let rt = runtime()?;
      let gen = self.timer_gen.fetch_add(1, Ordering::AcqRel) + 1;
      let weak = Arc::downgrade(self);
      let notify = self.notify.clone();
      rt.spawn(timer_loop(weak, notify, gen));
    }
    Ok(())
  }

  /// The timer's step: due work, timeouts, cleanup; wakes JavaScript when it
  /// has something to do. Returns the next wake-up time (epoch ms).
  fn on_timer(&self) -> u64 {
    let (wake, next, held) = {
      let mut q = self.queue.lock();
      let now = self.clock.now();
      q.tick(now);
      q.end_batch();
      let wake = q.has_news() || q.has_work(now);
      (wake, q.plan_wake(), self.held_to_watch(&mut q))
    };
    self.watch_held(held);
    if wake {
      self.wake_js();
    }
    next
  }

  /// Wakes the timer now: its tick takes in news the store has (e.g. the
  /// cluster's schedules, read by the PostgreSQL backend's task).
  pub fn nudge(&self) {
    self.notify.notify_one();
  }

  /// Wakes JavaScript unless a wake-up is already on its way.
  pub fn wake_js(&self) {
    if self.closed.load(Ordering::Acquire) || self.wake_pending.swap(true, Ordering::AcqRel) {
      return;
    }
    let alive = match &*self.waker.lock() {
      Some(w) => w.wake(),
      None => true,
    };
    if !alive {
      self.close();
    }
  }

  /// Moves a manual clock forward by `ms`, stepping through every deadline on
  /// the way so each fires at its own time. Errors on a system clock.
  pub fn advance(&self, ms: u64) -> Result<()> {
    if !self.clock.is_manual() {
      return Err(Error::arg(
        "advanceTime needs a manual clock: new JobManagementService({ clock: 'manual' })",
      ));
    }
    let target = self.clock.now().saturating_add(ms);
    let mut q = self.queue.lock();
    loop {
      let next = q.plan_wake();
      if next > target {
        break;
      }
      self.clock.set(next);
      q.tick(next);
    }
    self.clock.set(target);
    q.tick(target);
    q.end_batch();
    q.plan_wake();
    let held = self.held_to_watch(&mut q);
    drop(q);
    self.watch_held(held);
    Ok(())
  }

  /// One step of a manual clock towards `target`: to the next deadline (a
  /// delayed job, a schedule's fire, a timeout) if it comes first, else to
  /// `target`. Returns true while steps remain, so JavaScript can run what
  /// became due between steps.
  pub fn advance_step(&self, target: u64) -> Result<bool> {
    if !self.clock.is_manual() {
      return Err(Error::arg(
        "advanceTime needs a manual clock: new JobManagementService({ clock: 'manual' })",
      ));
    }
    let mut q = self.queue.lock();
    let now = self.clock.now();
    let next = q.plan_wake();
    let at = if next <= target {
      next.max(now)
    } else {
      target.max(now)
    };
    self.clock.set(at);
    q.tick(at);
    q.end_batch();
    q.plan_wake();
    let held = self.held_to_watch(&mut q);
    drop(q);
    self.watch_held(held);
    Ok(at < target)
  }

  /// Stops the timer (the service stopped, or the JavaScript side is gone);
  /// [`Engine::start`] starts a new one.
  pub fn close(&self) {
    self.closed.store(true, Ordering::Release);
    self.notify.notify_one();
  }

  /// True once closed.
  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::Acquire)
  }
}

impl Drop for Engine {
  fn drop(&mut self) {
    self.notify.notify_one();
  }
}

async fn timer_loop(engine: Weak<Engine>, notify: Arc<Notify>, gen: u64) {
  loop {
    let sleep = {
      let Some(e) = engine.upgrade() else {
        return;
      };
      if e.is_closed() || e.timer_gen.load(Ordering::Acquire) != gen {
        return;
      }
      let next = e.on_timer();
      let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
      Duration::from_millis(next.min(u64::MAX >> 1))
        .checked_sub(now)
        .unwrap_or(Duration::from_millis(1))
        .clamp(
          Duration::from_micros(100),
          Duration::from_millis(MAX_SLEEP_MS),
        )
    };
    // tokio's timer ticks in whole milliseconds (a deadline fires up to 1 ms
    // late): the last stretch before a deadline is slept on this thread,
    // which wakes within tens of microseconds. It holds the shared timer
    // thread for at most PRECISE_MS; a notify meanwhile waits as a permit.
    if sleep <= Duration::from_millis(PRECISE_MS) {
      std::thread::sleep(sleep);
      // Other services' timers share this thread.
      tokio::task::yield_now().await;
      continue;
    }
    tokio::select! {
      _ = tokio::time::sleep(sleep - Duration::from_millis(PRECISE_MS - 1)) => {}
      _ = notify.notified() => {}
    }
  }
}

/// The last milliseconds before a deadline, slept precisely.
const PRECISE_MS: u64 = 2;

#[cfg(test)]
mod tests {
  use super::*;
  use crate::queue::NewJob;
  use serde_json::Value;
  use std::sync::atomic::AtomicUsize;

  struct CountingWaker(Arc<AtomicUsize>);
  impl Waker for CountingWaker {
    fn wake(&self) -> bool {
      self.0.fetch_add(1, Ordering::SeqCst);
      true
    }
  }

  /// A started engine on the system clock with one job delayed `delay_ms`,
  /// and the count of its wake-ups.
  fn engine_with_delayed_job(delay_ms: u64) -> (Arc<Engine>, Arc<AtomicUsize>) {
    let e = Engine::new(QueueConfig::default(), Clock::System);
    let wakes = Arc::new(AtomicUsize::new(0));
    e.set_waker(Box::new(CountingWaker(wakes.clone())));
    e.start().expect("start");
    let calc = e
      .with(|q, _| q.register("calc", &Value::Null))
      .expect("register");
    let opts = crate::queue::JobOptions {
      delay_ms: Some(delay_ms),
      ..Default::default()
    };
    e.with(|q, now| {
      q.add(
        &[NewJob {
          calc,
          data: "1",
          context: "{}",
          options: opts,
        }],
        now,
      )
    })
    .expect("add");
    (e, wakes)
  }

  #[test]
  fn timer_wakes_js_when_a_delayed_job_is_due() {
    let (e, wakes) = engine_with_delayed_job(50);
    let t0 = std::time::Instant::now();
    while wakes.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(2) {
      std::thread::sleep(Duration::from_millis(1));
    }
    let waited = t0.elapsed();
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert!(
      waited >= Duration::from_millis(45),
      "woke early: {waited:?}"
    );
    let mut out = String::new();
    assert_eq!(e.with(|q, now| q.take(10, now, &mut out)), 1);
  }

  /// Services share the timer thread: one sleeping out its last
  /// milliseconds precisely does not keep the others from firing.
  #[test]
  fn services_sharing_the_timer_thread_all_fire() {
    let engines: Vec<(Arc<Engine>, Arc<AtomicUsize>)> =
      (0..4).map(|i| engine_with_delayed_job(20 + i)).collect();
    let t0 = std::time::Instant::now();
    while engines.iter().any(|(_, w)| w.load(Ordering::SeqCst) == 0)
      && t0.elapsed() < Duration::from_secs(5)
    {
      std::thread::sleep(Duration::from_millis(1));
    }
    for (e, wakes) in &engines {
      assert_eq!(wakes.load(Ordering::SeqCst), 1);
      let mut out = String::new();
      assert_eq!(e.with(|q, now| q.take(10, now, &mut out)), 1);
      e.close();
    }
  }

  #[test]
  fn advance_steps_through_deadlines() {
    let e = Engine::new(QueueConfig::default(), Clock::manual(1_000_000));
    e.start().expect("start");
    let calc = e
      .with(|q, _| q.register("calc", &Value::Null))
      .expect("register");
    for d in [100, 200, 300] {
      let options = crate::queue::JobOptions {
        delay_ms: Some(d),
        ..Default::default()
      };
      e.with(|q, now| {
        q.add(
          &[NewJob {
            calc,
            data: "1",
            context: "{}",
            options,
          }],
          now,
        )
      })
      .expect("add");
    }
    e.advance(250).expect("advance");
    let mut out = String::new();
    assert_eq!(e.with(|q, now| q.take(10, now, &mut out)), 2);
    assert_eq!(e.clock().now(), 1_000_250);
    assert!(Engine::new(QueueConfig::default(), Clock::System)
      .advance(1)
      .is_err());
  }
}

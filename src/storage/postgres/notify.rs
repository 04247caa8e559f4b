//! Wake-ups across processes: `pg_notify` in the writing transaction (an
//! insert: `i:<earliest due time>`; a cancel of a running job:
//! `c:<id>`; a schedule saved or deleted: `s:<schedule id>`), heard on one
//! dedicated LISTEN connection per process.
//!
//! The LISTEN connection goes through the pool's connector (TLS with the
//! same verification when `storage.ssl` / `sslmode` asks for it, plain TCP
//! otherwise), so a cancel in another process aborts the handler here and
//! an added job wakes idle processes at once, over TLS too.
//!
//! Connecting and the `LISTEN` statement are bounded by
//! `storage.statementTimeoutMs` (the connect also by
//! `storage.connectTimeoutMs`), so a hung server fails them with
//! `ERR_STORAGE`; the claimer opens the connection again with backoff.
//!
//! Behind PgBouncer in transaction mode LISTEN does not work: the engine's
//! poll (default 1 s) is the fallback, and nothing here depends on a
//! notification arriving.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use super::{pg_err, quote_ident, tls, PgStore};
use crate::error::{Error, Result};
use crate::job::JobId;

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
  /// Jobs were added; the earliest is due at this time (ms).
  Inserted { earliest: u64 },
  /// A running job was cancelled: its handler should be aborted.
  Cancelled(JobId),
  /// A schedule was saved or deleted (its id): processes read the
  /// schedules again.
  Schedule(String),
  /// The LISTEN connection ended (the listener stops; poll meanwhile).
  Lost(String),
}

impl Notice {
  fn parse(payload: &str) -> Option<Notice> {
    let (kind, rest) = payload.split_once(':')?;
    match kind {
      "i" => rest
        .parse()
        .ok()
        .map(|earliest| Notice::Inserted { earliest }),
      "c" => JobId::parse(rest).map(Notice::Cancelled),
      "s" => Some(Notice::Schedule(rest.to_string())),
      _ => None,
    }
  }
}

/// Due times of delayed jobs heard in insert notices (`i:<earliest>` in the
/// future), so the claimer wakes when they are due instead of at its next
/// poll (up to 1 s late). At most [`DueTimes::MAX`] are kept (the latest
/// dropped: the poll finds those).
#[derive(Debug, Default)]
pub struct DueTimes {
  at: std::collections::BTreeSet<u64>,
}

impl DueTimes {
  pub const MAX: usize = 1024;

  /// Remembers `at` if it is after `now` (cluster clock, ms).
  pub fn add(&mut self, at: u64, now: u64) {
    if at > now {
      self.at.insert(at);
      if self.at.len() > Self::MAX {
        self.at.pop_last();
      }
    }
  }

  /// The earliest remembered time.
  pub fn next(&self) -> Option<u64> {
    self.at.first().copied()
  }

  /// Forgets the times at or before `now`.
  pub fn passed(&mut self, now: u64) {
    while self.at.first().is_some_and(|&t| t <= now) {
      self.at.pop_first();
    }
  }
}

/// Sleeps until `at` on `clock` (ms); forever if `None`.
pub async fn sleep_until_due(at: Option<u64>, clock: &(dyn Fn() -> u64 + Send + Sync)) {
  match at {
    Some(at) => {
      let ms = at.saturating_sub(clock());
      tokio::time::sleep(std::time::Duration::from_millis(ms)).await
    }
    None => std::future::pending().await,
  }
}

/// A process's LISTEN connection; notices arrive on [`Listener::recv`].
pub struct Listener {
  rx: mpsc::UnboundedReceiver<Notice>,
  task: tokio::task::JoinHandle<()>,
  /// Keeps the connection open.
  _client: tokio_postgres::Client,
}

impl Listener {
  /// The next notice (`None` once the connection task ended).
  pub async fn recv(&mut self) -> Option<Notice> {
    self.rx.recv().await
  }

  /// A notice if one is waiting.
  pub fn try_recv(&mut self) -> Option<Notice> {
    self.rx.try_recv().ok()
  }
}

impl Drop for Listener {
  fn drop(&mut self) {
    self.task.abort();
  }
}

impl PgStore {
  /// Sends `payload` on the schema's channel, in `tx`: delivered when it
  /// commits, dropped if it rolls back.
  pub(crate) async fn notify_in(
    &self,
    tx: &deadpool_postgres::Transaction<'_>,
    payload: &str,
  ) -> Result<()> {
    let st = tx
      .prepare_cached("SELECT pg_notify($1, $2)")
      .await
      .map_err(pg_err("notify"))?;
    tx.execute(&st, &[&self.channel, &payload])
      .await
      .map_err(pg_err("notify"))?;
    Ok(())
  }

  /// Opens the LISTEN connection (its own, outside the pool), over TLS
  /// when the pool's connections are (the same connector, [`tls::connector`]).
  ///
  /// A server that accepts the connection but never answers cannot hold
  /// this (nor the claimer, which opens it again after a loss): the connect
  /// is bounded by `storage.connectTimeoutMs` and by
  /// `storage.statementTimeoutMs`, the `LISTEN` statement by
  /// `storage.statementTimeoutMs` ([`PgStore::unpooled_bounded`]); past
  /// either it fails with `ERR_STORAGE` naming the step, and the connection
  /// is closed.
  pub async fn listen(&self) -> Result<Listener> {
    let pc = self.cfg.driver_config()?;
    let limit = self.cfg.connect_timeout;
    let channel = self.channel.clone();
    let connector = tls::connector(&self.cfg)?;
    let (client, rx, task) = self
      .unpooled_bounded("LISTEN connection", async {
        match connector {
          Some(tls) => open(&pc, tls, limit, channel).await,
          None => open(&pc, tokio_postgres::NoTls, limit, channel).await,
        }
        .map_err(|e| self.listen_error(e))
      })
      .await?;
    // The task polls the connection while the client sends the LISTEN
    // (dropped on an error: the task is aborted, the connection closed).
    let listener = Listener {
      rx,
      task,
      _client: client,
    };
    self
      .unpooled_bounded("LISTEN", async {
        listener
          ._client
          .batch_execute(&format!("LISTEN {}", quote_ident(&self.channel)))
          .await
          .map_err(pg_err("LISTEN"))
      })
      .await?;
    Ok(listener)
  }

  fn listen_error(&self, e: Option<tokio_postgres::Error>) -> Error {
    let Some(e) = e else {
      return Error::Storage(format!(
        "PostgreSQL at {} did not answer (LISTEN connection) within {} ms \
         (storage.connectTimeoutMs)",
        self.cfg.target(),
        self.cfg.connect_timeout.as_millis()
      ));
    };
    match tls::failure(&e) {
      Some(m) => Error::Storage(format!(
        "PostgreSQL at {}: LISTEN connection: {m} (storage.ssl)",
        self.cfg.target()
      )),
      None => pg_err("LISTEN connection")(e),
    }
  }
}

/// Connects with `tls` within `limit` (`Err(None)`: timed out) and spawns
/// the task that forwards the notices of `channel`.
async fn open<T>(
  pc: &tokio_postgres::Config,
  tls: T,
  limit: Duration,
  channel: String,
) -> std::result::Result<
  (
    tokio_postgres::Client,
    mpsc::UnboundedReceiver<Notice>,
    tokio::task::JoinHandle<()>,
  ),
  Option<tokio_postgres::Error>,
>
where
  T: MakeTlsConnect<Socket>,
  T::Stream: Send + 'static,
  T::TlsConnect: Send,
  <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
  let (client, mut conn) = tokio::time::timeout(limit, pc.connect(tls))
    .await
    .map_err(|_| None)?
    .map_err(Some)?;
  let (tx, rx) = mpsc::unbounded_channel();
  let task = tokio::spawn(async move {
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    while let Some(m) = messages.next().await {
      match m {
        Ok(tokio_postgres::AsyncMessage::Notification(n)) if n.channel() == channel => {
          if let Some(notice) = Notice::parse(n.payload()) {
            if tx.send(notice).is_err() {
              return;
            }
          }
        }
        Ok(_) => {}
        Err(e) => {
          let _ = tx.send(Notice::Lost(e.to_string()));
          return;
        }
      }
    }
    let _ = tx.send(Notice::Lost("connection closed".into()));
  });
  Ok((client, rx, task))
}

#[cfg(test)]
mod due_tests {
  use super::*;

  #[test]
  fn due_times_in_the_future_are_kept_in_order_and_forgotten_once_passed() {
    let mut d = DueTimes::default();
    assert_eq!(d.next(), None);
    d.add(100, 100); // due now: the claim that follows the notice takes it
    d.add(50, 100);
    assert_eq!(d.next(), None);
    d.add(300, 100);
    d.add(200, 100);
    d.add(200, 100);
    assert_eq!(d.next(), Some(200));
    d.passed(250);
    assert_eq!(d.next(), Some(300));
    d.passed(300);
    assert_eq!(d.next(), None);
  }

  #[test]
  fn at_most_max_due_times_are_kept_the_latest_dropped() {
    let mut d = DueTimes::default();
    for t in 0..(DueTimes::MAX as u64 + 10) {
      d.add(1_000 + t, 0);
    }
    d.passed(1_000 + DueTimes::MAX as u64 - 2);
    assert_eq!(d.next(), Some(1_000 + DueTimes::MAX as u64 - 1));
    d.passed(1_000 + DueTimes::MAX as u64 - 1);
    assert_eq!(d.next(), None, "the latest were dropped");
  }

  #[tokio::test]
  async fn sleep_until_due_waits_on_the_clock_given() {
    // A clock already past the time: no wait at all.
    sleep_until_due(Some(5), &|| 10).await;
    tokio::time::pause();
    let t = tokio::time::Instant::now();
    sleep_until_due(Some(1_250), &|| 1_000).await;
    // Paused time: exactly the wait asked for (tokio rounds up to its 1 ms tick).
    let waited = t.elapsed();
    assert!(
      waited >= std::time::Duration::from_millis(250)
        && waited <= std::time::Duration::from_millis(251),
      "{waited:?}"
    );
  }
}

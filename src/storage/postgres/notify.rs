//! Wake-ups across processes: `pg_notify` in the writing transaction (an
//! insert: `i:<earliest due time>`; a cancel of a running job:
//! `c:<id>`), heard on one dedicated LISTEN connection per process.
//!
//! Behind PgBouncer in transaction mode LISTEN does not work: the engine's
//! poll (default 1 s) is the fallback, and nothing here depends on a
//! notification arriving.

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{pg_err, quote_ident, PgStore};
use crate::error::{Error, Result};
use crate::job::JobId;

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
  /// Jobs were added; the earliest is due at this time (ms).
  Inserted { earliest: u64 },
  /// A running job was cancelled: its handler should be aborted.
  Cancelled(JobId),
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
      _ => None,
    }
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

  /// Opens the LISTEN connection (its own, outside the pool).
  pub async fn listen(&self) -> Result<Listener> {
    let pc = self.cfg.driver_config()?;
    if self.cfg.ssl {
      return Err(Error::Storage(
        "PostgreSQL: LISTEN over TLS is not wired yet; the engine polls".into(),
      ));
    }
    let (client, mut conn) =
      tokio::time::timeout(self.cfg.connect_timeout, pc.connect(tokio_postgres::NoTls))
        .await
        .map_err(|_| Error::Storage("PostgreSQL: LISTEN connection timed out".into()))?
        .map_err(pg_err("LISTEN connection"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let channel = self.channel.clone();
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
    // The task polls the connection while the client sends the LISTEN.
    let listener = Listener {
      rx,
      task,
      _client: client,
    };
    listener
      ._client
      .batch_execute(&format!("LISTEN {}", quote_ident(&self.channel)))
      .await
      .map_err(pg_err("LISTEN"))?;
    Ok(listener)
  }
}

//! The `webhook` and `email` alert channels (the `log` channel is the JS
//! side's).
//!
//! Configuration, under `monitoring.alerting` (read by
//! [`ChannelsConfig::from_json`], which takes the `monitoring` section):
//!
//! ```text
//! webhook: {
//!   url: 'https://hooks.example.com/x',   // or urls: [...] (http or https)
//!   headers: { authorization: 'Bearer ...' },
//!   timeoutMs: 5000,                      // per attempt, 1..=300000
//!   retries: 2,                           // further attempts, 0..=10
//!   backoffMs: 500,                       // wait before retry n: backoffMs * 2^n
//! },
//! email: {
//!   host: 'smtp.example.com', port: 587,  // port: 25 / 587 / 465 by `secure`
//!   secure: 'starttls',                   // 'none' | 'starttls' | 'tls'
//!   user: 'me', pass: 'secret',           // both or neither
//!   from: 'jobwerk <alerts@example.com>',
//!   to: ['ops@example.com'],              // or one string
//!   timeoutMs: 10000, retries: 1, backoffMs: 1000,
//! },
//! ```
//!
//! A [`Dispatcher`] delivers on its own thread (`jobwerk-alerts`), so
//! [`Dispatcher::send`] never blocks: alerts wait in a bounded queue of
//! [`QUEUE_CAPACITY`]; when it is full the alert is dropped and counted
//! (`dropped`). Only fired alerts whose rule lists the channel are sent, and
//! only to configured channels.
//!
//! **Webhook**: one `POST` per configured URL with `content-type:
//! application/json` (unless a configured header sets it) and the configured
//! headers; the body is
//!
//! ```text
//! { "type": "alert", "alert": { ...the Alert, camelCase... },
//!   "service": "jobwerk", "sentAt": <epoch ms> }
//! ```
//!
//! A 2xx status is a success. Transport errors, 408, 429 and 5xx are retried
//! (`retries` times, waiting `backoffMs * 2^n` before retry `n`, capped at
//! a minute); other statuses (3xx, 4xx; redirects are not followed) fail at
//! once. HTTP proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`, ...)
//! are honoured.
//!
//! **Email**: one plain-text message to all recipients, subject
//! `[jobwerk] <severity>: <alert name>`, body lines `Alert`, `Severity`,
//! `Message`, `Metric` (with operator and threshold), `Value`, `Threshold`,
//! `Fired at` (ISO 8601, UTC), `Rule`, `Alert id` and, for a
//! calculation-scoped rule, `Calculation`. A failed send is retried like a
//! webhook's (`backoffMs` defaults to 1000).
//!
//! Each delivery (one URL, or the e-mail) counts once in [`DeliveryStats`] as
//! sent or failed, after its retries; failure messages are kept (the last
//! [`MAX_FAILURES`]) for [`Dispatcher::take_failures`]. Dropping the
//! dispatcher stops the thread: queued deliveries continue for a grace of
//! [`GRACE_MS`], then are abandoned (a request in flight ends with its
//! timeout, on the detached thread).

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Map, Value};
use ureq::http::{HeaderName, HeaderValue, Uri};

use super::alert::{Alert, AlertEvent, AlertEventKind, Channel};
use super::config::{describe, int, known_keys, object, Mk};
use crate::error::{Error, Result};

/// Alerts waiting for delivery at most; more are dropped.
pub const QUEUE_CAPACITY: usize = 256;
/// Failure messages kept for [`Dispatcher::take_failures`].
pub const MAX_FAILURES: usize = 100;
/// How long queued deliveries may continue after the dispatcher is dropped (ms).
pub const GRACE_MS: u64 = 1_000;
/// Longest wait between two attempts (ms).
const MAX_BACKOFF_MS: u64 = 60_000;
/// Webhook URLs at most.
const MAX_URLS: usize = 20;
/// Longest failure message (characters).
const MESSAGE_CHARS: usize = 500;

/// One webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
  /// An `http://` or `https://` URL.
  pub url: String,
  /// Extra request headers (validated names and values).
  pub headers: Vec<(String, String)>,
  /// Per attempt (ms).
  pub timeout_ms: u64,
  /// Further attempts after a failed one.
  pub retries: u32,
  /// Wait before retry `n` is `backoff_ms * 2^n` (ms).
  pub backoff_ms: u64,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailSecurity {
  /// `none`: plain text (trusted local relays only).
  None,
  /// `starttls`: plain connection upgraded with STARTTLS (required).
  StartTls,
  /// `tls`: TLS from the start (SMTPS, usually port 465).
  Tls,
}

/// The e-mail channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
  pub host: String,
  pub port: u16,
  pub security: EmailSecurity,
  pub username: Option<String>,
  pub password: Option<String>,
  /// A mailbox (`a@b.c` or `Name <a@b.c>`), validated.
  pub from: String,
  /// At least one mailbox, validated.
  pub to: Vec<String>,
  /// Per attempt (ms).
  pub timeout_ms: u64,
  /// Further attempts after a failed one.
  pub retries: u32,
  /// Wait before retry `n` is `backoff_ms * 2^n` (ms).
  pub backoff_ms: u64,
}

/// The configured channels (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelsConfig {
  pub webhooks: Vec<WebhookConfig>,
  pub email: Option<EmailConfig>,
}

/// Deliveries so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStats {
  pub webhook_sent: u64,
  pub webhook_failed: u64,
  pub email_sent: u64,
  pub email_failed: u64,
  /// Alerts not queued: the queue was full (or the thread could not start).
  pub dropped: u64,
  pub last_error: Option<String>,
}

/// A present, non-null key.
fn get<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
  m.get(k).filter(|v| !v.is_null())
}

/// A non-empty string of at most `max` characters.
fn string(v: &Value, field: &str, max: usize, mk: Mk) -> Result<String> {
  match v.as_str() {
    Some(s) if !s.is_empty() && s.chars().count() <= max => Ok(s.to_string()),
    _ => Err(mk(format!(
      "{field} must be a non-empty string of at most {max} characters, got {}",
      describe(v)
    ))),
  }
}

/// An `http(s)://host...` URL.
fn url(v: &Value, field: &str, mk: Mk) -> Result<String> {
  let bad = || {
    mk(format!(
      "{field} must be an http:// or https:// URL, got {}",
      describe(v)
    ))
  };
  let s = v.as_str().ok_or_else(bad)?;
  let u: Uri = s.parse().map_err(|_| bad())?;
  let scheme_ok = matches!(u.scheme_str(), Some("http") | Some("https"));
  let host_ok = u.host().is_some_and(|h| !h.is_empty());
  if scheme_ok && host_ok {
    Ok(s.to_string())
  } else {
    Err(bad())
  }
}

/// A mailbox (`a@b.c` or `Name <a@b.c>`).
fn mailbox(v: &Value, field: &str, mk: Mk) -> Result<String> {
  let bad = || {
    mk(format!(
      "{field} must be an e-mail address, got {}",
      describe(v)
    ))
  };
  let s = v.as_str().ok_or_else(bad)?;
  s.parse::<Mailbox>().map_err(|_| bad())?;
  Ok(s.to_string())
}

fn webhook_from_json(v: &Value, mk: Mk) -> Result<Vec<WebhookConfig>> {
  let f = "monitoring.alerting.webhook";
  let Some(m) = object(Some(v), f, mk)? else {
    return Ok(Vec::new());
  };
  known_keys(
    m,
    f,
    &[
      "url",
      "urls",
      "headers",
      "timeoutMs",
      "retries",
      "backoffMs",
    ],
    mk,
  )?;
  let mut urls = Vec::new();
  match (get(m, "url"), get(m, "urls")) {
    (Some(_), Some(_)) => {
      return Err(mk(format!("{f}.url and {f}.urls cannot both be set")));
    }
    (Some(u), None) => urls.push(url(u, &format!("{f}.url"), mk)?),
    (None, Some(list)) => {
      let a = list
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= MAX_URLS);
      let Some(a) = a else {
        return Err(mk(format!(
          "{f}.urls must be an array of 1 to {MAX_URLS} URLs, got {}",
          describe(list)
        )));
      };
      for (i, u) in a.iter().enumerate() {
        urls.push(url(u, &format!("{f}.urls[{i}]"), mk)?);
      }
    }
    (None, None) => return Err(mk(format!("{f}.url (or {f}.urls) is required"))),
  }
  let mut headers = Vec::new();
  if let Some(h) = object(m.get("headers"), &format!("{f}.headers"), mk)? {
    for (k, v) in h {
      let field = format!("{f}.headers.{k}");
      if HeaderName::from_bytes(k.as_bytes()).is_err() {
        return Err(mk(format!("{field} is not a valid header name")));
      }
      let value = v
        .as_str()
        .filter(|s| HeaderValue::from_str(s).is_ok())
        .ok_or_else(|| {
          mk(format!(
            "{field} must be a string valid as a header value, got {}",
            describe(v)
          ))
        })?;
      headers.push((k.clone(), value.to_string()));
    }
  }
  let timeout_ms = match get(m, "timeoutMs") {
    Some(v) => int(v, &format!("{f}.timeoutMs"), 1, 300_000, mk)?,
    None => 5_000,
  };
  let retries = match get(m, "retries") {
    Some(v) => int(v, &format!("{f}.retries"), 0, 10, mk)? as u32,
    None => 2,
  };
  let backoff_ms = match get(m, "backoffMs") {
    Some(v) => int(v, &format!("{f}.backoffMs"), 0, MAX_BACKOFF_MS, mk)?,
    None => 500,
  };
  Ok(
    urls
      .into_iter()
      .map(|url| WebhookConfig {
        url,
        headers: headers.clone(),
        timeout_ms,
        retries,
        backoff_ms,
      })
      .collect(),
  )
}

fn email_from_json(v: &Value, mk: Mk) -> Result<Option<EmailConfig>> {
  let f = "monitoring.alerting.email";
  let Some(m) = object(Some(v), f, mk)? else {
    return Ok(None);
  };
  known_keys(
    m,
    f,
    &[
      "host",
      "port",
      "secure",
      "user",
      "pass",
      "from",
      "to",
      "timeoutMs",
      "retries",
      "backoffMs",
    ],
    mk,
  )?;
  let host = match get(m, "host") {
    Some(v) => string(v, &format!("{f}.host"), 253, mk)?,
    None => return Err(mk(format!("{f}.host is required"))),
  };
  let security = match get(m, "secure") {
    Some(v) => match v.as_str() {
      Some("none") => EmailSecurity::None,
      Some("starttls") => EmailSecurity::StartTls,
      Some("tls") => EmailSecurity::Tls,
      _ => {
        return Err(mk(format!(
          "{f}.secure must be 'none', 'starttls' or 'tls', got {}",
          describe(v)
        )))
      }
    },
    None => EmailSecurity::StartTls,
  };
  let port = match get(m, "port") {
    Some(v) => int(v, &format!("{f}.port"), 1, 65_535, mk)? as u16,
    None => match security {
      EmailSecurity::None => 25,
      EmailSecurity::StartTls => 587,
      EmailSecurity::Tls => 465,
    },
  };
  let username = match get(m, "user") {
    Some(v) => Some(string(v, &format!("{f}.user"), 500, mk)?),
    None => None,
  };
  let password = match get(m, "pass") {
    Some(v) => Some(string(v, &format!("{f}.pass"), 500, mk)?),
    None => None,
  };
  if username.is_some() != password.is_some() {
    return Err(mk(format!("{f}.user and {f}.pass must be set together")));
  }
  let from = match get(m, "from") {
    Some(v) => mailbox(v, &format!("{f}.from"), mk)?,
    None => return Err(mk(format!("{f}.from is required"))),
  };
  let to = match get(m, "to") {
    Some(Value::Array(a)) if !a.is_empty() && a.len() <= 100 => {
      let mut out = Vec::with_capacity(a.len());
      for (i, t) in a.iter().enumerate() {
        out.push(mailbox(t, &format!("{f}.to[{i}]"), mk)?);
      }
      out
    }
    Some(v @ Value::String(_)) => vec![mailbox(v, &format!("{f}.to"), mk)?],
    Some(v) => {
      return Err(mk(format!(
        "{f}.to must be an e-mail address or an array of 1 to 100, got {}",
        describe(v)
      )))
    }
    None => return Err(mk(format!("{f}.to is required"))),
  };
  let timeout_ms = match get(m, "timeoutMs") {
    Some(v) => int(v, &format!("{f}.timeoutMs"), 1, 300_000, mk)?,
    None => 10_000,
  };
  let retries = match get(m, "retries") {
    Some(v) => int(v, &format!("{f}.retries"), 0, 10, mk)? as u32,
    None => 1,
  };
  let backoff_ms = match get(m, "backoffMs") {
    Some(v) => int(v, &format!("{f}.backoffMs"), 0, MAX_BACKOFF_MS, mk)?,
    None => 1_000,
  };
  Ok(Some(EmailConfig {
    host,
    port,
    security,
    username,
    password,
    from,
    to,
    timeout_ms,
    retries,
    backoff_ms,
  }))
}

impl ChannelsConfig {
  /// Reads `alerting.webhook` and `alerting.email` of the `monitoring`
  /// section (`null` or absent: no channel). Other keys are left to
  /// [`MonitorConfig::from_json`](super::MonitorConfig::from_json). Errors are
  /// `ERR_INVALID_CONFIG` naming the key (`monitoring.alerting.email.to[1]`).
  pub fn from_json(v: Option<&Value>) -> Result<ChannelsConfig> {
    let mk: Mk = Error::InvalidConfig;
    let mut c = ChannelsConfig::default();
    let Some(m) = object(v, "monitoring", mk)? else {
      return Ok(c);
    };
    let Some(a) = object(m.get("alerting"), "monitoring.alerting", mk)? else {
      return Ok(c);
    };
    if let Some(w) = get(a, "webhook") {
      c.webhooks = webhook_from_json(w, mk)?;
    }
    if let Some(e) = get(a, "email") {
      c.email = email_from_json(e, mk)?;
    }
    Ok(c)
  }

  /// Whether any channel is configured.
  pub fn is_empty(&self) -> bool {
    self.webhooks.is_empty() && self.email.is_none()
  }
}

/// One queued alert and where it goes.
struct Job {
  alert: Alert,
  webhook: bool,
  email: bool,
}

/// State shared with the thread.
#[derive(Default)]
struct Shared {
  stats: Mutex<DeliveryStats>,
  failures: Mutex<VecDeque<String>>,
  /// Set on drop: deliveries after this instant are abandoned.
  abandon_at: Mutex<Option<Instant>>,
}

impl Shared {
  fn abandoned(&self) -> bool {
    self.abandon_at.lock().is_some_and(|t| Instant::now() >= t)
  }

  fn fail(&self, msg: String, count: impl FnOnce(&mut DeliveryStats)) {
    let msg: String = msg.chars().take(MESSAGE_CHARS).collect();
    {
      let mut s = self.stats.lock();
      count(&mut s);
      s.last_error = Some(msg.clone());
    }
    let mut f = self.failures.lock();
    if f.len() == MAX_FAILURES {
      f.pop_front();
    }
    f.push_back(msg);
  }

  /// Sleeps `ms`, returning false (early) if deliveries are abandoned.
  fn pause(&self, ms: u64) -> bool {
    let end = Instant::now() + Duration::from_millis(ms);
    loop {
      if self.abandoned() {
        return false;
      }
      let now = Instant::now();
      if now >= end {
        return true;
      }
      std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
  }
}

/// Sends alerts to the webhook and email channels on its own thread; see
/// the module docs.
pub struct Dispatcher {
  tx: Option<SyncSender<Job>>,
  has_webhooks: bool,
  has_email: bool,
  shared: Arc<Shared>,
  thread: Option<(JoinHandle<()>, Receiver<()>)>,
}

impl Dispatcher {
  /// Starts the delivery thread (`jobwerk-alerts`), only if a channel is
  /// configured. If the thread cannot be spawned, the error is kept as
  /// `lastError` and alerts are counted as dropped.
  pub fn start(cfg: ChannelsConfig) -> Dispatcher {
    let shared = Arc::new(Shared::default());
    let mut d = Dispatcher {
      tx: None,
      has_webhooks: !cfg.webhooks.is_empty(),
      has_email: cfg.email.is_some(),
      shared: shared.clone(),
      thread: None,
    };
    if cfg.is_empty() {
      return d;
    }
    let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_CAPACITY);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
      .name("jobwerk-alerts".into())
      .spawn(move || {
        let worker = Worker::new(cfg, shared);
        while let Ok(job) = rx.recv() {
          if worker.shared.abandoned() {
            break;
          }
          worker.deliver(&job);
        }
        let _ = done_tx.send(());
      });
    match spawned {
      Ok(h) => {
        d.tx = Some(tx);
        d.thread = Some((h, done_rx));
      }
      Err(e) => {
        d.shared.stats.lock().last_error = Some(format!("cannot start the alert thread: {e}"));
      }
    }
    d
  }

  /// Whether the delivery thread runs.
  pub fn is_active(&self) -> bool {
    self.tx.is_some()
  }

  /// Queues a fired alert for its `webhook`/`email` channels (those that are
  /// configured); anything else is ignored. Never blocks: with the queue
  /// full, the alert is dropped and counted.
  pub fn send(&self, event: &AlertEvent) {
    if event.kind != AlertEventKind::Fired {
      return;
    }
    let ch = &event.alert.channels;
    let webhook = self.has_webhooks && ch.contains(&Channel::Webhook);
    let email = self.has_email && ch.contains(&Channel::Email);
    if !webhook && !email {
      return;
    }
    let Some(tx) = &self.tx else {
      self.shared.stats.lock().dropped += 1;
      return;
    };
    let job = Job {
      alert: event.alert.clone(),
      webhook,
      email,
    };
    match tx.try_send(job) {
      Ok(()) => {}
      Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
        self.shared.stats.lock().dropped += 1;
      }
    }
  }

  /// Deliveries so far.
  pub fn stats(&self) -> DeliveryStats {
    self.shared.stats.lock().clone()
  }

  /// Messages of the deliveries that failed since the last call, oldest
  /// first (at most [`MAX_FAILURES`]).
  pub fn take_failures(&self) -> Vec<String> {
    self.shared.failures.lock().drain(..).collect()
  }
}

impl Drop for Dispatcher {
  fn drop(&mut self) {
    *self.shared.abandon_at.lock() = Some(Instant::now() + Duration::from_millis(GRACE_MS));
    // Disconnects the queue: the thread ends once it is empty.
    self.tx = None;
    if let Some((handle, done)) = self.thread.take() {
      match done.recv_timeout(Duration::from_millis(GRACE_MS + 100)) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
          let _ = handle.join();
        }
        // Still in a request: it ends with its timeout, detached.
        Err(RecvTimeoutError::Timeout) => {}
      }
    }
  }
}

/// Epoch ms now.
fn now_ms() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0, |d| d.as_millis() as u64)
}

/// The webhook's JSON body.
pub fn webhook_body(alert: &Alert, sent_at: u64) -> Value {
  json!({ "type": "alert", "alert": alert, "service": "jobwerk", "sentAt": sent_at })
}

/// The e-mail's subject.
pub fn email_subject(alert: &Alert) -> String {
  format!("[jobwerk] {}: {}", alert.severity.as_str(), alert.name)
}

/// The e-mail's plain-text body.
pub fn email_body(alert: &Alert) -> String {
  let fired = chrono::DateTime::from_timestamp_millis(alert.fired_at as i64).map_or_else(
    || alert.fired_at.to_string(),
    |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
  );
  let op = serde_json::to_value(alert.operator)
    .ok()
    .and_then(|v| v.as_str().map(str::to_string))
    .unwrap_or_default();
  let mut s = format!(
    "Alert: {}\nSeverity: {}\nMessage: {}\nMetric: {} {} {}\nValue: {}\nThreshold: {}\nFired at: {}\nRule: {}\nAlert id: {}\n",
    alert.name,
    alert.severity.as_str(),
    alert.message,
    alert.metric.as_str(),
    op,
    alert.threshold,
    alert.value,
    alert.threshold,
    fired,
    alert.rule_id,
    alert.id,
  );
  if let Some(c) = &alert.calculation {
    s.push_str(&format!("Calculation: {c}\n"));
  }
  s
}

/// Backoff before retry `n` (0-based).
fn backoff(base: u64, n: u32) -> u64 {
  base
    .saturating_mul(1u64.checked_shl(n).unwrap_or(u64::MAX))
    .min(MAX_BACKOFF_MS)
}

/// The delivery thread's state.
struct Worker {
  webhooks: Vec<(WebhookConfig, ureq::Agent)>,
  email: Option<(EmailConfig, std::result::Result<SmtpTransport, String>)>,
  shared: Arc<Shared>,
}

/// One attempt's failure: whether to retry, and why.
struct AttemptError {
  retry: bool,
  msg: String,
}

impl Worker {
  fn new(cfg: ChannelsConfig, shared: Arc<Shared>) -> Worker {
    let webhooks = cfg
      .webhooks
      .into_iter()
      .map(|w| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
          .timeout_global(Some(Duration::from_millis(w.timeout_ms)))
          .http_status_as_error(false)
          .max_redirects(0)
          .user_agent(concat!("jobwerk/", env!("CARGO_PKG_VERSION")))
          .build()
          .into();
        (w, agent)
      })
      .collect();
    let email = cfg.email.map(|e| {
      let t = smtp_transport(&e);
      (e, t)
    });
    Worker {
      webhooks,
      email,
      shared,
    }
  }

  fn deliver(&self, job: &Job) {
    if job.webhook {
      let sent_at = now_ms();
      let body = webhook_body(&job.alert, sent_at).to_string();
      for (w, agent) in &self.webhooks {
        if self.shared.abandoned() {
          return;
        }
        let r = self.attempts(w.retries, w.backoff_ms, || post(w, agent, &body));
        match r {
          Ok(()) => self.shared.stats.lock().webhook_sent += 1,
          Err(msg) => self.shared.fail(
            format!("alert '{}': webhook {} failed: {msg}", job.alert.id, w.url),
            |s| s.webhook_failed += 1,
          ),
        }
      }
    }
    if job.email {
      if let Some((e, transport)) = &self.email {
        if self.shared.abandoned() {
          return;
        }
        let r = match transport {
          Ok(t) => self.attempts(e.retries, e.backoff_ms, || mail(e, t, &job.alert)),
          Err(msg) => Err(msg.clone()),
        };
        match r {
          Ok(()) => self.shared.stats.lock().email_sent += 1,
          Err(msg) => self.shared.fail(
            format!(
              "alert '{}': email via {}:{} failed: {msg}",
              job.alert.id, e.host, e.port
            ),
            |s| s.email_failed += 1,
          ),
        }
      }
    }
  }

  /// Runs `f` up to `1 + retries` times with exponential backoff.
  fn attempts(
    &self,
    retries: u32,
    backoff_ms: u64,
    f: impl Fn() -> std::result::Result<(), AttemptError>,
  ) -> std::result::Result<(), String> {
    let mut n = 0;
    loop {
      match f() {
        Ok(()) => return Ok(()),
        Err(e) if !e.retry || n >= retries => {
          let tries = n + 1;
          let s = if tries == 1 { "" } else { "s" };
          return Err(format!("{} ({tries} attempt{s})", e.msg));
        }
        Err(e) => {
          if !self.shared.pause(backoff(backoff_ms, n)) {
            return Err(format!("{} (abandoned on shutdown)", e.msg));
          }
          n += 1;
        }
      }
    }
  }
}

/// One webhook POST.
fn post(
  w: &WebhookConfig,
  agent: &ureq::Agent,
  body: &str,
) -> std::result::Result<(), AttemptError> {
  let mut req = agent.post(&w.url);
  let own_type = w
    .headers
    .iter()
    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
  if !own_type {
    req = req.header("content-type", "application/json");
  }
  for (k, v) in &w.headers {
    req = req.header(k.as_str(), v.as_str());
  }
  match req.send(body) {
    Ok(resp) => {
      let status = resp.status().as_u16();
      if (200..300).contains(&status) {
        Ok(())
      } else {
        Err(AttemptError {
          retry: status >= 500 || status == 408 || status == 429,
          msg: format!("HTTP {status}"),
        })
      }
    }
    Err(e) => Err(AttemptError {
      retry: true,
      msg: e.to_string(),
    }),
  }
}

/// The SMTP transport (no pool: one connection per message).
fn smtp_transport(e: &EmailConfig) -> std::result::Result<SmtpTransport, String> {
  let tls = match e.security {
    EmailSecurity::None => Tls::None,
    EmailSecurity::StartTls | EmailSecurity::Tls => {
      let p = TlsParameters::new(e.host.clone()).map_err(|x| format!("TLS setup: {x}"))?;
      if e.security == EmailSecurity::Tls {
        Tls::Wrapper(p)
      } else {
        Tls::Required(p)
      }
    }
  };
  let mut b = SmtpTransport::builder_dangerous(e.host.as_str())
    .port(e.port)
    .tls(tls)
    .timeout(Some(Duration::from_millis(e.timeout_ms)));
  if let (Some(u), Some(p)) = (&e.username, &e.password) {
    b = b.credentials(Credentials::new(u.clone(), p.clone()));
  }
  Ok(b.build())
}

/// One e-mail attempt.
fn mail(
  e: &EmailConfig,
  t: &SmtpTransport,
  alert: &Alert,
) -> std::result::Result<(), AttemptError> {
  let fatal = |msg: String| AttemptError { retry: false, msg };
  let from: Mailbox = e.from.parse().map_err(|x| fatal(format!("from: {x}")))?;
  let mut b = Message::builder()
    .from(from)
    .subject(email_subject(alert))
    .header(ContentType::TEXT_PLAIN);
  for to in &e.to {
    let mb: Mailbox = to.parse().map_err(|x| fatal(format!("to: {x}")))?;
    b = b.to(mb);
  }
  let msg = b
    .body(email_body(alert))
    .map_err(|x| fatal(format!("message: {x}")))?;
  t.send(&msg).map(|_| ()).map_err(|x| AttemptError {
    // Permanent (5xx) SMTP replies are not retried.
    retry: !x.is_permanent(),
    msg: x.to_string(),
  })
}

#[cfg(test)]
#[path = "channels_tests.rs"]
mod tests;

//! Tests of the webhook and email channels against tiny HTTP and SMTP
//! servers on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::monitor::alert::{AlertStatus, Metric, Operator, Severity};

fn alert(channels: Vec<Channel>) -> Alert {
  Alert {
    id: "alert-1".into(),
    rule_id: "highErrorRate".into(),
    name: "High error rate".into(),
    title: "High error rate".into(),
    metric: Metric::ErrorRate,
    operator: Operator::Gt,
    threshold: 10.0,
    window: 300_000,
    severity: Severity::Critical,
    calculation: None,
    channels,
    message: "errorRate 25 > 10".into(),
    value: 25.0,
    last_value: 25.0,
    peak_value: 25.0,
    status: AlertStatus::Active,
    fired_at: 1_700_000_000_000,
    acknowledged: false,
    acknowledged_at: None,
    acknowledged_by: None,
    resolved_at: None,
    resolution: None,
  }
}

fn fired(channels: Vec<Channel>) -> AlertEvent {
  AlertEvent {
    kind: AlertEventKind::Fired,
    alert: alert(channels),
  }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
  let l = TcpListener::bind("127.0.0.1:0").expect("bind");
  let p = l.local_addr().expect("addr").port();
  drop(l);
  p
}

/// Waits until `f` holds (5 s at most).
fn wait_for(d: &Dispatcher, f: impl Fn(&DeliveryStats) -> bool) -> DeliveryStats {
  let end = Instant::now() + Duration::from_secs(5);
  loop {
    let s = d.stats();
    if f(&s) || Instant::now() > end {
      return s;
    }
    thread::sleep(Duration::from_millis(5));
  }
}

struct Request {
  line: String,
  headers: Vec<(String, String)>,
  body: String,
}

impl Request {
  fn header(&self, k: &str) -> Option<&str> {
    self
      .headers
      .iter()
      .find(|(n, _)| n.eq_ignore_ascii_case(k))
      .map(|(_, v)| v.as_str())
  }
}

fn read_request(s: &TcpStream) -> Request {
  let mut r = BufReader::new(s);
  let mut line = String::new();
  r.read_line(&mut line).expect("request line");
  let mut headers = Vec::new();
  loop {
    let mut h = String::new();
    r.read_line(&mut h).expect("header");
    let h = h.trim_end();
    if h.is_empty() {
      break;
    }
    if let Some((k, v)) = h.split_once(':') {
      headers.push((k.trim().to_string(), v.trim().to_string()));
    }
  }
  let mut req = Request {
    line: line.trim_end().to_string(),
    headers,
    body: String::new(),
  };
  let len: usize = req
    .header("content-length")
    .and_then(|v| v.parse().ok())
    .unwrap_or(0);
  let mut body = vec![0; len];
  r.read_exact(&mut body).expect("body");
  req.body = String::from_utf8(body).expect("utf-8 body");
  req
}

/// Answers one request per status in `statuses`, reporting each request.
fn http_server(statuses: Vec<u16>) -> (String, mpsc::Receiver<Request>) {
  let l = TcpListener::bind("127.0.0.1:0").expect("bind");
  let url = format!("http://{}/hooks/alert", l.local_addr().expect("addr"));
  let (tx, rx) = mpsc::channel();
  thread::spawn(move || {
    for status in statuses {
      let Ok((mut s, _)) = l.accept() else { return };
      let req = read_request(&s);
      let reason = if status == 200 { "OK" } else { "Error" };
      let _ = write!(
        s,
        "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
      );
      let _ = s.flush();
      let _ = tx.send(req);
    }
  });
  (url, rx)
}

fn webhook(url: &str, retries: u32) -> ChannelsConfig {
  ChannelsConfig {
    webhooks: vec![WebhookConfig {
      url: url.into(),
      headers: vec![("x-token".into(), "s3cret".into())],
      timeout_ms: 2_000,
      retries,
      backoff_ms: 10,
    }],
    email: None,
  }
}

#[test]
fn webhook_posts_the_alert_as_json() {
  let (url, rx) = http_server(vec![200]);
  let d = Dispatcher::start(webhook(&url, 0));
  assert!(d.is_active());
  d.send(&fired(vec![Channel::Log, Channel::Webhook]));
  let req = rx.recv_timeout(Duration::from_secs(5)).expect("a request");
  assert_eq!(req.line, "POST /hooks/alert HTTP/1.1");
  assert_eq!(req.header("content-type"), Some("application/json"));
  assert_eq!(req.header("x-token"), Some("s3cret"));
  let body: Value = serde_json::from_str(&req.body).expect("JSON body");
  assert_eq!(body["type"], "alert");
  assert_eq!(body["service"], "jobwerk");
  assert!(body["sentAt"]
    .as_u64()
    .is_some_and(|t| t > 1_700_000_000_000));
  assert_eq!(body["alert"]["id"], "alert-1");
  assert_eq!(body["alert"]["ruleId"], "highErrorRate");
  assert_eq!(body["alert"]["severity"], "critical");
  assert_eq!(body["alert"]["value"], 25.0);
  assert_eq!(body["alert"]["channels"], json!(["log", "webhook"]));
  let s = wait_for(&d, |s| s.webhook_sent == 1);
  assert_eq!(s.webhook_sent, 1);
  assert_eq!(s.webhook_failed, 0);
  assert!(d.take_failures().is_empty());
}

#[test]
fn webhook_retries_on_500() {
  let (url, rx) = http_server(vec![500, 500, 200]);
  let d = Dispatcher::start(webhook(&url, 3));
  d.send(&fired(vec![Channel::Webhook]));
  let s = wait_for(&d, |s| s.webhook_sent == 1);
  assert_eq!((s.webhook_sent, s.webhook_failed), (1, 0));
  let reqs: Vec<Request> = rx.try_iter().collect();
  assert_eq!(reqs.len(), 3);
  assert_eq!(reqs[0].body, reqs[2].body);
}

#[test]
fn webhook_gives_up_after_its_retries() {
  let (url, rx) = http_server(vec![500, 503]);
  let d = Dispatcher::start(webhook(&url, 1));
  d.send(&fired(vec![Channel::Webhook]));
  let s = wait_for(&d, |s| s.webhook_failed == 1);
  assert_eq!((s.webhook_sent, s.webhook_failed), (0, 1));
  assert_eq!(rx.try_iter().count(), 2);
  let f = d.take_failures();
  assert_eq!(f.len(), 1);
  assert!(
    f[0].contains("HTTP 503") && f[0].contains("2 attempts"),
    "{f:?}"
  );
  assert_eq!(s.last_error.as_deref(), Some(f[0].as_str()));
  assert!(d.take_failures().is_empty());
}

#[test]
fn unreachable_webhook_fails_fast_without_blocking_send() {
  let url = format!("http://127.0.0.1:{}/x", closed_port());
  let d = Dispatcher::start(webhook(&url, 0));
  let t = Instant::now();
  d.send(&fired(vec![Channel::Webhook]));
  // Sending only queues the alert (wide bound: the machine may preempt this thread).
  assert!(
    t.elapsed() < Duration::from_millis(500),
    "{:?}",
    t.elapsed()
  );
  let s = wait_for(&d, |s| s.webhook_failed == 1);
  assert!(t.elapsed() < Duration::from_secs(2));
  assert_eq!((s.webhook_sent, s.webhook_failed), (0, 1));
  let f = d.take_failures();
  assert_eq!(f.len(), 1);
  assert!(f[0].contains(&url), "{f:?}");
}

#[test]
fn full_queue_drops_and_counts() {
  // A server that accepts and never answers: the first delivery hangs.
  let l = TcpListener::bind("127.0.0.1:0").expect("bind");
  let url = format!("http://{}/", l.local_addr().expect("addr"));
  let d = Dispatcher::start(webhook(&url, 0));
  let t = Instant::now();
  for _ in 0..QUEUE_CAPACITY + 20 {
    d.send(&fired(vec![Channel::Webhook]));
  }
  // A send that waited for the hung first delivery would take its 2 s timeout.
  assert!(
    t.elapsed() < Duration::from_millis(1_000),
    "{:?}",
    t.elapsed()
  );
  let dropped = d.stats().dropped;
  assert!((19..=20).contains(&dropped), "{dropped}");
  let t = Instant::now();
  drop(d);
  assert!(t.elapsed() < Duration::from_millis(GRACE_MS + 1_000));
  drop(l);
}

#[test]
fn ignores_resolved_and_unconfigured_channels() {
  let (url, rx) = http_server(vec![200]);
  let d = Dispatcher::start(webhook(&url, 0));
  d.send(&fired(vec![Channel::Log, Channel::Email]));
  let mut resolved = fired(vec![Channel::Webhook]);
  resolved.kind = AlertEventKind::Resolved;
  d.send(&resolved);
  thread::sleep(Duration::from_millis(100));
  assert_eq!(d.stats(), DeliveryStats::default());
  assert!(rx.try_recv().is_err());

  let none = Dispatcher::start(ChannelsConfig::default());
  assert!(!none.is_active());
  none.send(&fired(vec![Channel::Webhook, Channel::Email]));
  assert_eq!(none.stats(), DeliveryStats::default());
}

struct Mail {
  from: String,
  rcpt: Vec<String>,
  data: String,
}

/// Speaks enough SMTP (no TLS, no auth) for one session; reports the message.
fn smtp_server() -> (u16, mpsc::Receiver<Mail>) {
  let l = TcpListener::bind("127.0.0.1:0").expect("bind");
  let port = l.local_addr().expect("addr").port();
  let (tx, rx) = mpsc::channel();
  thread::spawn(move || {
    let Ok((s, _)) = l.accept() else { return };
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut mail = Mail {
      from: String::new(),
      rcpt: Vec::new(),
      data: String::new(),
    };
    let _ = w.write_all(b"220 localhost ESMTP test\r\n");
    loop {
      let mut line = String::new();
      if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
      }
      let cmd = line.trim_end().to_string();
      let upper = cmd.to_ascii_uppercase();
      let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
        b"250-localhost\r\n250 8BITMIME\r\n"
      } else if upper.starts_with("MAIL FROM:") {
        mail.from = cmd[10..].to_string();
        b"250 OK\r\n"
      } else if upper.starts_with("RCPT TO:") {
        mail.rcpt.push(cmd[8..].to_string());
        b"250 OK\r\n"
      } else if upper == "DATA" {
        let _ = w.write_all(b"354 go ahead\r\n");
        loop {
          let mut d = String::new();
          if r.read_line(&mut d).unwrap_or(0) == 0 {
            return;
          }
          if d == ".\r\n" {
            break;
          }
          mail.data.push_str(&d);
        }
        b"250 queued\r\n"
      } else if upper == "QUIT" {
        let _ = w.write_all(b"221 bye\r\n");
        let _ = tx.send(mail);
        return;
      } else {
        b"250 OK\r\n"
      };
      let _ = w.write_all(reply);
    }
  });
  (port, rx)
}

fn email(port: u16) -> EmailConfig {
  EmailConfig {
    host: "127.0.0.1".into(),
    port,
    security: EmailSecurity::None,
    username: None,
    password: None,
    from: "jobwerk <alerts@example.com>".into(),
    to: vec!["ops@example.com".into(), "Dev <dev@example.com>".into()],
    timeout_ms: 2_000,
    retries: 0,
    backoff_ms: 10,
  }
}

#[test]
fn email_is_sent_over_smtp() {
  let (port, rx) = smtp_server();
  let d = Dispatcher::start(ChannelsConfig {
    webhooks: Vec::new(),
    email: Some(email(port)),
  });
  d.send(&fired(vec![Channel::Email]));
  let m = rx.recv_timeout(Duration::from_secs(5)).expect("a message");
  assert_eq!(m.from, "<alerts@example.com>");
  assert_eq!(m.rcpt, vec!["<ops@example.com>", "<dev@example.com>"]);
  assert!(
    m.data
      .contains("Subject: [jobwerk] critical: High error rate\r\n"),
    "{}",
    m.data
  );
  for h in [
    "From: jobwerk <alerts@example.com>\r\n",
    "To: ops@example.com, Dev <dev@example.com>\r\n",
  ] {
    assert!(m.data.contains(h), "{h} in {}", m.data);
  }
  assert!(m.data.contains("Content-Type: text/plain"), "{}", m.data);
  for line in [
    "Alert: High error rate",
    "Severity: critical",
    "Message: errorRate 25 > 10",
    "Value: 25",
    "Threshold: 10",
    "Fired at: 2023-11-14T22:13:20.000Z",
  ] {
    assert!(m.data.contains(line), "{line} in {}", m.data);
  }
  let s = wait_for(&d, |s| s.email_sent == 1);
  assert_eq!((s.email_sent, s.email_failed), (1, 0));
}

#[test]
fn unreachable_smtp_host_counts_as_failed() {
  let d = Dispatcher::start(ChannelsConfig {
    webhooks: Vec::new(),
    email: Some(email(closed_port())),
  });
  let t = Instant::now();
  d.send(&fired(vec![Channel::Email]));
  assert!(
    t.elapsed() < Duration::from_millis(500),
    "{:?}",
    t.elapsed()
  );
  let s = wait_for(&d, |s| s.email_failed == 1);
  assert_eq!((s.email_sent, s.email_failed), (0, 1));
  let f = d.take_failures();
  assert_eq!(f.len(), 1);
  assert!(f[0].contains("email via 127.0.0.1"), "{f:?}");
}

#[test]
fn email_text() {
  let mut a = alert(vec![Channel::Email]);
  a.calculation = Some("invoice".into());
  assert_eq!(email_subject(&a), "[jobwerk] critical: High error rate");
  let b = email_body(&a);
  assert!(b.contains("Metric: errorRate > 10\n"), "{b}");
  assert!(b.contains("Calculation: invoice\n"), "{b}");
}

fn cfg(alerting: Value) -> Result<ChannelsConfig> {
  ChannelsConfig::from_json(Some(&json!({ "alerting": alerting })))
}

fn err(alerting: Value) -> String {
  match cfg(alerting) {
    Err(Error::InvalidConfig(m)) => m,
    other => panic!("expected InvalidConfig, got {other:?}"),
  }
}

#[test]
fn config_reads_webhook_and_email() {
  assert_eq!(
    ChannelsConfig::from_json(None).ok(),
    Some(ChannelsConfig::default())
  );
  assert_eq!(cfg(json!({})).ok(), Some(ChannelsConfig::default()));
  let c = cfg(json!({
    "webhook": { "urls": ["https://a.example/x", "http://b.example:8080/y"],
                 "headers": { "Authorization": "Bearer t" }, "timeoutMs": 100, "retries": 0 },
    "email": { "host": "smtp.example.com", "secure": "tls", "user": "u", "pass": "p",
               "from": "a@example.com", "to": "b@example.com" },
  }))
  .expect("valid");
  assert_eq!(c.webhooks.len(), 2);
  assert_eq!(c.webhooks[1].url, "http://b.example:8080/y");
  assert_eq!(
    c.webhooks[0].headers,
    vec![("Authorization".into(), "Bearer t".into())]
  );
  assert_eq!((c.webhooks[0].timeout_ms, c.webhooks[0].retries), (100, 0));
  assert_eq!(c.webhooks[0].backoff_ms, 500);
  let e = c.email.expect("email");
  assert_eq!((e.port, e.security), (465, EmailSecurity::Tls));
  assert_eq!(e.to, vec!["b@example.com".to_string()]);
  assert_eq!(e.username.as_deref(), Some("u"));
  let c = cfg(json!({ "webhook": { "url": "http://x" },
    "email": { "host": "h", "from": "a@b.c", "to": ["c@d.e"] } }))
  .expect("valid");
  assert_eq!(
    (c.webhooks[0].timeout_ms, c.webhooks[0].retries),
    (5_000, 2)
  );
  let e = c.email.expect("email");
  assert_eq!((e.port, e.security), (587, EmailSecurity::StartTls));
}

#[test]
fn config_errors_name_the_key() {
  let w = "monitoring.alerting.webhook";
  let e = "monitoring.alerting.email";
  for (alerting, key) in [
    (json!({ "webhook": 3 }), w.to_string()),
    (json!({ "webhook": {} }), format!("{w}.url")),
    (
      json!({ "webhook": { "url": "ftp://x/y" } }),
      format!("{w}.url"),
    ),
    (
      json!({ "webhook": { "url": "not a url" } }),
      format!("{w}.url"),
    ),
    (
      json!({ "webhook": { "urls": ["http://a", "/relative"] } }),
      format!("{w}.urls[1]"),
    ),
    (json!({ "webhook": { "urls": [] } }), format!("{w}.urls")),
    (
      json!({ "webhook": { "url": "http://a", "timeoutMs": 0 } }),
      format!("{w}.timeoutMs"),
    ),
    (
      json!({ "webhook": { "url": "http://a", "retries": -1 } }),
      format!("{w}.retries"),
    ),
    (
      json!({ "webhook": { "url": "http://a", "headers": { "x": 1 } } }),
      format!("{w}.headers.x"),
    ),
    (
      json!({ "webhook": { "url": "http://a", "headers": { "bad name": "v" } } }),
      format!("{w}.headers.bad name"),
    ),
    (
      json!({ "webhook": { "url": "http://a", "bogus": 1 } }),
      format!("{w}.bogus"),
    ),
    (
      json!({ "email": { "from": "a@b.c", "to": "c@d.e" } }),
      format!("{e}.host"),
    ),
    (
      json!({ "email": { "host": "h", "from": "nope", "to": "c@d.e" } }),
      format!("{e}.from"),
    ),
    (
      json!({ "email": { "host": "h", "from": "a@b.c", "to": ["c@d.e", "x"] } }),
      format!("{e}.to[1]"),
    ),
    (
      json!({ "email": { "host": "h", "from": "a@b.c", "to": [] } }),
      format!("{e}.to"),
    ),
    (
      json!({ "email": { "host": "h", "from": "a@b.c", "to": "c@d.e", "secure": "ssl" } }),
      format!("{e}.secure"),
    ),
    (
      json!({ "email": { "host": "h", "from": "a@b.c", "to": "c@d.e", "port": 70000 } }),
      format!("{e}.port"),
    ),
    (
      json!({ "email": { "host": "h", "from": "a@b.c", "to": "c@d.e", "user": "u" } }),
      format!("{e}.user"),
    ),
  ] {
    let m = err(alerting.clone());
    assert!(m.starts_with(&key), "{alerting}: {m}");
  }
  assert!(matches!(
    ChannelsConfig::from_json(Some(&json!({ "alerting": 1 }))),
    Err(Error::InvalidConfig(m)) if m.starts_with("monitoring.alerting")
  ));
}

#[test]
fn https_webhook_speaks_tls() {
  // The first bytes a TLS client sends: a handshake record (0x16 0x03 ..).
  let l = TcpListener::bind("127.0.0.1:0").expect("bind");
  let url = format!("https://{}/x", l.local_addr().expect("addr"));
  let (tx, rx) = mpsc::channel();
  thread::spawn(move || {
    if let Ok((mut s, _)) = l.accept() {
      let mut b = [0u8; 2];
      if s.read_exact(&mut b).is_ok() {
        let _ = tx.send(b);
      }
    }
  });
  let d = Dispatcher::start(webhook(&url, 0));
  d.send(&fired(vec![Channel::Webhook]));
  let b = rx
    .recv_timeout(Duration::from_secs(5))
    .expect("a ClientHello");
  assert_eq!(b, [0x16, 0x03]);
  let s = wait_for(&d, |s| s.webhook_failed == 1);
  assert_eq!((s.webhook_sent, s.webhook_failed), (0, 1));
}

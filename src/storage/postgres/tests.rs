//! Tests against the PostgreSQL at 127.0.0.1:5432 (database `test`, user
//! `postgres`): each creates its own schema and drops it. When no server
//! answers, each test prints why and passes without checking anything.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use super::test_env::{admin, cfg, fx, ids, jobs, peer, server_up, unique, Fx, T0};
use super::*;
use crate::job::{IdGen, JobErrorCode};
use crate::storage::{FailKind, JobFilter, Names};

fn storage_msg(r: Result<PgStore>) -> String {
  match r {
    Err(Error::Storage(m)) => m,
    Err(e) => panic!("expected ERR_STORAGE, got {e:?}"),
    Ok(_) => panic!("expected ERR_STORAGE, connected"),
  }
}

// ---------------------------------------------------------------- config

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named() {
  // A port nobody listens on: bind one, then close it.
  let port = {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
  };
  let mut c = cfg("jobwerk");
  c.port = port;
  let m = storage_msg(PgStore::connect(&c).await);
  assert!(
    m.contains(&format!("127.0.0.1:{port}/test is unreachable")) && m.contains("storage.host"),
    "{m}"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_within_the_connect_timeout() {
  let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
  let port = l.local_addr().expect("addr").port();
  // Accepts, reads, never answers.
  let hold = std::thread::spawn(move || {
    let (mut s, _) = l.accept().expect("accept");
    let mut buf = [0u8; 256];
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.read(&mut buf);
    std::thread::sleep(Duration::from_millis(800));
  });
  let mut c = cfg("jobwerk");
  c.port = port;
  c.connect_timeout = Duration::from_millis(200);
  let m = storage_msg(PgStore::connect(&c).await);
  assert!(
    m.contains("did not answer within 200 ms (storage.connectTimeoutMs)"),
    "{m}"
  );
  hold.join().expect("holder");
}

/// A wrong password. The shared server trusts every local connection (its
/// pg_hba has no password rule), so a role with a password would get in
/// with any; a minimal server speaking the protocol's startup asks for a
/// password and refuses it with SQLSTATE 28P01, as PostgreSQL does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_named() {
  let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
  let port = l.local_addr().expect("addr").port();
  let server = std::thread::spawn(move || {
    let (mut s, _) = l.accept().expect("accept");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("startup length");
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    s.read_exact(&mut rest).expect("startup");
    // AuthenticationCleartextPassword
    s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).expect("auth");
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("password head");
    assert_eq!(head[0], b'p');
    let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
    let mut pw = vec![0u8; n];
    s.read_exact(&mut pw).expect("password");
    let mut body = Vec::new();
    for (f, v) in [
      (b'S', "FATAL"),
      (b'V', "FATAL"),
      (b'C', "28P01"),
      (b'M', "password authentication failed for user \"app\""),
    ] {
      body.push(f);
      body.extend_from_slice(v.as_bytes());
      body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    s.write_all(&msg).expect("error");
    String::from_utf8_lossy(&pw)
      .trim_end_matches('\0')
      .to_string()
  });
  let mut c = cfg("jobwerk");
  c.port = port;
  c.user = "app".into();
  c.password = Some("wrong".into());
  let m = storage_msg(PgStore::connect(&c).await);
  assert!(
    m.contains("refused the password of user 'app' (storage.password)"),
    "{m}"
  );
  assert!(!m.contains("wrong"), "the password is not echoed: {m}");
  assert_eq!(server.join().expect("server"), "wrong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_named() {
  if !server_up() {
    return;
  }
  let mut c = cfg("jobwerk");
  c.database = format!("jobwerk_no_such_db_{}", std::process::id());
  let m = storage_msg(PgStore::connect(&c).await);
  assert!(
    m.contains(&format!(
      "has no database '{}' (storage.database)",
      c.database
    )),
    "{m}"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_against_a_server_without_tls_is_a_storage_error() {
  if !server_up() {
    return;
  }
  let mut c = cfg("jobwerk");
  c.ssl = true;
  let m = storage_msg(PgStore::connect(&c).await);
  assert!(m.starts_with("PostgreSQL at 127.0.0.1:5432/test"), "{m}");
}

// ------------------------------------------------------------ migrations

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_a_newer_schema_is_refused() {
  let Some(fx) = fx("mig").await else { return };
  assert_eq!(fx.store.migrate().await.expect("again"), SCHEMA_VERSION);
  // Two processes starting together: the advisory lock serialises them.
  let (a, b) = tokio::join!(peer(&fx), peer(&fx));
  drop((a, b));
  let c = fx.store.client().await.expect("client");
  c.batch_execute(&format!(
    "UPDATE {}.meta SET value = 99 WHERE key = 'schema_version'",
    quote_ident(&fx.schema)
  ))
  .await
  .expect("bump");
  drop(c);
  let m = storage_msg(PgStore::connect(&cfg(&fx.schema)).await);
  assert!(
    m.contains("schema version 99") && m.contains(&format!("schema version {SCHEMA_VERSION}")),
    "{m}"
  );
}

/// A schema of version 1 (written by the first preview) with live keyed
/// jobs moves to version 2 at start, and its keys keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_is_upgraded_with_its_keyed_jobs() {
  if !server_up() {
    return;
  }
  let schema = unique("v1");
  let q = quote_ident(&schema);
  admin(format!(
    "CREATE SCHEMA {q}; \
     CREATE TABLE {q}.meta (key text PRIMARY KEY, value bigint NOT NULL); \
     INSERT INTO {q}.meta VALUES ('schema_version', 1); {}",
    schema::expand(schema::MIGRATIONS[0], &q)
  ));
  let id = ids(1, T0)[0];
  admin(format!(
    "INSERT INTO {q}.job (id, name, state, priority, run_at, created_at, max_retries, \
       timeout_ms, backoff_kind, backoff_delay_ms, backoff_max_ms, backoff_jitter, data, key) \
     VALUES ('{id}', 'keyed', 1, 0, {T0}, {T0}, 0, 0, 0, 0, 0, 0, '{{}}', 'k')"
  ));
  let store = PgStore::connect(&cfg(&schema)).await.expect("connect");
  assert_eq!(store.migrate().await.expect("again"), SCHEMA_VERSION);
  let g = ids(1, T0 + 1);
  let out = store
    .insert(&[keyed(g[0], "k", 1, true, false)], T0)
    .await
    .expect("insert");
  assert_eq!((out[0].id, out[0].added), (id, false));
  assert_eq!(store.resolve(g[0]).await.expect("resolve"), Some(id));
  let got = store.get(id).await.expect("get").expect("there");
  assert_eq!(&*got.job.data, "{\"i\":1}");
  store.close();
  admin(format!("DROP SCHEMA IF EXISTS {q} CASCADE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_name_with_quotes_and_sql_works() {
  if !server_up() {
    return;
  }
  let schema = format!("{}\"; DROP TABLE x; --", unique("q"));
  let store = PgStore::connect(&cfg(&schema)).await.expect("connect");
  let fx = Fx { store, schema };
  let js = jobs(3, "it's \"quoted\"; DROP TABLE job; --", T0);
  fx.store.insert(&js, T0).await.expect("insert");
  let got = fx
    .store
    .claim(&ClaimOptions::new(1, 10), T0)
    .await
    .expect("claim");
  assert_eq!(got.len(), 3);
  assert_eq!(got[0].name, "it's \"quoted\"; DROP TABLE job; --");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_superuser_is_needed() {
  if !server_up() {
    return;
  }
  let role = unique("role");
  admin(format!(
    "CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; GRANT CREATE ON DATABASE test TO {r}",
    r = quote_ident(&role)
  ));
  let schema = unique("nosu");
  let mut c = cfg(&schema);
  c.user = role.clone();
  let res = PgStore::connect(&c).await;
  let ok = match &res {
    Ok(s) => {
      let js = jobs(2, "n", T0);
      let r = s.insert(&js, T0).await.map(|v| v.len());
      s.close();
      r
    }
    Err(e) => Err(e.clone()),
  };
  admin(format!(
    "DROP SCHEMA IF EXISTS {s} CASCADE; REVOKE CREATE ON DATABASE test FROM {r}; DROP ROLE {r}",
    s = quote_ident(&schema),
    r = quote_ident(&role)
  ));
  assert_eq!(ok.expect("a plain role migrates and inserts"), 2);
}

// ---------------------------------------------------------------- insert

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_added_and_notified_after_commit() {
  let Some(fx) = fx("ins").await else { return };
  let mut l = fx.store.listen().await.expect("listen");
  let mut js = jobs(500, "batch", T0);
  js[7].run_at = T0 - 5;
  js[7].priority = Priority::High;
  js[7].weight = -1;
  js[8].context = Some("{\"user\":1}".into());
  let out = fx.store.insert(&js, T0).await.expect("insert");
  assert_eq!(out.len(), 500);
  assert!(out.iter().zip(&js).all(|(o, j)| o.added && o.id == j.id));
  let n = tokio::time::timeout(Duration::from_secs(10), l.recv())
    .await
    .expect("a notice");
  assert_eq!(n, Some(Notice::Inserted { earliest: T0 - 5 }));
  // One notify per insert call, not per job.
  tokio::time::sleep(Duration::from_millis(100)).await;
  assert_eq!(l.try_recv(), None);
  let got = fx.store.get(js[8].id).await.expect("get").expect("there");
  assert_eq!(got.job.context_json(), "{\"user\":1}");
  assert_eq!(got.job.status, Status::Pending);
  assert_eq!(got.name, "batch");
  // Resending the batch (a commit whose answer was lost) adds nothing.
  let again = fx.store.insert(&js[..3], T0).await.expect("again");
  assert!(again.iter().all(|o| !o.added));
  assert_eq!(
    fx.store.counts().await.expect("counts")[Status::Pending as usize],
    500
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_by_a_live_job_returns_its_id() {
  let Some(fx) = fx("key").await else { return };
  let mut js = jobs(3, "k", T0);
  for j in &mut js {
    j.key = Some("order-1".into());
  }
  let out = fx.store.insert(&js, T0).await.expect("insert");
  assert_eq!(
    out.iter().map(|o| (o.id, o.added)).collect::<Vec<_>>(),
    vec![(js[0].id, true), (js[0].id, false), (js[0].id, false)]
  );
  // Once it finished, the key is free again.
  let c = fx
    .store
    .claim(&ClaimOptions::new(1, 10), T0)
    .await
    .expect("claim");
  let lease = c[0].lease().expect("lease");
  fx.store
    .apply(&[Outcome::completed(lease, "1")], T0)
    .await
    .expect("apply");
  let next = jobs(1, "k", T0 + 1)
    .into_iter()
    .map(|mut j| {
      j.key = Some("order-1".into());
      j
    })
    .collect::<Vec<_>>();
  let out = fx.store.insert(&next, T0 + 1).await.expect("insert");
  assert!(out[0].added && out[0].id == next[0].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_adds_with_one_key_give_one_job() {
  let Some(fx) = fx("race").await else { return };
  let peers = [peer(&fx).await, peer(&fx).await, peer(&fx).await];
  let all = ids(200, T0);
  let mut tasks = Vec::new();
  for (i, id) in all.iter().enumerate() {
    let s = peers[i % 3].clone();
    let mut j = NewJob::new(*id, "race", "{}", T0);
    j.key = Some("the-key".into());
    tasks.push(tokio::spawn(async move { s.insert(&[j], T0).await }));
  }
  let mut got = HashSet::new();
  let mut added = 0;
  for t in tasks {
    let r = t.await.expect("task").expect("insert");
    got.insert(r[0].id);
    added += r[0].added as usize;
  }
  assert_eq!(added, 1);
  assert_eq!(got.len(), 1, "every add returned the one job's id");
  assert_eq!(fx.store.counts().await.expect("counts")[1], 1);
  for p in peers {
    p.close();
  }
}

/// A keyed job with `on_dup`, data and due time `T0 + i`.
fn keyed(id: JobId, key: &str, i: u64, replace: bool, debounce: bool) -> NewJob {
  let mut j = NewJob::new(id, "keyed", &format!("{{\"i\":{i}}}"), T0 + i);
  j.key = Some(key.into());
  j.on_dup = crate::job::OnDup { replace, debounce };
  j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_and_debounce_from_three_stores_at_once_leave_the_last_add() {
  let Some(fx) = fx("replace").await else {
    return;
  };
  let peers = [peer(&fx).await, peer(&fx).await, peer(&fx).await];
  let all = ids(150, T0);
  let mut tasks = Vec::new();
  for (i, id) in all.iter().enumerate() {
    let s = peers[i % 3].clone();
    let j = keyed(*id, "k", i as u64, true, true);
    tasks.push(tokio::spawn(async move { s.insert(&[j], T0).await }));
  }
  let mut holders = HashSet::new();
  for t in tasks {
    holders.insert(t.await.expect("task").expect("insert")[0].id);
  }
  assert_eq!(holders.len(), 1, "every add answered with the one job");
  let holder = *holders.iter().next().expect("one");
  let job = fx.store.get(holder).await.expect("get").expect("there");
  assert_eq!(fx.store.counts().await.expect("counts")[1], 1);
  // Data and due time of one add: the last one committed.
  let i: u64 = serde_json::from_str::<serde_json::Value>(&job.job.data).expect("json")["i"]
    .as_u64()
    .expect("i");
  assert_eq!(job.job.run_at, T0 + i);
  // Every refused id is an alias of the holder, from any store.
  for id in all.iter().filter(|id| **id != holder) {
    assert_eq!(
      peers[0].get(*id).await.expect("get").map(|j| j.job.id),
      Some(holder)
    );
  }
  for p in peers {
    p.close();
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_holder_gets_a_successor_and_its_retry_joins_it() {
  let Some(fx) = fx("successor").await else {
    return;
  };
  let g = ids(6, T0);
  let first = fx
    .store
    .insert(&[keyed(g[0], "k", 0, true, false)], T0)
    .await
    .expect("insert")[0];
  assert!(first.added);
  let mut o = ClaimOptions::new(fx.store.register("h", 1, T0).await.expect("register"), 10);
  o.names = None;
  let running = fx.store.claim(&o, T0).await.expect("claim");
  assert_eq!(running.len(), 1);
  // A skip while it runs answers it; a replace queues a successor; later
  // adds find the successor.
  let out = fx
    .store
    .insert(
      &[
        keyed(g[1], "k", 1, false, false),
        keyed(g[2], "k", 2, true, false),
        keyed(g[3], "k", 3, true, false),
        keyed(g[4], "k", 4, false, false),
      ],
      T0,
    )
    .await
    .expect("insert");
  assert_eq!(
    out.iter().map(|o| (o.id, o.added)).collect::<Vec<_>>(),
    vec![(g[0], false), (g[2], true), (g[2], false), (g[2], false)]
  );
  let succ = fx.store.get(g[2]).await.expect("get").expect("there");
  assert_eq!(&*succ.job.data, "{\"i\":3}");
  // The running holder fails and retries: two pending holders of the key
  // (as on memory and SQLite), not a failed group commit.
  let mut r = running[0].clone();
  r.job.max_retries = 3;
  fx.store
    .apply(
      &[Outcome::failed(
        &r,
        err("again"),
        FailKind::Error {
          unrecoverable: false,
        },
        T0,
        0.0,
      )],
      T0,
    )
    .await
    .expect("apply");
  assert_eq!(fx.store.counts().await.expect("counts")[1], 2);
  // The newest holder answers.
  let out = fx
    .store
    .insert(&[keyed(g[5], "k", 5, false, false)], T0)
    .await
    .expect("insert");
  assert_eq!((out[0].id, out[0].added), (g[2], false));
  // A refused id cancels its holder; prune drops the aliases of the
  // holders it drops.
  assert_eq!(
    fx.store.cancel(g[5], T0).await.expect("cancel"),
    Some(Status::Pending)
  );
  assert_eq!(
    fx.store.get(g[2]).await.expect("get").map(|j| j.job.status),
    Some(Status::Cancelled)
  );
  fx.store.prune(T0, 100).await.expect("prune");
  assert!(fx.store.resolve(g[5]).await.expect("resolve").is_none());
  // An alias of a live job stays.
  assert_eq!(fx.store.resolve(g[1]).await.expect("resolve"), Some(g[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_on_a_refused_id_waits_for_the_holder() {
  let Some(fx) = fx("aliasdep").await else {
    return;
  };
  let g = ids(5, T0);
  let dep_on = |id: JobId, on: JobId| {
    let mut j = NewJob::new(id, "d", "{}", T0);
    j.deps = Some(Dependencies {
      ids: vec![on],
      ignore_failure: false,
    });
    j
  };
  // In one batch: a holder, a duplicate, and a job depending on the
  // duplicate's id.
  let out = fx
    .store
    .insert(
      &[
        keyed(g[0], "k", 0, false, false),
        keyed(g[1], "k", 1, false, false),
        dep_on(g[2], g[1]),
      ],
      T0,
    )
    .await
    .expect("insert");
  assert_eq!(
    out.iter().map(|o| (o.id, o.added)).collect::<Vec<_>>(),
    vec![(g[0], true), (g[0], false), (g[2], true)]
  );
  // In a later batch: another duplicate and a job depending on it.
  let out = fx
    .store
    .insert(&[keyed(g[3], "k", 3, false, false)], T0)
    .await
    .expect("insert");
  assert_eq!(out[0].id, g[0]);
  fx.store
    .insert(&[dep_on(g[4], g[3])], T0)
    .await
    .expect("insert");
  for id in [g[2], g[4]] {
    let j = fx.store.get(id).await.expect("get").expect("there");
    assert_eq!(j.job.status, Status::Waiting);
    assert_eq!(j.job.deps().map(|d| d.ids.clone()), Some(vec![g[0]]));
  }
  // The holder completes: both are released.
  let owner = fx.store.register("h", 1, T0).await.expect("register");
  let mut o = ClaimOptions::new(owner, 10);
  o.names = Some(vec!["keyed".into()]);
  let c = fx.store.claim(&o, T0).await.expect("claim");
  assert_eq!(c.len(), 1);
  fx.store
    .apply(&[Outcome::completed(c[0].lease().expect("lease"), "1")], T0)
    .await
    .expect("apply");
  for id in [g[2], g[4]] {
    assert_eq!(
      fx.store.get(id).await.expect("get").map(|j| j.job.status),
      Some(Status::Pending)
    );
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_per_concurrency_key_runs_across_claimers() {
  let Some(fx) = fx("ckey").await else { return };
  let mut js = jobs(40, "c", T0);
  for (i, j) in js.iter_mut().enumerate() {
    if i % 2 == 0 {
      j.concurrency_key = Some(format!("ck-{}", i % 4));
    }
  }
  fx.store.insert(&js, T0).await.expect("insert");
  let peers = [peer(&fx).await, peer(&fx).await, peer(&fx).await];
  let mut owners = Vec::new();
  for (k, p) in peers.iter().enumerate() {
    owners.push(p.register("h", k as u32, T0).await.expect("register"));
  }
  let mut tasks = Vec::new();
  for (p, owner) in peers.iter().zip(&owners) {
    let p = p.clone();
    let o = ClaimOptions::new(*owner, 40);
    tasks.push(tokio::spawn(async move { p.claim(&o, T0).await }));
  }
  let mut got: Vec<PgJob> = Vec::new();
  for t in tasks {
    got.extend(t.await.expect("task").expect("claim"));
  }
  let keyed: Vec<&PgJob> = got
    .iter()
    .filter(|j| j.job.concurrency_key().is_some())
    .collect();
  // 20 plain jobs all claimed; one job of each of the 2 keys.
  assert_eq!(got.len() - keyed.len(), 20);
  let mut keys: Vec<&str> = keyed
    .iter()
    .filter_map(|j| j.job.concurrency_key())
    .collect();
  keys.sort_unstable();
  assert_eq!(keys, vec!["ck-0", "ck-2"]);
  // Each the first of its key; the next one runs once it finished.
  for j in &keyed {
    let first = js
      .iter()
      .find(|n| n.concurrency_key.as_deref() == j.job.concurrency_key())
      .expect("first");
    assert_eq!(j.job.id, first.id);
  }
  let outcomes: Vec<Outcome> = keyed
    .iter()
    .map(|j| Outcome::completed(j.lease().expect("lease"), "1"))
    .collect();
  fx.store.apply(&outcomes, T0).await.expect("apply");
  let next = peers[0]
    .claim(&ClaimOptions::new(owners[0], 40), T0)
    .await
    .expect("claim");
  assert_eq!(next.len(), 2);
  for p in peers {
    p.close();
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_payload_and_sql_looking_data_round_trip() {
  let Some(fx) = fx("big").await else { return };
  let big = format!("\"{}\"", "x'); DROP TABLE job; --".repeat(1 << 16));
  let mut j = NewJob::new(ids(1, T0)[0], "big", &big, T0);
  j.context = Some("{\"a\":\"'\"}".into());
  fx.store.insert(&[j.clone()], T0).await.expect("insert");
  let got = fx.store.get(j.id).await.expect("get").expect("there");
  assert!(got.job.data.len() > 1 << 20);
  assert_eq!(&*got.job.data, big.as_str());
}

// ----------------------------------------------------------------- claim

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_go_by_priority_then_due_time_then_id_and_lease() {
  let Some(fx) = fx("claim").await else { return };
  let mut js = jobs(6, "c", T0);
  js[0].run_at = T0 + 1_000; // not due
  js[3].weight = -10;
  js[3].priority = Priority::High;
  js[4].run_at = T0 - 100;
  js[5].timeout_ms = 2_000;
  fx.store.insert(&js, T0).await.expect("insert");
  let mut o = ClaimOptions::new(42, 3);
  o.grace_ms = 500;
  o.default_lease_ms = 10_000;
  let a = fx.store.claim(&o, T0).await.expect("claim");
  let order: Vec<JobId> = a.iter().map(|j| j.job.id).collect();
  assert_eq!(order, vec![js[3].id, js[4].id, js[1].id]);
  for j in &a {
    assert_eq!(j.job.status, Status::Running);
    assert_eq!((j.owner, j.job.attempts), (Some(42), 1));
    assert_eq!(j.lease_until, Some(T0 + 10_000 + 500));
    assert_eq!(j.job.started_at, T0);
  }
  let b = fx.store.claim(&o, T0).await.expect("claim");
  assert_eq!(
    b.iter().map(|j| j.job.id).collect::<Vec<_>>(),
    vec![js[2].id, js[5].id]
  );
  assert_eq!(b[1].lease_until, Some(T0 + 2_000 + 500), "timeout + grace");
  // Only calculations asked for.
  let mut o2 = ClaimOptions::new(42, 10);
  o2.names = Some(vec!["other".into()]);
  assert!(fx
    .store
    .claim(&o2, T0 + 2_000)
    .await
    .expect("claim")
    .is_empty());
  o2.names = Some(vec!["c".into()]);
  assert_eq!(
    fx.store.claim(&o2, T0 + 2_000).await.expect("claim").len(),
    1
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_share_a_job() {
  let Some(fx) = fx("skip").await else { return };
  fx.store
    .insert(&jobs(2_000, "s", T0), T0)
    .await
    .expect("insert");
  let mut tasks = Vec::new();
  for owner in 1..=4 {
    let s = peer(&fx).await;
    tasks.push(tokio::spawn(async move {
      let mut mine = Vec::new();
      loop {
        let got = s
          .claim(&ClaimOptions::new(owner, 64), T0)
          .await
          .expect("claim");
        if got.is_empty() {
          s.close();
          return mine;
        }
        mine.extend(got.into_iter().map(|j| j.job.id));
      }
    }));
  }
  let mut seen = HashSet::new();
  for t in tasks {
    for id in t.await.expect("task") {
      assert!(seen.insert(id), "{id} claimed twice");
    }
  }
  assert_eq!(seen.len(), 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_back_jobs_are_pending_again_with_the_attempt_uncounted() {
  let Some(fx) = fx("back").await else { return };
  let js = jobs(3, "h", T0);
  fx.store.insert(&js, T0).await.expect("insert");
  let got = fx
    .store
    .claim(&ClaimOptions::new(7, 3), T0)
    .await
    .expect("claim");
  let leases: Vec<Lease> = got.iter().filter_map(|j| j.lease()).collect();
  let mut stale = leases[0];
  stale.owner = 8;
  assert_eq!(fx.store.hand_back(&[stale], T0).await.expect("back"), 0);
  assert_eq!(fx.store.hand_back(&leases[..2], T0).await.expect("back"), 2);
  let again = fx
    .store
    .claim(&ClaimOptions::new(9, 10), T0)
    .await
    .expect("claim");
  assert_eq!(again.len(), 2);
  assert!(again
    .iter()
    .all(|j| j.job.attempts == 1 && j.owner == Some(9)));
  // The old owner's outcome is fenced.
  let a = fx
    .store
    .apply(&[Outcome::completed(leases[0], "1")], T0)
    .await
    .expect("apply");
  assert_eq!(a.fenced, vec![leases[0].id]);
}

/// The plan of `sql` (prepared with `types`, executed with `args`) in a
/// transaction that first runs `setup` (statistics to plan with, planner
/// settings), rolled back.
async fn explain(store: &PgStore, setup: &str, types: &str, sql: &str, args: &str) -> String {
  let mut c = store.client().await.expect("client");
  let tx = c.transaction().await.expect("begin");
  tx.batch_execute(setup).await.expect("setup");
  tx.batch_execute(&format!("PREPARE jw_plan({types}) AS {sql}"))
    .await
    .expect("prepare");
  let rows = tx
    .query(&format!("EXPLAIN (COSTS OFF) EXECUTE jw_plan({args})"), &[])
    .await
    .expect("explain");
  tx.batch_execute("DEALLOCATE jw_plan")
    .await
    .expect("deallocate");
  tx.rollback().await.expect("rollback");
  rows
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Statistics saying `job` is empty, as a `VACUUM` while jobs run can leave
/// them (seen on a bloat run: every statement planned for an empty table).
fn empty_stats(q: &str) -> String {
  format!(
    "INSERT INTO {q}.job (id, name, state, priority, run_at, created_at, max_retries, \
       timeout_ms, backoff_kind, backoff_delay_ms, backoff_max_ms, backoff_jitter, data, owner) \
     SELECT gen_random_uuid(), 'calc', 1 + (g % 20 = 0)::int, 0, {T0} + g, {T0}, 0, 0, 0, 0, 0, 0, \
       '{{}}', CASE WHEN g % 20 = 0 THEN 1 END FROM generate_series(1, 50000) g; \
     ANALYZE {q}.job; UPDATE pg_class SET reltuples = 0 WHERE oid = '{q}.job'::regclass"
  )
}

/// The plans of `sql` with each statistics (none, and saying `job` is
/// empty) and each plan-cache mode (custom, generic), under `settings`.
async fn plans(fx: &Fx, settings: &str, types: &str, sql: &str, args: &str) -> Vec<String> {
  let q = quote_ident(&fx.schema);
  let mut out = Vec::new();
  for stats in ["SELECT 1".to_string(), empty_stats(&q)] {
    for mode in ["force_custom_plan", "force_generic_plan"] {
      let setup = format!("{stats}; {settings}; SET LOCAL plan_cache_mode = {mode}");
      out.push(explain(&fx.store, &setup, types, sql, args).await);
    }
  }
  out
}

/// Every scan of `job` in `plan` is bounded by an index condition.
fn assert_job_scans_bounded(plan: &str) {
  let lines: Vec<&str> = plan.lines().collect();
  for (i, l) in lines.iter().enumerate() {
    if !(l.contains("Scan") && l.contains(" on job ")) {
      continue;
    }
    assert!(!l.contains("Seq Scan"), "{l} in:\n{plan}");
    let own = lines[i + 1..]
      .iter()
      .take_while(|n| !n.contains("->"))
      .any(|n| n.contains("Index Cond") || n.contains("Recheck Cond"));
    assert!(own, "{l} has no index condition in:\n{plan}");
  }
}

/// The claim's plan does not depend on the table's statistics: with none
/// (autovacuum off, never analysed) and with statistics saying the table
/// is empty (as a `VACUUM` during claims can leave them), it walks
/// `job_ready` in claim order and updates by primary key: no scan of the
/// whole table, no sort of every due job, no join of the table to the
/// chosen ids (a nested loop of that join took seconds per claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_plan_walks_the_ready_index_whatever_the_statistics() {
  let Some(fx) = fx("plan").await else { return };
  for chunk in jobs(3_000, "calc", T0).chunks(1_000) {
    fx.store.insert(chunk, T0).await.expect("insert");
  }
  let q = quote_ident(&fx.schema);
  let sql = claim::claim_sql(&q);
  let types = "bigint, bigint, bigint, text[], bigint, bigint, bigint, bigint";
  let args = format!("{}, 1024, 1, ARRAY['calc'], 1000, 0, {T0}, {T0}", T0 + 1);
  for p in plans(&fx, claim::INDEX_PLAN, types, &sql, &args).await {
    assert!(p.contains("Index Scan using job_ready"), "{p}");
    assert!(p.contains("Index Scan using job_pkey"), "{p}");
    for bad in ["Seq Scan on job", "Sort", "Bitmap", "Join", "Nested Loop"] {
      assert!(!p.contains(bad), "{bad} in:\n{p}");
    }
  }
  let got = fx
    .store
    .claim(&ClaimOptions::new(1, 1_024), T0 + 1)
    .await
    .expect("claim");
  assert_eq!(got.len(), 1_024);
  assert!(got.windows(2).all(|w| w[0].job.id < w[1].job.id));
}

/// The group commit's statement finds each outcome's job by primary key,
/// generic plan or custom, whatever the statistics, and joins the batch in
/// one pass: with statistics saying `job` was empty its generic plan walked
/// the whole primary key against every outcome of the batch (a commit took
/// minutes), and with the ids as an index condition but nested loops
/// allowed it compared every outcome with every job found (~0.3 s per
/// commit of 512).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_plan_finds_jobs_by_id_whatever_the_statistics() {
  let Some(fx) = fx("applyplan").await else {
    return;
  };
  for chunk in jobs(3_000, "calc", T0).chunks(1_000) {
    fx.store.insert(chunk, T0).await.expect("insert");
  }
  let q = quote_ident(&fx.schema);
  let sql = complete::apply_sql(&q);
  let types = "uuid[], bigint[], int[], smallint[], text[], text[], bigint[], bigint";
  let id = ids(1, T0)[0];
  let args = format!(
    "ARRAY['{id}']::uuid[], ARRAY[1]::bigint[], ARRAY[1], ARRAY[3]::smallint[], \
     ARRAY['1'], ARRAY[NULL]::text[], ARRAY[NULL]::bigint[], {T0}"
  );
  for p in plans(&fx, claim::JOIN_PLAN, types, &sql, &args).await {
    assert!(p.contains("job_pkey"), "{p}");
    assert_job_scans_bounded(&p);
    // One pass over the batch, not one per job found.
    assert!(!p.contains("Nested Loop"), "{p}");
  }
}

// -------------------------------------------------------------- outcomes

fn err(msg: &str) -> JobError {
  JobError {
    name: "Error".into(),
    message: msg.into(),
    ..JobError::default()
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_commit_applies_completions_retries_and_failures() {
  let Some(fx) = fx("apply").await else { return };
  let mut js = jobs(4, "o", T0);
  js[1].max_retries = 2;
  js[1].backoff = Backoff {
    kind: crate::job::BackoffKind::Fixed,
    delay_ms: 500,
    max_delay_ms: 0,
    jitter: 0.0,
  };
  fx.store.insert(&js, T0).await.expect("insert");
  let got = fx
    .store
    .claim(&ClaimOptions::new(1, 4), T0)
    .await
    .expect("claim");
  let by: HashMap<JobId, &PgJob> = got.iter().map(|j| (j.job.id, j)).collect();
  let l = |i: usize| by[&js[i].id].lease().expect("lease");
  let outs = vec![
    Outcome::completed(l(0), "{\"ok\":true}"),
    Outcome::failed(
      by[&js[1].id],
      err("again"),
      FailKind::Error {
        unrecoverable: false,
      },
      T0,
      0.0,
    ),
    Outcome::failed(
      by[&js[2].id],
      err("boom"),
      FailKind::Error {
        unrecoverable: false,
      },
      T0,
      0.0,
    ),
    Outcome::failed(by[&js[3].id], err("slow"), FailKind::Timeout, T0, 0.0),
  ];
  let a = fx.store.apply(&outs, T0 + 10).await.expect("apply");
  assert_eq!(a.completed, vec![js[0].id]);
  assert_eq!(a.retried, vec![js[1].id]);
  let failed: HashSet<JobId> = a.failed.iter().copied().collect();
  assert_eq!(failed, HashSet::from([js[2].id, js[3].id]));
  assert!(a.fenced.is_empty());
  let done = fx.store.get(js[0].id).await.expect("get").expect("there");
  assert_eq!(done.job.status, Status::Completed);
  assert_eq!(done.job.finished_at, T0 + 10);
  assert_eq!(
    done.job.extra.as_ref().and_then(|e| e.result.as_deref()),
    Some("{\"ok\":true}")
  );
  let r = fx.store.get(js[1].id).await.expect("get").expect("there");
  assert_eq!(
    (r.job.status, r.job.run_at, r.job.attempts),
    (Status::Pending, T0 + 500, 1)
  );
  assert_eq!(
    r.job.last_error().map(|e| e.message.as_str()),
    Some("again")
  );
  let t = fx.store.get(js[3].id).await.expect("get").expect("there");
  assert_eq!(t.job.status, Status::Timeout);
  // The hot table holds only the retried job.
  let c = fx.store.client().await.expect("client");
  let n: i64 = c
    .query_one(
      &format!("SELECT count(*) FROM {}.job", quote_ident(&fx.schema)),
      &[],
    )
    .await
    .expect("count")
    .get(0);
  assert_eq!(n, 1);
  // A second outcome for a settled job is fenced.
  let again = fx.store.apply(&outs[..1], T0 + 11).await.expect("apply");
  assert_eq!(again.fenced, vec![js[0].id]);
  assert!(again.completed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_outcome_of_a_cancelled_job_is_fenced_and_its_process_told() {
  let Some(fx) = fx("cancel").await else { return };
  let mut l = fx.store.listen().await.expect("listen");
  let js = jobs(2, "x", T0);
  fx.store.insert(&js, T0).await.expect("insert");
  let first = tokio::time::timeout(Duration::from_secs(10), l.recv())
    .await
    .expect("a notice");
  assert!(matches!(first, Some(Notice::Inserted { .. })));
  let got = fx
    .store
    .claim(&ClaimOptions::new(1, 1), T0)
    .await
    .expect("claim");
  assert_eq!(
    fx.store.cancel(got[0].job.id, T0).await.expect("cancel"),
    Some(Status::Running)
  );
  let n = tokio::time::timeout(Duration::from_secs(10), l.recv())
    .await
    .expect("notice");
  assert_eq!(n, Some(Notice::Cancelled(got[0].job.id)));
  assert_eq!(
    fx.store.cancel(js[1].id, T0).await.expect("cancel"),
    Some(Status::Pending)
  );
  assert_eq!(fx.store.cancel(js[1].id, T0).await.expect("cancel"), None);
  let a = fx
    .store
    .apply(
      &[Outcome::completed(got[0].lease().expect("lease"), "1")],
      T0,
    )
    .await
    .expect("apply");
  assert_eq!((a.fenced.len(), a.completed.len()), (1, 0));
  let j = fx
    .store
    .get(got[0].job.id)
    .await
    .expect("get")
    .expect("there");
  assert_eq!(j.job.status, Status::Cancelled);
  assert_eq!(
    j.job.last_error().and_then(|e| e.code.as_deref()),
    Some(JobErrorCode::JobCancelled.as_str())
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependants_are_released_or_failed_in_the_completing_transaction() {
  let Some(fx) = fx("deps").await else { return };
  let g = ids(6, T0);
  let mk = |i: usize, deps: &[usize], ignore: bool| {
    let mut j = NewJob::new(g[i], "d", "{}", T0);
    if !deps.is_empty() {
      j.deps = Some(Dependencies {
        ids: deps.iter().map(|d| g[*d]).collect(),
        ignore_failure: ignore,
      });
    }
    j
  };
  // 0, 1 roots; 2 needs 0 and 1; 3 needs 2; 4 needs 1 (ignoring failure);
  // 5 needs 1.
  let batch = vec![
    mk(0, &[], false),
    mk(1, &[], false),
    mk(2, &[0, 1], false),
    mk(3, &[2], false),
    mk(4, &[1], true),
    mk(5, &[1], false),
  ];
  fx.store.insert(&batch, T0).await.expect("insert");
  let counts = fx.store.counts().await.expect("counts");
  assert_eq!((counts[0], counts[1]), (4, 2));
  let missing = NewJob {
    deps: Some(Dependencies {
      ids: vec![ids(1, T0 + 99)[0]],
      ignore_failure: false,
    }),
    ..NewJob::new(ids(1, T0 + 50)[0], "d", "{}", T0)
  };
  // A dependency naming no job fails its job in the insert (the JS thread
  // never looked it up); the rest of the batch goes in, and the store
  // keeps working.
  let beside = NewJob::new(ids(1, T0 + 51)[0], "d", "{}", T0);
  let (ins, failed) = fx
    .store
    .insert_reporting(&[missing.clone(), beside.clone()], T0)
    .await
    .expect("a missing dependency does not fail the batch");
  assert_eq!(ins.len(), 2);
  assert_eq!(failed.len(), 1);
  assert_eq!(failed[0].id, missing.id);
  assert_eq!(failed[0].name, "d");
  let e: JobError = serde_json::from_str(&failed[0].error).expect("error json");
  assert_eq!(
    e.code.as_deref(),
    Some(JobErrorCode::DependencyFailed.as_str())
  );
  assert!(e.message.contains("not found"), "{}", e.message);
  let m = fx.store.get(missing.id).await.expect("get").expect("there");
  assert_eq!(m.job.status, Status::Failed);
  let b = fx.store.get(beside.id).await.expect("get").expect("there");
  assert_eq!(b.job.status, Status::Pending);
  fx.store.cancel(beside.id, T0).await.expect("cancel");
  // A fired job's dependency pruned since its schedule was made counts as
  // done (as on memory and SQLite): it is pending, not failed.
  let fired = NewJob {
    deps: Some(Dependencies {
      ids: vec![ids(1, T0 + 98)[0]],
      ignore_failure: false,
    }),
    schedule: Some(("every-minute".into(), T0)),
    ..NewJob::new(ids(1, T0 + 52)[0], "d", "{}", T0)
  };
  let (_, failed) = fx
    .store
    .insert_reporting(std::slice::from_ref(&fired), T0)
    .await
    .expect("insert");
  assert!(failed.is_empty());
  let f = fx.store.get(fired.id).await.expect("get").expect("there");
  assert_eq!(f.job.status, Status::Pending);
  fx.store.cancel(fired.id, T0).await.expect("cancel");
  let got = fx
    .store
    .claim(&ClaimOptions::new(1, 10), T0)
    .await
    .expect("claim");
  assert_eq!(got.len(), 2);
  let by: HashMap<JobId, &PgJob> = got.iter().map(|j| (j.job.id, j)).collect();
  // 0 completes: 2 still waits for 1.
  let a = fx
    .store
    .apply(
      &[Outcome::completed(by[&g[0]].lease().expect("l"), "0")],
      T0 + 1,
    )
    .await
    .expect("apply");
  assert!(a.released.is_empty());
  // 1 fails for good: 2 and 5 fail, 3 after 2; 4 ignores it and runs.
  let a = fx
    .store
    .apply(
      &[Outcome::failed(
        by[&g[1]],
        err("x"),
        FailKind::Error {
          unrecoverable: true,
        },
        T0 + 2,
        0.0,
      )],
      T0 + 2,
    )
    .await
    .expect("apply");
  assert_eq!(a.released, vec![g[4]]);
  let df: HashSet<JobId> = a.dependency_failed.iter().map(|f| f.id).collect();
  assert_eq!(df, HashSet::from([g[2], g[3], g[5]]));
  // Each with what its `failed` event says: name, attempts, the error.
  for f in &a.dependency_failed {
    assert_eq!((f.name.as_str(), f.attempt), ("d", 0));
    let e: JobError = serde_json::from_str(&f.error).expect("error json");
    assert_eq!(
      e.code.as_deref(),
      Some(JobErrorCode::DependencyFailed.as_str())
    );
  }
  let j3 = fx.store.get(g[3]).await.expect("get").expect("there");
  assert_eq!(j3.job.status, Status::Failed);
  assert_eq!(
    j3.job.last_error().and_then(|e| e.code.as_deref()),
    Some(JobErrorCode::DependencyFailed.as_str())
  );
  let j4 = fx.store.get(g[4]).await.expect("get").expect("there");
  assert_eq!(j4.job.status, Status::Pending);
  // A job added after its dependency completed runs at once; after it
  // failed, it fails at once.
  let late_ok = NewJob {
    deps: Some(Dependencies {
      ids: vec![g[0]],
      ignore_failure: false,
    }),
    ..NewJob::new(ids(1, T0 + 10)[0], "d", "{}", T0 + 10)
  };
  let late_bad = NewJob {
    deps: Some(Dependencies {
      ids: vec![g[1]],
      ignore_failure: false,
    }),
    ..NewJob::new(ids(1, T0 + 11)[0], "d", "{}", T0 + 11)
  };
  fx.store
    .insert(&[late_ok.clone(), late_bad.clone()], T0 + 12)
    .await
    .expect("insert");
  let s = |id| {
    let st = fx.store.clone();
    async move { st.get(id).await.expect("get").expect("there").job.status }
  };
  assert_eq!(s(late_ok.id).await, Status::Pending);
  assert_eq!(s(late_bad.id).await, Status::Failed);
  // Completion releases a waiting dependant in the same statement.
  let c = NewJob {
    deps: Some(Dependencies {
      ids: vec![g[4]],
      ignore_failure: false,
    }),
    ..NewJob::new(ids(1, T0 + 13)[0], "d", "{}", T0 + 13)
  };
  fx.store
    .insert(std::slice::from_ref(&c), T0 + 13)
    .await
    .expect("insert");
  let got = fx
    .store
    .claim(&ClaimOptions::new(1, 1), T0 + 14)
    .await
    .expect("claim");
  assert_eq!(got[0].job.id, g[4]);
  let a = fx
    .store
    .apply(
      &[Outcome::completed(got[0].lease().expect("l"), "4")],
      T0 + 15,
    )
    .await
    .expect("apply");
  assert_eq!(a.released, vec![c.id]);
  assert_eq!(s(c.id).await, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committer_groups_outcomes_and_says_which_were_fenced() {
  let Some(fx) = fx("comm").await else { return };
  fx.store
    .insert(&jobs(300, "g", T0), T0)
    .await
    .expect("insert");
  let got = fx
    .store
    .claim(&ClaimOptions::new(3, 300), T0)
    .await
    .expect("claim");
  let committer = Committer::start(
    fx.store.clone(),
    128,
    Duration::from_millis(2),
    Arc::new(|| T0 + 1),
  );
  let mut tasks = Vec::new();
  for (i, j) in got.iter().enumerate() {
    let mut lease = j.lease().expect("lease");
    if i % 100 == 0 {
      lease.attempt += 1; // stale
    }
    let c = committer.clone();
    tasks.push(tokio::spawn(async move {
      c.send(Outcome::completed(lease, "1")).await
    }));
  }
  let mut applied = 0;
  for t in tasks {
    applied += t.await.expect("task").expect("send") as usize;
  }
  assert_eq!(applied, 297);
  assert_eq!(
    fx.store.counts().await.expect("counts")[Status::Completed as usize],
    297
  );
}

// ---------------------------------------------------------------- rescue

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_silent_process_are_rescued_and_its_late_outcomes_fenced() {
  let Some(fx) = fx("rescue").await else { return };
  let alive = fx.store.register("a", 1, T0).await.expect("register");
  let dead = fx.store.register("b", 2, T0).await.expect("register");
  let mut js = jobs(4, "r", T0);
  js[1].max_retries = 0; // out of attempts after one
  js[0].max_retries = 3;
  js[2].max_retries = 3;
  js[3].max_retries = 3;
  js[3].timeout_ms = 1_000;
  fx.store.insert(&js, T0).await.expect("insert");
  let mut o = ClaimOptions::new(dead, 2);
  o.default_lease_ms = 60_000;
  let theirs = fx.store.claim(&o, T0).await.expect("claim");
  let mut o = ClaimOptions::new(alive, 2);
  o.default_lease_ms = 60_000;
  o.grace_ms = 1_000;
  let mine = fx.store.claim(&o, T0).await.expect("claim");
  assert_eq!((theirs.len(), mine.len()), (2, 2));
  // 20 s later: the alive one beat, the dead one did not.
  assert!(fx.store.heartbeat(alive, T0 + 20_000).await.expect("beat"));
  let r = fx.store.rescue(T0 + 20_000, 30_000).await.expect("rescue");
  assert!(r.dead.is_empty(), "silent for 20 s of 30: alive");
  // Mine: js[3] has a 1 s timeout + 1 s grace: its lease expired.
  assert_eq!(r.retried, vec![js[3].id]);
  let r = fx.store.rescue(T0 + 31_000, 30_000).await.expect("rescue");
  assert_eq!(r.dead, vec![dead]);
  assert_eq!(r.retried, vec![js[0].id]);
  assert_eq!(r.failed, vec![js[1].id]);
  let j0 = fx.store.get(js[0].id).await.expect("get").expect("there");
  assert_eq!((j0.job.status, j0.job.attempts), (Status::Pending, 1));
  let e = j0.job.last_error().expect("an error");
  assert_eq!(e.code.as_deref(), Some(JobErrorCode::Interrupted.as_str()));
  assert!(e.message.contains("stopped answering"), "{}", e.message);
  let j1 = fx.store.get(js[1].id).await.expect("get").expect("there");
  assert_eq!(j1.job.status, Status::Failed);
  // The dead process comes back: its outcomes are fenced, its heartbeat
  // says it is gone.
  let late: Vec<Outcome> = theirs
    .iter()
    .map(|j| Outcome::completed(j.lease().expect("l"), "late"))
    .collect();
  let a = fx.store.apply(&late, T0 + 32_000).await.expect("apply");
  assert_eq!(a.fenced.len(), 2);
  assert!(!fx.store.heartbeat(dead, T0 + 32_000).await.expect("beat"));
  // Rescued jobs run again.
  let again = fx
    .store
    .claim(&ClaimOptions::new(alive, 10), T0 + 32_000)
    .await
    .expect("claim");
  let again: HashSet<JobId> = again.iter().map(|j| j.job.id).collect();
  assert_eq!(again, HashSet::from([js[0].id, js[3].id]));
}

// ------------------------------------------------------------- schedules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fire_time_yields_one_job_however_many_processes_fire() {
  let Some(fx) = fx("cron").await else { return };
  fx.store
    .save_schedule("tick", "{\"cron\":\"* * * * * *\"}", T0)
    .await
    .expect("save");
  let peers = [peer(&fx).await, peer(&fx).await, peer(&fx).await];
  let fired = Arc::new(parking_lot::Mutex::new(Vec::new()));
  let mut tasks = Vec::new();
  for (p, s) in peers.iter().enumerate() {
    let s = s.clone();
    let fired = fired.clone();
    tasks.push(tokio::spawn(async move {
      let mut g = IdGen::default();
      for tick in 0..60u64 {
        let at = T0 + tick * 1_000;
        let job = NewJob::new(g.next(at + p as u64), "tick", "{}", at);
        match s.fire("tick", at, &job, false).await.expect("fire") {
          Fire::Fired(id) => fired.lock().push((tick, id)),
          Fire::Lost => {}
          Fire::Skipped => panic!("nothing should skip here"),
        }
      }
    }));
  }
  for t in tasks {
    t.await.expect("task");
  }
  let mut ticks: Vec<u64> = fired.lock().iter().map(|f| f.0).collect();
  ticks.sort_unstable();
  assert_eq!(
    ticks,
    (0..60).collect::<Vec<_>>(),
    "each tick fired exactly once"
  );
  assert_eq!(fx.store.counts().await.expect("counts")[1], 60);
  let st = fx.store.schedules().await.expect("schedules");
  assert_eq!(st[0].last_fire, Some(T0 + 59_000));
  // Reset by hand: the unique (schedule, fire time) still holds.
  let c = fx.store.client().await.expect("client");
  c.batch_execute(&format!(
    "UPDATE {}.schedule SET last_fire = NULL",
    quote_ident(&fx.schema)
  ))
  .await
  .expect("reset");
  let j = NewJob::new(ids(1, T0 + 99_000)[0], "tick", "{}", T0);
  assert_eq!(
    fx.store
      .fire("tick", T0 + 59_000, &j, false)
      .await
      .expect("fire"),
    Fire::Skipped
  );
  assert_eq!(
    fx.store.fire("gone", T0, &j, false).await.expect("fire"),
    Fire::Lost
  );
  // Saving again keeps the cluster's last fire.
  fx.store
    .save_schedule("tick", "{}", T0)
    .await
    .expect("save");
  assert_eq!(
    fx.store.schedules().await.expect("schedules")[0].last_fire,
    Some(T0 + 59_000)
  );
  assert!(fx.store.delete_schedule("tick").await.expect("delete"));
  for p in peers {
    p.close();
  }
}

// ----------------------------------------------------------------- reads

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_follows_the_filter_and_cursor_over_live_and_finished_jobs() {
  let Some(fx) = fx("list").await else { return };
  let mut names = Names::default();
  let a = names.intern("a");
  let b = names.intern("b");
  let mut all = Vec::new();
  for i in 0..10u64 {
    let mut j = NewJob::new(
      ids(1, T0 + i)[0],
      if i % 2 == 0 { "a" } else { "b" },
      "{\"d\":1}",
      T0 + i,
    );
    j.created_at = T0 + i;
    all.push(j);
  }
  fx.store.insert(&all, T0 + 20).await.expect("insert");
  // Finish the three oldest.
  let got = fx
    .store
    .claim(&ClaimOptions::new(1, 3), T0 + 20)
    .await
    .expect("claim");
  let outs: Vec<Outcome> = got
    .iter()
    .map(|j| Outcome::completed(j.lease().expect("l"), "\"r\""))
    .collect();
  fx.store.apply(&outs, T0 + 21).await.expect("apply");
  let page = |f: JobFilter| {
    let st = fx.store.clone();
    let names = names.clone();
    async move {
      st.list(&f, &names)
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.job.created_at - T0)
        .collect::<Vec<_>>()
    }
  };
  assert_eq!(
    page(JobFilter::default()).await,
    (0..10).rev().collect::<Vec<_>>()
  );
  let first = JobFilter {
    limit: 4,
    ..JobFilter::default()
  };
  assert_eq!(page(first.clone()).await, vec![9, 8, 7, 6]);
  let second = JobFilter {
    after: Some(all[6].id),
    ..first.clone()
  };
  assert_eq!(page(second).await, vec![5, 4, 3, 2]);
  let asc = JobFilter {
    ascending: true,
    after: Some(all[1].id),
    limit: 3,
    ..JobFilter::default()
  };
  assert_eq!(page(asc).await, vec![2, 3, 4]);
  let completed = JobFilter {
    statuses: 1 << Status::Completed as u8,
    ..JobFilter::default()
  };
  assert_eq!(page(completed).await, vec![2, 1, 0]);
  let named = JobFilter {
    name: Some(a),
    since: Some(T0 + 2),
    until: Some(T0 + 8),
    ..JobFilter::default()
  };
  assert_eq!(page(named).await, vec![6, 4, 2]);
  let nb = JobFilter {
    name: Some(b),
    statuses: 1 << Status::Pending as u8,
    ..JobFilter::default()
  };
  assert_eq!(page(nb).await, vec![9, 7, 5, 3]);
  let lean = JobFilter {
    include_data: false,
    limit: 1,
    statuses: 1 << Status::Completed as u8,
    ..JobFilter::default()
  };
  let j = fx.store.list(&lean, &names).await.expect("list");
  assert_eq!(&*j[0].job.data, "");
  assert!(j[0]
    .job
    .extra
    .as_ref()
    .and_then(|e| e.result.as_ref())
    .is_none());
  let unknown = JobFilter {
    name: Some(99),
    ..JobFilter::default()
  };
  assert!(page(unknown).await.is_empty());
  let c = fx.store.counts().await.expect("counts");
  assert_eq!((c[1], c[3]), (7, 3));
  assert_eq!(fx.store.prune(T0 + 21, 2).await.expect("prune"), 3);
  assert_eq!(fx.store.counts().await.expect("counts")[3], 0);
  assert!(fx.store.db_now().await.expect("now") > T0 - 10 * 365 * 86_400_000);
}

// ------------------------------------------------------------ throughput

/// Burn-down probe: `JOBWERK_PG_N` jobs (default 200,000) inserted in
/// batches, then `JOBWERK_PG_PROCS` "processes" (default 2; each its own
/// pool and owner) claim batches of `JOBWERK_PG_CLAIM` (default 128) and
/// complete them through their own group committer (<= 128 per commit or
/// 2 ms), with fsync and synchronous_commit as the server has them.
/// `cargo test --release --no-default-features --features sqlite,postgres
/// throughput_probe -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_probe() {
  let Some(fx) = fx("probe").await else { return };
  let env = |k: &str, d: usize| {
    std::env::var(k)
      .ok()
      .and_then(|v| v.parse().ok())
      .unwrap_or(d)
  };
  let n = env("JOBWERK_PG_N", 200_000);
  let procs = env("JOBWERK_PG_PROCS", 2);
  let claim = env("JOBWERK_PG_CLAIM", 128);
  let inflight = env("JOBWERK_PG_INFLIGHT", 512);
  let c = fx.store.client().await.expect("client");
  let mut settings = Vec::new();
  for k in [
    "fsync",
    "synchronous_commit",
    "autovacuum",
    "shared_buffers",
  ] {
    let v: String = c
      .query_one(&format!("SHOW {k}"), &[])
      .await
      .expect("show")
      .get(0);
    settings.push(format!("{k}={v}"));
  }
  drop(c);
  eprintln!(
    "probe: N={n} procs={procs} claim={claim} inflight/proc={inflight}; server {}",
    settings.join(" ")
  );
  let now = T0;
  let t = std::time::Instant::now();
  let mut g = IdGen::default();
  let mut left = n;
  while left > 0 {
    let k = left.min(5_000);
    let batch: Vec<NewJob> = (0..k)
      .map(|i| NewJob::new(g.next(now), "probe", &format!("{{\"i\":{i}}}"), now))
      .collect();
    fx.store.insert(&batch, now).await.expect("insert");
    left -= k;
  }
  let ins = t.elapsed();
  eprintln!(
    "insert: {n} jobs in {:.2} s = {:.0} jobs/s (batches of 5,000)",
    ins.as_secs_f64(),
    n as f64 / ins.as_secs_f64()
  );
  {
    let c = fx.store.client().await.expect("client");
    c.batch_execute(&format!("VACUUM ANALYZE {}.job", quote_ident(&fx.schema)))
      .await
      .expect("vacuum");
  }
  let stats = Arc::new(parking_lot::Mutex::new((
    Duration::ZERO,
    0usize,
    Duration::ZERO,
    0usize,
  )));
  let t = std::time::Instant::now();
  let mut tasks = Vec::new();
  for p in 0..procs {
    let mut c = cfg(&fx.schema);
    c.pool_size = 4;
    let s = PgStore::connect(&c).await.expect("connect");
    let owner = s.register("probe", p as u32, now).await.expect("register");
    let stats = stats.clone();
    tasks.push(tokio::spawn(async move {
      let committer = Committer::start(
        s.clone(),
        128,
        Duration::from_millis(2),
        Arc::new(move || now + 1),
      );
      let sem = Arc::new(tokio::sync::Semaphore::new(inflight));
      let mut done = 0usize;
      let mut pending = Vec::new();
      loop {
        let want = claim.min(sem.available_permits().max(1));
        let permits = sem
          .clone()
          .acquire_many_owned(want as u32)
          .await
          .expect("permits");
        let ct = std::time::Instant::now();
        let got = s
          .claim(&ClaimOptions::new(owner, want), now)
          .await
          .expect("claim");
        {
          let mut st = stats.lock();
          st.0 += ct.elapsed();
          st.1 += 1;
        }
        if got.is_empty() {
          drop(permits);
          break;
        }
        let mut permits = permits;
        let extra = want - got.len();
        if extra > 0 {
          drop(permits.split(extra));
        }
        done += got.len();
        for j in got {
          let c = committer.clone();
          let permit = permits.split(1);
          let lease = j.lease().expect("lease");
          pending.push(tokio::spawn(async move {
            let ok = c
              .send(Outcome::completed(lease, "null"))
              .await
              .expect("complete");
            drop(permit);
            ok
          }));
        }
        if pending.len() > 4 * inflight {
          let mut keep = Vec::new();
          for h in pending.drain(..) {
            if h.is_finished() {
              assert!(h.await.expect("task"));
            } else {
              keep.push(h);
            }
          }
          pending = keep;
        }
      }
      for h in pending {
        assert!(h.await.expect("task"));
      }
      let cs = committer.stats();
      eprintln!(
        "process {p}: {done} jobs; {} group commits of {:.0} on average, mean apply {:.2} ms",
        cs.commits,
        cs.outcomes as f64 / cs.commits.max(1) as f64,
        cs.busy.as_secs_f64() * 1e3 / cs.commits.max(1) as f64
      );
      s.close();
      done
    }));
  }
  let mut total = 0;
  for t in tasks {
    total += t.await.expect("proc");
  }
  let el = t.elapsed();
  assert_eq!(total, n);
  let counts = fx.store.counts().await.expect("counts");
  assert_eq!(counts[Status::Completed as usize], n);
  let st = stats.lock();
  eprintln!(
    "burn-down: {n} jobs claimed+completed in {:.2} s = {:.0} jobs/s ({:.0} per core on 2 cores); \
     {} claims, mean claim {:.2} ms",
    el.as_secs_f64(),
    n as f64 / el.as_secs_f64(),
    n as f64 / el.as_secs_f64() / 2.0,
    st.1,
    st.0.as_secs_f64() * 1e3 / st.1.max(1) as f64
  );
}

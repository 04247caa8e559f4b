//! The JavaScript bridge's format, typed once (DESIGN.md section 2).
//!
//! Jobs and outcomes cross between Rust and `lib/dispatcher.js` as flat JSON arrays,
//! one batch per call; small numbers in them (why an attempt was aborted,
//! what kind an outcome is, the bits `settle` and `poll` return) are defined
//! here and nowhere else. The binding exports them (`wire()` in
//! `binding.d.ts`) and `lib/dispatcher.js` reads them once at load.
//!
//! | call | direction | shape |
//! |---|---|---|
//! | `take(max)` | Rust to JS | `[slot, seq, "id", calc, attempt, data, context, ...]` ([`TAKE_FIELDS`] items a job) |
//! | `settle(outcomes)` | JS to Rust | `[slot, seq, kind, value, ...]` ([`OUTCOME_FIELDS`] items an outcome, `kind` an [`OutcomeKind`]) |
//! | `drain()` | Rust to JS | `[[slot, seq, why, ...], [[kind, id, name, attempt, extra], ...]]` ([`ABORT_FIELDS`] items an abort, `why` an [`Abort`]) |
//! | `settle`, `poll` return | Rust to JS | a `u32` of [`flag`] bits |

use std::fmt::Write as _;

use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::job::{Job, JobId};

/// Why a running attempt is aborted (the `why` of a drained abort).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Abort {
  /// The attempt passed its deadline.
  Timeout = 0,
  /// `cancelJob`.
  Cancel = 1,
  /// The service stopped.
  Stop = 2,
}

impl Abort {
  /// Every reason, in wire order.
  pub const ALL: [Abort; 3] = [Abort::Timeout, Abort::Cancel, Abort::Stop];
}

/// What an outcome sent to `settle` says about its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OutcomeKind {
  /// The handler threw or rejected: `value` is `{name, message, stack}`; the
  /// job retries while attempts are left.
  Error = 0,
  /// The handler returned: `value` is its result.
  Ok = 1,
  /// The handler threw an `UnrecoverableError`: no retry.
  Unrecoverable = 2,
}

impl OutcomeKind {
  /// The kind of a wire number: any number that is not `Ok` or
  /// `Unrecoverable` is an error (a retryable failure).
  pub fn of(n: u8) -> OutcomeKind {
    match n {
      1 => OutcomeKind::Ok,
      2 => OutcomeKind::Unrecoverable,
      _ => OutcomeKind::Error,
    }
  }
}

/// The bits of the number `settle` and `poll` return.
pub mod flag {
  /// Aborts or events wait for `drain()`.
  pub const NEWS: u32 = 1;
  /// (`settle` only) every outcome was current: the caller emits their
  /// `completed` events itself.
  pub const EMIT_COMPLETED: u32 = 2;
  /// The rest, shifted right by this, is how many jobs (and schedules with a
  /// next run) still need the service: non-zero keeps Node alive.
  pub const ACTIVE_SHIFT: u32 = 2;
}

/// Items a job takes in `take`'s array.
pub const TAKE_FIELDS: usize = 7;
/// Items an outcome takes in `settle`'s array.
pub const OUTCOME_FIELDS: usize = 4;
/// Items an abort takes in `drain`'s first array.
pub const ABORT_FIELDS: usize = 3;

/// `(active << ACTIVE_SHIFT) | news` (see [`flag`]).
pub fn flags(active: usize, news: bool) -> u32 {
  let max = u32::MAX as usize >> flag::ACTIVE_SHIFT;
  ((active.min(max) as u32) << flag::ACTIVE_SHIFT) | if news { flag::NEWS } else { 0 }
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
  serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Appends one taken job as `slot,seq,"id",calc,attempt,data,context,`; with
/// `raw` the data and context go as JSON strings (the worker-thread pool
/// passes the text on without parsing it).
pub fn write_taken(out: &mut String, slot: u32, seq: u32, job: &Job, raw: bool) {
  let mut num = itoa::Buffer::new();
  out.push_str(num.format(slot));
  out.push(',');
  out.push_str(num.format(seq));
  out.push_str(",\"");
  job.id.write_to(out);
  out.push_str("\",");
  out.push_str(num.format(job.name));
  out.push(',');
  out.push_str(num.format(job.attempts));
  out.push(',');
  if raw {
    out.push_str(&json_str(&job.data));
    out.push(',');
    out.push_str(&json_str(job.context_json()));
  } else {
    out.push_str(&job.data);
    out.push(',');
    out.push_str(job.context_json());
  }
  out.push(',');
}

/// One outcome of `settle`'s array.
#[derive(Debug, Clone, Copy)]
pub struct WireOutcome<'a> {
  pub slot: u32,
  pub seq: u32,
  pub kind: OutcomeKind,
  /// The result (JSON) or the error `{name, message, stack}`.
  pub value: &'a RawValue,
}

/// Outcomes from their flat JSON array; a malformed array is
/// `ERR_INVALID_ARGUMENT` and applies nothing.
pub fn parse_outcomes(json: &str) -> Result<Vec<WireOutcome<'_>>> {
  let bad = |what: &str| Error::arg(format!("malformed outcomes: {what}"));
  let items: Vec<&RawValue> = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
  if !items.len().is_multiple_of(OUTCOME_FIELDS) {
    return Err(bad("not four items an outcome"));
  }
  items
    .chunks_exact(OUTCOME_FIELDS)
    .map(|o| {
      let num = |v: &RawValue| v.get().parse::<u32>().map_err(|_| bad(v.get()));
      let kind = u8::try_from(num(o[2])?).map_err(|_| bad(o[2].get()))?;
      Ok(WireOutcome {
        slot: num(o[0])?,
        seq: num(o[1])?,
        kind: OutcomeKind::of(kind),
        value: o[3],
      })
    })
    .collect()
}

/// Events waiting for `drain()`, kept as JSON array items each followed by a
/// comma: `[kind, "id", name, attempt, extra],`.
#[derive(Debug, Default)]
pub struct Events(String);

impl Events {
  /// True when no event waits.
  pub fn is_empty(&self) -> bool {
    self.0.is_empty()
  }

  /// Drops every waiting event.
  pub fn clear(&mut self) {
    self.0.clear()
  }

  /// The events as items (each `[...],`), for [`Events::push_items`].
  pub fn as_items(&self) -> &str {
    &self.0
  }

  /// The length of [`Events::as_items`] in bytes.
  pub fn text_len(&self) -> usize {
    self.0.len()
  }

  /// Appends items [`Events::into_items`] gave.
  pub fn push_items(&mut self, items: &str) {
    self.0.push_str(items)
  }

  /// Adds event `kind` of job `id`; `name` is the calculation's name as a
  /// JSON string literal, `extra` JSON.
  pub fn job(&mut self, kind: &str, id: JobId, name: &str, attempt: u32, extra: &str) {
    let e = &mut self.0;
    e.push_str("[\"");
    e.push_str(kind);
    e.push_str("\",\"");
    id.write_to(e);
    e.push_str("\",");
    e.push_str(name);
    e.push(',');
    e.push_str(itoa::Buffer::new().format(attempt));
    e.push(',');
    e.push_str(extra);
    e.push_str("],");
  }

  /// Adds an event of no job (`alert`, `alertResolved`,
  /// `alertDeliveryFailed`) whose `extra` is JSON.
  pub fn service(&mut self, kind: &str, extra: &str) {
    let _ = write!(self.0, "[\"{kind}\",null,null,0,{extra}],");
  }
}

/// `drain()`'s answer: the aborts, then the events (which it empties).
pub fn write_drain(
  aborts: impl IntoIterator<Item = (u32, u32, Abort)>,
  events: &mut Events,
) -> String {
  let mut out = String::with_capacity(16 + events.0.len());
  out.push_str("[[");
  for (i, (slot, seq, why)) in aborts.into_iter().enumerate() {
    if i > 0 {
      out.push(',');
    }
    let _ = write!(out, "{slot},{seq},{}", why as u8);
  }
  out.push_str("],[");
  if !events.0.is_empty() {
    events.0.pop();
    out.push_str(&events.0);
    events.0.clear();
  }
  out.push_str("]]");
  out
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::Value;

  /// The contract with `lib/dispatcher.js`: these numbers are what `wire()` exports
  /// (checked from the JS side by `__test__/wire-contract.spec.js`, which
  /// holds the same table). Changing one is a breaking change of the bridge.
  #[test]
  fn the_wire_numbers_are_the_documented_ones() {
    let aborts: Vec<(Abort, u8)> = Abort::ALL.iter().map(|a| (*a, *a as u8)).collect();
    assert_eq!(
      aborts,
      [(Abort::Timeout, 0), (Abort::Cancel, 1), (Abort::Stop, 2)]
    );
    assert_eq!(
      [
        OutcomeKind::Error as u8,
        OutcomeKind::Ok as u8,
        OutcomeKind::Unrecoverable as u8
      ],
      [0, 1, 2]
    );
    for k in [
      OutcomeKind::Error,
      OutcomeKind::Ok,
      OutcomeKind::Unrecoverable,
    ] {
      assert_eq!(OutcomeKind::of(k as u8), k);
    }
    assert_eq!(OutcomeKind::of(7), OutcomeKind::Error);
    assert_eq!(
      (flag::NEWS, flag::EMIT_COMPLETED, flag::ACTIVE_SHIFT),
      (1, 2, 2)
    );
    assert_eq!((TAKE_FIELDS, OUTCOME_FIELDS, ABORT_FIELDS), (7, 4, 3));
    // The flag bits do not overlap the active count.
    assert_eq!(flags(3, true), (3 << flag::ACTIVE_SHIFT) | flag::NEWS);
    assert_eq!(flags(0, false) & flag::EMIT_COMPLETED, 0);
    assert_eq!(
      flags(usize::MAX, false) >> flag::ACTIVE_SHIFT,
      u32::MAX >> 2
    );
  }

  #[test]
  fn a_taken_job_is_take_fields_items() {
    let job = Job::new(JobId(7), 0, 1, 1, "{\"a\":1}".into());
    for raw in [false, true] {
      let mut out = String::from("[");
      write_taken(&mut out, 3, 9, &job, raw);
      out.pop();
      out.push(']');
      let v: Vec<Value> = serde_json::from_str(&out).expect("json");
      assert_eq!(v.len(), TAKE_FIELDS, "{out}");
      assert_eq!((v[0].as_u64(), v[1].as_u64()), (Some(3), Some(9)));
      assert_eq!(v[5].is_string(), raw);
    }
  }

  #[test]
  fn outcomes_parse_by_kind_and_malformed_ones_are_refused() {
    let o = parse_outcomes(r#"[1,2,1,{"r":1},3,4,0,{"name":"E"},5,6,2,null]"#).expect("parse");
    let kinds: Vec<(u32, u32, OutcomeKind)> = o.iter().map(|o| (o.slot, o.seq, o.kind)).collect();
    assert_eq!(
      kinds,
      [
        (1, 2, OutcomeKind::Ok),
        (3, 4, OutcomeKind::Error),
        (5, 6, OutcomeKind::Unrecoverable)
      ]
    );
    assert_eq!(o[0].value.get(), r#"{"r":1}"#);
    for bad in ["", "[1,2,1]", "[-1,2,1,null]", "[1,2,300,null]", "{}"] {
      assert!(
        matches!(parse_outcomes(bad), Err(Error::InvalidArgument(_))),
        "{bad}"
      );
    }
  }

  #[test]
  fn drain_writes_aborts_then_events_and_empties_them() {
    let mut ev = Events::default();
    ev.job("cancelled", JobId(7), "\"calc\"", 2, "null");
    ev.service("alert", "{\"id\":\"a\"}");
    let s = write_drain([(1, 5, Abort::Cancel), (2, 6, Abort::Stop)], &mut ev);
    let v: Value = serde_json::from_str(&s).expect("json");
    assert_eq!(v[0], serde_json::json!([1, 5, 1, 2, 6, 2]));
    assert_eq!(v[0].as_array().map(Vec::len), Some(2 * ABORT_FIELDS));
    assert_eq!(v[1][0][0], "cancelled");
    assert_eq!(v[1][0][2], "calc");
    assert_eq!(v[1][0][3], 2);
    assert_eq!(
      v[1][1],
      serde_json::json!(["alert", null, null, 0, {"id": "a"}])
    );
    assert!(ev.is_empty());
    assert_eq!(write_drain([], &mut ev), "[[],[]]");
  }
}

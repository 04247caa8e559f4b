//! The calculation registry: calculation names by index (the index is what
//! jobs, the store and the JS bridge carry), which of them have a handler
//! registered, and the job defaults each one sets.
//!
//! A name gets its index the first time it is seen (registered, added by a
//! schedule, or read back from a durable store); the index never changes in
//! the life of the service. Jobs of a name with no handler wait in the store
//! until [`Registry::register`] registers one.

use serde_json::Value;

use super::JobOptions;
use crate::error::{Error, Result};
use crate::job::Backoff;
use crate::storage::Names;
use crate::wire::json_str;

/// A registered calculation: the job defaults it sets.
#[derive(Debug, Clone)]
pub(super) struct Calc {
  pub(super) defaults: JobOptions,
  /// `take` hands its data and context over as JSON strings (the worker-thread
  /// pool passes the text on to a thread without parsing it).
  pub(super) raw: bool,
}

/// Calculation names and the registered calculations, by index.
#[derive(Debug, Default)]
pub(super) struct Registry {
  names: Names,
  /// Registered calculations by name index (`None`: no handler yet).
  calcs: Vec<Option<Calc>>,
  /// Name index -> the name as a JSON string literal (for events and listings).
  names_json: Vec<Box<str>>,
}

impl Registry {
  /// A registry over names read from a store; none registered yet.
  pub(super) fn new(names: Names) -> Registry {
    let mut r = Registry {
      names,
      ..Registry::default()
    };
    r.grow();
    r
  }

  /// Gives every name a slot (names interned elsewhere, e.g. by a store
  /// opened over `names_mut`, come in unregistered).
  pub(super) fn grow(&mut self) {
    while self.calcs.len() < self.names.len() {
      let n = self.calcs.len() as u32;
      self.calcs.push(None);
      self
        .names_json
        .push(json_str(self.names.get(n).unwrap_or("")).into());
    }
  }

  /// The index of `name`, new names unregistered.
  pub(super) fn intern(&mut self, name: &str) -> u32 {
    let i = self.names.intern(name);
    self.grow();
    i
  }

  /// Registers (or updates) calculation `name` with its job defaults (JSON
  /// options or `null`). Returns its index and whether it was registered
  /// before.
  pub(super) fn register(
    &mut self,
    name: &str,
    defaults: &Value,
    base_backoff: Backoff,
  ) -> Result<(u32, bool)> {
    if name.is_empty() || name.len() > 512 {
      return Err(Error::arg(
        "calculation.name must be a non-empty string of at most 512 bytes",
      ));
    }
    if name.contains('\0') {
      // PostgreSQL's text cannot hold one (the same rule everywhere).
      return Err(Error::arg(
        "calculation.name must not contain a NUL character (\\u0000)",
      ));
    }
    let defaults = JobOptions::parse(defaults, "calculation", base_backoff)?;
    if defaults.run_at.is_some() || defaults.delay_ms.is_some() {
      return Err(Error::arg(
        "calculation may not set runAt or delay: pass them as job options",
      ));
    }
    if defaults.key.is_some() || defaults.debounce_ms.is_some() {
      return Err(Error::arg(
        "calculation may not set key, onDuplicate or debounceMs: they are per job, pass them as job options",
      ));
    }
    let i = self.intern(name);
    let was_known = self.calcs[i as usize].is_some();
    self.calcs[i as usize] = Some(Calc {
      defaults,
      raw: false,
    });
    Ok((i, was_known))
  }

  /// Makes `take` hand calculation `i`'s data and context over as JSON
  /// strings (`raw`) or as JSON values; false for an unregistered `i`.
  pub(super) fn set_raw(&mut self, i: u32, raw: bool) -> bool {
    match self.calcs.get_mut(i as usize) {
      Some(Some(c)) => {
        c.raw = raw;
        true
      }
      _ => false,
    }
  }

  /// The registered calculation `i`.
  #[inline]
  pub(super) fn get(&self, i: u32) -> Option<&Calc> {
    self.calcs.get(i as usize).and_then(|c| c.as_ref())
  }

  /// True when calculation `i` has a handler (its jobs may run).
  #[inline]
  pub(super) fn is_registered(&self, i: u32) -> bool {
    matches!(self.calcs.get(i as usize), Some(Some(_)))
  }

  /// True when `take` hands calculation `i`'s payloads over as JSON strings.
  #[inline]
  pub(super) fn is_raw(&self, i: u32) -> bool {
    matches!(self.calcs.get(i as usize), Some(Some(c)) if c.raw)
  }

  /// The indices of the registered calculations.
  pub(super) fn registered(&self) -> impl Iterator<Item = u32> + '_ {
    (0..self.calcs.len() as u32).filter(|&i| self.is_registered(i))
  }

  /// The name of calculation `i`.
  pub(super) fn name(&self, i: u32) -> Option<&str> {
    self.names.get(i)
  }

  /// The name of calculation `i` as a JSON string literal (`null` if unknown).
  pub(super) fn name_json(&self, i: u32) -> &str {
    self
      .names_json
      .get(i as usize)
      .map(|s| &**s)
      .unwrap_or("null")
  }

  /// The name table.
  pub(super) fn names(&self) -> &Names {
    &self.names
  }

  /// The name table, for a store being opened to intern its names into;
  /// call [`Registry::grow`] after.
  pub(super) fn names_mut(&mut self) -> &mut Names {
    &mut self.names
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn names_keep_their_index_and_register_once() {
    let mut r = Registry::default();
    let a = r.intern("a");
    assert!(!r.is_registered(a));
    assert_eq!(r.name_json(a), "\"a\"");
    assert_eq!(
      r.register("a", &Value::Null, Backoff::default()),
      Ok((a, false))
    );
    assert!(r.is_registered(a) && !r.is_raw(a));
    assert_eq!(
      r.register("b", &json!({"retries": 2}), Backoff::default()),
      Ok((a + 1, false))
    );
    assert_eq!(
      r.register("a", &Value::Null, Backoff::default()),
      Ok((a, true))
    );
    assert_eq!(r.get(a + 1).and_then(|c| c.defaults.retries), Some(2));
    assert!(r.set_raw(a, true) && r.is_raw(a));
    assert!(!r.set_raw(99, true));
    assert_eq!(r.registered().collect::<Vec<_>>(), [a, a + 1]);
    assert_eq!(r.name_json(99), "null");
  }

  #[test]
  fn bad_registrations_change_nothing() {
    let mut r = Registry::default();
    for (name, opts) in [
      ("", Value::Null),
      (&*"x".repeat(513), Value::Null),
      ("c", json!({"delay": 5})),
      ("c", json!({"retries": "many"})),
    ] {
      assert!(matches!(
        r.register(name, &opts, Backoff::default()),
        Err(Error::InvalidArgument(_))
      ));
    }
    assert_eq!(r.names().len(), 0);
  }
}

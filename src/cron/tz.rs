//! Time zone resolution for cron expressions: IANA names and the process's
//! local zone.

use std::str::FromStr;

use chrono_tz::Tz;

use crate::error::{Error, Result};

/// Prefixes of a `TZ` value or `/etc/localtime` target that name a file in
/// the zoneinfo database rather than the zone itself.
const ZONEINFO_PREFIXES: &[&str] = &[
  "/usr/share/zoneinfo/",
  "/usr/lib/zoneinfo/",
  "/usr/share/lib/zoneinfo/",
  "/etc/zoneinfo/",
];

/// Resolves an IANA time zone name such as `"Europe/Berlin"`.
///
/// The exact spelling is looked up first, then the name case-insensitively
/// (as JavaScript's `Intl` does), so `"europe/berlin"` resolves to
/// `Europe/Berlin`. Links such as `"US/Eastern"` are accepted and keep their
/// own name. Anything else is [`Error::InvalidCron`] with field `"tz"`.
pub fn resolve_tz(name: &str) -> Result<Tz> {
  let trimmed = name.trim();
  if trimmed.is_empty() {
    return Err(tz_error(name, "the time zone name is empty"));
  }
  if let Ok(tz) = Tz::from_str(trimmed) {
    return Ok(tz);
  }
  chrono_tz::TZ_VARIANTS
    .iter()
    .copied()
    .find(|tz| tz.name().eq_ignore_ascii_case(trimmed))
    .ok_or_else(|| {
      tz_error(
        name,
        "not a known IANA time zone name (expected e.g. \"Europe/Berlin\", \"America/New_York\" or \"UTC\")",
      )
    })
}

fn tz_error(name: &str, reason: &str) -> Error {
  Error::InvalidCron {
    field: "tz".to_string(),
    message: format!("{name:?}: {reason}"),
  }
}

/// The process's local time zone, as Node.js (and so Strapi's cron and
/// node-cron) sees it:
///
/// 1. the `TZ` environment variable, if set: an IANA name, optionally with a
///    leading `:` or as a path into the zoneinfo database
///    (`/usr/share/zoneinfo/Europe/Berlin`). A `TZ` that is set but names no
///    known zone (empty, a POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`)
///    means UTC, as it does for Node.js and the C library;
/// 2. otherwise the system zone (`/etc/localtime`, `/etc/timezone`; the
///    registry on Windows, via the `iana-time-zone` crate);
/// 3. otherwise UTC.
///
/// The zone is looked up on every call, not cached.
pub fn local_tz() -> Tz {
  let env = std::env::var("TZ").ok();
  local_tz_from(env.as_deref(), || iana_time_zone::get_timezone().ok())
}

/// [`local_tz`] with its inputs made explicit: the `TZ` variable's value (None
/// if unset) and a source of the system zone name.
pub(crate) fn local_tz_from(tz_env: Option<&str>, system: impl FnOnce() -> Option<String>) -> Tz {
  match tz_env {
    Some(value) => zone_from_tz_value(value).unwrap_or(Tz::UTC),
    None => system()
      .and_then(|name| zone_from_tz_value(&name))
      .unwrap_or(Tz::UTC),
  }
}

/// Reads a `TZ`-style value: `Area/City`, `:Area/City` or a zoneinfo path.
fn zone_from_tz_value(value: &str) -> Option<Tz> {
  let mut name = value.trim();
  name = name.strip_prefix(':').unwrap_or(name);
  for prefix in ZONEINFO_PREFIXES {
    if let Some(rest) = name.strip_prefix(prefix) {
      name = rest;
      break;
    }
  }
  // A zoneinfo path may go through a "posix/" or "right/" subtree.
  name = name.strip_prefix("posix/").unwrap_or(name);
  if name.is_empty() {
    return None;
  }
  resolve_tz(name).ok()
}

#[cfg(test)]
mod tests {
  use super::*;

  fn field(err: Error) -> String {
    match err {
      Error::InvalidCron { field, .. } => field,
      other => panic!("expected InvalidCron, got {other:?}"),
    }
  }

  #[test]
  fn resolves_exact_and_case_insensitive_names() {
    assert_eq!(
      resolve_tz("Europe/Berlin").map(|t| t.name()),
      Ok("Europe/Berlin")
    );
    assert_eq!(
      resolve_tz("europe/berlin").map(|t| t.name()),
      Ok("Europe/Berlin")
    );
    assert_eq!(
      resolve_tz(" America/New_York ").map(|t| t.name()),
      Ok("America/New_York")
    );
    assert_eq!(resolve_tz("UTC").map(|t| t.name()), Ok("UTC"));
    assert_eq!(resolve_tz("US/Eastern").map(|t| t.name()), Ok("US/Eastern"));
    assert_eq!(resolve_tz("Etc/GMT+5").map(|t| t.name()), Ok("Etc/GMT+5"));
  }

  #[test]
  fn rejects_unknown_zones_with_field_tz() {
    for bad in [
      "",
      "  ",
      "Mars/Olympus",
      "Europe/Berlinn",
      "+02:00",
      "CET-1CEST,M3.5.0,M10.5.0/3",
    ] {
      let err = resolve_tz(bad).expect_err(bad);
      assert_eq!(err.code(), "ERR_INVALID_CRON");
      assert_eq!(field(err), "tz", "{bad:?}");
    }
  }

  #[test]
  fn local_zone_prefers_the_tz_variable() {
    let system = || Some("Asia/Tokyo".to_string());
    assert_eq!(
      local_tz_from(Some("Europe/Berlin"), system).name(),
      "Europe/Berlin"
    );
    assert_eq!(
      local_tz_from(Some(":America/New_York"), system).name(),
      "America/New_York"
    );
    assert_eq!(
      local_tz_from(Some("/usr/share/zoneinfo/Australia/Sydney"), system).name(),
      "Australia/Sydney"
    );
    assert_eq!(
      local_tz_from(Some("/usr/share/zoneinfo/posix/Europe/Paris"), system).name(),
      "Europe/Paris"
    );
  }

  #[test]
  fn local_zone_with_an_unusable_tz_variable_is_utc() {
    let system = || Some("Asia/Tokyo".to_string());
    assert_eq!(local_tz_from(Some(""), system).name(), "UTC");
    assert_eq!(local_tz_from(Some("Bogus/Zone"), system).name(), "UTC");
    assert_eq!(
      local_tz_from(Some("CET-1CEST,M3.5.0,M10.5.0/3"), system).name(),
      "UTC"
    );
  }

  #[test]
  fn local_zone_falls_back_to_the_system_then_utc() {
    assert_eq!(
      local_tz_from(None, || Some("Asia/Tokyo".to_string())).name(),
      "Asia/Tokyo"
    );
    assert_eq!(
      local_tz_from(None, || Some("Etc/UTC".to_string())).name(),
      "Etc/UTC"
    );
    assert_eq!(
      local_tz_from(None, || Some("Not/AZone".to_string())).name(),
      "UTC"
    );
    assert_eq!(local_tz_from(None, || None).name(), "UTC");
  }

  #[test]
  fn local_tz_returns_a_zone() {
    // Whatever the environment, the result is a real zone.
    assert!(resolve_tz(local_tz().name()).is_ok());
  }
}

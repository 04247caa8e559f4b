//! Splitting a cron expression into fields, expanding macros and names, and
//! validating each field on its own, so an error names the field at fault.
//!
//! The output is a purely numeric six-field pattern (seconds first), or
//! seven with a year, that croner parses; croner's own errors do not say which field failed, so every
//! field is also parsed alone by croner (see [`validate_with_croner`]).

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::error::{Error, Result};

/// The name of the field an error is about: wrong number of fields, empty
/// expression, unknown macro.
pub const FIELD_EXPRESSION: &str = "expression";

/// The macros and the five-field expressions they stand for.
pub const MACROS: &[(&str, &str)] = &[
  ("@yearly", "0 0 1 1 *"),
  ("@annually", "0 0 1 1 *"),
  ("@monthly", "0 0 1 * *"),
  ("@weekly", "0 0 * * 0"),
  ("@daily", "0 0 * * *"),
  ("@midnight", "0 0 * * *"),
  ("@hourly", "0 * * * *"),
];

const MONTH_NAMES: [&str; 12] = [
  "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// What a field may contain beyond numbers, `*`, `,`, `-` and `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
  /// Seconds, minutes, hours: numbers only.
  Plain,
  /// `L`, `nW`, `LW`, `?`.
  DayOfMonth,
  /// `JAN`-`DEC`.
  Month,
  /// `SUN`-`SAT`, `n#k`, `nL`, `n#L`, `?`, and a leading `+` (day-of-month
  /// AND day-of-week).
  DayOfWeek,
}

/// One field of the seven-field form.
#[derive(Debug, Clone, Copy)]
struct Spec {
  /// The name errors use.
  name: &'static str,
  min: u32,
  max: u32,
  /// The largest step: the number of values the field has (npm croner's rule).
  max_step: u32,
  kind: Kind,
}

/// The fields in croner's order (seconds first, the optional year last).
const SPECS: [Spec; 7] = [
  Spec {
    name: "second",
    min: 0,
    max: 59,
    max_step: 60,
    kind: Kind::Plain,
  },
  Spec {
    name: "minute",
    min: 0,
    max: 59,
    max_step: 60,
    kind: Kind::Plain,
  },
  Spec {
    name: "hour",
    min: 0,
    max: 23,
    max_step: 24,
    kind: Kind::Plain,
  },
  Spec {
    name: "dayOfMonth",
    min: 1,
    max: 31,
    max_step: 31,
    kind: Kind::DayOfMonth,
  },
  Spec {
    name: "month",
    min: 1,
    max: 12,
    max_step: 12,
    kind: Kind::Month,
  },
  Spec {
    name: "dayOfWeek",
    min: 0,
    max: 7,
    max_step: 7,
    kind: Kind::DayOfWeek,
  },
  Spec {
    name: "year",
    min: 1,
    max: 9999,
    max_step: 9999,
    kind: Kind::Plain,
  },
];

/// The parser every pattern goes through: six fields (we add the seconds
/// field) or seven with a year (as npm croner 10), day-of-month OR
/// day-of-week (Vixie cron; npm croner's default) unless day-of-week starts
/// with `+`, and `5/15` / `/15` steps accepted as npm croner 9 accepted them.
pub fn parser() -> CronParser {
  CronParser::builder()
    .seconds(Seconds::Required)
    .year(Year::Optional)
    .dom_and_dow(false)
    .alternative_weekdays(false)
    .sloppy_ranges(true)
    .build()
}

/// Turns `expr` into a numeric six-field pattern, validating every field.
pub fn normalize(expr: &str) -> Result<String> {
  let trimmed = expr.trim();
  if trimmed.is_empty() {
    return Err(expression_error("the expression is empty"));
  }
  let expanded = if trimmed.starts_with('@') {
    expand_macro(trimmed)?
  } else {
    trimmed
  };

  let raw: Vec<&str> = expanded.split_whitespace().collect();
  let offset = match raw.len() {
    5 => 1,
    6 | 7 => 0,
    n => {
      return Err(expression_error(format!(
        "expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field \
         or 7 with seconds and a trailing year, got {n}"
      )))
    }
  };

  let mut fields: Vec<String> = Vec::with_capacity(7);
  if offset == 1 {
    fields.push("0".to_string());
  }
  for (index, raw_field) in (offset..SPECS.len()).zip(&raw) {
    let spec = &SPECS[index];
    let normalized = normalize_field(spec, raw_field)?;
    validate_with_croner(index, raw_field, &normalized)?;
    fields.push(normalized);
  }
  Ok(fields.join(" "))
}

fn expand_macro(trimmed: &str) -> Result<&'static str> {
  MACROS
    .iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
    .map(|(_, pattern)| *pattern)
    .ok_or_else(|| {
      let known: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
      expression_error(format!(
        "unknown macro {trimmed:?} (known: {})",
        known.join(", ")
      ))
    })
}

fn expression_error(message: impl Into<String>) -> Error {
  Error::InvalidCron {
    field: FIELD_EXPRESSION.to_string(),
    message: message.into(),
  }
}

fn field_error(spec: &Spec, raw: &str, reason: impl std::fmt::Display) -> Error {
  Error::InvalidCron {
    field: spec.name.to_string(),
    message: format!(
      "{raw:?}: {reason} (allowed values {}-{})",
      spec.min, spec.max
    ),
  }
}

/// Upper-cases a field, replaces names by numbers and `?` by `*`, and checks
/// the characters and the shape of its list items and steps.
fn normalize_field(spec: &Spec, raw: &str) -> Result<String> {
  let upper = raw.to_ascii_uppercase();
  // `+MON`: day-of-month AND day-of-week (npm croner 10, OCPS 1.4).
  if let (Kind::DayOfWeek, Some(rest)) = (spec.kind, upper.strip_prefix('+')) {
    return Ok(format!("+{}", normalize_upper(spec, raw, rest)?));
  }
  normalize_upper(spec, raw, &upper)
}

fn normalize_upper(spec: &Spec, raw: &str, upper: &str) -> Result<String> {
  if upper == "?" && matches!(spec.kind, Kind::DayOfMonth | Kind::DayOfWeek) {
    return Ok("*".to_string());
  }

  let mut out = String::with_capacity(upper.len());
  let mut chars = upper.char_indices().peekable();
  while let Some((start, c)) = chars.next() {
    if c.is_ascii_alphabetic() {
      let mut end = start + c.len_utf8();
      while let Some(&(i, next)) = chars.peek() {
        if !next.is_ascii_alphabetic() {
          break;
        }
        end = i + next.len_utf8();
        chars.next();
      }
      let word = &upper[start..end];
      let after_dash = upper[..start].ends_with('-');
      out.push_str(&replace_word(spec, raw, word, after_dash)?);
    } else if c.is_ascii_digit()
      || matches!(c, '*' | ',' | '-' | '/')
      || (c == '#' && spec.kind == Kind::DayOfWeek)
    {
      out.push(c);
    } else {
      return Err(field_error(spec, raw, format!("illegal character {c:?}")));
    }
  }

  for item in out.split(',') {
    if item.is_empty() {
      return Err(field_error(spec, raw, "empty list item"));
    }
    if let Some((_, step)) = item.split_once('/') {
      let step_digits = step.split('#').next().unwrap_or(step);
      match step_digits.parse::<u32>() {
        Ok(0) => return Err(field_error(spec, raw, "a step cannot be 0")),
        Ok(n) if n > spec.max_step => {
          return Err(field_error(
            spec,
            raw,
            format!(
              "step {n} is larger than the field's {} values",
              spec.max_step
            ),
          ))
        }
        Ok(_) => {}
        Err(_) => return Err(field_error(spec, raw, format!("invalid step {step:?}"))),
      }
    }
    if spec.kind == Kind::DayOfWeek && item == "L" {
      return Err(field_error(
        spec,
        raw,
        "L in day-of-week needs a weekday, e.g. 5L or FRI#L (last Friday)",
      ));
    }
  }
  Ok(out)
}

/// Maps a run of letters in a field to what croner reads.
fn replace_word(spec: &Spec, raw: &str, word: &str, after_dash: bool) -> Result<String> {
  let day = |w: &str| DAY_NAMES.iter().position(|d| *d == w);
  match spec.kind {
    Kind::Month => {
      if let Some(i) = MONTH_NAMES.iter().position(|m| *m == word) {
        return Ok((i + 1).to_string());
      }
    }
    Kind::DayOfWeek => {
      if word == "L" {
        return Ok(word.to_string());
      }
      // `SUN` closing a range is 7, so `FRI-SUN` is 5-7.
      let number = |i: usize| if i == 0 && after_dash { 7 } else { i };
      if let Some(i) = day(word) {
        return Ok(number(i).to_string());
      }
      if let Some(i) = word.strip_suffix('L').and_then(day) {
        return Ok(format!("{}L", number(i)));
      }
    }
    Kind::DayOfMonth => {
      if matches!(word, "L" | "W" | "LW") {
        return Ok(word.to_string());
      }
    }
    Kind::Plain => {}
  }
  let what = match spec.kind {
    Kind::Month => "unknown month name (use JAN-DEC)",
    Kind::DayOfWeek => "unknown weekday name (use SUN-SAT)",
    Kind::DayOfMonth => "unknown letters (day-of-month allows L, W and LW)",
    Kind::Plain => "letters are not allowed here",
  };
  Err(field_error(spec, raw, format!("{what}: {word:?}")))
}

/// Parses `normalized` with croner as the only restricted field (at
/// `index` of [`SPECS`]) of a pattern, so a croner error is known to be this
/// field's.
fn validate_with_croner(index: usize, raw: &str, normalized: &str) -> Result<()> {
  let mut fields = ["*"; 7];
  fields[index] = normalized;
  parser()
    .parse(&fields.join(" "))
    .map(|_: Cron| ())
    .map_err(|e| field_error(&SPECS[index], raw, e))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn expands_macros_case_insensitively() {
    assert_eq!(normalize("@yearly").ok().as_deref(), Some("0 0 0 1 1 *"));
    assert_eq!(normalize("@ANNUALLY").ok().as_deref(), Some("0 0 0 1 1 *"));
    assert_eq!(normalize("@Monthly").ok().as_deref(), Some("0 0 0 1 * *"));
    assert_eq!(normalize("@weekly").ok().as_deref(), Some("0 0 0 * * 0"));
    assert_eq!(normalize(" @daily ").ok().as_deref(), Some("0 0 0 * * *"));
    assert_eq!(normalize("@midnight").ok().as_deref(), Some("0 0 0 * * *"));
    assert_eq!(normalize("@hourly").ok().as_deref(), Some("0 0 * * * *"));
  }

  #[test]
  fn replaces_names_only_in_their_own_field() {
    assert_eq!(
      normalize("0 9 * jan-Mar mon-FRI").ok().as_deref(),
      Some("0 0 9 * 1-3 1-5")
    );
    assert_eq!(
      normalize("0 0 * * FRI-SUN").ok().as_deref(),
      Some("0 0 0 * * 5-7")
    );
    assert_eq!(
      normalize("0 0 * * sun,sat").ok().as_deref(),
      Some("0 0 0 * * 0,6")
    );
    assert_eq!(
      normalize("0 0 * * FRIL").ok().as_deref(),
      Some("0 0 0 * * 5L")
    );
    assert_eq!(
      normalize("0 0 * * fri#l").ok().as_deref(),
      Some("0 0 0 * * 5#L")
    );
    assert_eq!(
      normalize("0 0 lw * ?").ok().as_deref(),
      Some("0 0 0 LW * *")
    );
    // A month name in the weekday field and the reverse are errors.
    assert!(normalize("0 0 * MON *").is_err());
    assert!(normalize("0 0 * * JAN").is_err());
  }
}

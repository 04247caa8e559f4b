//! Job ids: UUID v7 (time-ordered), monotonic within a process.

use std::fmt;

/// A UUID v7 held as a `u128`, aligned to 8 bytes instead of 16 so that a
/// [`crate::job::Job`] has no padding (it is read by value, never by reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C, packed(8))]
pub struct JobId(pub u128);

impl JobId {
  /// Parses the canonical 36-character form (either case); `None` otherwise.
  pub fn parse(s: &str) -> Option<JobId> {
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
      return None;
    }
    let mut v: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
      if matches!(i, 8 | 13 | 18 | 23) {
        continue;
      }
      let d = (c as char).to_digit(16)?;
      v = (v << 4) | d as u128;
    }
    Some(JobId(v))
  }

  /// The creation time encoded in the id (epoch ms).
  pub fn timestamp_ms(self) -> u64 {
    (self.0 >> 80) as u64
  }

  /// Writes the canonical form into `out`.
  ///
  /// Formats into a stack buffer and appends it once: the dispatcher writes
  /// one id per job handed out (pushing 36 chars one by one cost ~1,000
  /// instructions a job, ~6% of a job's whole processing).
  pub fn write_to(self, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Where each of the 16 bytes' two digits go; the dashes are already there.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut buf = [b'-'; 36];
    let bytes = self.0.to_be_bytes();
    for (b, at) in bytes.iter().zip(AT) {
      buf[at] = HEX[(b >> 4) as usize];
      buf[at + 1] = HEX[(b & 0xf) as usize];
    }
    // Always ASCII: hex digits and dashes.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
  }
}

impl fmt::Display for JobId {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut s = String::with_capacity(36);
    self.write_to(&mut s);
    f.write_str(&s)
  }
}

/// Makes UUID v7 ids whose order follows creation order: the 12-bit `rand_a`
/// field is a counter within the millisecond (RFC 9562, method 1).
#[derive(Debug, Default)]
pub struct IdGen {
  last_ms: u64,
  counter: u16,
}

impl IdGen {
  /// Continues after `last` (the newest id already stored), so ids made now
  /// sort after it even if the clock went back.
  pub fn seed(&mut self, last: JobId) {
    self.last_ms = last.timestamp_ms();
    self.counter = ((last.0 >> 64) & 0x0fff) as u16;
  }

  /// The next id at `now_ms`.
  pub fn next(&mut self, now_ms: u64) -> JobId {
    if now_ms > self.last_ms {
      self.last_ms = now_ms;
      self.counter = 0;
    } else if self.counter >= 0x0fff {
      self.last_ms += 1;
      self.counter = 0;
    } else {
      self.counter += 1;
    }
    let ts = (self.last_ms as u128 & 0xffff_ffff_ffff) << 80;
    let ver = 0x7u128 << 76;
    let rand_a = (self.counter as u128) << 64;
    let variant = 0b10u128 << 62;
    let rand_b = fastrand::u64(..) as u128 & ((1u128 << 62) - 1);
    JobId(ts | ver | rand_a | variant | rand_b)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn ids_are_ordered_and_round_trip() {
    let mut g = IdGen::default();
    let mut prev = g.next(1_700_000_000_000);
    for i in 0..10_000 {
      let id = g.next(1_700_000_000_000 + i / 7_000);
      assert!(id > prev);
      let s = id.to_string();
      assert_eq!(s.len(), 36);
      assert_eq!(&s[14..15], "7");
      assert_eq!(JobId::parse(&s), Some(id));
      assert_eq!(JobId::parse(&s.to_uppercase()), Some(id));
      prev = id;
    }
    assert_eq!(prev.timestamp_ms() / 1000, 1_700_000_000);
  }

  #[test]
  fn the_canonical_form_of_a_known_id() {
    let id = JobId(0x0190_f3a2_1234_7abc_8def_1234_5678_9012);
    assert_eq!(id.to_string(), "0190f3a2-1234-7abc-8def-123456789012");
    let mut out = String::from("x");
    JobId(u128::MAX).write_to(&mut out);
    assert_eq!(out, "xffffffff-ffff-ffff-ffff-ffffffffffff");
    assert_eq!(JobId(0).to_string(), "00000000-0000-0000-0000-000000000000");
  }

  #[test]
  fn parse_rejects_garbage() {
    for s in [
      "",
      "abc",
      "0190f3a2-1234-7abc-8def-12345678901",
      "0190f3a2x1234-7abc-8def-123456789012",
      "0190f3a2-1234-7abc-8def-12345678901g",
    ] {
      assert_eq!(JobId::parse(s), None, "{s}");
    }
  }
}

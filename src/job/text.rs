//! [`Text`]: an immutable string in 16 bytes (as `Box<str>`) that keeps up
//! to 15 bytes inline, so a small job payload (`{"x":123456}`) costs no
//! allocation of its own (the smallest `malloc` chunk is 32 bytes).

use std::fmt;
use std::mem::size_of;
use std::ops::Deref;
use std::ptr::NonNull;

/// Longest text kept inline.
const INLINE: usize = 15;
/// Set in the last byte of an inline text (with the length in the low bits);
/// clear there for a heap text, whose last byte is the top byte of its
/// little-endian length.
const INLINE_TAG: u8 = 0x80;

/// A heap text: a `Box<str>`'s pointer and its length as a little-endian
/// `u64`, which ends the 16 bytes.
#[derive(Clone, Copy)]
#[repr(C)]
struct Heap {
  ptr: NonNull<u8>,
  _pad: [u8; 8 - size_of::<usize>()],
  len_le: u64,
}

#[repr(C)]
union Repr {
  heap: Heap,
  inline: [u8; 16],
}

/// An immutable UTF-8 string: inline up to 15 bytes, else one heap
/// allocation of exactly its length. Reads as a `&str` (`Deref`).
pub struct Text(Repr);

const _: () = assert!(size_of::<Text>() == 16);

// SAFETY: a `Text` owns its bytes (like `Box<str>`) and never mutates them.
unsafe impl Send for Text {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Text {}

impl Text {
  /// The empty text.
  pub const EMPTY: Text = Text(Repr {
    inline: {
      let mut b = [0u8; 16];
      b[15] = INLINE_TAG;
      b
    },
  });

  /// The last byte: the inline tag and length, or the top byte of a heap
  /// text's length (0).
  fn last(&self) -> u8 {
    // SAFETY: byte 15 is initialized in both layouts: the inline tag, or the
    // last byte of `len_le` (an integer).
    unsafe { *(self as *const Text as *const u8).add(15) }
  }

  fn is_inline(&self) -> bool {
    self.last() & INLINE_TAG != 0
  }

  /// The text as a string slice.
  pub fn as_str(&self) -> &str {
    let bytes: &[u8] = if self.is_inline() {
      let len = (self.last() & !INLINE_TAG) as usize;
      // SAFETY: an inline text was written as `inline`.
      unsafe { &self.0.inline[..len] }
    } else {
      // SAFETY: a heap text was written as `heap`, from a live `Box<str>`
      // of that length that this text owns.
      unsafe {
        let h = self.0.heap;
        std::slice::from_raw_parts(h.ptr.as_ptr(), u64::from_le(h.len_le) as usize)
      }
    };
    // SAFETY: the bytes were copied from (or are) a `str`.
    unsafe { std::str::from_utf8_unchecked(bytes) }
  }

  fn inline(s: &str) -> Text {
    debug_assert!(s.len() <= INLINE);
    let mut b = [0u8; 16];
    b[..s.len()].copy_from_slice(s.as_bytes());
    b[15] = INLINE_TAG | s.len() as u8;
    Text(Repr { inline: b })
  }

  fn heap(b: Box<str>) -> Text {
    let len = b.len() as u64;
    assert!(len >> 56 == 0, "text too long");
    // SAFETY: `Box::into_raw` never returns null.
    let ptr = unsafe { NonNull::new_unchecked(Box::into_raw(b) as *mut u8) };
    Text(Repr {
      heap: Heap {
        ptr,
        _pad: [0; 8 - size_of::<usize>()],
        len_le: len.to_le(),
      },
    })
  }
}

impl Drop for Text {
  fn drop(&mut self) {
    if !self.is_inline() {
      // SAFETY: a heap text owns the `Box<str>` it was made from; this
      // rebuilds it once, to free it.
      unsafe {
        let h = self.0.heap;
        let len = u64::from_le(h.len_le) as usize;
        let raw = std::ptr::slice_from_raw_parts_mut(h.ptr.as_ptr(), len) as *mut str;
        drop(Box::from_raw(raw));
      }
    }
  }
}

impl Clone for Text {
  fn clone(&self) -> Text {
    Text::from(self.as_str())
  }
}

impl Default for Text {
  fn default() -> Text {
    Text::EMPTY
  }
}

impl From<&str> for Text {
  fn from(s: &str) -> Text {
    if s.len() <= INLINE {
      Text::inline(s)
    } else {
      Text::heap(s.into())
    }
  }
}

impl From<Box<str>> for Text {
  fn from(s: Box<str>) -> Text {
    if s.len() <= INLINE {
      Text::inline(&s)
    } else {
      Text::heap(s)
    }
  }
}

impl From<String> for Text {
  fn from(s: String) -> Text {
    if s.len() <= INLINE {
      Text::inline(&s)
    } else {
      Text::heap(s.into_boxed_str())
    }
  }
}

impl From<Text> for Box<str> {
  fn from(t: Text) -> Box<str> {
    t.as_str().into()
  }
}

impl Deref for Text {
  type Target = str;
  fn deref(&self) -> &str {
    self.as_str()
  }
}

impl AsRef<str> for Text {
  fn as_ref(&self) -> &str {
    self.as_str()
  }
}

impl std::borrow::Borrow<str> for Text {
  fn borrow(&self) -> &str {
    self.as_str()
  }
}

impl PartialEq for Text {
  fn eq(&self, other: &Text) -> bool {
    self.as_str() == other.as_str()
  }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
  fn eq(&self, other: &str) -> bool {
    self.as_str() == other
  }
}

impl PartialEq<&str> for Text {
  fn eq(&self, other: &&str) -> bool {
    self.as_str() == *other
  }
}

impl std::hash::Hash for Text {
  fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
    self.as_str().hash(state)
  }
}

impl fmt::Display for Text {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    fmt::Display::fmt(self.as_str(), f)
  }
}

impl fmt::Debug for Text {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    fmt::Debug::fmt(self.as_str(), f)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn round_trips_inline_and_heap() {
    let long = "x".repeat(1_000);
    let cases = [
      "",
      "a",
      "{\"x\":1}",
      "{\"x\":999999}",
      "123456789012345",
      "1234567890123456",
      "é€😀 multi-byte, longer than fifteen",
      long.as_str(),
    ];
    for s in cases {
      let a = Text::from(s);
      assert_eq!(a.is_inline(), s.len() <= INLINE, "{s}");
      assert_eq!(&*a, s);
      assert_eq!(a.len(), s.len());
      assert_eq!(a.to_string(), s);
      assert_eq!(format!("{a:?}"), format!("{s:?}"));
      let b = Text::from(s.to_string());
      assert_eq!(a, b);
      let c = Text::from(Box::<str>::from(s));
      assert_eq!(a, c);
      let boxed: Box<str> = Box::from(a.as_str());
      assert_eq!(&*boxed, s);
      let copy = Clone::clone(&a);
      drop(a);
      assert_eq!(copy, s);
    }
    assert!(Text::default().is_empty());
    assert_eq!(Text::EMPTY, "");
  }
}

//! The code tables of [`crate::error`], exported to JavaScript as string
//! enums (`ErrorCode`, `JobErrorCode` in `binding.d.ts`): expanded from the
//! same rows as the core's enums, so a code exists once. `index.js` and
//! `lib/` take every code they throw or store from these objects.

use napi_derive::napi;

use crate::error::{api_codes, job_codes};

/// A `#[napi(string_enum)]` over a code table.
macro_rules! napi_code_enum {
  ($name:ident, $doc:tt, $($variant:ident = $code:tt, $vdoc:tt;)*) => {
    #[doc = $doc]
    #[napi(string_enum)]
    pub enum $name {
      $(#[doc = $vdoc] #[napi(value = $code)] $variant,)*
    }
  };
}

api_codes!(napi_code_enum);
job_codes!(napi_code_enum);

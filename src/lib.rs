//! jobwerk: background jobs for Strapi and any Node.js app.
//!
//! The core (everything outside `binding`) is plain Rust and knows nothing
//! about Node: [`queue::Queue`] is the job state machine driven by an injected
//! time, [`queue::Engine`] puts it behind a lock with a timer on a shared tokio
//! runtime, [`job`] holds the job model, [`clock`] the time sources,
//! [`wire`] the format of the batched JavaScript bridge.
//! `binding` (cargo feature `napi`) is the only code that names N-API.

pub mod clock;
pub mod cron;
pub mod error;
pub mod job;
pub mod monitor;
pub mod queue;
pub mod scheduler;
pub mod storage;
pub mod wire;

#[cfg(feature = "napi")]
mod binding;

pub use error::{Error, Result};

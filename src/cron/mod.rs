//! Cron expressions (croner): parsing, validation and next fire times.

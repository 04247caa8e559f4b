//! The file lock: one process (and one service) per SQLite file. The lock
//! is an advisory lock on `<path>.lock`, which the OS drops with the
//! process; the file holds the owner's pid, for the message a second opener
//! gets.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::sql_err;
use crate::error::{Error, Result};

/// The file's canonical path (the parent's, plus the name, when the file
/// does not exist yet).
pub(super) fn canonical_path(path: &Path) -> PathBuf {
  if let Ok(p) = fs::canonicalize(path) {
    return p;
  }
  match (path.parent(), path.file_name()) {
    (Some(dir), Some(name)) => fs::canonicalize(if dir.as_os_str().is_empty() {
      Path::new(".")
    } else {
      dir
    })
    .map(|d| d.join(name))
    .unwrap_or_else(|_| path.to_path_buf()),
    _ => path.to_path_buf(),
  }
}

/// Takes the file's lock or says who holds it.
pub(super) fn take_lock(path: &Path, shown: &Path) -> Result<File> {
  let mut lock_path = path.as_os_str().to_owned();
  lock_path.push(".lock");
  let lock_path = PathBuf::from(lock_path);
  let mut f = OpenOptions::new()
    .read(true)
    .write(true)
    .create(true)
    .truncate(false)
    .open(&lock_path)
    .map_err(|e| {
      Error::Storage(format!(
        "cannot create the lock file of '{}' ('{}'): {e}",
        shown.display(),
        lock_path.display()
      ))
    })?;
  match f.try_lock() {
    Ok(()) => {}
    Err(TryLockError::WouldBlock) => {
      let mut pid = String::new();
      let _ = f.read_to_string(&mut pid);
      let pid = pid.trim();
      let who = if pid.is_empty() {
        "another jobwerk service".to_string()
      } else if pid == std::process::id().to_string() {
        format!("another jobwerk service in this process (pid {pid})")
      } else {
        format!("another process (pid {pid})")
      };
      return Err(Error::Storage(format!(
        "'{}' is in use by {who}: one process (and one service) per SQLite file; \
         give each service its own storage.path",
        shown.display()
      )));
    }
    Err(TryLockError::Error(e)) => return Err(sql_err(shown, "cannot lock", e)),
  }
  let _ = f.set_len(0);
  let _ = f.seek(SeekFrom::Start(0));
  let _ = write!(f, "{}", std::process::id());
  let _ = f.flush();
  Ok(f)
}

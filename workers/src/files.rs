//! Replacing a stored file whole: written beside it and renamed over it, so a crash leaves the
//! old or the new version, never half of one.

use std::ffi::OsString;
use std::path::Path;

/// Writes `bytes` to `path.new`, then renames it to `path`.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = OsString::from(path.as_os_str());
    temporary.push(".new");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

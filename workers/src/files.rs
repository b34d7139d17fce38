//! Files a worker leaves on an edge (components, specs that hold secrets, key-value data):
//! readable by the edge's user only, in directories only it can enter, and replaced whole:
//! written beside the old file, fsynced, and renamed over it, so a crash leaves the old or the
//! new version, never half of one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub(crate) use outpost_server::files::replace;

/// Creates `dir` (and its parents) and makes it 0700.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Makes `path` readable and writable by its owner only.
pub(crate) fn owner_only(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

//! The admin bearer token when a topology sets none: made at random on first start, kept in
//! the state directory (`admin-token`, mode 0600) and shown once, so no two installations share
//! a token and nobody has to invent one. The CLI's admin commands read it from there.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::StartError;

const FILE: &str = "admin-token";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The token kept in `state_dir`, if there is one.
pub fn stored(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path(state_dir)).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The configured token, else the stored one, else a new one (stored now; `true` when new).
pub fn ensure(configured: Option<&str>, state_dir: &Path) -> Result<(String, bool), StartError> {
    let state = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StartError::State { what, path, source }
    };
    if let Some(token) = configured {
        return Ok((token.to_owned(), false));
    }
    if let Some(token) = stored(state_dir) {
        return Ok((token, false));
    }
    std::fs::create_dir_all(state_dir).map_err(state("creating", state_dir))?;
    let mut random = [0u8; 24];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom)
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(state("reading the admin token's randomness from", urandom))?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let file = path(state_dir);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file);
    match created {
        Ok(mut handle) => {
            handle
                .write_all(format!("{token}\n").as_bytes())
                .and_then(|()| handle.sync_all())
                .map_err(state("writing", &file))?;
            Ok((token, true))
        }
        // Another node of the same state directory made it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let token = stored(state_dir).ok_or_else(|| {
                state("reading the admin token from", &file)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the file exists but holds no token",
                ))
            })?;
            Ok((token, false))
        }
        Err(error) => Err(state("creating", &file)(error)),
    }
}

/// Makes sure a topology node has a token; logs where a new one was made (the token itself is
/// never logged: the CLI shows it once, on the terminal).
pub fn for_node(configured: Option<&str>, state_dir: &Path) -> Result<(String, bool), StartError> {
    let (token, new) = ensure(configured, state_dir)?;
    if new {
        let file = path(state_dir);
        tracing::info!(target: "outpost", "generated an admin token in {} (mode 0600)", file.display());
    }
    Ok((token, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_private_and_random() {
        let dir = tempfile::tempdir().unwrap();
        let (first, new) = ensure(None, dir.path()).unwrap();
        assert!(new);
        assert_eq!(first.len(), 48);
        let (again, new) = ensure(None, dir.path()).unwrap();
        assert_eq!((again.as_str(), new), (first.as_str(), false));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(ensure(None, other.path()).unwrap().0, first);
        assert_eq!(ensure(Some("mine"), dir.path()).unwrap().0, "mine");
    }
}

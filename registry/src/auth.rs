//! Push authentication: the registry token file and the check of `Authorization` headers.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine as _;
use rand::RngCore as _;

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "registry.token";

/// Errors from reading or creating the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// File system failure.
    #[error("cannot read or create the registry token: {0}")]
    Io(#[from] io::Error),
    /// The token file is empty.
    #[error("registry token file {0} is empty")]
    Empty(String),
}

/// Reads `DIR/registry.token`, creating it (random, mode 0600) if it does not exist.
/// Blocking: call it from a blocking context.
pub fn load_or_create_token(dir: &Path) -> Result<String, AuthError> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let t = s.trim().to_string();
            if t.is_empty() {
                return Err(AuthError::Empty(path.display().to_string()));
            }
            return Ok(t);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::create_dir_all(dir)?;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(format!("{token}\n").as_bytes())?;
            f.sync_all()?;
            Ok(token)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create_token(dir),
        Err(e) => Err(e.into()),
    }
}

/// What an `Authorization` header amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// No header.
    None,
    /// A header carrying the right token.
    Valid,
    /// A header that is malformed or carries a wrong token.
    Invalid,
}

/// Checks an `Authorization` header value against `token`: `Basic` with any user name and the
/// token as password, or `Bearer TOKEN`.
pub fn check(header: Option<&[u8]>, token: &str) -> Credentials {
    let Some(value) = header else {
        return Credentials::None;
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return Credentials::Invalid;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return Credentials::Invalid;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(i) => decoded[i + 1..].to_vec(),
            None => return Credentials::Invalid,
        }
    } else {
        return Credentials::Invalid;
    };
    if constant_time_eq(&presented, token.as_bytes()) {
        Credentials::Valid
    } else {
        Credentials::Invalid
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = load_or_create_token(dir.path()).unwrap();
        let t2 = load_or_create_token(dir.path()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn checks_basic_and_bearer() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(check(None, "tok"), Credentials::None);
        let basic = format!("Basic {}", b64("anyone:tok"));
        assert_eq!(check(Some(basic.as_bytes()), "tok"), Credentials::Valid);
        let wrong = format!("Basic {}", b64("anyone:nope"));
        assert_eq!(check(Some(wrong.as_bytes()), "tok"), Credentials::Invalid);
        assert_eq!(check(Some(b"Bearer tok"), "tok"), Credentials::Valid);
        assert_eq!(check(Some(b"Bearer tok2"), "tok"), Credentials::Invalid);
        assert_eq!(check(Some(b"Digest x"), "tok"), Credentials::Invalid);
        assert_eq!(check(Some(b"Basic !!!"), "tok"), Credentials::Invalid);
    }
}

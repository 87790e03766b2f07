//! Argon2id password hashing (PHC strings, `argon2` defaults: m=19456 KiB, t=2, p=1).
//!
//! Hashing and verification cost ~30 ms of CPU and 19 MiB of memory each, so they run on the
//! blocking thread pool, never on an async worker, and at most [`MAX_CONCURRENT`] at a time: a
//! burst of logins then queues instead of multiplying memory (and stealing every core).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{Error, Result};

/// Password hashes computed at once, process-wide.
pub const MAX_CONCURRENT: usize = 2;
static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT);

/// Runs `f` on the blocking pool once a hashing permit is free.
async fn limited<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _permit = PERMITS.acquire().await.map_err(|e| Error::Hashing(e.to_string()))?;
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Hashing(e.to_string()))
}

/// A valid Argon2id hash (default parameters) of a random password nobody knows. Logins for
/// unknown emails verify against it, so they take as long as logins with a wrong password.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$w7g+IzgOg/iO3q/8rvT8FA$d/qGujvEVKDBTsnrArnKAFgeO0UN6OAjnTQWl/NdzS0";

/// Hashes `password` into a PHC string, off the async workers.
pub async fn hash(password: String) -> Result<String> {
    limited(move || hash_blocking(&password)).await?
}

fn hash_blocking(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Hashing(e.to_string()))
}

/// Verifies `password` against `phc` (or against [`DUMMY_HASH`] when `phc` is `None`, which then
/// always fails), off the async workers. A malformed stored hash counts as a mismatch.
pub async fn verify(password: String, phc: Option<String>) -> Result<bool> {
    limited(move || {
        let known = phc.is_some();
        let phc = phc.as_deref().unwrap_or(DUMMY_HASH);
        let ok = match Argon2::default().verify_password(password.as_bytes(), phc) {
            Ok(()) => true,
            Err(argon2::password_hash::Error::PasswordInvalid) => false,
            Err(e) => {
                if known {
                    tracing::error!(error = %e, "stored password hash cannot be verified");
                }
                false
            }
        };
        ok && known
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery".into(), Some(h.clone())).await.unwrap());
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
        assert!(!verify("x".into(), Some("not a hash".into())).await.unwrap());
    }

    #[tokio::test]
    async fn the_dummy_hash_is_a_real_hash_with_default_parameters() {
        assert!(DUMMY_HASH.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        // A parse error would return immediately and leak timing; a real hash costs a full verify.
        let err = Argon2::default().verify_password(b"anything", DUMMY_HASH).unwrap_err();
        assert_eq!(err, argon2::password_hash::Error::PasswordInvalid);
        assert!(!verify("anything".into(), None).await.unwrap());
    }
}

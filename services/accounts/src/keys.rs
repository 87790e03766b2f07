//! Ed25519 signing keys: loaded from (or created in) the database, the newest signs, every
//! non-retired key is published (JWKS), rotation keeps the previous key published.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flotilla_runtime::auth::{Claims, JwkSet, PublicKeys, SigningKey};
use flotilla_runtime::db::DbError;
use flotilla_runtime::db::is_unique_violation;
use flotilla_runtime::time::now_ms;

use crate::error::{Error, Result};
use crate::model::StoredKey;
use crate::store::Store;

fn decode_key(k: &StoredKey) -> Result<SigningKey> {
    let corrupt = |reason: String| Error::CorruptKey { kid: k.kid.clone(), reason };
    let bytes = STANDARD.decode(k.private_key.trim()).map_err(|e| corrupt(e.to_string()))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| corrupt(format!("{} bytes, expected 32", b.len())))?;
    Ok(SigningKey::from_seed(&k.kid, seed))
}

fn stored(key: &SigningKey, created_at: i64) -> StoredKey {
    StoredKey { kid: key.kid.clone(), private_key: STANDARD.encode(key.seed()), created_at, retired_at: None }
}

/// Inserts a key; a unique violation (another replica inserted the same kid) is not an error.
async fn insert_ignoring_race(store: &Store, key: &StoredKey) -> Result<()> {
    match store.insert_signing_key(key).await {
        Err(DbError::Query(e)) if is_unique_violation(&e) => Ok(()),
        other => other.map_err(Error::from),
    }
}

/// The non-retired keys, oldest first; creates the first key when there is none.
pub async fn load_or_create(store: &Store) -> Result<Vec<SigningKey>> {
    let mut rows = store.signing_keys().await?;
    if rows.is_empty() {
        let key = SigningKey::generate();
        insert_ignoring_race(store, &stored(&key, now_ms())).await?;
        rows = store.signing_keys().await?;
        tracing::info!(kid = %key.kid, "created the first signing key");
    }
    rows.iter().map(decode_key).collect()
}

/// Adds a new signing key that becomes the newest (the one that signs once services reload their
/// keys). The previous newest key stays published so tokens it signed keep verifying; older keys
/// are retired. Returns the new key id.
pub async fn rotate_signing_key(store: &Store) -> Result<String> {
    let existing = store.signing_keys().await?;
    let now = now_ms();
    // Keys sort by (created_at, kid): make sure the new key sorts last even if clocks went back.
    let created_at = existing.iter().map(|k| k.created_at + 1).max().unwrap_or(now).max(now);
    let key = SigningKey::generate();
    store.insert_signing_key(&stored(&key, created_at)).await?;
    let previous = existing.last().map(|k| k.kid.as_str()).unwrap_or(key.kid.as_str());
    let retired = store.retire_signing_keys_except(&key.kid, previous, now).await?;
    tracing::info!(kid = %key.kid, retired, "rotated the signing key");
    Ok(key.kid)
}

/// The keys this process signs with, shared by the request handlers.
pub struct Signer {
    current: RwLock<Arc<SigningKey>>,
    published: Arc<PublicKeys>,
}

impl Signer {
    /// Loads (or creates) the keys and publishes them into `published`.
    pub async fn load(store: &Store, published: Arc<PublicKeys>) -> Result<Signer> {
        let keys = load_or_create(store).await?;
        let (newest, set) = split(keys)?;
        published.replace(set);
        Ok(Signer { current: RwLock::new(newest), published })
    }

    /// Re-reads the keys (after a rotation by the CLI or another replica) and republishes them.
    pub async fn reload(&self, store: &Store) -> Result<()> {
        let (newest, set) = split(load_or_create(store).await?)?;
        self.published.replace(set);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = newest;
        Ok(())
    }

    pub fn kid(&self) -> String {
        self.current.read().unwrap_or_else(|p| p.into_inner()).kid.clone()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let key = self.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        key.sign(claims)
    }

    pub fn jwks(&self) -> JwkSet {
        self.published.jwks()
    }
}

fn split(keys: Vec<SigningKey>) -> Result<(Arc<SigningKey>, JwkSet)> {
    let set = JwkSet { keys: keys.iter().map(SigningKey::jwk).collect() };
    let newest = keys
        .into_iter()
        .last()
        .ok_or_else(|| Error::CorruptKey { kid: String::new(), reason: "no signing key after creating one".into() })?;
    Ok((Arc::new(newest), set))
}

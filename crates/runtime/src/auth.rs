//! Access-token verification shared by the gateway and every service.
//!
//! Tokens are EdDSA JWTs issued by accounts. The algorithm is pinned, `iss`, `aud` and `exp` are
//! checked, and the key is looked up by `kid` in a [`PublicKeys`] set (filled by accounts itself in
//! embedded mode, or from its JWKS endpoint elsewhere). A verified token is cached until it
//! expires, so a busy client pays for one signature check, not one per request; revocation is
//! still checked on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::problem::Problem;
use crate::time::now_secs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The claims of an access token. `sid` names the refresh-token family (the login session) the
/// token was issued for, so logout can end exactly that session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: String,
    pub sid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut res = Problem::unauthorized(self.to_string()).into_response();
        let challenge = match self {
            AuthError::Missing => "Bearer",
            _ => "Bearer error=\"invalid_token\"",
        };
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        res
    }
}

/// One public key in JWKS form (RFC 8037 OKP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

impl Jwk {
    pub fn ed25519(kid: &str, public_key: &[u8; 32]) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(public_key),
            kid: kid.into(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// The verification keys currently trusted, by `kid`.
#[derive(Default)]
pub struct PublicKeys {
    keys: RwLock<HashMap<String, DecodingKey>>,
    jwks: RwLock<JwkSet>,
}

impl PublicKeys {
    /// Replaces the whole set (keys not in `set` are no longer trusted).
    pub fn replace(&self, set: JwkSet) {
        let mut map = HashMap::new();
        for k in &set.keys {
            if k.kty == "OKP" && k.crv == "Ed25519" {
                match DecodingKey::from_ed_components(&k.x) {
                    Ok(key) => {
                        map.insert(k.kid.clone(), key);
                    }
                    Err(e) => tracing::warn!(kid = %k.kid, error = %e, "ignoring unusable public key"),
                }
            }
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = map;
        *self.jwks.write().unwrap_or_else(|p| p.into_inner()) = set;
    }

    pub fn get(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).get(kid).cloned()
    }

    pub fn jwks(&self) -> JwkSet {
        self.jwks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

/// One revocation, as applied locally and announced to other processes
/// ([`crate::shared::SharedStore::share_revocations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Tokens of this session (`sid`) are void; remembered until `until` (unix secs).
    Session { sid: String, until: i64 },
    /// Tokens of this user issued up to `not_before` (unix secs) are void.
    User { sub: String, not_before: i64 },
    /// The user may sign in again (lifts [`Revocation::User`]).
    Cleared { sub: String },
}

impl Revocation {
    /// One line: `s <sid> <until>`, `u <sub> <not_before>` or `c <sub>` (ids hold no spaces).
    pub fn encode(&self) -> String {
        match self {
            Revocation::Session { sid, until } => format!("s {sid} {until}"),
            Revocation::User { sub, not_before } => format!("u {sub} {not_before}"),
            Revocation::Cleared { sub } => format!("c {sub}"),
        }
    }

    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split(' ');
        let r = match (parts.next()?, parts.next()?, parts.next()) {
            ("s", sid, Some(until)) => Revocation::Session { sid: sid.to_owned(), until: until.parse().ok()? },
            ("u", sub, Some(nb)) => Revocation::User { sub: sub.to_owned(), not_before: nb.parse().ok()? },
            ("c", sub, None) => Revocation::Cleared { sub: sub.to_owned() },
            _ => return None,
        };
        if parts.next().is_some() { None } else { Some(r) }
    }
}

type Sink = Arc<dyn Fn(&Revocation) + Send + Sync>;

/// Revoked sessions and users, consulted on every request. Kept in memory (shared by all
/// services of an embedded process); with Redis, revocations made here are also sent to every
/// other process through the sink, and theirs are applied here.
#[derive(Default)]
pub struct Revocations {
    /// session id (`sid`) → until when (unix secs) to remember the revocation.
    sessions: Mutex<HashMap<String, i64>>,
    /// user id → tokens issued before this instant (unix secs) are void.
    users: Mutex<HashMap<String, i64>>,
    sink: std::sync::OnceLock<Sink>,
}

impl Revocations {
    pub fn revoke_session(&self, sid: &str, until: i64) {
        self.record(Revocation::Session { sid: sid.to_owned(), until });
    }

    /// Voids every token of the user issued up to now (deletion, deactivation).
    pub fn revoke_user(&self, sub: &str) {
        self.record(Revocation::User { sub: sub.to_owned(), not_before: now_secs() });
    }

    /// Lets the user in again (re-activation): tokens issued from now on are valid.
    pub fn clear_user(&self, sub: &str) {
        self.record(Revocation::Cleared { sub: sub.to_owned() });
    }

    /// Where revocations made in this process are sent (set once, by the shared store).
    pub fn set_sink(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    fn record(&self, r: Revocation) {
        self.apply(&r);
        if let Some(sink) = self.sink.get() {
            sink(&r);
        }
    }

    /// Applies a revocation locally (made here or announced by another process).
    pub fn apply(&self, r: &Revocation) {
        match r {
            Revocation::Session { sid, until } => {
                let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                let now = now_secs();
                if map.len() > 100_000 {
                    map.retain(|_, until| *until > now);
                }
                map.insert(sid.clone(), *until);
            }
            Revocation::User { sub, not_before } => {
                let mut map = self.users.lock().unwrap_or_else(|p| p.into_inner());
                let entry = map.entry(sub.clone()).or_insert(*not_before);
                *entry = (*entry).max(*not_before);
            }
            Revocation::Cleared { sub } => {
                self.users.lock().unwrap_or_else(|p| p.into_inner()).remove(sub);
            }
        }
    }

    pub fn is_revoked(&self, claims: &Claims) -> bool {
        if self.sessions.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&claims.sid) {
            return true;
        }
        match self.users.lock().unwrap_or_else(|p| p.into_inner()).get(&claims.sub) {
            Some(&not_before) => claims.iat <= not_before,
            None => false,
        }
    }
}

/// What a verifier checks tokens against.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
}

const CACHE_MAX: usize = 10_000;

/// Fetches the current public keys again (a remote JWKS); see [`JwksClient`].
pub trait KeyRefresher: Send + Sync {
    fn refresh(&self) -> futures_util::future::BoxFuture<'_, ()>;
}

pub struct Verifier {
    keys: Arc<PublicKeys>,
    revocations: Arc<Revocations>,
    validation: Validation,
    cache: Mutex<HashMap<[u8; 32], Claims>>,
    refresher: std::sync::OnceLock<Arc<dyn KeyRefresher>>,
}

impl Verifier {
    pub fn new(keys: Arc<PublicKeys>, revocations: Arc<Revocations>, policy: &TokenPolicy) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&policy.issuer]);
        validation.set_audience(&[&policy.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Self { keys, revocations, validation, cache: Mutex::new(HashMap::new()), refresher: Default::default() }
    }

    /// Lets [`Verifier::authenticate`] fetch keys again when a token names an unknown `kid`
    /// (the issuer rotated its key).
    pub fn set_refresher(&self, refresher: Arc<dyn KeyRefresher>) {
        let _ = self.refresher.set(refresher);
    }

    /// Like [`Verifier::verify`], but a token signed with a key this process has not seen yet
    /// triggers one refresh of the key set before it is rejected.
    pub async fn authenticate(&self, token: &str) -> Result<Claims, AuthError> {
        match self.verify(token) {
            Err(AuthError::Invalid) if self.has_unknown_kid(token) => match self.refresher.get() {
                Some(r) => {
                    r.refresh().await;
                    self.verify(token)
                }
                None => Err(AuthError::Invalid),
            },
            other => other,
        }
    }

    fn has_unknown_kid(&self, token: &str) -> bool {
        matches!(jsonwebtoken::decode_header(token), Ok(h) if h.kid.as_deref().is_some_and(|k| self.keys.get(k).is_none()))
    }

    pub fn keys(&self) -> &Arc<PublicKeys> {
        &self.keys
    }

    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&digest).cloned();
        let claims = match cached {
            Some(c) if c.exp + self.validation.leeway as i64 >= now_secs() => c,
            Some(_) => return Err(AuthError::Expired),
            None => {
                let c = self.verify_signature(token)?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(digest, c.clone());
                c
            }
        };
        if self.revocations.is_revoked(&claims) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid);
        }
        let kid = header.kid.ok_or(AuthError::Invalid)?;
        let key = self.keys.get(&kid).ok_or(AuthError::Invalid)?;
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map(|d| d.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })
    }

    /// Verifies the `Authorization: Bearer …` header (refreshing keys on an unknown `kid`).
    pub async fn verify_headers(&self, headers: &HeaderMap) -> Result<Claims, AuthError> {
        self.authenticate(bearer_token(headers).ok_or(AuthError::Missing)?).await
    }
}

pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Middleware for a service's protected routes: accepts claims already verified by the
/// in-process gateway (request extensions cannot come from the network), else verifies the
/// bearer token itself.
pub async fn require_auth(State(verifier): State<Arc<Verifier>>, mut req: Request, next: Next) -> Response {
    if req.extensions().get::<Claims>().is_none() {
        match verifier.verify_headers(req.headers()).await {
            Ok(claims) => {
                req.extensions_mut().insert(claims);
            }
            Err(e) => return e.into_response(),
        }
    }
    next.run(req).await
}

/// The authenticated caller, for handlers behind [`require_auth`] or the gateway.
#[derive(Debug, Clone)]
pub struct Auth(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Claims>().cloned().map(Auth).ok_or(AuthError::Missing)
    }
}

impl Auth {
    pub fn is_admin(&self) -> bool {
        self.0.role == Role::Admin
    }
    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.is_admin() { Ok(()) } else { Err(Problem::forbidden("administrator role required")) }
    }
    /// 403 unless the path's user is the caller (tasks of another user are never reachable).
    pub fn require_user(&self, path_user: &str) -> Result<(), Problem> {
        if self.0.sub == path_user {
            Ok(())
        } else {
            Err(Problem::forbidden("the user in the path is not the signed-in user"))
        }
    }
}

/// Everything a process needs to check tokens: trusted keys, revocations, policy, verifier.
/// In embedded mode one context is shared by accounts (which fills the keys) and the others.
#[derive(Clone)]
pub struct AuthContext {
    pub keys: Arc<PublicKeys>,
    pub revocations: Arc<Revocations>,
    pub policy: TokenPolicy,
    pub verifier: Arc<Verifier>,
}

impl AuthContext {
    pub fn new(policy: TokenPolicy) -> Self {
        let keys = Arc::new(PublicKeys::default());
        let revocations = Arc::new(Revocations::default());
        let verifier = Arc::new(Verifier::new(keys.clone(), revocations.clone(), &policy));
        Self { keys, revocations, policy, verifier }
    }

    pub fn from_env(env: &crate::config::Env) -> Self {
        use crate::config::{JWT_AUDIENCE, JWT_ISSUER};
        Self::new(TokenPolicy { issuer: env.string(JWT_ISSUER), audience: env.string(JWT_AUDIENCE) })
    }
}

/// An Ed25519 signing key with its key id. Accounts keeps these in its database.
pub struct SigningKey {
    pub kid: String,
    seed: [u8; 32],
    public: [u8; 32],
    encoding: jsonwebtoken::EncodingKey,
}

impl SigningKey {
    pub fn generate() -> Self {
        Self::from_seed(&crate::ids::new_id(), rand::random())
    }

    pub fn from_seed(kid: &str, seed: [u8; 32]) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = sk.to_pkcs8_der().expect("an Ed25519 key always encodes as PKCS#8");
        Self {
            kid: kid.to_owned(),
            seed,
            public: sk.verifying_key().to_bytes(),
            encoding: jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        }
    }

    /// The private key material (32 bytes); store it as a secret.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    pub fn jwk(&self) -> Jwk {
        Jwk::ed25519(&self.kid, &self.public)
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("EdDSA signing with a valid key cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, exp_in: i64) -> Claims {
        let now = now_secs();
        Claims {
            sub: sub.into(),
            role: Role::User,
            iat: now,
            exp: now + exp_in,
            iss: "flotilla".into(),
            aud: "flotilla-api".into(),
            jti: crate::ids::new_id(),
            sid: "s1".into(),
        }
    }

    fn setup() -> (SigningKey, Verifier) {
        let key = SigningKey::generate();
        let keys = Arc::new(PublicKeys::default());
        keys.replace(JwkSet { keys: vec![key.jwk()] });
        let policy = TokenPolicy { issuer: "flotilla".into(), audience: "flotilla-api".into() };
        (key, Verifier::new(keys, Arc::new(Revocations::default()), &policy))
    }

    #[test]
    fn eddsa_tokens_sign_and_verify() {
        let (key, verifier) = setup();
        let c = claims("u1", 900);
        let token = key.sign(&c);
        assert_eq!(verifier.verify(&token).unwrap(), c);
        // second call comes from the cache and gives the same answer
        assert_eq!(verifier.verify(&token).unwrap(), c);
    }

    #[test]
    fn tampered_foreign_expired_and_wrong_audience_tokens_are_rejected() {
        let (key, verifier) = setup();
        let token = key.sign(&claims("u1", 900));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Change one full-value character in the middle of the signature.
        let mut sig: Vec<char> = parts[2].chars().collect();
        sig[20] = if sig[20] == 'A' { 'B' } else { 'A' };
        parts[2] = sig.into_iter().collect();
        assert_eq!(verifier.verify(&parts.join(".")), Err(AuthError::Invalid));
        assert_eq!(
            verifier.verify(&format!("{}.mock-signature", &token[..token.rfind('.').unwrap()])),
            Err(AuthError::Invalid)
        );

        let stranger = SigningKey::from_seed(&key.kid, [7; 32]);
        assert_eq!(verifier.verify(&stranger.sign(&claims("u1", 900))), Err(AuthError::Invalid));

        assert_eq!(verifier.verify(&key.sign(&claims("u1", -120))), Err(AuthError::Expired));

        let mut other_aud = claims("u1", 900);
        other_aud.aud = "someone-else".into();
        assert_eq!(verifier.verify(&key.sign(&other_aud)), Err(AuthError::Invalid));
    }

    #[test]
    fn hs256_tokens_are_refused_even_with_a_known_kid() {
        let (key, verifier) = setup();
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims("u1", 900), &jsonwebtoken::EncodingKey::from_secret(b"s")).unwrap();
        assert_eq!(verifier.verify(&token), Err(AuthError::Invalid));
    }

    #[test]
    fn revoked_sessions_and_users_are_rejected_even_when_cached() {
        let (key, verifier) = setup();
        let c = claims("u1", 900);
        let token = key.sign(&c);
        assert!(verifier.verify(&token).is_ok());
        verifier.revocations().revoke_session("s1", c.exp);
        assert_eq!(verifier.verify(&token), Err(AuthError::Revoked));

        let mut c2 = claims("u2", 900);
        c2.sid = "s2".into();
        let token2 = key.sign(&c2);
        assert!(verifier.verify(&token2).is_ok());
        verifier.revocations().revoke_user("u2");
        assert_eq!(verifier.verify(&token2), Err(AuthError::Revoked));
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer abc.def"));
        assert_eq!(bearer_token(&h), Some("abc.def"));
    }
}

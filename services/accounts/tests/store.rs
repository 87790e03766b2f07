//! Storage tests, written once and run on SQLite and on PostgreSQL.

mod common;

use std::sync::Arc;

use common::Engine;
use flotilla_accounts::model::{AdminChange, AdminUpdate, NewRefreshToken, UserRecord};
use flotilla_accounts::tokens::{RefreshState, classify_refresh, issue_refresh};
use flotilla_accounts::{Store, keys, rotate_signing_key};
use flotilla_runtime::auth::{Claims, PublicKeys, Revocations, Role, TokenPolicy, Verifier};
use flotilla_runtime::db::{DbError, is_unique_violation};
use flotilla_runtime::ids::new_id;
use flotilla_runtime::time::{now_ms, now_secs};

/// Generates `<case>::sqlite` and `<case>::postgres` tests for each async fn taking a `Store`.
macro_rules! store_tests {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let t = common::open(Engine::Sqlite).await.expect("sqlite is always available");
                super::$case(Store::new(t.db.clone())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(t) = common::open(Engine::Postgres).await else { return };
                super::$case(Store::new(t.db.clone())).await;
                t.db.close().await;
            }
        }
    )*};
}

store_tests!(
    create_and_find_users,
    duplicate_email_is_a_unique_violation,
    refresh_rotation_reuse_and_family_revocation,
    concurrent_use_of_one_refresh_token_has_one_winner,
    signing_keys_are_created_once_and_rotate,
    admin_listing_paginates_in_creation_order,
    admin_changes_keep_an_active_admin_and_end_sessions,
    profile_updates_and_user_deletion,
);

fn user(email: &str, role: Role, active: bool) -> UserRecord {
    let now = now_ms();
    UserRecord {
        id: new_id(),
        name: format!("User {email}"),
        email: email.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".to_owned(),
        role,
        active,
        created_at: now,
        updated_at: now,
    }
}

fn refresh_for(u: &UserRecord, family: &str) -> NewRefreshToken {
    issue_refresh(&u.id, family, now_ms(), 3_600_000).row
}

async fn create_and_find_users(store: Store) {
    let ada = user("ada@example.com", Role::User, true);
    let root = user("root@example.com", Role::Admin, false);
    store.insert_user(&ada).await.unwrap();
    store.insert_user(&root).await.unwrap();

    assert_eq!(store.find_user_by_email("ada@example.com").await.unwrap(), Some(ada.clone()));
    assert_eq!(store.find_user(&ada.id).await.unwrap(), Some(ada.clone()));
    let got = store.find_user(&root.id).await.unwrap().unwrap();
    assert_eq!((got.role, got.active), (Role::Admin, false), "role and the boolean round-trip");
    assert_eq!(store.find_user_by_email("nobody@example.com").await.unwrap(), None);
    assert_eq!(store.find_user(&new_id()).await.unwrap(), None);
    assert_eq!(store.count_users().await.unwrap(), 2);
}

async fn duplicate_email_is_a_unique_violation(store: Store) {
    let first = user("dup@example.com", Role::User, true);
    store.insert_user(&first).await.unwrap();
    let second = user("dup@example.com", Role::User, true);
    match store.insert_user(&second).await {
        Err(DbError::Query(e)) => assert!(is_unique_violation(&e), "{e}"),
        other => panic!("expected a unique violation, got {other:?}"),
    }
    assert_eq!(store.count_users().await.unwrap(), 1);
    assert_eq!(store.find_user_by_email("dup@example.com").await.unwrap().unwrap().id, first.id);
}

async fn refresh_rotation_reuse_and_family_revocation(store: Store) {
    let u = user("r@example.com", Role::User, true);
    store.insert_user(&u).await.unwrap();
    let family = new_id();
    let first = refresh_for(&u, &family);
    store.insert_refresh_token(&first).await.unwrap();

    let found = store.find_refresh_token(&first.token_hash).await.unwrap().unwrap();
    assert_eq!((found.user_id.as_str(), found.family_id.as_str()), (u.id.as_str(), family.as_str()));
    assert_eq!(classify_refresh(&found, now_ms()), RefreshState::Usable);

    let second = refresh_for(&u, &family);
    assert!(store.rotate_refresh_token(&first.id, &second, now_ms()).await.unwrap());
    let old = store.find_refresh_token(&first.token_hash).await.unwrap().unwrap();
    assert!(old.used_at.is_some());
    assert_eq!(classify_refresh(&old, now_ms()), RefreshState::Reused, "presenting it again is a reuse");
    let new = store.find_refresh_token(&second.token_hash).await.unwrap().unwrap();
    assert_eq!(new.family_id, family);
    assert_eq!(classify_refresh(&new, now_ms()), RefreshState::Usable);

    // Reuse of the old token cannot rotate again and stores nothing.
    let third = refresh_for(&u, &family);
    assert!(!store.rotate_refresh_token(&first.id, &third, now_ms()).await.unwrap());
    assert!(store.find_refresh_token(&third.token_hash).await.unwrap().is_none());

    // Another session of the same user is unaffected by revoking this family.
    let other = refresh_for(&u, &new_id());
    store.insert_refresh_token(&other).await.unwrap();
    assert_eq!(store.revoke_family(&family, now_ms()).await.unwrap(), 2);
    for hash in [&first.token_hash, &second.token_hash] {
        let t = store.find_refresh_token(hash).await.unwrap().unwrap();
        assert_eq!(classify_refresh(&t, now_ms()), RefreshState::Dead);
    }
    let fourth = refresh_for(&u, &family);
    assert!(!store.rotate_refresh_token(&second.id, &fourth, now_ms()).await.unwrap(), "revoked tokens never rotate");
    let o = store.find_refresh_token(&other.token_hash).await.unwrap().unwrap();
    assert_eq!(classify_refresh(&o, now_ms()), RefreshState::Usable);

    // An expired token is dead.
    let mut expired = refresh_for(&u, &new_id());
    expired.expires_at = now_ms() - 1;
    store.insert_refresh_token(&expired).await.unwrap();
    let e = store.find_refresh_token(&expired.token_hash).await.unwrap().unwrap();
    assert_eq!(classify_refresh(&e, now_ms()), RefreshState::Dead);
}

async fn concurrent_use_of_one_refresh_token_has_one_winner(store: Store) {
    let u = user("race@example.com", Role::User, true);
    store.insert_user(&u).await.unwrap();
    let family = new_id();
    let first = refresh_for(&u, &family);
    store.insert_refresh_token(&first).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let old_id = first.id.clone();
        let next = refresh_for(&u, &family);
        tasks.push(tokio::spawn(async move {
            let won = store.rotate_refresh_token(&old_id, &next, now_ms()).await.unwrap();
            (won, next.token_hash)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (won, hash) = t.await.unwrap();
        let stored = store.find_refresh_token(&hash).await.unwrap();
        assert_eq!(stored.is_some(), won, "only the winner's token is stored");
        if won {
            winners.push(hash);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent exchange wins");
}

async fn signing_keys_are_created_once_and_rotate(store: Store) {
    let first = keys::load_or_create(&store).await.unwrap();
    assert_eq!(first.len(), 1);
    let again = keys::load_or_create(&store).await.unwrap();
    assert_eq!(again.len(), 1, "a second start reuses the stored key");
    assert_eq!(again[0].kid, first[0].kid);
    assert_eq!(again[0].public_key(), first[0].public_key(), "the private key round-trips");

    // Sign with the current key, rotate, and check both the old token and new tokens verify.
    let published = Arc::new(PublicKeys::default());
    let signer = keys::Signer::load(&store, published.clone()).await.unwrap();
    let policy = TokenPolicy { issuer: "flotilla".into(), audience: "flotilla-api".into() };
    let verifier = Verifier::new(published.clone(), Arc::new(Revocations::default()), &policy);
    let claims = |sid: &str| Claims {
        sub: "u1".into(),
        role: Role::User,
        iat: now_secs(),
        exp: now_secs() + 900,
        iss: "flotilla".into(),
        aud: "flotilla-api".into(),
        jti: new_id(),
        sid: sid.into(),
    };
    let old_token = signer.sign(&claims("s1"));
    assert_eq!(signer.kid(), first[0].kid);

    let new_kid = rotate_signing_key(&store).await.unwrap();
    assert_ne!(new_kid, first[0].kid);
    signer.reload(&store).await.unwrap();
    assert_eq!(signer.kid(), new_kid, "new tokens use the new key");
    let kids: Vec<String> = published.jwks().keys.into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, vec![first[0].kid.clone(), new_kid.clone()], "the previous key stays published");
    assert!(verifier.verify(&old_token).is_ok(), "tokens of the previous key still verify");
    let new_token = signer.sign(&claims("s2"));
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    assert!(verifier.verify(&new_token).is_ok());

    // A second rotation retires the oldest key: only the newest two stay published.
    let newest = rotate_signing_key(&store).await.unwrap();
    signer.reload(&store).await.unwrap();
    let kids: Vec<String> = published.jwks().keys.into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, vec![new_kid, newest]);
    let stored = store.signing_keys().await.unwrap();
    assert_eq!(stored.len(), 2);
}

async fn admin_listing_paginates_in_creation_order(store: Store) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let u = user(&format!("u{i}@example.com"), Role::User, true);
        store.insert_user(&u).await.unwrap();
        ids.push(u.id);
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = store.list_users(&after, 3).await.unwrap();
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().id.clone();
        seen.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(seen, ids, "every user once, in creation order");
    assert_eq!(store.list_users(&ids[5], 10).await.unwrap().len(), 1);
}

async fn admin_changes_keep_an_active_admin_and_end_sessions(store: Store) {
    let admin = user("admin@example.com", Role::Admin, true);
    let bob = user("bob@example.com", Role::User, true);
    store.insert_user(&admin).await.unwrap();
    store.insert_user(&bob).await.unwrap();
    let demote = AdminChange { role: Some(Role::User), active: None };
    let disable = AdminChange { role: None, active: Some(false) };

    assert_eq!(store.admin_update_user(&admin.id, demote, now_ms()).await.unwrap(), AdminUpdate::LastAdmin);
    assert_eq!(store.admin_update_user(&admin.id, disable, now_ms()).await.unwrap(), AdminUpdate::LastAdmin);
    assert_eq!(store.find_user(&admin.id).await.unwrap().unwrap(), admin, "a refused change changes nothing");
    assert_eq!(store.admin_update_user(&new_id(), disable, now_ms()).await.unwrap(), AdminUpdate::NotFound);

    // Promote bob; his sessions end (their tokens carry the old role).
    let (f1, f2) = (new_id(), new_id());
    let t1 = refresh_for(&bob, &f1);
    let t2 = refresh_for(&bob, &f2);
    store.insert_refresh_token(&t1).await.unwrap();
    store.insert_refresh_token(&t2).await.unwrap();
    let promote = AdminChange { role: Some(Role::Admin), active: None };
    let AdminUpdate::Updated { user: b, revoked_families } =
        store.admin_update_user(&bob.id, promote, now_ms()).await.unwrap()
    else {
        panic!("promotion refused")
    };
    assert_eq!(b.role, Role::Admin);
    let mut expected = vec![f1.clone(), f2.clone()];
    expected.sort();
    assert_eq!(revoked_families, expected);
    assert!(store.find_refresh_token(&t1.token_hash).await.unwrap().unwrap().revoked_at.is_some());

    // Now the first admin may step down; bob is the last one.
    assert!(matches!(
        store.admin_update_user(&admin.id, disable, now_ms()).await.unwrap(),
        AdminUpdate::Updated { .. }
    ));
    assert!(!store.find_user(&admin.id).await.unwrap().unwrap().active);
    assert_eq!(store.admin_update_user(&bob.id, demote, now_ms()).await.unwrap(), AdminUpdate::LastAdmin);

    // Re-activating changes no session; a name-free no-op change keeps sessions.
    let t3 = refresh_for(&bob, &new_id());
    store.insert_refresh_token(&t3).await.unwrap();
    let enable = AdminChange { role: None, active: Some(true) };
    let AdminUpdate::Updated { user: a, revoked_families } =
        store.admin_update_user(&admin.id, enable, now_ms()).await.unwrap()
    else {
        panic!("re-activation refused")
    };
    assert!(a.active && revoked_families.is_empty());
    let same = AdminChange { role: Some(Role::Admin), active: Some(true) };
    let AdminUpdate::Updated { revoked_families, .. } = store.admin_update_user(&bob.id, same, now_ms()).await.unwrap()
    else {
        panic!("no-op refused")
    };
    assert!(revoked_families.is_empty());
    assert!(store.find_refresh_token(&t3.token_hash).await.unwrap().unwrap().revoked_at.is_none());
}

async fn profile_updates_and_user_deletion(store: Store) {
    let u = user("p@example.com", Role::User, true);
    store.insert_user(&u).await.unwrap();
    let renamed = store.update_profile(&u.id, Some("New Name"), None, u.updated_at + 5).await.unwrap().unwrap();
    assert_eq!((renamed.name.as_str(), renamed.password_hash.as_str()), ("New Name", u.password_hash.as_str()));
    assert_eq!(renamed.updated_at, u.updated_at + 5);
    let rehashed = store.update_profile(&u.id, None, Some("$argon2id$new"), u.updated_at + 6).await.unwrap().unwrap();
    assert_eq!((rehashed.name.as_str(), rehashed.password_hash.as_str()), ("New Name", "$argon2id$new"));
    assert!(store.update_profile(&new_id(), Some("x"), None, 0).await.unwrap().is_none());

    // Password change: every other session ends, the caller's stays.
    let (keep, other) = (new_id(), new_id());
    let tk = refresh_for(&u, &keep);
    let to = refresh_for(&u, &other);
    store.insert_refresh_token(&tk).await.unwrap();
    store.insert_refresh_token(&to).await.unwrap();
    assert_eq!(store.revoke_user_families(&u.id, &keep, now_ms()).await.unwrap(), vec![other]);
    assert!(store.find_refresh_token(&tk.token_hash).await.unwrap().unwrap().revoked_at.is_none());
    assert!(store.find_refresh_token(&to.token_hash).await.unwrap().unwrap().revoked_at.is_some());

    let promoted = store.set_role_by_email("p@example.com", Role::Admin, now_ms()).await.unwrap().unwrap();
    assert_eq!(promoted.role, Role::Admin);
    assert!(store.set_role_by_email("nobody@example.com", Role::Admin, now_ms()).await.unwrap().is_none());

    assert!(store.delete_user(&u.id).await.unwrap());
    assert!(store.find_user(&u.id).await.unwrap().is_none());
    assert!(store.find_refresh_token(&tk.token_hash).await.unwrap().is_none(), "its refresh tokens are gone");
    assert!(!store.delete_user(&u.id).await.unwrap());
}

//! State shared through a real Redis (a throwaway `redis-server`): revocations made in one
//! process reach the others, rate limits count across replicas, and a Redis outage degrades the
//! limits to per-replica counting instead of refusing requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_runtime::auth::{Claims, Revocations, Role};
use flotilla_runtime::config::{Env, REDIS_URL};
use flotilla_runtime::ratelimit::Limiter;
use flotilla_runtime::shared::SharedStore;
use flotilla_runtime::time::now_secs;

fn claims(sub: &str, sid: &str) -> Claims {
    let now = now_secs();
    Claims {
        sub: sub.into(),
        role: Role::User,
        iat: now - 1,
        exp: now + 900,
        iss: "flotilla".into(),
        aud: "flotilla-api".into(),
        jti: "j".into(),
        sid: sid.into(),
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn store(url: &str) -> SharedStore {
    SharedStore::from_env(&Env::from_pairs([(REDIS_URL, url)])).expect("valid").expect("configured")
}

#[tokio::test]
async fn revocations_reach_every_process_including_those_started_later() {
    let Some(redis) = flotilla_testkit::redis_or_skip() else { return };
    let (a, b) = (Arc::new(Revocations::default()), Arc::new(Revocations::default()));
    store(&redis.url()).share_revocations(&a);
    store(&redis.url()).share_revocations(&b);
    // Give both subscriptions time to be established before revoking.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (alice, bob) = (claims("alice", "s-alice"), claims("bob", "s-bob"));
    a.revoke_session("s-alice", now_secs() + 900);
    b.revoke_user("bob");
    eventually("b saw alice's logout", || b.is_revoked(&alice)).await;
    eventually("a saw bob's deactivation", || a.is_revoked(&bob)).await;
    assert!(!a.is_revoked(&claims("carol", "s-carol")), "others are untouched");

    // A process started afterwards loads what is stored.
    let c = Arc::new(Revocations::default());
    store(&redis.url()).share_revocations(&c);
    eventually("c loaded both revocations", || c.is_revoked(&alice) && c.is_revoked(&bob)).await;

    // Re-activation lifts the user revocation everywhere (tokens issued from now on).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.clear_user("bob");
    let fresh = claims("bob", "s-bob-2");
    let fresh = Claims { iat: now_secs(), ..fresh };
    eventually("b and c saw the re-activation", || !b.is_revoked(&fresh) && !c.is_revoked(&fresh)).await;
}

#[tokio::test]
async fn limits_count_across_replicas_and_fall_back_to_local_counts() {
    let Some(redis) = flotilla_testkit::redis_or_skip() else { return };
    let s = store(&redis.url());
    s.ping().await.expect("redis answers");
    let one = Limiter::new(3, Duration::from_secs(60), Some(&s), "test");
    let two = Limiter::new(3, Duration::from_secs(60), Some(&store(&redis.url())), "test");
    assert!(one.hit("u").await.allowed);
    assert!(two.hit("u").await.allowed);
    let third = one.hit("u").await;
    assert!(third.allowed);
    assert_eq!(third.remaining, 0);
    let fourth = two.hit("u").await;
    assert!(!fourth.allowed, "the fourth hit across two replicas is over the limit of 3");
    assert!(!one.peek("u").await.allowed);
    assert!(two.hit("other").await.allowed, "keys are independent");
    one.reset("u").await;
    assert!(two.peek("u").await.allowed, "a reset on one replica clears the shared count");

    // Redis goes away: counting continues locally, requests are not refused.
    drop(redis);
    assert!(s.ping().await.is_err());
    assert!(one.hit("v").await.allowed);
}

#[test]
fn the_url_is_validated_without_echoing_it() {
    let err = SharedStore::from_env(&Env::from_pairs([(REDIS_URL, "http://:secret@cache:6379")])).unwrap_err();
    assert_eq!(err.var, REDIS_URL);
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(SharedStore::from_env(&Env::default()).unwrap().is_none());
}

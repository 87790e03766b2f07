//! The NATS JetStream bus against a real `nats-server` (started per test by the testkit).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use flotilla_events::event::types;
use flotilla_events::nats::{DLQ_STREAM, EVENTS_STREAM, HEADER_CONSUMER};
use flotilla_events::outbox::pending_count;
use flotilla_events::{
    Bus, BusState, Consumer, NatsBus, Outcome, Relay, RelayOptions, ReplayOutcome, RetryPolicy, SubscribeOptions,
    list_dead_letters, metrics_names,
};
use flotilla_testkit::nats::nats_or_skip;
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(60);

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, base_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(50) }
}

fn fast_relay() -> RelayOptions {
    RelayOptions {
        poll_interval: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..RelayOptions::default()
    }
}

async fn stream_messages(bus: &NatsBus, stream: &str) -> u64 {
    let mut s = bus.jetstream().get_stream(stream).await.unwrap();
    s.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_is_acked_and_deduplicated_by_event_id() {
    let Some(nats) = nats_or_skip() else { return };
    let bus = NatsBus::connect(&nats.url()).await.unwrap();
    assert_eq!(bus.state(), BusState::Connected);
    let ev = event(types::TASK_CREATED, 1);
    bus.publish(&ev).await.unwrap();
    bus.publish(&ev).await.unwrap(); // a relay re-publish after a crash
    bus.publish(&event(types::TASK_UPDATED, 2)).await.unwrap();
    assert_eq!(stream_messages(&bus, EVENTS_STREAM).await, 2, "the duplicate was dropped by Nats-Msg-Id");

    nats.stop();
    wait_until(Duration::from_secs(10), "disconnected state", || async { !bus.state().is_connected() }).await;
    assert!(bus.publish(&event(types::TASK_UPDATED, 3)).await.is_err(), "no ack, no success");
    nats.restart();
    wait_until(Duration::from_secs(20), "reconnected", || async { bus.state().is_connected() }).await;
    assert_eq!(stream_messages(&bus, EVENTS_STREAM).await, 2, "file storage survives the restart");
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_events_across_a_server_restart_arrive_exactly_once() {
    let Some(nats) = nats_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let producer = sqlite_db(&dir, "restart_producer").await;
    let audit_db = sqlite_db(&dir, "restart_audit").await;
    let bus = NatsBus::connect(&nats.url()).await.unwrap();
    let recorder = Recorder::new("audit");
    bus.subscribe("audit", &[], audit_db.clone(), recorder.clone(), fast_policy(3)).unwrap();
    let relay = Relay::spawn_with("restart_producer", producer.clone(), Arc::new(bus.clone()), fast_relay());

    let events: Vec<_> = (0..100).map(|i| event(types::TASK_CREATED, i)).collect();
    for (i, ev) in events.iter().enumerate() {
        if i == 40 {
            nats.stop();
        }
        if i == 70 {
            // Writes kept committing meanwhile; the backlog waits in the outbox.
            assert!(pending_count(&producer).await.unwrap() >= 25);
            nats.restart();
        }
        write_events(&producer, std::slice::from_ref(ev), true).await;
        relay.notify();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until(WAIT, "100 events handled", || async { handled(&audit_db, "audit").await.len() >= 100 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = handled(&audit_db, "audit").await;
    got.sort();
    let mut want: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    want.sort();
    assert_eq!(got, want, "every event exactly once");
    assert_eq!(inbox_count(&audit_db, "audit").await, 100);
    assert_eq!(pending_count(&producer).await.unwrap(), 0);
    relay.shutdown().await;
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_publish_and_mark_is_dropped_by_the_server() {
    let Some(nats) = nats_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let producer = sqlite_db(&dir, "crash_producer").await;
    let consumer_db = sqlite_db(&dir, "crash_consumer").await;
    let bus = NatsBus::connect(&nats.url()).await.unwrap();
    let recorder = Recorder::new("crash");
    bus.subscribe("crash", &["flotilla.task.>"], consumer_db.clone(), recorder.clone(), fast_policy(3)).unwrap();

    let ev = event(types::TASK_COMPLETED, 1);
    write_events(&producer, std::slice::from_ref(&ev), true).await;
    bus.publish(&ev).await.unwrap(); // published, then the relay "crashed" before marking
    let relay = Relay::spawn_with("crash_producer", producer.clone(), Arc::new(bus.clone()), fast_relay());
    wait_until(WAIT, "row marked", || async { pending_count(&producer).await.unwrap() == 0 }).await;
    wait_until(WAIT, "handled", || async { !handled(&consumer_db, "crash").await.is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stream_messages(&bus, EVENTS_STREAM).await, 1, "the re-publish was a server-side duplicate");
    assert_eq!(handled(&consumer_db, "crash").await, vec![ev.id.clone()]);
    assert_eq!(recorder.calls(), 1);
    relay.shutdown().await;
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_consumers_each_get_every_event_and_redeliveries_are_duplicates() {
    metrics_on();
    let Some(nats) = nats_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a_db = sqlite_db(&dir, "two_a").await;
    let b_db = sqlite_db(&dir, "two_b").await;
    let bus = NatsBus::connect(&nats.url()).await.unwrap();
    let events = vec![event(types::TASK_CREATED, 1), event(types::USER_SIGNED_UP, 2), event(types::TASK_COMPLETED, 3)];
    for ev in &events {
        bus.publish(ev).await.unwrap();
    }
    // Consumer "two-b" processed the first event and crashed before its ack.
    let b = Recorder::new("two-b");
    let b_runner = Consumer::new("two-b", b_db.clone(), b.clone(), fast_policy(3));
    assert_eq!(b_runner.process(&events[0]).await.unwrap(), Outcome::Processed);

    let a = Recorder::new("two-a");
    // "two-a" takes a task and a user filter (two filters: filtered client-side on 2.9).
    bus.subscribe("two-a", &["flotilla.task.created", "flotilla.user.>"], a_db.clone(), a.clone(), fast_policy(3))
        .unwrap();
    bus.subscribe("two-b", &[], b_db.clone(), b.clone(), fast_policy(3)).unwrap();
    wait_until(WAIT, "a has 2", || async { handled(&a_db, "two-a").await.len() >= 2 }).await;
    wait_until(WAIT, "b has 3", || async { handled(&b_db, "two-b").await.len() >= 3 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = |idx: &[usize]| idx.iter().map(|&i| events[i].id.clone()).collect::<Vec<_>>();
    let mut got_a = handled(&a_db, "two-a").await;
    got_a.sort();
    let mut want_a = ids(&[0, 1]);
    want_a.sort();
    assert_eq!(got_a, want_a);
    assert_eq!(b.calls(), 3, "the redelivered first event was a duplicate, not processed twice");
    assert_eq!(inbox_count(&b_db, "two-b").await, 3);
    assert!(metric(metrics_names::EVENT_BUS_CONSUMED_TOTAL, &[("consumer", "two-b"), ("outcome", "duplicate")]) >= 1.0);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ack_that_comes_too_late_leads_to_a_duplicate_not_a_second_run() {
    metrics_on();
    let Some(nats) = nats_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir, "late").await;
    let bus = NatsBus::connect(&nats.url()).await.unwrap();
    let slow = Recorder::new("late");
    *slow.first_call_sleep.lock().unwrap() = Some(Duration::from_millis(2500));
    // The pull request stays open (5 s) past the ack wait (1 s), so the server redelivers the
    // message into it while the first delivery is still being handled.
    let options =
        SubscribeOptions { ack_wait: Duration::from_secs(1), batch: 4, fetch_expires: Duration::from_secs(5) };
    bus.subscribe_with("late", &[], db.clone(), slow.clone(), fast_policy(3), options).unwrap();
    let ev = event(types::TASK_CREATED, 1);
    bus.publish(&ev).await.unwrap();
    wait_until(WAIT, "redelivered copy seen as duplicate", || async {
        metric(metrics_names::EVENT_BUS_CONSUMED_TOTAL, &[("consumer", "late"), ("outcome", "duplicate")]) >= 1.0
    })
    .await;
    assert_eq!(handled(&db, "late").await, vec![ev.id.clone()]);
    assert_eq!(slow.calls(), 1);
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_consumer_dead_letters_to_the_dlq_stream_and_replays_once() {
    metrics_on();
    let Some(nats) = nats_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir, "dlq").await;
    let bus = NatsBus::connect(&nats.url()).await.unwrap();
    let recorder = Recorder::new("dlq-consumer");
    recorder.always_fail.store(true, Ordering::SeqCst);
    bus.subscribe("dlq-consumer", &[], db.clone(), recorder.clone(), fast_policy(3)).unwrap();
    let ev = event(types::TASK_REMINDER_DUE, 1);
    bus.publish(&ev).await.unwrap();

    wait_until(WAIT, "dead letter", || async { !list_dead_letters(&db, 10).await.unwrap().is_empty() }).await;
    wait_until(WAIT, "DLQ message", || async { stream_messages(&bus, DLQ_STREAM).await >= 1 }).await;
    let letter = list_dead_letters(&db, 10).await.unwrap().remove(0);
    assert_eq!((letter.event_id.as_str(), letter.attempts), (ev.id.as_str(), 3));
    assert_eq!(metric(metrics_names::EVENT_BUS_DEAD_LETTER_TOTAL, &[("consumer", "dlq-consumer")]), 1.0);

    // The DLQ message carries the event and names the consumer and the error.
    let dlq = bus.jetstream().get_stream(DLQ_STREAM).await.unwrap();
    let reader =
        dlq.create_consumer(async_nats::jetstream::consumer::pull::Config { ..Default::default() }).await.unwrap();
    let mut batch = reader.fetch().max_messages(1).messages().await.unwrap();
    let msg = batch.next().await.unwrap().unwrap();
    assert_eq!(msg.subject.as_str(), "flotilla_dlq.dlq-consumer");
    assert_eq!(flotilla_events::Event::from_json(&msg.payload).unwrap(), ev);
    let headers = msg.headers.clone().unwrap();
    assert_eq!(headers.get(HEADER_CONSUMER).unwrap().as_str(), "dlq-consumer");
    assert!(headers.get(flotilla_events::nats::HEADER_ERROR).unwrap().as_str().contains("boom"));

    // Nothing more is delivered (acked after dead-lettering); the fix plus replay processes it once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recorder.calls(), 3);
    recorder.always_fail.store(false, Ordering::SeqCst);
    let consumer = Consumer::new("dlq-consumer", db.clone(), recorder.clone(), fast_policy(3));
    assert_eq!(consumer.replay_dead_letter(&letter.id).await.unwrap(), ReplayOutcome::Processed);
    assert_eq!(consumer.replay_dead_letter(&letter.id).await.unwrap(), ReplayOutcome::AlreadyProcessed);
    assert_eq!(handled(&db, "dlq-consumer").await, vec![ev.id.clone()]);
    assert_eq!(recorder.calls(), 4);
    bus.shutdown().await;
}

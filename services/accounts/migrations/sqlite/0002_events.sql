-- The transactional outbox (flotilla_events::outbox::OUTBOX_SQLITE): every state change writes its
-- CloudEvents event here in the same transaction; the relay publishes and marks the rows.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT NULL
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

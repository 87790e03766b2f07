-- The audit log: one row per event ever consumed (the event id is the primary key), append-only.
-- The code inserts rows (ON CONFLICT (id) DO NOTHING) and deletes them only in the retention job;
-- it never updates them. Timestamps are unix milliseconds.
--
-- `seq` orders records newest first (the order they were recorded in) and is the keyset of the
-- cursors.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    subject TEXT NULL,
    user_id TEXT NULL,
    -- the event's own time
    time_ms BIGINT NOT NULL,
    -- when this service recorded it
    recorded_at BIGINT NOT NULL,
    -- the event's `data`, as JSON text
    data TEXT NOT NULL
);
CREATE INDEX audit_log_user_seq ON audit_log (user_id, seq);
CREATE INDEX audit_log_type_seq ON audit_log (type, seq);
CREATE INDEX audit_log_time ON audit_log (time_ms);

-- The consumer inbox and dead letters (the INBOX_* and DEAD_LETTERS_* DDL of flotilla-events).
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    replayed_at BIGINT NULL,
    UNIQUE (consumer, event_id)
);
CREATE INDEX dead_letters_created_at ON dead_letters (created_at);

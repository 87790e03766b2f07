-- Events of the assistant service. The outbox, inbox and dead_letters tables are the DDL published
-- by flotilla-events (OUTBOX_*, INBOX_*, DEAD_LETTERS_*; a test checks they match).
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT NULL
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
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

-- Recurrence bookkeeping: every task of a series after the first carries the series id (the
-- first task's id) and its 1-based occurrence number. The unique index makes the creation of
-- the next occurrence happen exactly once, whatever delivers the completion event and however
-- many tasks replicas race on it. NULLs never collide (first tasks and plain tasks).
ALTER TABLE tasks ADD COLUMN series_id TEXT NULL;
ALTER TABLE tasks ADD COLUMN occurrence BIGINT NULL;
CREATE UNIQUE INDEX tasks_series_occurrence ON tasks (series_id, occurrence);

-- Reminder state: set (unix ms) when task.reminder_due was enqueued; a new remind_at resets it.
ALTER TABLE tasks ADD COLUMN reminded_at BIGINT NULL;
CREATE INDEX tasks_reminders_pending ON tasks (remind_at) WHERE remind_at IS NOT NULL AND reminded_at IS NULL;

-- Leases of singleton jobs (the reminder scheduler): the holder renews before expires_at (unix
-- ms); another process takes the lease only once it has expired.
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

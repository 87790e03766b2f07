-- Tasks of every user. Timestamps are unix milliseconds, ids UUIDv7 text.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    -- lowercased title: bytewise sort key and search text (lowercased by the service, so both
    -- engines agree on non-ASCII letters)
    title_key TEXT NOT NULL,
    description TEXT,
    -- lowercased description, searched with LIKE
    description_key TEXT,
    completed BOOLEAN NOT NULL DEFAULT FALSE,
    completed_at BIGINT,
    -- 1 low, 2 medium, 3 high (sorts by importance)
    priority BIGINT NOT NULL,
    -- JSON array of lowercased tags, in the user's order (task_tags is the searchable copy)
    tags TEXT NOT NULL DEFAULT '[]',
    due_at BIGINT,
    remind_at BIGINT,
    -- JSON {freq, interval, until?, count?} or NULL
    recurrence TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);

CREATE INDEX tasks_user_created ON tasks (user_id, created_at, id);
CREATE INDEX tasks_user_due_asc ON tasks (user_id, COALESCE(due_at, 9223372036854775807), id);
CREATE INDEX tasks_user_due_desc ON tasks (user_id, COALESCE(due_at, -9223372036854775807), id);
CREATE INDEX tasks_user_priority ON tasks (user_id, priority, id);
CREATE INDEX tasks_user_title ON tasks (user_id, title_key, id);

CREATE TABLE task_tags (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (task_id, tag)
);

CREATE INDEX task_tags_user_tag ON task_tags (user_id, tag, task_id);

-- One row per Idempotency-Key a user sent with a create: replays return the task it made.
CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);

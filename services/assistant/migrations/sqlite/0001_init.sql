-- Conversations and their messages. Timestamps are unix milliseconds, ids UUIDv7 text.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Listing (newest activity first) and the user-deletion fan-out.
CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at, id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- 1, 2, 3 … within the conversation: the order of the messages
    seq BIGINT NOT NULL,
    -- 'user' or 'assistant'
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    -- JSON array of {name, arguments, result}
    tool_calls TEXT NOT NULL DEFAULT '[]',
    -- JSON: the rules engine's memory after an assistant message, or NULL
    state TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (conversation_id, seq)
);

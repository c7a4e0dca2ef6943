-- Webhooks (Standard Webhooks): endpoints that subscribe to events, the events themselves
-- (the exact body every delivery of them sends), and one row per delivery attempt, which is
-- both the job queue and the delivery log.
CREATE TABLE webhook_endpoints (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- 'all': every event (an admin's endpoint); 'own': events of the owner's courses.
    scope             TEXT NOT NULL CHECK (scope IN ('all', 'own')),
    url               TEXT NOT NULL,
    -- The event types subscribed to, space-separated with a space at each end (' a b ').
    events            TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    -- 'whsec_' + base64 of the signing key.
    secret            TEXT NOT NULL,
    enabled           INTEGER NOT NULL DEFAULT 1,
    -- Failed attempts since the last success; past the configured limit the endpoint is disabled.
    failures_in_a_row INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_owner ON webhook_endpoints(owner_id);

CREATE TABLE webhook_events (
    -- 'msg_' + a random id: the webhook-id header, the same on every retry.
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    course_id  INTEGER,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id      INTEGER NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
    -- 1 for the first attempt; a retry or a re-send is a new row.
    attempt          INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed')),
    response_status  INTEGER,
    error            TEXT,
    -- When this attempt is due.
    due_at           INTEGER NOT NULL,
    -- The node making the attempt, until when (a node that dies mid-attempt loses it).
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, due_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, id);

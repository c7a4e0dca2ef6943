-- Money in flight: a confirmation or refund is recorded here before the payment provider is
-- asked, and removed in the same transaction that records its outcome on the order. A row
-- that outlives its request (a crash, a provider that did not answer) is settled by the
-- reconciler, which asks the provider what happened.
CREATE TABLE payment_intents (
    -- One operation in flight per order.
    order_id      INTEGER PRIMARY KEY REFERENCES orders(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- 'confirming': a pending order whose payment was sent for approval;
    -- 'refunding': a paid order whose payment was sent for cancellation.
    kind          TEXT    NOT NULL CHECK (kind IN ('confirming', 'refunding')),
    provider      TEXT    NOT NULL,
    payment_key   TEXT    NOT NULL,
    amount        INTEGER NOT NULL CHECK (amount >= 0),
    -- Refunds: the reason given to the provider and who asked for it.
    reason        TEXT,
    requested_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    started_at    INTEGER NOT NULL,
    -- How often the reconciler asked the provider without a clear answer, what it last heard,
    -- and when it looks again.
    checks        INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    next_check_at INTEGER NOT NULL
);
CREATE INDEX payment_intents_due ON payment_intents(next_check_at);

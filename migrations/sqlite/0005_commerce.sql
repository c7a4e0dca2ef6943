-- Commerce: carts, orders with snapshots of what was bought, the ledger of money that moved,
-- and the per-buyer lock that serialises payment confirmations and refunds.
-- Money is an integer in minor units with a currency code; times are Unix seconds.
CREATE TABLE cart_items (
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    course_id INTEGER NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    added_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, course_id)
);

CREATE TABLE orders (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status           TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'refunded')),
    amount           INTEGER NOT NULL CHECK (amount >= 0),
    currency         TEXT    NOT NULL,
    -- The id the payment provider knows this order by; providers want it unique forever.
    payment_order_id TEXT    NOT NULL UNIQUE,
    -- The creating request's Idempotency-Key (if any) and a fingerprint of what it asked for.
    idempotency_key  TEXT,
    request_hash     TEXT    NOT NULL,
    -- Who charged it and the provider's payment key; null for free orders and until paid.
    provider         TEXT,
    payment_key      TEXT,
    created_at       INTEGER NOT NULL,
    paid_at          INTEGER,
    refunded_at      INTEGER,
    refunded_by      INTEGER REFERENCES users(id) ON DELETE SET NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_user ON orders(user_id, id);
CREATE INDEX orders_paid_at ON orders(paid_at);
CREATE INDEX orders_refunded_at ON orders(refunded_at);

-- What an order bought, as it was when ordered: title and price are snapshots. The course id
-- has no foreign key on purpose, so that order history outlives a deleted course.
CREATE TABLE order_items (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id  INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    course_id INTEGER NOT NULL,
    title     TEXT    NOT NULL,
    price     INTEGER NOT NULL CHECK (price >= 0),
    UNIQUE (order_id, course_id)
);
CREATE INDEX order_items_course ON order_items(course_id);

-- Money that moved through a provider: at most one charge and one refund per order.
CREATE TABLE payments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id    INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL CHECK (kind IN ('charge', 'refund')),
    provider    TEXT    NOT NULL,
    payment_key TEXT    NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    currency    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (order_id, kind)
);

-- At most one confirmation or refund in flight per buyer: a lease that expires on its own if
-- its holder dies. `holder` identifies the request that took it.
CREATE TABLE payment_locks (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

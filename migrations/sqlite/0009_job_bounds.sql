-- Jobs get a deadline (their wall-clock budget: heartbeats never extend a lease past it) and
-- constraints that make inconsistent queue states impossible. SQLite cannot add constraints to
-- a table, so the table is rebuilt; no other table refers to it.
CREATE TABLE jobs_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id         INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_after        INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    -- End of the running attempt's budget.
    deadline_at      INTEGER,
    CONSTRAINT jobs_attempts_in_range CHECK (max_attempts >= 1 AND attempts >= 0 AND attempts <= max_attempts),
    -- A job holds a lease exactly while it runs, and only a running attempt has a deadline.
    CONSTRAINT jobs_leased_while_running
        CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT jobs_deadline_while_running CHECK (deadline_at IS NULL OR status = 'running'),
    CONSTRAINT jobs_finished_when_over CHECK (status NOT IN ('done', 'failed') OR finished_at IS NOT NULL)
);
INSERT INTO jobs_new (id, video_id, status, attempts, max_attempts, run_after, lease_owner, lease_expires_at,
                      last_error, created_at, updated_at, finished_at, deadline_at)
SELECT id, video_id, status,
       MIN(MAX(attempts, 0), MAX(max_attempts, 1)), MAX(max_attempts, 1), run_after,
       CASE WHEN status = 'running' THEN COALESCE(lease_owner, '') END,
       CASE WHEN status = 'running' THEN COALESCE(lease_expires_at, 0) END,
       last_error, created_at, updated_at,
       CASE WHEN status IN ('done', 'failed') THEN COALESCE(finished_at, updated_at) ELSE finished_at END,
       NULL
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
-- One active job per video.
CREATE UNIQUE INDEX jobs_one_active ON jobs(video_id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_claimable ON jobs(status, run_after);

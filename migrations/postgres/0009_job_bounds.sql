-- Jobs get a deadline (their wall-clock budget: heartbeats never extend a lease past it) and
-- constraints that make inconsistent queue states impossible.
ALTER TABLE jobs ADD COLUMN deadline_at BIGINT;
UPDATE jobs SET max_attempts = GREATEST(max_attempts, 1);
UPDATE jobs SET attempts = LEAST(GREATEST(attempts, 0), max_attempts);
UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE status <> 'running';
UPDATE jobs SET lease_owner = COALESCE(lease_owner, ''), lease_expires_at = COALESCE(lease_expires_at, 0)
    WHERE status = 'running';
UPDATE jobs SET finished_at = COALESCE(finished_at, updated_at) WHERE status IN ('done', 'failed');
ALTER TABLE jobs
    ADD CONSTRAINT jobs_attempts_in_range CHECK (max_attempts >= 1 AND attempts >= 0 AND attempts <= max_attempts),
    -- A job holds a lease exactly while it runs, and only a running attempt has a deadline.
    ADD CONSTRAINT jobs_leased_while_running
        CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    ADD CONSTRAINT jobs_deadline_while_running CHECK (deadline_at IS NULL OR status = 'running'),
    ADD CONSTRAINT jobs_finished_when_over CHECK (status NOT IN ('done', 'failed') OR finished_at IS NOT NULL);

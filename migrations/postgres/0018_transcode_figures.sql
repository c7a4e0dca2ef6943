-- What operators chart: why a job failed (a word of FailureReason, set with last_error) and,
-- for a job that finished, how long its last attempt took, so transcode speed is video
-- seconds over these (the figures come from the database, whichever process transcoded).
ALTER TABLE jobs ADD COLUMN failure_reason TEXT;
ALTER TABLE jobs ADD COLUMN attempt_seconds DOUBLE PRECISION;

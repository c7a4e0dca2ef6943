-- Every time column holds Unix seconds. lecture_progress.updated_at held milliseconds so that
-- "the lecture reported last" was well defined; that order is now report_seq, a per-person
-- per-course counter, and updated_at holds seconds like every other column.
-- watched_seconds was never written.
ALTER TABLE lecture_progress DROP COLUMN watched_seconds;
ALTER TABLE lecture_progress ADD COLUMN report_seq BIGINT NOT NULL DEFAULT 0;
UPDATE lecture_progress SET report_seq = updated_at, updated_at = updated_at / 1000;

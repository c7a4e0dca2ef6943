-- Uploads: what per-user limits count.
-- Bytes a streamed PUT in progress holds against its uploader's in-progress limit (its declared
-- length, or what has arrived so far); tus uploads count from their own row.
ALTER TABLE videos ADD COLUMN receiving_bytes BIGINT NOT NULL DEFAULT 0;
CREATE INDEX videos_uploading ON videos(uploader_id) WHERE status = 'uploading';

-- Bytes each user uploaded per UTC day (day = Unix seconds / 86400), for the daily quota.
CREATE TABLE upload_usage (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    day     BIGINT NOT NULL,
    bytes   BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
);

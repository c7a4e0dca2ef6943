-- Progressive publish: a video is playable while it is still being transcoded. While it is
-- processing (or queued for a retry), output_prefix names the attempt whose growing output is
-- visible and ready_seconds how much of it is published; at ready it is the whole duration.
ALTER TABLE videos ADD COLUMN ready_seconds REAL NOT NULL DEFAULT 0;
UPDATE videos SET ready_seconds = COALESCE(duration_seconds, 0) WHERE status = 'ready';

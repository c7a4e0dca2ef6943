-- A course whose videos carry the per-viewer forensic watermark (applies to videos transcoded
-- after it is set).
ALTER TABLE courses ADD COLUMN forensic_watermark INTEGER NOT NULL DEFAULT 0;
-- A video transcoded with it: every rendition has a marked twin ("<name>-b/", variant B) and
-- each playback session's media playlists pick A or B per segment from the session's code.
ALTER TABLE videos ADD COLUMN watermarked INTEGER NOT NULL DEFAULT 0;
CREATE INDEX playback_sessions_video ON playback_sessions(video_id);
-- The secret a watermarked video's segment names derive from (hex; the same for every
-- attempt, like its key): a viewer cannot guess the name of the variant they were not given.
ALTER TABLE videos ADD COLUMN watermark_secret TEXT;

-- Where a video's picture changes at once (a new slide), found when it was transcoded: its
-- chapter starts in milliseconds, the first at 0.
CREATE TABLE video_chapters (
    video_id BIGINT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start_ms BIGINT NOT NULL,
    PRIMARY KEY (video_id, start_ms)
);

-- Videos made before chapters were found have one, from the start.
INSERT INTO video_chapters (video_id, start_ms) SELECT id, 0 FROM videos WHERE status = 'ready';

-- A lecture's chapters as its owner set them; when there are any they replace the detected
-- ones, and like captions they outlive a replaced video (those past its end are dropped).
CREATE TABLE lecture_chapters (
    lecture_id BIGINT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    start_ms   BIGINT NOT NULL,
    title      TEXT   NOT NULL,
    PRIMARY KEY (lecture_id, start_ms)
);

-- Captions per lecture and language (BCP 47 tag, canonical case), kept as checked WebVTT;
-- they outlive any one transcode of the lecture's video.
CREATE TABLE captions (
    lecture_id BIGINT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    lang       TEXT   NOT NULL,
    label      TEXT   NOT NULL,
    vtt        TEXT   NOT NULL,
    cues       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (lecture_id, lang)
);

-- What a course is taught in: its captions in that language are the default track.
ALTER TABLE courses ADD COLUMN language TEXT NOT NULL DEFAULT 'ko';

-- Watch progress per user and lecture: resume position, furthest point reached, watched time,
-- completion. Updates from several devices merge monotonically (see learning::progress).
-- updated_at is in milliseconds (it orders quick successive reports); other times are seconds.
CREATE TABLE lecture_progress (
    user_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    lecture_id       INTEGER NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    course_id        INTEGER NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    position_seconds REAL    NOT NULL DEFAULT 0,
    furthest_seconds REAL    NOT NULL DEFAULT 0,
    watched_seconds  REAL    NOT NULL DEFAULT 0,
    completed        INTEGER NOT NULL DEFAULT 0,
    completed_at     INTEGER,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, lecture_id)
);
CREATE INDEX lecture_progress_course ON lecture_progress(course_id, user_id);

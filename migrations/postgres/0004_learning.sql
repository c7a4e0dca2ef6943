-- Watch progress per user and lecture: resume position, furthest point reached, watched time,
-- completion. Updates from several devices merge monotonically (see learning::progress).
-- updated_at is in milliseconds (it orders quick successive reports); other times are seconds.
CREATE TABLE lecture_progress (
    user_id          BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    lecture_id       BIGINT NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    course_id        BIGINT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    position_seconds DOUBLE PRECISION    NOT NULL DEFAULT 0,
    furthest_seconds DOUBLE PRECISION    NOT NULL DEFAULT 0,
    watched_seconds  DOUBLE PRECISION    NOT NULL DEFAULT 0,
    completed        BIGINT NOT NULL DEFAULT 0,
    completed_at     BIGINT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (user_id, lecture_id)
);
CREATE INDEX lecture_progress_course ON lecture_progress(course_id, user_id);

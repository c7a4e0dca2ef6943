-- Playback sessions: one per POST /lectures/{id}/playback, named in its token (`sid`). A
-- session is active while its player fetches playlists or the key (`last_seen_at`); a student
-- account may hold LECTERN_MAX_CONCURRENT_STREAMS active ones. An ended session (its
-- enrollment revoked, e.g. by a refund) gets no key. What the server saw of it counts as
-- watching: `served_seconds` is how far into the video its key fetches reached (media
-- playlists repeat the key every LECTERN_KEY_REFRESH_SECS of video), so a copy taken without
-- reporting progress still shows as watched.
CREATE TABLE playback_sessions (
    id           TEXT   PRIMARY KEY,
    user_id      BIGINT REFERENCES users(id) ON DELETE CASCADE,
    course_id    BIGINT NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    lecture_id   BIGINT NOT NULL,
    video_id     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    ended_at     BIGINT,
    ended_reason TEXT,
    key_fetches    BIGINT NOT NULL DEFAULT 0,
    served_seconds DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX playback_sessions_user ON playback_sessions(user_id, last_seen_at);

-- Revoking an enrollment, by whatever path, ends that user's sessions in the course at once.
CREATE FUNCTION lectern_enrollment_revoked() RETURNS trigger AS $$
BEGIN
    UPDATE playback_sessions SET ended_at = NEW.revoked_at, ended_reason = 'enrollment_revoked'
    WHERE user_id = NEW.user_id AND course_id = NEW.course_id AND ended_at IS NULL;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER enrollments_revoked_end_sessions AFTER UPDATE OF revoked_at ON enrollments
FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
EXECUTE FUNCTION lectern_enrollment_revoked();

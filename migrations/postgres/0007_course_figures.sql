-- Course figures kept on the course row, so lists can sort by popularity and rating with an
-- index instead of aggregating every course's enrollments and reviews per request. Triggers
-- recompute them on every change to enrollments and reviews, wherever it comes from.
ALTER TABLE courses ADD COLUMN enrollment_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN rating_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN rating_avg DOUBLE PRECISION NOT NULL DEFAULT 0;

UPDATE courses SET
    enrollment_count = (SELECT COUNT(*) FROM enrollments e WHERE e.course_id = courses.id AND e.revoked_at IS NULL),
    rating_count = (SELECT COUNT(*) FROM reviews r WHERE r.course_id = courses.id),
    rating_avg = COALESCE((SELECT AVG(rating) FROM reviews r WHERE r.course_id = courses.id), 0);

CREATE FUNCTION lectern_course_enrollment_count(course BIGINT) RETURNS void AS $$
    UPDATE courses SET enrollment_count = (SELECT COUNT(*) FROM enrollments WHERE course_id = course AND revoked_at IS NULL)
    WHERE id = course;
$$ LANGUAGE sql;

CREATE FUNCTION lectern_course_rating(course BIGINT) RETURNS void AS $$
    UPDATE courses SET rating_count = (SELECT COUNT(*) FROM reviews WHERE course_id = course),
        rating_avg = COALESCE((SELECT AVG(rating) FROM reviews WHERE course_id = course), 0)
    WHERE id = course;
$$ LANGUAGE sql;

CREATE FUNCTION lectern_enrollments_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM lectern_course_enrollment_count(NEW.course_id); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM lectern_course_enrollment_count(OLD.course_id); END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE FUNCTION lectern_reviews_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN PERFORM lectern_course_rating(NEW.course_id); END IF;
    IF TG_OP <> 'INSERT' THEN PERFORM lectern_course_rating(OLD.course_id); END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER enrollments_count AFTER INSERT OR UPDATE OR DELETE ON enrollments
    FOR EACH ROW EXECUTE FUNCTION lectern_enrollments_changed();
CREATE TRIGGER reviews_figures AFTER INSERT OR UPDATE OR DELETE ON reviews
    FOR EACH ROW EXECUTE FUNCTION lectern_reviews_changed();

CREATE INDEX courses_popular ON courses(status, enrollment_count DESC, id DESC);
CREATE INDEX courses_rating ON courses(status, rating_avg DESC, id DESC);
CREATE INDEX courses_price ON courses(status, price, id);
CREATE INDEX courses_category ON courses(category_id, status);

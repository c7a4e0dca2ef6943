-- Course figures kept on the course row, so lists can sort by popularity and rating with an
-- index instead of aggregating every course's enrollments and reviews per request. Triggers
-- recompute them on every change to enrollments and reviews, wherever it comes from.
ALTER TABLE courses ADD COLUMN enrollment_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN rating_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN rating_avg REAL NOT NULL DEFAULT 0;

UPDATE courses SET
    enrollment_count = (SELECT COUNT(*) FROM enrollments e WHERE e.course_id = courses.id AND e.revoked_at IS NULL),
    rating_count = (SELECT COUNT(*) FROM reviews r WHERE r.course_id = courses.id),
    rating_avg = COALESCE((SELECT AVG(rating) FROM reviews r WHERE r.course_id = courses.id), 0);

CREATE TRIGGER enrollments_count_insert AFTER INSERT ON enrollments BEGIN
    UPDATE courses SET enrollment_count = (SELECT COUNT(*) FROM enrollments WHERE course_id = NEW.course_id AND revoked_at IS NULL) WHERE id = NEW.course_id;
END;
CREATE TRIGGER enrollments_count_update AFTER UPDATE ON enrollments BEGIN
    UPDATE courses SET enrollment_count = (SELECT COUNT(*) FROM enrollments WHERE course_id = NEW.course_id AND revoked_at IS NULL) WHERE id = NEW.course_id;
    UPDATE courses SET enrollment_count = (SELECT COUNT(*) FROM enrollments WHERE course_id = OLD.course_id AND revoked_at IS NULL) WHERE id = OLD.course_id;
END;
CREATE TRIGGER enrollments_count_delete AFTER DELETE ON enrollments BEGIN
    UPDATE courses SET enrollment_count = (SELECT COUNT(*) FROM enrollments WHERE course_id = OLD.course_id AND revoked_at IS NULL) WHERE id = OLD.course_id;
END;
CREATE TRIGGER reviews_figures_insert AFTER INSERT ON reviews BEGIN
    UPDATE courses SET rating_count = (SELECT COUNT(*) FROM reviews WHERE course_id = NEW.course_id),
        rating_avg = COALESCE((SELECT AVG(rating) FROM reviews WHERE course_id = NEW.course_id), 0) WHERE id = NEW.course_id;
END;
CREATE TRIGGER reviews_figures_update AFTER UPDATE ON reviews BEGIN
    UPDATE courses SET rating_count = (SELECT COUNT(*) FROM reviews WHERE course_id = NEW.course_id),
        rating_avg = COALESCE((SELECT AVG(rating) FROM reviews WHERE course_id = NEW.course_id), 0) WHERE id = NEW.course_id;
END;
CREATE TRIGGER reviews_figures_delete AFTER DELETE ON reviews BEGIN
    UPDATE courses SET rating_count = (SELECT COUNT(*) FROM reviews WHERE course_id = OLD.course_id),
        rating_avg = COALESCE((SELECT AVG(rating) FROM reviews WHERE course_id = OLD.course_id), 0) WHERE id = OLD.course_id;
END;

CREATE INDEX courses_popular ON courses(status, enrollment_count DESC, id DESC);
CREATE INDEX courses_rating ON courses(status, rating_avg DESC, id DESC);
CREATE INDEX courses_price ON courses(status, price, id);
CREATE INDEX courses_category ON courses(category_id, status);

-- A review moved to another course must update both courses' figures, as PostgreSQL's
-- trigger (0007) always did; SQLite's recomputed only the new course.
DROP TRIGGER reviews_figures_update;
CREATE TRIGGER reviews_figures_update AFTER UPDATE ON reviews BEGIN
    UPDATE courses SET rating_count = (SELECT COUNT(*) FROM reviews WHERE course_id = NEW.course_id),
        rating_avg = COALESCE((SELECT AVG(rating) FROM reviews WHERE course_id = NEW.course_id), 0) WHERE id = NEW.course_id;
    UPDATE courses SET rating_count = (SELECT COUNT(*) FROM reviews WHERE course_id = OLD.course_id),
        rating_avg = COALESCE((SELECT AVG(rating) FROM reviews WHERE course_id = OLD.course_id), 0) WHERE id = OLD.course_id;
END;
UPDATE courses SET
    rating_count = (SELECT COUNT(*) FROM reviews r WHERE r.course_id = courses.id),
    rating_avg = COALESCE((SELECT AVG(rating) FROM reviews r WHERE r.course_id = courses.id), 0);

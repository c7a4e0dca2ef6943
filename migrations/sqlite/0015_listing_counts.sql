-- The course list without a COUNT(*) per page: published courses per category (0 = none),
-- kept by triggers on every change to a course, wherever it comes from (the API, a
-- category's deletion setting category_id to NULL, SQL by hand). A list's total is the sum of
-- a few rows of this table.
CREATE TABLE published_counts (
    category_id INTEGER PRIMARY KEY,
    courses INTEGER NOT NULL
);

INSERT INTO published_counts (category_id, courses)
SELECT COALESCE(category_id, 0), COUNT(*) FROM courses WHERE status = 'published'
GROUP BY COALESCE(category_id, 0);

CREATE TRIGGER courses_counted_insert AFTER INSERT ON courses WHEN NEW.status = 'published'
BEGIN
    INSERT INTO published_counts (category_id, courses) VALUES (COALESCE(NEW.category_id, 0), 1)
    ON CONFLICT (category_id) DO UPDATE SET courses = courses + 1;
END;

CREATE TRIGGER courses_counted_delete AFTER DELETE ON courses WHEN OLD.status = 'published'
BEGIN
    UPDATE published_counts SET courses = courses - 1 WHERE category_id = COALESCE(OLD.category_id, 0);
END;

CREATE TRIGGER courses_counted_update AFTER UPDATE OF status, category_id ON courses
BEGIN
    UPDATE published_counts SET courses = courses - 1
    WHERE OLD.status = 'published' AND category_id = COALESCE(OLD.category_id, 0);
    INSERT INTO published_counts (category_id, courses)
    SELECT COALESCE(NEW.category_id, 0), 1 WHERE NEW.status = 'published'
    ON CONFLICT (category_id) DO UPDATE SET courses = courses + 1;
END;

-- Pages of the newest courses are read from the index alone (a page's ids, then its rows).
CREATE INDEX courses_newest ON courses (status, published_at DESC, id DESC);

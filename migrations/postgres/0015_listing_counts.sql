-- The course list without a COUNT(*) per page: published courses per category (0 = none),
-- kept by a trigger on every change to a course, wherever it comes from (the API, a
-- category's deletion setting category_id to NULL, SQL by hand). A list's total is the sum of
-- a few rows of this table.
CREATE TABLE published_counts (
    category_id BIGINT PRIMARY KEY,
    courses BIGINT NOT NULL
);

INSERT INTO published_counts (category_id, courses)
SELECT COALESCE(category_id, 0), COUNT(*) FROM courses WHERE status = 'published'
GROUP BY COALESCE(category_id, 0);

CREATE FUNCTION lectern_published_count(category BIGINT, delta BIGINT) RETURNS void AS $$
    INSERT INTO published_counts (category_id, courses) VALUES (COALESCE(category, 0), delta)
    ON CONFLICT (category_id) DO UPDATE SET courses = published_counts.courses + EXCLUDED.courses;
$$ LANGUAGE sql;

CREATE FUNCTION lectern_courses_counted() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status = 'published' THEN
        PERFORM lectern_published_count(OLD.category_id, -1);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'published' THEN
        PERFORM lectern_published_count(NEW.category_id, 1);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER courses_counted AFTER INSERT OR DELETE OR UPDATE OF status, category_id ON courses
    FOR EACH ROW EXECUTE FUNCTION lectern_courses_counted();

-- Pages of the newest courses are read from the index alone (a page's ids, then its rows).
CREATE INDEX courses_newest ON courses (status, published_at DESC, id DESC);

-- Community and discovery: threaded comments, the categories' English names and seed tree,
-- review listing order, and course search.

-- Comments on a course: top-level ones (parent_id NULL) and one level of replies. A comment
-- deleted while it has replies stays as a tombstone (deleted_at set, content emptied) so the
-- thread keeps its shape; one without replies is removed.
CREATE TABLE comments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    course_id  INTEGER NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    parent_id  INTEGER REFERENCES comments(id) ON DELETE CASCADE,
    content    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE INDEX comments_course_threads ON comments(course_id, parent_id, created_at);
CREATE INDEX comments_parent ON comments(parent_id, created_at);

CREATE INDEX reviews_course_created ON reviews(course_id, created_at);

ALTER TABLE categories ADD COLUMN name_en TEXT NOT NULL DEFAULT '';
CREATE INDEX categories_parent ON categories(parent_id, position);

-- Seed categories: two levels, Korean names with English ones beside them.
INSERT INTO categories (parent_id, name, name_en, slug, position) VALUES
    (NULL, '개발·프로그래밍', 'Development', 'development', 1),
    (NULL, '인공지능·데이터', 'AI & Data', 'ai-data', 2),
    (NULL, '디자인', 'Design', 'design', 3),
    (NULL, '비즈니스·마케팅', 'Business & Marketing', 'business-marketing', 4),
    (NULL, '하드웨어', 'Hardware', 'hardware', 5),
    (NULL, '커리어·자기계발', 'Career & Personal Growth', 'career', 6),
    (NULL, '학문·외국어', 'Academics & Languages', 'academics', 7);

INSERT INTO categories (parent_id, name, name_en, slug, position)
SELECT p.id, c.name, c.name_en, c.slug, c.position
FROM (
    SELECT 'development' AS parent, '웹 개발' AS name, 'Web Development' AS name_en, 'web-development' AS slug, 1 AS position
    UNION ALL SELECT 'development', '프론트엔드', 'Front End', 'frontend', 2
    UNION ALL SELECT 'development', '백엔드', 'Back End', 'backend', 3
    UNION ALL SELECT 'development', '모바일 앱', 'Mobile Apps', 'mobile-apps', 4
    UNION ALL SELECT 'development', '프로그래밍 언어', 'Programming Languages', 'programming-languages', 5
    UNION ALL SELECT 'development', '게임 개발', 'Game Development', 'game-development', 6
    UNION ALL SELECT 'development', '데브옵스·인프라', 'DevOps & Infrastructure', 'devops-infrastructure', 7
    UNION ALL SELECT 'development', '보안·네트워크', 'Security & Networking', 'security-networking', 8
    UNION ALL SELECT 'ai-data', '데이터 사이언스', 'Data Science', 'data-science', 1
    UNION ALL SELECT 'ai-data', '데이터 분석', 'Data Analysis', 'data-analysis', 2
    UNION ALL SELECT 'ai-data', '데이터 엔지니어링', 'Data Engineering', 'data-engineering', 3
    UNION ALL SELECT 'ai-data', '머신러닝·딥러닝', 'Machine Learning & Deep Learning', 'machine-learning', 4
    UNION ALL SELECT 'ai-data', '생성형 AI·LLM', 'Generative AI & LLMs', 'generative-ai', 5
    UNION ALL SELECT 'design', 'UI/UX', 'UI/UX', 'ui-ux', 1
    UNION ALL SELECT 'design', '그래픽 디자인', 'Graphic Design', 'graphic-design', 2
    UNION ALL SELECT 'design', '영상·모션그래픽', 'Video & Motion Graphics', 'video-motion', 3
    UNION ALL SELECT 'design', '3D 모델링', '3D Modeling', '3d-modeling', 4
    UNION ALL SELECT 'business-marketing', '디지털 마케팅', 'Digital Marketing', 'digital-marketing', 1
    UNION ALL SELECT 'business-marketing', '기획·PM', 'Product Management', 'product-management', 2
    UNION ALL SELECT 'business-marketing', '창업', 'Startups', 'startups', 3
    UNION ALL SELECT 'business-marketing', '업무 생산성', 'Office Productivity', 'office-productivity', 4
    UNION ALL SELECT 'business-marketing', '회계·재무', 'Accounting & Finance', 'accounting-finance', 5
    UNION ALL SELECT 'hardware', '임베디드·IoT', 'Embedded & IoT', 'embedded-iot', 1
    UNION ALL SELECT 'hardware', '반도체', 'Semiconductors', 'semiconductors', 2
    UNION ALL SELECT 'hardware', '로보틱스', 'Robotics', 'robotics', 3
    UNION ALL SELECT 'career', '취업·이직', 'Job Hunting', 'job-hunting', 1
    UNION ALL SELECT 'career', '자격증', 'Certifications', 'certifications', 2
    UNION ALL SELECT 'career', '커뮤니케이션·리더십', 'Communication & Leadership', 'communication-leadership', 3
    UNION ALL SELECT 'academics', '수학', 'Mathematics', 'mathematics', 1
    UNION ALL SELECT 'academics', '과학', 'Science', 'science', 2
    UNION ALL SELECT 'academics', '외국어', 'Foreign Languages', 'foreign-languages', 3
    UNION ALL SELECT 'academics', '인문·교양', 'Humanities', 'humanities', 4
) c
JOIN categories p ON p.slug = c.parent;

-- Course search: an FTS5 index over titles and descriptions with the trigram tokenizer, so
-- any substring of three or more characters matches (Korean has no spaces between a word and
-- its particles: "동영상" must find "동영상을"), case-insensitively. The index holds no text of
-- its own (external content) and triggers keep it in step with `courses`.
CREATE VIRTUAL TABLE courses_fts USING fts5(
    title, description, content = 'courses', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER courses_fts_insert AFTER INSERT ON courses BEGIN
    INSERT INTO courses_fts (rowid, title, description) VALUES (new.id, new.title, new.description);
END;
CREATE TRIGGER courses_fts_delete AFTER DELETE ON courses BEGIN
    INSERT INTO courses_fts (courses_fts, rowid, title, description) VALUES ('delete', old.id, old.title, old.description);
END;
CREATE TRIGGER courses_fts_update AFTER UPDATE OF title, description ON courses BEGIN
    INSERT INTO courses_fts (courses_fts, rowid, title, description) VALUES ('delete', old.id, old.title, old.description);
    INSERT INTO courses_fts (rowid, title, description) VALUES (new.id, new.title, new.description);
END;
INSERT INTO courses_fts (courses_fts) VALUES ('rebuild');

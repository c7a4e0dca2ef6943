-- Catalog: categories, courses, sections, lectures; and the enrollments and reviews that
-- course pages summarise. Money is an integer in minor units with a currency code.
CREATE TABLE categories (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id  INTEGER REFERENCES categories(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    slug       TEXT    NOT NULL UNIQUE,
    position   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE courses (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    instructor_id    INTEGER NOT NULL REFERENCES users(id),
    category_id      INTEGER REFERENCES categories(id) ON DELETE SET NULL,
    title            TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    price            INTEGER NOT NULL CHECK (price >= 0),
    currency         TEXT    NOT NULL,
    level            TEXT    NOT NULL DEFAULT 'all',
    status           TEXT    NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
    duration_seconds REAL    NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    published_at     INTEGER
);
CREATE INDEX courses_instructor ON courses(instructor_id);
CREATE INDEX courses_status_published ON courses(status, published_at);

CREATE TABLE sections (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    course_id  INTEGER NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    title      TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX sections_course ON sections(course_id, position);

CREATE TABLE lectures (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    section_id       INTEGER NOT NULL REFERENCES sections(id) ON DELETE CASCADE,
    course_id        INTEGER NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    title            TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    position         INTEGER NOT NULL,
    is_preview       INTEGER NOT NULL DEFAULT 0,
    -- The video being played: the newest one that became ready.
    video_id         INTEGER,
    duration_seconds REAL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX lectures_section ON lectures(section_id, position);
CREATE INDEX lectures_course ON lectures(course_id);

CREATE TABLE enrollments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    course_id  INTEGER NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    source     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX enrollments_active ON enrollments(user_id, course_id) WHERE revoked_at IS NULL;
CREATE INDEX enrollments_course ON enrollments(course_id);

CREATE TABLE reviews (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    course_id  INTEGER NOT NULL REFERENCES courses(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    rating     INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    content    TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (course_id, user_id)
);

-- Media: uploaded videos, tus uploads in progress, and the transcode job queue.
CREATE TABLE videos (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    lecture_id        INTEGER NOT NULL REFERENCES lectures(id) ON DELETE CASCADE,
    uploader_id       INTEGER NOT NULL REFERENCES users(id),
    status            TEXT    NOT NULL CHECK (status IN ('uploading', 'queued', 'processing', 'ready', 'failed')),
    progress          REAL    NOT NULL DEFAULT 0,
    original_filename TEXT    NOT NULL DEFAULT '',
    source_size       INTEGER,
    -- Where the published HLS output lives (set only when complete).
    output_prefix     TEXT,
    duration_seconds  REAL,
    -- JSON: the transcode summary's renditions.
    renditions        TEXT,
    -- AES-128 key (hex) when segments are encrypted.
    hls_key           TEXT,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    ready_at          INTEGER
);
CREATE INDEX videos_lecture ON videos(lecture_id);

CREATE TABLE uploads (
    id           TEXT    PRIMARY KEY,
    video_id     INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    -- NULL while the client defers the length (Upload-Defer-Length).
    length       INTEGER,
    upload_offset INTEGER NOT NULL DEFAULT 0,
    metadata     TEXT    NOT NULL DEFAULT '',
    multipart_id TEXT,
    -- JSON list of completed multipart parts.
    parts        TEXT    NOT NULL DEFAULT '[]',
    -- Bytes received past the last full part, kept as a temporary object.
    tail_key     TEXT,
    tail_size    INTEGER NOT NULL DEFAULT 0,
    -- Write lock: the request holding it, and until when.
    lock_token   TEXT,
    locked_until INTEGER,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    completed_at INTEGER
);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id         INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_after        INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
-- One active job per video.
CREATE UNIQUE INDEX jobs_one_active ON jobs(video_id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_claimable ON jobs(status, run_after);

-- Sites, devices, readings and findings. Timestamps are unix milliseconds (BIGINT) so that the
-- same queries run on SQLite and PostgreSQL through sqlx::Any. Keep in step with
-- ../postgres/0001_initial.sql: only the id column differs.
CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    industry TEXT NOT NULL,
    entity_name TEXT NOT NULL,
    uscc TEXT NOT NULL
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT,
    online BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE readings (
    device_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    vals TEXT NOT NULL
);
CREATE INDEX readings_device_ts ON readings (device_id, ts);
CREATE INDEX readings_received_at ON readings (received_at);

CREATE TABLE findings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key TEXT NOT NULL,
    site_id TEXT NOT NULL,
    device_id TEXT,
    camera_id TEXT,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    item_code TEXT,
    region TEXT,
    summary TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    count BIGINT NOT NULL,
    last_value DOUBLE PRECISION,
    details TEXT NOT NULL,
    acknowledged_at BIGINT,
    cleared_at BIGINT,
    updated_at BIGINT NOT NULL
);
-- At most one open (not cleared) finding per key: repeats update it atomically.
CREATE UNIQUE INDEX findings_open_key ON findings (dedup_key) WHERE state <> 'cleared';
CREATE INDEX findings_site ON findings (site_id, id);
CREATE INDEX findings_device ON findings (device_id, id);
CREATE INDEX findings_last_seen ON findings (last_seen);

-- Access control (docs/access.md). Keep in step with the other backend's 0005: only the id
-- columns differ.
--
-- Departments: a region (6-digit GB/T 2260 code; scope by prefix) and the industries they
-- supervise (comma list). Users belong to at most one department (admins and integrators may
-- have none) and hold one or more roles (comma list).
CREATE TABLE departments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    industries TEXT NOT NULL,
    uscc TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    department_id TEXT REFERENCES departments(id),
    roles TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL
);

-- A login session: only the SHA-256 of the random session id is stored (a copy of this table
-- logs nobody in). The CSRF token is bound to the session.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    address TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- API tokens: shown once, stored as SHA-256 (they are long random strings, not passwords).
-- Owned by a department or an integrator (a user), or by neither for admin tokens.
CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    department_id TEXT REFERENCES departments(id),
    integrator TEXT,
    roles TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- Who changed what: append-only through the API.
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_state TEXT,
    after_state TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_target ON audit (target, id);

-- The integrator (a username) who looks after a site's devices and cameras, if any.
ALTER TABLE sites ADD COLUMN integrator TEXT;

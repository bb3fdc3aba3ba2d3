-- Supervision records and their delivery (docs/records.md). Keep in step with the other
-- backend's 0007: only the id columns differ.

-- The supervision item catalogue: departments is a comma list of department ids; deadlines
-- in milliseconds (NULL: the severity's defaults).
CREATE TABLE catalogue_items (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    departments TEXT NOT NULL,
    industry TEXT NOT NULL,
    severity TEXT NOT NULL,
    claim_within BIGINT,
    close_within BIGINT,
    updated_at BIGINT NOT NULL
);

-- Regulated entities; a site belongs to the entity whose USCC it names.
CREATE TABLE entities (
    uscc TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    industry TEXT NOT NULL,
    address TEXT NOT NULL,
    risk_grade TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A case made from a verified finding. `seq` is the commit sequence of its latest change
-- (the pull cursor); candidates and returned_by are comma lists of department ids.
CREATE TABLE records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key TEXT NOT NULL,
    state TEXT NOT NULL,
    item_code TEXT NOT NULL,
    item_name TEXT NOT NULL,
    severity TEXT NOT NULL,
    industry TEXT NOT NULL,
    region TEXT NOT NULL,
    site_id TEXT NOT NULL,
    entity_name TEXT NOT NULL,
    entity_uscc TEXT NOT NULL,
    summary TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    occurrences BIGINT NOT NULL,
    evidence TEXT NOT NULL,
    candidates TEXT NOT NULL,
    returned_by TEXT NOT NULL,
    department_id TEXT,
    assignee TEXT,
    result TEXT,
    feedback TEXT,
    claim_due_at BIGINT NOT NULL,
    close_due_at BIGINT NOT NULL,
    escalation_level BIGINT NOT NULL DEFAULT 0,
    escalated_at BIGINT,
    escalated_to TEXT,
    escalation_reason TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    closed_at BIGINT,
    seq BIGINT NOT NULL DEFAULT 0
);
-- At most one open record per finding key: repeats attach to it.
CREATE UNIQUE INDEX records_open_key ON records (dedup_key) WHERE state <> 'closed';
CREATE INDEX records_seq ON records (seq);
CREATE INDEX records_site ON records (site_id, id);
CREATE INDEX records_due ON records (state, close_due_at);

ALTER TABLE findings ADD COLUMN record_id BIGINT;
CREATE INDEX findings_record ON findings (record_id);

-- Every transition of a record, with its CloudEvent (the outbox's events).
CREATE TABLE record_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id BIGINT NOT NULL REFERENCES records(id),
    seq BIGINT NOT NULL DEFAULT 0,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    note TEXT,
    data TEXT,
    event_type TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX record_transitions_record ON record_transitions (record_id, id);
CREATE INDEX record_transitions_seq ON record_transitions (seq);
CREATE INDEX record_transitions_at ON record_transitions (at);

-- Result photos and files; the bytes are under data_dir/attachments, named by sha256.
CREATE TABLE record_attachments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id BIGINT NOT NULL REFERENCES records(id),
    transition_id BIGINT,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX record_attachments_record ON record_attachments (record_id);

-- Named counters bumped as the last statement of a transaction (the commit sequence).
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO sequences (name, value) VALUES ('records', 0);

-- A department's endpoint. filters and keys are JSON; keys hold the signing secrets (needed
-- to sign, so stored as they are: protect the database like the secrets themselves).
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    department_id TEXT NOT NULL REFERENCES departments(id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    transport TEXT NOT NULL,
    filters TEXT NOT NULL,
    keys TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    disabled_at BIGINT,
    failing_since BIGINT,
    last_success_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

-- The outbox: one row per (event, subscription), written with the transition. A worker
-- claims due rows by lease; at most one pending row per (subscription, record) is claimable
-- (the oldest), so a record's events go out in order.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions(id),
    transition_id BIGINT NOT NULL REFERENCES record_transitions(id),
    record_id BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX deliveries_due ON deliveries (state, next_at);
CREATE INDEX deliveries_pair ON deliveries (subscription_id, record_id, id);
CREATE INDEX deliveries_transition ON deliveries (transition_id);

CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id BIGINT NOT NULL REFERENCES deliveries(id),
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status BIGINT,
    latency_ms BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);

-- Notices to departments (escalations, failing or disabled endpoints).
CREATE TABLE notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    department_id TEXT,
    kind TEXT NOT NULL,
    record_id BIGINT,
    subscription_id BIGINT,
    message TEXT NOT NULL
);
CREATE INDEX notices_department ON notices (department_id, id);

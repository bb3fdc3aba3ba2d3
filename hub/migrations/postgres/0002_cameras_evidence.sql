-- Cameras added at run time (config cameras are stored too, source = 'config') and the evidence
-- of video findings. Keep in step with the other backend's file: only the id column differs.
CREATE TABLE cameras (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id),
    -- The camera's configuration as JSON (config::Camera), URL credentials included: the
    -- database is as private as the configuration file.
    spec TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE evidence (
    id BIGSERIAL PRIMARY KEY,
    finding_id BIGINT NOT NULL REFERENCES findings(id),
    captured_at BIGINT NOT NULL,
    -- Paths relative to data_dir/evidence.
    frame_path TEXT NOT NULL,
    annotated_path TEXT NOT NULL,
    -- JSON: the detections drawn on the annotated frame.
    details TEXT NOT NULL
);
CREATE INDEX evidence_finding ON evidence (finding_id, id);

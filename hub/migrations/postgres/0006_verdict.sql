-- Human verification of findings (the duty room, issue 9). Keep in step with the other
-- backend's 0006. A verdict is given once: `verified` (a true finding, ready to become a
-- supervision record) or `dismissed` (a false positive, with a reason from the fixed list
-- and free text), with who and when; the audit log holds the same change.
ALTER TABLE findings ADD COLUMN verdict TEXT NOT NULL DEFAULT 'unverified';
ALTER TABLE findings ADD COLUMN verdict_reason TEXT;
ALTER TABLE findings ADD COLUMN verdict_note TEXT;
ALTER TABLE findings ADD COLUMN verdict_by TEXT;
ALTER TABLE findings ADD COLUMN verdict_at BIGINT;
CREATE INDEX findings_updated ON findings (updated_at);

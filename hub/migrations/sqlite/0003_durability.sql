-- Acknowledged means stored (docs/guide.md, "Durability"). Keep in step with the other
-- backend's 0003: only the id column differs.
--
-- A reading that carries the device's own ts has device_clock = 1 and is stored once per
-- (device, ts): a message the device sends again after a lost PUBACK (or that the external
-- broker redelivers) is not stored twice. Readings stamped with the hub's receive time have
-- no such key: two of them may share a millisecond.
ALTER TABLE readings ADD COLUMN device_clock SMALLINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX readings_device_clock_once ON readings (device_id, ts) WHERE device_clock = 1;

-- Batches the database refused for a reason retrying cannot fix (a constraint, a value out of
-- range): kept whole, as JSON, for an operator to inspect and replay; never retried by itself.
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at BIGINT NOT NULL,
    error TEXT NOT NULL,
    readings BIGINT NOT NULL,
    findings BIGINT NOT NULL,
    batch TEXT NOT NULL
);

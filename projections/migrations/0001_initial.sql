-- Analytics archive and read models. Runs on ClickHouse 18.16 (Debian) and on chDB 26.x:
-- no JSON or DateTime64 types, no LowCardinality, no window functions.
-- Every table is a ReplacingMergeTree whose sorting key is derived from the event itself, so a
-- redelivered batch or a full replay collapses to one row; queries read with FINAL.

CREATE TABLE IF NOT EXISTS calls (
    event_id String,
    occurred_at DateTime('UTC'),
    recorded_at DateTime('UTC'),
    utility String,
    domain String,
    area String,
    node_id String,
    premise_id String,
    building_id String,
    caller_hash String,
    symptom String,
    scope String,
    tags Array(String),
    has_notes UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id);

CREATE TABLE IF NOT EXISTS scada_signals (
    event_id String,
    occurred_at DateTime('UTC'),
    recorded_at DateTime('UTC'),
    domain String,
    device_id String,
    signal String,
    quality String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id);

CREATE TABLE IF NOT EXISTS planned_works (
    event_id String,
    occurred_at DateTime('UTC'),
    type String,
    work_id String,
    device_ids Array(String),
    starts_at Nullable(DateTime('UTC')),
    ends_at Nullable(DateTime('UTC')),
    reason String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id);

CREATE TABLE IF NOT EXISTS incident_events (
    event_id String,
    type String,
    occurred_at DateTime('UTC'),
    domain String,
    incident_id String,
    device_id String,
    call_id String,
    node_id String,
    reporter String,
    repeat UInt8,
    call_occurred_at Nullable(DateTime('UTC')),
    reason String,
    detail String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id);

CREATE TABLE IF NOT EXISTS incidents (
    incident_id String,
    version UInt64,
    domain String,
    device_id String,
    device_kind String,
    utility String,
    area String,
    state String,
    cause String,
    planned UInt8,
    work_id String,
    etr Nullable(DateTime('UTC')),
    opened_at DateTime('UTC'),
    confirmed_at Nullable(DateTime('UTC')),
    restored_at Nullable(DateTime('UTC')),
    updated_at DateTime('UTC'),
    customers_affected UInt32,
    merged_into String
) ENGINE = ReplacingMergeTree(version)
ORDER BY incident_id;

CREATE TABLE IF NOT EXISTS alerts (
    alert_id String,
    occurred_at DateTime('UTC'),
    incident_id String,
    kind String,
    severity String,
    utility String,
    device_id String,
    customers_affected UInt32,
    summary String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, alert_id);

-- Operational, not analytics: the number to call back after restoration. Kept apart so
-- retention can purge it without touching the archive.
CREATE TABLE IF NOT EXISTS call_contacts (
    call_id String,
    occurred_at DateTime('UTC'),
    caller String,
    caller_hash String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, call_id);

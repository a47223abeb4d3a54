-- Who owns an incident: acknowledgement and resolution by shift leads (the alerting issue).
ALTER TABLE incidents
    ADD COLUMN acknowledged_by String DEFAULT '',
    ADD COLUMN acknowledged_at Nullable(DateTime('UTC')),
    ADD COLUMN resolved_by String DEFAULT '';

-- "Not before" watermarks: every token of an agent issued at or before tokens_invalid_before is dead (set when
-- the agent is suspended, reactivated or decommissioned). credentials.revoked_at plays the same part for the
-- tokens of one credential. Redis holds copies under revoked:agent:{id} / revoked:credential:{id}.
alter table agents add column tokens_invalid_before timestamptz;

-- Bumped whenever a revocation reached PostgreSQL but could not be copied to Redis. Every replica compares it
-- with the epoch stored in Redis's completeness marker and refills Redis when they differ.
create table revocation_sync (
  id    boolean primary key default true check (id),
  epoch bigint not null default 0
);
insert into revocation_sync default values;

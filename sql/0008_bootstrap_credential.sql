-- The credential that holds BOOTSTRAP_CLIENT_SECRET. That secret names no credential (API secrets carry their id),
-- so client authentication checks it against this one, however many other credentials the bootstrap admin holds.
-- Set only by the start-up bootstrap, never through the API.
alter table credentials add column bootstrap boolean not null default false;

-- At most one live bootstrap credential an agent: replacing the secret revokes the old one in the same transaction.
create unique index credentials_bootstrap_idx on credentials (agent_id) where bootstrap and revoked_at is null;

-- Credentials: client secrets of an agent. Only the argon2id hash of a secret is ever stored.
-- An agent may hold several live credentials at once, so a secret rotates without downtime.
create table credentials (
  id           uuid primary key,                        -- UUIDv7; also embedded in the secret, so one hash is checked
  agent_id     uuid not null references agents (id),
  secret_hash  text not null,                           -- argon2id PHC string, never the secret
  created_at   timestamptz not null default now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  last_used_at timestamptz
);

create index credentials_agent_id_idx on credentials (agent_id, id);

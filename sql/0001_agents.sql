-- Agents: the identities AgentIdP issues tokens to. Rows are never deleted: decommissioning keeps the record.
create table agents (
  id          uuid primary key,                         -- UUIDv7, so id order is creation order (keyset pagination)
  client_id   text not null unique,                     -- OAuth client_id; the same across credential rotations
  name        text not null check (char_length(name) between 1 and 128),
  description text check (char_length(description) <= 1024),
  owner       text check (char_length(owner) <= 256),
  scopes      text[] not null default '{}',             -- every scope this agent may ever be granted
  status      text not null default 'active' check (status in ('active', 'suspended', 'decommissioned')),
  metadata    jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);

create index agents_owner_id_idx on agents (owner, id);
create index agents_status_id_idx on agents (status, id);

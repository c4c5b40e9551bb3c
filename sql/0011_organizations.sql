-- Organizations (tenants). Each has its own issuer ({ISSUER}/o/{slug}), keys, agents and audit chain. The default
-- organization, whose issuer is ISSUER itself, exists from here on and owns everything created before it.
create table organizations (
  id                    uuid primary key,
  slug                  text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$'),
  name                  text not null check (char_length(name) between 1 and 128),
  status                text not null default 'active' check (status in ('active', 'suspended')),
  tokens_invalid_before timestamptz,                  -- set on suspension: every token issued before it is dead
  created_at            timestamptz not null default now(),
  updated_at            timestamptz not null default now()
);

insert into organizations (id, slug, name) values ('00000000-0000-4000-8000-000000000000', 'default', 'Default organization');

-- The organization a transaction works for (set by inOrganization in src/database.ts with set_config(..., true)),
-- or null when none is set. Row-level security policies and org_id defaults read it: with none set, an
-- organization-owned table shows no row and accepts none.
create function current_org_id() returns uuid language sql stable as $$
  select nullif(current_setting('agentidp.org_id', true), '')::uuid
$$;

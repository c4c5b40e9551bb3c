-- Organizations own their rows: org_id on every organization-owned table, row-level security enabled and forced,
-- policies on the transaction's organization (current_org_id(), set by inOrganization in src/database.ts). The
-- server's connections run as DATABASE_APP_ROLE (created by the migration runner, src/migrate.ts), which owns no
-- table and cannot bypass row-level security: with no organization set, these tables show no row and take none.
-- The organization a row is written for and read in: the transaction's, or with none set (the owner's own sessions:
-- migrations, maintenance by hand, tests) the default organization, which owned everything before organizations.
-- For DATABASE_APP_ROLE the policies below compare with current_org_id() itself: with none set, nothing passes.
create function session_org_id() returns uuid language sql stable as $$
  select coalesce(current_org_id(), '00000000-0000-4000-8000-000000000000'::uuid)
$$;

alter table organizations drop constraint organizations_status_check;
alter table organizations add constraint organizations_status_check check (status in ('active', 'suspended', 'deleted'));

alter table agents add column org_id uuid not null default '00000000-0000-4000-8000-000000000000' references organizations (id);
alter table credentials add column org_id uuid not null default '00000000-0000-4000-8000-000000000000' references organizations (id);
alter table audit_events add column org_id uuid not null default '00000000-0000-4000-8000-000000000000' references organizations (id);
alter table token_revocations add column org_id uuid not null default '00000000-0000-4000-8000-000000000000' references organizations (id);
alter table client_assertion_jtis add column org_id uuid not null default '00000000-0000-4000-8000-000000000000' references organizations (id);

alter table agents alter column org_id set default session_org_id();
alter table credentials alter column org_id set default session_org_id();
alter table audit_events alter column org_id set default session_org_id();
alter table token_revocations alter column org_id set default session_org_id();
alter table client_assertion_jtis alter column org_id set default session_org_id();

-- client_ids (and names) are unique within an organization only.
alter table agents drop constraint agents_client_id_key;
create unique index agents_org_client_id_idx on agents (org_id, client_id);
create index agents_org_id_idx on agents (org_id, id);
drop index agents_owner_id_idx;
create index agents_owner_id_idx on agents (org_id, owner, id);
drop index agents_status_id_idx;
create index agents_status_id_idx on agents (org_id, status, id);

-- Each organization has its own hash chain: seq counts within it. Adding a column with a constant default and
-- changing keys rewrite no row, so the append-only triggers are not involved.
alter table audit_events drop constraint audit_events_pkey;
alter table audit_events add primary key (org_id, seq);
drop index audit_events_occurred_at_idx;
create index audit_events_occurred_at_idx on audit_events (org_id, occurred_at, seq);
drop index audit_events_type_seq_idx;
create index audit_events_type_seq_idx on audit_events (org_id, type, seq);
drop index audit_events_agent_seq_idx;
create index audit_events_agent_seq_idx on audit_events (org_id, agent_id, seq) where agent_id is not null;
drop index audit_events_actor_seq_idx;
create index audit_events_actor_seq_idx on audit_events (org_id, actor, seq);

alter table client_assertion_jtis drop constraint client_assertion_jtis_pkey;
alter table client_assertion_jtis add primary key (org_id, client_id, jti);
create index token_revocations_org_id_idx on token_revocations (org_id);

-- An organization's own signing keys, the private key sealed under KEY_ENCRYPTION_KEY (src/envelope.ts). A key
-- signs from activates_at (published earlier, so verifiers have it first) until the next one activates, and stays
-- published until retired_at (its last tokens have expired).
create table organization_keys (
  org_id         uuid not null default session_org_id() references organizations (id),
  kid            text not null,
  alg            text not null,
  public_jwk     jsonb not null,
  sealed_private text not null,
  created_at     timestamptz not null default now(),
  activates_at   timestamptz not null default now(),
  retired_at     timestamptz,
  primary key (org_id, kid)
);

alter table agents enable row level security;
alter table agents force row level security;
create policy agents_organization on agents using (org_id = current_org_id()) with check (org_id = current_org_id());
alter table credentials enable row level security;
alter table credentials force row level security;
create policy credentials_organization on credentials using (org_id = current_org_id()) with check (org_id = current_org_id());
alter table audit_events enable row level security;
alter table audit_events force row level security;
create policy audit_events_organization on audit_events using (org_id = current_org_id()) with check (org_id = current_org_id());
alter table token_revocations enable row level security;
alter table token_revocations force row level security;
create policy token_revocations_organization on token_revocations using (org_id = current_org_id()) with check (org_id = current_org_id());
alter table client_assertion_jtis enable row level security;
alter table client_assertion_jtis force row level security;
create policy client_assertion_jtis_organization on client_assertion_jtis using (org_id = current_org_id()) with check (org_id = current_org_id());
alter table organization_keys enable row level security;
alter table organization_keys force row level security;
create policy organization_keys_organization on organization_keys using (org_id = current_org_id()) with check (org_id = current_org_id());

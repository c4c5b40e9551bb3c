-- Delegation (RFC 8693 token exchange, plugins/clients/delegations): a subject agent lets an actor agent act for it
-- with some of its scopes, until expires_at. One row per (subject, actor) pair; removing it deletes the row.
create table agent_delegations (
  id          uuid primary key,
  org_id      uuid not null default session_org_id() references organizations (id),
  agent_id    uuid not null references agents (id),       -- the subject: the token's sub
  actor_id    uuid not null references agents (id),       -- who may act for it: the token's act.sub
  scopes      text[] not null,                            -- at most the subject's scopes when granted
  expires_at  timestamptz,                                -- null: until removed
  created_at  timestamptz not null default now(),
  created_by  text not null,                              -- the granting caller's client_id
  unique (org_id, agent_id, actor_id)
);

create index agent_delegations_actor_idx on agent_delegations (org_id, actor_id);

alter table agent_delegations enable row level security;
alter table agent_delegations force row level security;
create policy agent_delegations_organization on agent_delegations using (org_id = current_org_id()) with check (org_id = current_org_id());

-- Audience names that are not URIs (sts.amazonaws.com, an Azure api://AzureADTokenExchange) an agent may ask for in a
-- token exchange with requested_token_type urn:ietf:params:oauth:token-type:jwt: the workload JWT's aud.
alter table agents add column audiences text[] not null default '{}';

-- Acting for people signed in elsewhere (token exchange with an external subject token): an issuer whose tokens
-- (ID tokens, identity assertions) name people, and the agents allowed to act for those people, with which scopes.
create table subject_trusts (
  id          uuid primary key,
  org_id      uuid not null default session_org_id() references organizations (id),
  issuer      text not null,                              -- the external issuer, matched exactly
  audience    text,                                       -- what its tokens' aud must hold; null: this issuer
  claims      jsonb not null default '{}',                -- further claims that must match (as federated credentials)
  jwks        jsonb,                                      -- its keys inline, else fetched from jwks_uri or discovery
  jwks_uri    text,
  subject_id  text not null check (subject_id in ('issuer_sub', 'pairwise')),  -- how the issued sub names the person
  actors      jsonb not null,                             -- [{"agent_id", "scopes"}]: who may act for its subjects
  created_at  timestamptz not null default now(),
  created_by  text not null
);

create index subject_trusts_issuer_idx on subject_trusts (org_id, issuer);

alter table subject_trusts enable row level security;
alter table subject_trusts force row level security;
create policy subject_trusts_organization on subject_trusts using (org_id = current_org_id()) with check (org_id = current_org_id());

-- Workload identity federation (RFC 7523 §2.1): a credential of type federated lets tokens of an external issuer
-- (a Kubernetes cluster, GitHub Actions, a SPIFFE trust domain, another AgentIdP) stand for its agent. It holds no
-- secret and no key of the agent: its trust rule lives in federated_credentials, one row per such credential.
alter table credentials drop constraint credentials_type_check;
alter table credentials add constraint credentials_type_check check (type in ('client_secret', 'private_key_jwt', 'federated'));
alter table credentials drop constraint credentials_material_check;
alter table credentials add constraint credentials_material_check check (
  (type = 'client_secret' and secret_hash is not null and public_jwk is null and jwk_thumbprint is null) or
  (type = 'private_key_jwt' and secret_hash is null and public_jwk is not null and jwk_thumbprint is not null) or
  (type = 'federated' and secret_hash is null and public_jwk is null and jwk_thumbprint is null)
);

create table federated_credentials (
  credential_id uuid primary key references credentials (id),
  org_id        uuid not null default session_org_id() references organizations (id),
  issuer        text not null check (char_length(issuer) between 1 and 1024),    -- the external token's iss, matched exactly
  subject       text not null check (char_length(subject) between 1 and 1024),  -- its sub, matched exactly
  audience      text check (char_length(audience) between 1 and 1024),          -- what its aud must hold; null: this issuer
  claims        jsonb not null default '{}' check (jsonb_typeof(claims) = 'object'), -- further claims that must match
  jwks          jsonb check (jwks is null or jsonb_typeof(jwks) = 'object'),     -- the issuer's public keys, given inline
  jwks_uri      text check (char_length(jwks_uri) between 1 and 2048)            -- else fetched from here, else from discovery
);
-- The token endpoint finds trusts by the exact iss and sub of a presented token, within one organization.
create index federated_credentials_trust_idx on federated_credentials (org_id, issuer, subject);

alter table federated_credentials enable row level security;
alter table federated_credentials force row level security;
create policy federated_credentials_organization on federated_credentials using (org_id = current_org_id()) with check (org_id = current_org_id());

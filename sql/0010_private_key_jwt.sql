-- private_key_jwt (RFC 7523 §2.2): a credential may hold a client's public key instead of a secret hash. Each
-- type holds its own material and nothing else: a key credential never has a hash, a secret never a key.
alter table credentials drop constraint credentials_type_check;
alter table credentials add constraint credentials_type_check check (type in ('client_secret', 'private_key_jwt'));
alter table credentials alter column secret_hash drop not null;
alter table credentials add column public_jwk jsonb;           -- the public JWK only; a private member is refused at registration
alter table credentials add column jwk_thumbprint text;        -- RFC 7638 SHA-256 thumbprint, base64url
alter table credentials add constraint credentials_material_check check (
  (type = 'client_secret' and secret_hash is not null and public_jwk is null and jwk_thumbprint is null) or
  (type = 'private_key_jwt' and secret_hash is null and public_jwk is not null and jwk_thumbprint is not null)
);

-- The jti of every accepted client assertion, until the assertion could no longer be valid anyway: a jti is used
-- once (RFC 7523 §3 item 7). PostgreSQL, not Redis, so single use holds while Redis is down.
create table client_assertion_jtis (
  client_id  text not null,
  jti        text not null,
  expires_at timestamptz not null,
  primary key (client_id, jti)
);
create index client_assertion_jtis_expires_at_idx on client_assertion_jtis (expires_at);

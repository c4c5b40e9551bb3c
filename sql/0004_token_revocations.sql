-- Revoked access tokens: the durable half of the revocation store (Redis `revoked:{jti}` keys are the fast half).
-- A row is only needed until the token would have expired anyway; expired rows are pruned.
create table token_revocations (
  jti        text primary key,
  agent_id   uuid not null,
  expires_at timestamptz not null,
  revoked_at timestamptz not null default now(),
  reason     text
);

create index token_revocations_expires_at_idx on token_revocations (expires_at);

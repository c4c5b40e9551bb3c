-- Audit trail. APPEND-ONLY: the triggers below make PostgreSQL itself refuse UPDATE, DELETE and TRUNCATE on
-- audit_events, whoever connects as the application. Each row's hash covers its canonical content and the previous
-- row's hash (one chain ordered by seq), so a row edited behind the application's back breaks the chain.
create table audit_events (
  seq         bigint primary key,                       -- position in the hash chain, assigned under a lock
  id          uuid not null unique,
  occurred_at timestamptz not null,
  type        text not null,
  agent_id    uuid,                                     -- the agent the event is about, when there is one
  actor       text not null,                            -- the authenticated agent or client that acted, or 'anonymous'
  ip          text,
  request_id  text,
  data        jsonb not null default '{}',              -- event details; never a secret or a token
  prev_hash   text not null,
  hash        text not null
);

create index audit_events_occurred_at_idx on audit_events (occurred_at, seq);
create index audit_events_type_seq_idx on audit_events (type, seq);
create index audit_events_agent_seq_idx on audit_events (agent_id, seq) where agent_id is not null;
create index audit_events_actor_seq_idx on audit_events (actor, seq);

create function audit_events_refuse_change() returns trigger language plpgsql as $$
begin
  raise exception 'audit_events is append-only: % is not allowed', tg_op
    using errcode = 'insufficient_privilege';
end;
$$;

create trigger audit_events_no_update_delete
  before update or delete on audit_events
  for each row execute function audit_events_refuse_change();

create trigger audit_events_no_truncate
  before truncate on audit_events
  for each statement execute function audit_events_refuse_change();

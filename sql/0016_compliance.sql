-- SOC 2 evidence (docs/devops/compliance.md): credential expiry events recorded once each, and audit retention,
-- where archived events leave the table only through audit_prune(), which leaves a signed checkpoint behind.

-- Credential hygiene: when credential.expiring and credential.expired were recorded, so each fires once.
alter table credentials add column expiry_warned_at timestamptz;
alter table credentials add column expiry_recorded_at timestamptz;
create index credentials_expiry_idx on credentials (org_id, expires_at) where expires_at is not null and revoked_at is null;

-- One row per prune: the last pruned event (seq, hash), the archive file that holds the pruned events and its
-- SHA-256, all signed as a compact JWS by the organization's issuer key. Verification of the table starts here.
create table audit_checkpoints (
  org_id       uuid not null default session_org_id() references organizations (id),
  seq          bigint not null,                         -- the last pruned event
  hash         text not null,                           -- its hash: the prev_hash of the first event kept
  first_seq    bigint not null,                         -- the first event this prune removed
  pruned_at    timestamptz not null default now(),
  archive_file text not null,                           -- relative to AUDIT_ARCHIVE_DIR
  archive_sha256 text not null,
  jws          text not null,                           -- compact JWS over the checkpoint, by the issuer key
  primary key (org_id, seq)
);

alter table audit_checkpoints enable row level security;
alter table audit_checkpoints force row level security;
create policy audit_checkpoints_organization on audit_checkpoints using (org_id = current_org_id()) with check (org_id = current_org_id());

-- Prunes the events of the transaction's organization up to p_seq, which must be older than p_before (an instant
-- not in the future), not the chain's head (the appender continues from it), after the last checkpoint, and have
-- the hash given; inserts the checkpoint in the same statement's transaction. Returns how many events it removed.
-- The signature and the archive are the caller's (the server or npm run audit:archive): the database cannot check
-- a JWS, but it refuses a prune that would leave no checkpoint, break the chain's head or reach recent events.
create function audit_prune(p_seq bigint, p_hash text, p_first_seq bigint, p_archive_file text, p_archive_sha256 text, p_jws text, p_before timestamptz)
returns bigint language plpgsql security definer set search_path = public, pg_temp as $$
declare
  org uuid := current_org_id();
  head bigint;
  last_checkpoint bigint;
  target record;
  removed bigint;
begin
  if org is null then
    raise exception 'audit_prune: no organization set' using errcode = 'insufficient_privilege';
  end if;
  if p_before > now() then
    raise exception 'audit_prune: % is in the future', p_before using errcode = 'invalid_parameter_value';
  end if;
  -- The chain lock (plugins/audit/chain.ts): no append reads the head meanwhile.
  perform pg_advisory_xact_lock(7331001, hashtext(org::text));
  select max(seq) into head from audit_events where org_id = org;
  if head is null or p_seq >= head then
    raise exception 'audit_prune: the head of the chain (seq %) is never pruned', head using errcode = 'invalid_parameter_value';
  end if;
  select coalesce(max(seq), 0) into last_checkpoint from audit_checkpoints where org_id = org;
  if p_first_seq <> last_checkpoint + 1 or p_seq < p_first_seq then
    raise exception 'audit_prune: must continue from the last checkpoint (seq %)', last_checkpoint using errcode = 'invalid_parameter_value';
  end if;
  select seq, hash, occurred_at into target from audit_events where org_id = org and seq = p_seq;
  if target.seq is null or target.hash <> p_hash then
    raise exception 'audit_prune: event % does not have the hash given', p_seq using errcode = 'invalid_parameter_value';
  end if;
  if target.occurred_at >= p_before then
    raise exception 'audit_prune: event % is not older than %', p_seq, p_before using errcode = 'invalid_parameter_value';
  end if;
  perform set_config('agentidp.audit_prune', 'on', true);
  insert into audit_checkpoints (org_id, seq, hash, first_seq, archive_file, archive_sha256, jws)
  values (org, p_seq, p_hash, p_first_seq, p_archive_file, p_archive_sha256, p_jws);
  delete from audit_events where org_id = org and seq >= p_first_seq and seq <= p_seq;
  get diagnostics removed = row_count;
  perform set_config('agentidp.audit_prune', '', true);
  return removed;
end;
$$;

-- Whether the statement runs inside audit_prune(): its transaction-local marker is set AND the current user is the
-- function's owner. Any role may set a custom setting, so the marker alone would let the app role delete; only a
-- SECURITY DEFINER function runs as its owner, and the app role owns nothing.
create function audit_pruning() returns boolean language sql stable as $$
  select coalesce(current_setting('agentidp.audit_prune', true), '') = 'on'
     and current_user = (select r.rolname from pg_proc p join pg_roles r on r.oid = p.proowner
                         where p.oid = 'audit_prune(bigint, text, bigint, text, text, text, timestamptz)'::regprocedure)
$$;

-- The append-only refusal, with the one exception: a row-level DELETE made by audit_prune(). UPDATE and TRUNCATE
-- stay refused for everyone; so does any DELETE outside the function.
create or replace function audit_events_refuse_change() returns trigger language plpgsql as $$
begin
  if tg_op = 'DELETE' and tg_level = 'ROW' and audit_pruning() then
    return old;
  end if;
  raise exception '% is append-only: % is not allowed', tg_table_name, tg_op
    using errcode = 'insufficient_privilege';
end;
$$;

-- Checkpoints are written by audit_prune() only, and never changed.
create function audit_checkpoints_refuse_change() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' and audit_pruning() then
    return new;
  end if;
  raise exception 'audit_checkpoints are written by audit_prune() only: % is not allowed', tg_op
    using errcode = 'insufficient_privilege';
end;
$$;

create trigger audit_checkpoints_no_change
  before insert or update or delete on audit_checkpoints
  for each row execute function audit_checkpoints_refuse_change();

create trigger audit_checkpoints_no_truncate
  before truncate on audit_checkpoints
  for each statement execute function audit_checkpoints_refuse_change();

-- Writes that span many organizations, in one statement each: the audit group commit's batch, and credentials' last
-- use. The group commit's batch took five statements an organization (switch, lock, read the head; switch, insert):
-- across 1,000 organizations the database spent more on those executions than on the rows. These functions do the
-- same work in one statement each, still as the calling role and under row-level security: each organization's
-- rows are read and written only after the transaction was switched to it, exactly as inOrganization does.
-- SECURITY INVOKER (the default): they give the caller nothing it could not do with the statements they replace.

-- Locks each organization's chain, in the order given (the caller sorts, so two batches cannot wait in a cycle), and
-- reads its head after the lock is held: a volatile function's statements each take a new snapshot (READ COMMITTED),
-- so the head is the last event committed by any replica. now_at is the database clock once that lock is held.
create function audit_lock_chain_heads(org_ids uuid[])
returns table (head_org_id uuid, head_seq bigint, head_hash text, head_occurred_at timestamptz, now_at timestamptz)
language plpgsql volatile as $$
declare
  org uuid;
begin
  foreach org in array org_ids loop
    perform set_config('agentidp.org_id', org::text, true);
    perform pg_advisory_xact_lock(7331001, hashtext(org::text));
    return query
      select org, last.seq, last.hash, last.occurred_at, date_trunc('milliseconds', clock_timestamp())
      from (select 1) as one
      left join (select e.seq, e.hash, e.occurred_at from audit_events e where e.org_id = org order by e.seq desc limit 1) as last on true;
  end loop;
end;
$$;

-- Inserts a batch of events, one array a column (row i of every array is one event), each organization's rows after
-- the transaction was switched to that organization, so the row-level security check applies to every row.
create function audit_insert_batch(
  org_ids uuid[], seqs bigint[], ids uuid[], occurred_ats timestamptz[], types text[], agent_ids uuid[], actors text[],
  ips text[], request_ids text[], datas jsonb[], prev_hashes text[], hashes text[]
) returns void
language plpgsql volatile as $$
declare
  org uuid;
begin
  for org in select distinct o from unnest(org_ids) as o loop
    perform set_config('agentidp.org_id', org::text, true);
    insert into audit_events (org_id, seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash)
    select b.org_id, b.seq, b.id, b.occurred_at, b.type, b.agent_id, b.actor, b.ip, b.request_id, b.data, b.prev_hash, b.hash
    from unnest(org_ids, seqs, ids, occurred_ats, types, agent_ids, actors, ips, request_ids, datas, prev_hashes, hashes)
      as b (org_id, seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash)
    where b.org_id = org;
  end loop;
end;
$$;

-- credentials.last_used_at of credentials of many organizations in one statement: client authentication notes each
-- use (at most once a minute a credential) and writes what it noted together, off the response path. Row i of the
-- arrays is one credential, its organization and when it was used.
create function credentials_touch_last_used(org_ids uuid[], credential_ids uuid[], used_ats timestamptz[]) returns void
language plpgsql volatile as $$
declare
  org uuid;
begin
  for org in select distinct o from unnest(org_ids) as o loop
    perform set_config('agentidp.org_id', org::text, true);
    update credentials c set last_used_at = u.used_at
    from unnest(org_ids, credential_ids, used_ats) as u (org_id, id, used_at)
    where u.org_id = org and c.id = u.id;
  end loop;
end;
$$;

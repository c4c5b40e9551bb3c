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

-- Inserts a batch of events, one array a column, grouped by organization: the first row_counts[1] rows are
-- org_ids[1]'s, the next row_counts[2] org_ids[2]'s, and so on. Each organization's rows are inserted after the
-- transaction was switched to it, so the row-level security check applies to every row; each insert reads only its
-- own slice of the arrays.
create function audit_insert_batch(
  org_ids uuid[], row_counts int[], seqs bigint[], ids uuid[], occurred_ats timestamptz[], types text[], agent_ids uuid[],
  actors text[], ips text[], request_ids text[], datas jsonb[], prev_hashes text[], hashes text[]
) returns void
language plpgsql volatile as $$
declare
  lo int := 1;
  hi int;
begin
  for i in 1 .. coalesce(array_length(org_ids, 1), 0) loop
    hi := lo + row_counts[i] - 1;
    perform set_config('agentidp.org_id', org_ids[i]::text, true);
    insert into audit_events (org_id, seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash)
    select org_ids[i], b.seq, b.id, b.occurred_at, b.type, b.agent_id, b.actor, b.ip, b.request_id, b.data, b.prev_hash, b.hash
    from unnest(seqs[lo:hi], ids[lo:hi], occurred_ats[lo:hi], types[lo:hi], agent_ids[lo:hi], actors[lo:hi], ips[lo:hi],
                request_ids[lo:hi], datas[lo:hi], prev_hashes[lo:hi], hashes[lo:hi])
      as b (seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash);
    lo := hi + 1;
  end loop;
end;
$$;

-- credentials.last_used_at of credentials of many organizations in one statement: client authentication notes each
-- use (at most once a minute a credential) and writes what it noted together, off the response path, all at used_at.
-- Grouped like audit_insert_batch: the first row_counts[1] credential ids are org_ids[1]'s, and so on; each update
-- finds its rows by primary key.
create function credentials_touch_last_used(org_ids uuid[], row_counts int[], credential_ids uuid[], used_at timestamptz) returns void
language plpgsql volatile as $$
declare
  lo int := 1;
  hi int;
begin
  for i in 1 .. coalesce(array_length(org_ids, 1), 0) loop
    hi := lo + row_counts[i] - 1;
    perform set_config('agentidp.org_id', org_ids[i]::text, true);
    update credentials set last_used_at = used_at where id = any(credential_ids[lo:hi]);
    lo := hi + 1;
  end loop;
end;
$$;

-- The organizations the webhook delivery worker visits: those with at least one enabled subscription. Its timer round
-- used to open a transaction for every active organization, subscribed or not (1,000 organizations: 1,000
-- transactions a second per replica, idle). webhook_subscriptions has forced row-level security, so no statement of
-- the worker can list the subscribed organizations across all of them (a SECURITY DEFINER function would not either:
-- its owner is bound too); organizations, which has none, carries the answer instead, kept by a trigger.
alter table organizations add column has_enabled_webhooks boolean not null default false;

-- Recomputes the flag of the subscription's organization. Two transactions of one organization, one enabling a
-- subscription and one disabling another, must not leave it false while one is enabled (that organization's events
-- would never be delivered): each first locks the organization's row, and only then, in a statement of its own
-- (each takes a new snapshot in READ COMMITTED), looks at the subscriptions. The second to take the lock sees what
-- the first committed; a single UPDATE computing exists() would use the snapshot taken before it waited.
-- FOR NO KEY UPDATE does not block the FOR KEY SHARE locks that inserts referencing organizations take.
-- Runs as the caller (SECURITY INVOKER): DATABASE_APP_ROLE may update organizations, and row-level security shows it
-- the subscriptions of its transaction's organization, the row's. The policy keeps org_id from changing; were it to
-- change (a role that bypasses row-level security), both organizations are recomputed, in one order.
create function webhook_subscriptions_flag_organization() returns trigger
language plpgsql volatile as $$
declare
  orgs uuid[];
  org uuid;
  subscribed boolean;
begin
  if tg_op = 'INSERT' then
    orgs := array[new.org_id];
  elsif tg_op = 'DELETE' then
    orgs := array[old.org_id];
  elsif old.org_id = new.org_id then
    orgs := array[new.org_id];
  else
    orgs := array[least(old.org_id, new.org_id), greatest(old.org_id, new.org_id)];
  end if;
  foreach org in array orgs loop
    perform 1 from organizations where id = org for no key update;
    subscribed := exists (select 1 from webhook_subscriptions where org_id = org and enabled);
    update organizations set has_enabled_webhooks = subscribed where id = org and has_enabled_webhooks <> subscribed;
  end loop;
  return null;
end;
$$;

-- Only changes that can change the flag fire it: the worker's own writes (leases, cursors) never do.
create trigger webhook_subscriptions_flag_on_insert after insert on webhook_subscriptions
  for each row when (new.enabled) execute function webhook_subscriptions_flag_organization();
create trigger webhook_subscriptions_flag_on_update after update of enabled, org_id on webhook_subscriptions
  for each row when (old.enabled is distinct from new.enabled or old.org_id is distinct from new.org_id)
  execute function webhook_subscriptions_flag_organization();
create trigger webhook_subscriptions_flag_on_delete after delete on webhook_subscriptions
  for each row when (old.enabled) execute function webhook_subscriptions_flag_organization();

-- The flag of the organizations that exist: each looked at after the transaction was switched to it, so row-level
-- security shows the subscriptions to a migrating user bound by it, as audit_insert_batch does (sql/0017).
do $$
declare
  previous text := coalesce(current_setting('agentidp.org_id', true), '');
  org uuid;
begin
  for org in select id from organizations order by id loop
    perform set_config('agentidp.org_id', org::text, true);
    update organizations set has_enabled_webhooks = exists (select 1 from webhook_subscriptions where org_id = org and enabled)
    where id = org;
  end loop;
  perform set_config('agentidp.org_id', previous, true);
end;
$$;

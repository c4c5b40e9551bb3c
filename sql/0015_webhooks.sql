-- Webhooks (plugins/webhooks): subscriptions to the audit trail, and the deliveries made to them. Both are owned by
-- an organization; the delivery worker reads the trail after each subscription's cursor and delivers in chain order.
create table webhook_subscriptions (
  id                      uuid primary key,
  org_id                  uuid not null default session_org_id() references organizations (id),
  url                     text not null,
  events                  text[] not null,                 -- audit event types, or {*}
  description             text,
  enabled                 boolean not null default true,
  disabled_reason         text,                            -- why the server disabled it (gone, failing); null when a caller did
  secret_sealed           text not null,                   -- src/envelope.ts, context webhook-secret:{org}:{id}; never plain
  previous_secret_sealed  text,                            -- the secret before the last rotation, signing too until:
  previous_secret_expires_at timestamptz,
  after_seq               bigint not null,                 -- the cursor: audit events up to this seq are enqueued
  failing_since           timestamptz,                     -- first failed attempt since the last success
  lease_owner             text,                            -- the worker delivering for it now, until lease_until
  lease_until             timestamptz,
  created_at              timestamptz not null default now(),
  updated_at              timestamptz not null default now()
);

create index webhook_subscriptions_org_idx on webhook_subscriptions (org_id, id);

create table webhook_deliveries (
  position          bigint generated always as identity primary key,  -- delivery order within a subscription
  id                uuid not null unique,
  org_id            uuid not null default session_org_id() references organizations (id),
  subscription_id   uuid not null references webhook_subscriptions (id) on delete cascade,
  message_id        text not null,                       -- webhook-id: the same for every attempt and redelivery
  event_type        text not null,
  event_seq         bigint,                              -- the audit event delivered; null for webhook.test
  event_at          timestamptz not null,
  payload           text not null,                       -- the JSON body, exactly as signed and sent
  status            text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
  attempts          integer not null default 0,
  last_status_code  integer,
  last_error        text,
  next_attempt_at   timestamptz,                         -- null once succeeded or failed
  created_at        timestamptz not null default now(),
  completed_at      timestamptz
);

create index webhook_deliveries_pending_idx on webhook_deliveries (subscription_id, position) where status = 'pending';
create index webhook_deliveries_subscription_idx on webhook_deliveries (org_id, subscription_id, position);

alter table webhook_subscriptions enable row level security;
alter table webhook_subscriptions force row level security;
create policy webhook_subscriptions_organization on webhook_subscriptions using (org_id = current_org_id()) with check (org_id = current_org_id());
alter table webhook_deliveries enable row level security;
alter table webhook_deliveries force row level security;
create policy webhook_deliveries_organization on webhook_deliveries using (org_id = current_org_id()) with check (org_id = current_org_id());

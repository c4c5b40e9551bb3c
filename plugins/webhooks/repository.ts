import type { Queryable } from '../../src/database.js'

/** A webhook_subscriptions row (sql/0015). */
export interface SubscriptionRow {
  id: string
  org_id: string
  url: string
  events: string[]
  description: string | null
  enabled: boolean
  disabled_reason: string | null
  secret_sealed: string
  previous_secret_sealed: string | null
  previous_secret_expires_at: Date | null
  after_seq: string
  failing_since: Date | null
  lease_owner: string | null
  lease_until: Date | null
  created_at: Date
  updated_at: Date
}

/** A webhook_deliveries row. */
export interface DeliveryRow {
  position: string
  id: string
  org_id: string
  subscription_id: string
  message_id: string
  event_type: string
  event_seq: string | null
  event_at: Date
  payload: string
  status: 'pending' | 'succeeded' | 'failed'
  attempts: number
  last_status_code: number | null
  last_error: string | null
  next_attempt_at: Date | null
  created_at: Date
  completed_at: Date | null
}

/** What a new subscription is made of; the database fills in the rest. */
export type NewSubscription = Pick<SubscriptionRow, 'id' | 'url' | 'events' | 'description' | 'secret_sealed' | 'after_seq'>

/** The columns a change may set. */
export type SubscriptionChanges = Partial<Pick<SubscriptionRow, 'url' | 'events' | 'description' | 'enabled' | 'disabled_reason' |
'secret_sealed' | 'previous_secret_sealed' | 'previous_secret_expires_at' | 'failing_since'>>

/** What a new delivery is made of. */
export type NewDelivery = Pick<DeliveryRow, 'id' | 'subscription_id' | 'message_id' | 'event_type' | 'event_seq' | 'event_at' | 'payload'>

export async function insertSubscription (sql: Queryable, row: NewSubscription): Promise<SubscriptionRow> {
  const [inserted] = await sql<SubscriptionRow[]>`
    insert into webhook_subscriptions (id, url, events, description, secret_sealed, after_seq)
    values (${row.id}, ${row.url}, ${sql.array(row.events)}::text[], ${row.description}, ${row.secret_sealed}, ${row.after_seq})
    returning *`
  return inserted as SubscriptionRow
}

/** The subscription, or undefined; with `forUpdate`, locked until the transaction ends. */
export async function findSubscription (sql: Queryable, id: string, forUpdate = false): Promise<SubscriptionRow | undefined> {
  const [row] = await sql<SubscriptionRow[]>`
    select * from webhook_subscriptions where id = ${id} ${forUpdate ? sql`for update` : sql``}`
  return row
}

/** Every subscription of the organization, oldest first (an organization has few). */
export async function listSubscriptions (sql: Queryable): Promise<SubscriptionRow[]> {
  return await sql<SubscriptionRow[]>`select * from webhook_subscriptions order by id`
}

export async function updateSubscription (sql: Queryable, id: string, changes: SubscriptionChanges): Promise<SubscriptionRow> {
  const values: Record<string, unknown> = { ...changes }
  if (changes.events !== undefined) values.events = sql.array(changes.events)
  const [row] = await sql<SubscriptionRow[]>`
    update webhook_subscriptions set ${sql(values as Record<string, never>, Object.keys(values))}, updated_at = now()
    where id = ${id}
    returning *`
  return row as SubscriptionRow
}

export async function deleteSubscription (sql: Queryable, id: string): Promise<void> {
  await sql`delete from webhook_subscriptions where id = ${id}`
}

/**
 * Leases up to `limit` enabled subscriptions that no live worker holds, for `leaseMs`: the claim that keeps two
 * replicas from delivering for the same subscription at once. SKIP LOCKED lets replicas claiming together split
 * the subscriptions instead of queueing; the lease (not a held transaction) outlives the claim, so no connection is
 * held during an HTTP request, and a replica that dies lets its lease run out for another to carry on.
 */
export async function claimSubscriptions (sql: Queryable, owner: string, leaseMs: number, limit: number): Promise<SubscriptionRow[]> {
  return await sql<SubscriptionRow[]>`
    update webhook_subscriptions set lease_owner = ${owner}, lease_until = clock_timestamp() + ${leaseMs} * interval '1 millisecond'
    where id in (
      select id from webhook_subscriptions
      where enabled and (lease_until is null or lease_until < clock_timestamp())
      order by lease_until nulls first, id
      limit ${limit}
      for update skip locked)
    returning *`
}

/** Extends the lease and reads the subscription as it now is (locked until the transaction ends); undefined when this owner no longer holds it or it is gone. */
export async function renewLeaseAndRead (sql: Queryable, id: string, owner: string, leaseMs: number): Promise<SubscriptionRow | undefined> {
  const [row] = await sql<SubscriptionRow[]>`
    update webhook_subscriptions set lease_until = clock_timestamp() + ${leaseMs} * interval '1 millisecond'
    where id = ${id} and lease_owner = ${owner} and lease_until >= clock_timestamp()
    returning *`
  return row
}

/** Lets go of the leases this owner holds on these subscriptions. */
export async function releaseLeases (sql: Queryable, ids: string[], owner: string): Promise<void> {
  await sql`update webhook_subscriptions set lease_owner = null, lease_until = null where id = any(${sql.array(ids)}::uuid[]) and lease_owner = ${owner}`
}

/** Moves the cursors: audit events up to `seq` are enqueued (or did not match). Only forward. */
export async function advanceCursors (sql: Queryable, ids: string[], seq: string): Promise<void> {
  await sql`update webhook_subscriptions set after_seq = greatest(after_seq, ${seq}::bigint) where id = any(${sql.array(ids)}::uuid[])`
}

/** The subscriptions, of these, whose oldest pending delivery holds them back, and whether it is due now. */
export async function pendingHeads (sql: Queryable, ids: string[]): Promise<Array<{ subscription_id: string, due: boolean }>> {
  return await sql<Array<{ subscription_id: string, due: boolean }>>`
    select head.subscription_id, (head.next_attempt_at is null or head.next_attempt_at <= now()) as due
    from unnest(${sql.array(ids)}::uuid[]) as subscription (id)
    cross join lateral (
      select subscription_id, next_attempt_at from webhook_deliveries
      where subscription_id = subscription.id and status = 'pending'
      order by position limit 1) as head`
}

/**
 * Inserts deliveries in the order given (their position). A row without `attempt` is pending and due at once (a
 * test, a redelivery); a row with one records its first attempt, made before the row was written (the worker
 * delivers the trail first and writes what happened afterwards, a batch at a time).
 */
export async function insertDeliveries (sql: Queryable, rows: Array<NewDelivery & { attempt?: AttemptRecord }>): Promise<DeliveryRow[]> {
  if (rows.length === 0) return []
  const column = <K extends keyof NewDelivery>(name: K): Array<NewDelivery[K]> => rows.map((row) => row[name])
  const attempt = <K extends keyof AttemptRecord>(name: K): Array<AttemptRecord[K] | null> => rows.map((row) => row.attempt?.[name] ?? null)
  const iso = (values: Array<Date | null>): Array<string | null> => values.map((at) => at?.toISOString() ?? null)
  // One array a column, ordinality keeping the given order: the same statement whatever the batch size.
  return await sql<DeliveryRow[]>`
    insert into webhook_deliveries (id, subscription_id, message_id, event_type, event_seq, event_at, payload, status, attempts, last_status_code, last_error, next_attempt_at, completed_at)
    select id, subscription_id, message_id, event_type, event_seq, event_at, payload, coalesce(status, 'pending'), case when status is null then 0 else 1 end,
           last_status_code, last_error, case when status is null then now() else next_attempt_at end, completed_at
    from unnest(${column('id')}::uuid[], ${column('subscription_id')}::uuid[], ${column('message_id')}::text[], ${column('event_type')}::text[],
                ${column('event_seq')}::bigint[], ${iso(column('event_at'))}::timestamptz[], ${column('payload')}::text[],
                ${attempt('status')}::text[], ${attempt('last_status_code')}::integer[], ${attempt('last_error')}::text[],
                ${iso(attempt('next_attempt_at'))}::timestamptz[], ${iso(attempt('completed_at'))}::timestamptz[])
      with ordinality as batch (id, subscription_id, message_id, event_type, event_seq, event_at, payload, status, last_status_code, last_error, next_attempt_at, completed_at, n)
    order by n
    returning *`
}

/** The subscription's oldest pending delivery: the only one that may be attempted (order per subscription). */
export async function headDelivery (sql: Queryable, subscriptionId: string): Promise<DeliveryRow | undefined> {
  const [row] = await sql<DeliveryRow[]>`
    select * from webhook_deliveries
    where subscription_id = ${subscriptionId} and status = 'pending'
    order by position
    limit 1`
  return row
}

/** What one attempt changed about a delivery. */
export type AttemptRecord = Pick<DeliveryRow, 'status' | 'last_status_code' | 'last_error' | 'next_attempt_at' | 'completed_at'>

export async function recordAttempt (sql: Queryable, id: string, record: AttemptRecord): Promise<DeliveryRow> {
  const [row] = await sql<DeliveryRow[]>`
    update webhook_deliveries
    set attempts = attempts + 1, status = ${record.status}, last_status_code = ${record.last_status_code},
        last_error = ${record.last_error}, next_attempt_at = ${record.next_attempt_at}, completed_at = ${record.completed_at}
    where id = ${id}
    returning *`
  return row as DeliveryRow
}

/** Pending deliveries of the subscription are due now (a re-enabled subscription resumes at once). */
export async function makePendingDue (sql: Queryable, subscriptionId: string): Promise<void> {
  await sql`update webhook_deliveries set next_attempt_at = now() where subscription_id = ${subscriptionId} and status = 'pending'`
}

/** A page of the subscription's deliveries, newest first, before `beforePosition` when given. */
export async function listDeliveries (sql: Queryable, subscriptionId: string, filter: { status?: string, beforePosition?: string, limit: number }): Promise<DeliveryRow[]> {
  return await sql<DeliveryRow[]>`
    select * from webhook_deliveries
    where subscription_id = ${subscriptionId}
      ${filter.status === undefined ? sql`` : sql`and status = ${filter.status}`}
      ${filter.beforePosition === undefined ? sql`` : sql`and position < ${filter.beforePosition}`}
    order by position desc
    limit ${filter.limit}`
}

export async function findDelivery (sql: Queryable, subscriptionId: string, id: string): Promise<DeliveryRow | undefined> {
  const [row] = await sql<DeliveryRow[]>`select * from webhook_deliveries where subscription_id = ${subscriptionId} and id = ${id}`
  return row
}

/**
 * The organizations the delivery worker visits (of `among`, when given): the active ones (a suspended organization's
 * events wait, a deleted one's are never sent) with at least one enabled subscription (organizations.has_enabled_webhooks,
 * kept by a trigger on webhook_subscriptions, sql/0019): an organization without one costs the worker nothing. The
 * organizations table has no row-level security. Belongs to the organizations capability once it publishes one.
 */
export async function organizationsWithEnabledWebhooks (sql: Queryable, among?: string[]): Promise<string[]> {
  return (await sql<Array<{ id: string }>>`
    select id from organizations
    where status = 'active' and has_enabled_webhooks ${among === undefined ? sql`` : sql`and id = any(${sql.array(among)}::uuid[])`}
    order by id`).map((row) => row.id)
}

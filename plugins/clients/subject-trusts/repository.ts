import type { Queryable } from '../../../src/database.js'
import type { FederationRule } from '../credentials/federated.js'

/** A subject_trusts row (sql/0018). */
export interface SubjectTrustRow extends Omit<FederationRule, 'subject'> {
  id: string
  subject_id: 'issuer_sub' | 'pairwise'
  actors: Array<{ agent_id: string, scopes: string[] }>
  created_at: Date
  created_by: string
}

// Trusts of one issuer differ in audience or claims: a handful at most are tried for one token.
const MAX_TRUSTS_TRIED = 10

export async function insertSubjectTrust (sql: Queryable, row: Omit<SubjectTrustRow, 'created_at'>): Promise<SubjectTrustRow> {
  const [inserted] = await sql<SubjectTrustRow[]>`
    insert into subject_trusts (id, issuer, audience, claims, jwks, jwks_uri, subject_id, actors, created_by)
    values (${row.id}, ${row.issuer}, ${row.audience}, ${sql.json(row.claims as never)}, ${row.jwks === null ? null : sql.json(row.jwks as never)},
            ${row.jwks_uri}, ${row.subject_id}, ${sql.json(row.actors as never)}, ${row.created_by})
    returning *`
  return inserted as SubjectTrustRow
}

export async function listSubjectTrusts (sql: Queryable): Promise<SubjectTrustRow[]> {
  return await sql<SubjectTrustRow[]>`select * from subject_trusts order by id`
}

export async function deleteSubjectTrust (sql: Queryable, id: string): Promise<SubjectTrustRow | undefined> {
  const [row] = await sql<SubjectTrustRow[]>`delete from subject_trusts where id = ${id} returning *`
  return row
}

/** The trusts of the organization (the transaction's) for this exact issuer: the only ones its token can match. */
export async function subjectTrustsOf (sql: Queryable, issuer: string): Promise<SubjectTrustRow[]> {
  return await sql<SubjectTrustRow[]>`select * from subject_trusts where issuer = ${issuer} order by id limit ${MAX_TRUSTS_TRIED}`
}

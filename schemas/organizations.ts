import { Type, type Static } from 'typebox'
import { CursorSchema, PageSchema, TextSchema, UuidSchema } from './common.js'

/** Lowercase letters, digits and hyphens, 3–63 characters, no hyphen first or last (sql/0011 checks the same). */
export const SLUG_PATTERN = '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'

export const OrganizationStatusSchema = Type.Union([Type.Literal('active'), Type.Literal('suspended')], {
  description: 'active: its clients obtain tokens. suspended: its clients are refused and every token it issued is inactive, at once'
})

const SlugSchema = Type.String({ pattern: SLUG_PATTERN, description: 'Lowercase letters, digits and hyphens, 3–63 characters: its issuer is {ISSUER}/o/{slug}' })
const NameSchema = TextSchema({ minLength: 1, maxLength: 128, description: 'A human-readable name, 1–128 characters' })

export const OrganizationSchema = Type.Object({
  id: UuidSchema,
  slug: SlugSchema,
  name: Type.String(),
  status: Type.Union([OrganizationStatusSchema, Type.Literal('deleted')]),
  issuer: Type.String({ description: 'The issuer identifier of its tokens and discovery' }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' })
})
export type Organization = Static<typeof OrganizationSchema>

export const CreatedOrganizationSchema = Type.Intersect([OrganizationSchema, Type.Object({
  admin: Type.Object({
    agent_id: UuidSchema,
    client_id: Type.String(),
    client_secret: Type.String({ description: 'Shown in this response only' })
  }, { description: 'The organization\'s first admin agent: every admin scope but the platform\'s' })
})])
export type CreatedOrganization = Static<typeof CreatedOrganizationSchema>

export const CreateOrganizationBodySchema = Type.Object({ slug: SlugSchema, name: NameSchema }, { additionalProperties: false })
export type CreateOrganizationBody = Static<typeof CreateOrganizationBodySchema>

export const UpdateOrganizationBodySchema = Type.Object({
  name: Type.Optional(NameSchema),
  status: Type.Optional(OrganizationStatusSchema)
}, { additionalProperties: false })
export type UpdateOrganizationBody = Static<typeof UpdateOrganizationBodySchema>

export const OrganizationParamsSchema = Type.Object({ id: UuidSchema })

export const ListOrganizationsQuerySchema = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  cursor: Type.Optional(CursorSchema)
}, { additionalProperties: false })
export type ListOrganizationsQuery = Static<typeof ListOrganizationsQuerySchema>

export const OrganizationPageSchema = PageSchema(OrganizationSchema)
export type OrganizationPage = Static<typeof OrganizationPageSchema>

export const RotateKeyBodySchema = Type.Object({
  activates_in: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400, default: 0, description: 'Seconds before the new key starts signing: it is published at once, so verifiers caching the JWKS see it first' }))
}, { additionalProperties: false })
export type RotateKeyBody = Static<typeof RotateKeyBodySchema>

export const RotatedKeySchema = Type.Object({
  kid: Type.String(),
  alg: Type.String(),
  activates_at: Type.String({ format: 'date-time' }),
  previous: Type.Union([Type.Object({ kid: Type.String(), retires_at: Type.String({ format: 'date-time' }) }), Type.Null()], {
    description: 'The key it replaces: published until the last token it can have signed has expired'
  })
})
export type RotatedKey = Static<typeof RotatedKeySchema>

import { Type, type Static } from 'typebox'

export const LiveSchema = Type.Object({ status: Type.Literal('ok') })

const CheckSchema = Type.Object({
  status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  kind: Type.String({ description: 'postgresql or pglite; redis or memory' }),
  error: Type.Optional(Type.String())
})

export const ReadySchema = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  checks: Type.Object({ postgres: CheckSchema, redis: CheckSchema })
})
export type Ready = Static<typeof ReadySchema>

import type { FastifyRequest } from 'fastify'

/** How many times the request carried the header `name` (lowercase): Node folds repeats into one value. */
export function headerCount (request: FastifyRequest, name: string): number {
  const raw = request.raw.rawHeaders
  let count = 0
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) count += 1
  return count
}

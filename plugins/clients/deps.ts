import type { FastifyInstance } from 'fastify'

/** What the agents and credentials services use of the app. */
export type Deps = Pick<FastifyInstance, 'sql' | 'store' | 'audit' | 'config' | 'log' | 'revocations' | 'defaultIssuer'>

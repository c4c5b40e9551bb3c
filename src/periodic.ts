import type { FastifyInstance } from 'fastify'

/**
 * Runs `run` in the background of a replica: first after `firstDelayMs`, then every `intervalMs`, never keeping the
 * process alive, until the app closes. For background work every replica runs, which takes its share row by row or
 * under a lock (the credential expiry scan, audit retention).
 */
export function runPeriodically (app: Pick<FastifyInstance, 'addHook'>, run: () => void, { firstDelayMs, intervalMs }: { firstDelayMs: number, intervalMs: number }): void {
  const first = setTimeout(run, firstDelayMs).unref()
  const every = setInterval(run, intervalMs).unref()
  app.addHook('onClose', async () => {
    clearTimeout(first)
    clearInterval(every)
  })
}

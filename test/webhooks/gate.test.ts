import { EventEmitter } from 'node:events'
import type { ServerResponse } from 'node:http'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { DeliveryGate } from '../../plugins/webhooks/worker.js'

/** A request in flight until `close` is emitted, as the server's response emits it. */
const request = (): ServerResponse & EventEmitter => new EventEmitter() as ServerResponse & EventEmitter

describe('deliveries yield to a saturated server (DeliveryGate)', () => {
  it('lets deliveries go side by side while the server keeps up with its requests', async () => {
    const gate = new DeliveryGate()
    gate.requestReceived(request())
    const releases = await Promise.all(Array.from({ length: 10 }, async () => await gate.pass()))
    expect(releases).toHaveLength(10)
  })

  it('passes one delivery at a time while requests queue up, the next once the first let go', async () => {
    const gate = new DeliveryGate()
    const inFlight = [request(), request(), request()]
    for (const response of inFlight) gate.requestReceived(response)
    const release = await gate.pass()
    let second = false
    const waiting = gate.pass().then((releaseSecond) => { second = true; releaseSecond() })
    await nextTurn()
    await nextTurn()
    expect(second).toBe(false)
    for (const response of inFlight) response.emit('close')
    release()
    await waiting
    expect(second).toBe(true)
  })

  it('lets every waiting delivery go when shutting down', async () => {
    const gate = new DeliveryGate()
    for (let n = 0; n < 2; n++) gate.requestReceived(request())
    await gate.pass()
    const waiting = Promise.all([gate.pass(), gate.pass()])
    gate.open()
    await expect(waiting).resolves.toHaveLength(2)
  })
})

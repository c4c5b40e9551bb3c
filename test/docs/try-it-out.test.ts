import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, describe, expect, it } from 'vitest'
import { setupTestContext } from '../helper.js'
import { freePort } from '../support/redis-server.js'

const context = setupTestContext()
const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-dev-shm-usage', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
const ADMIN = { id: 'docs-admin', secret: 'd'.repeat(40) }

let browser: Browser | undefined
afterAll(async () => { await browser?.close() })

const installed = existsSync(CHROMIUM)
describe('the API docs page, in a real browser', () => {
  it.skipIf(!installed)(`gets a token with "Try it out" on /oauth2/token, opened at 127.0.0.1 while ISSUER says localhost${installed ? '' : ' (skipped: no /usr/bin/chromium; .ci/run installs it)'}`, async () => {
    const port = await freePort()
    const app = await context.build({ ISSUER: `http://localhost:${port}`, BOOTSTRAP_CLIENT_ID: ADMIN.id, BOOTSTRAP_CLIENT_SECRET: ADMIN.secret })
    await app.listen({ port, host: '127.0.0.1' })
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
    const page = await browser.newPage()
    page.setDefaultTimeout(15_000)
    const refusedByPolicy: string[] = []
    page.on('console', (message) => { if (/Content Security Policy/.test(message.text()) && /connect/i.test(message.text())) refusedByPolicy.push(message.text()) })
    const sent: Array<{ url: string, body: string | null }> = []
    page.on('request', (request) => { if (request.url().includes('/oauth2/token')) sent.push({ url: request.url(), body: request.postData() }) })

    await page.goto(`http://127.0.0.1:${port}/docs`)
    // The Authorize dialog: client_secret_basic, as a person would fill it in.
    await page.locator('.auth-wrapper .authorize').click()
    const basic = page.locator('.dialog-ux .auth-container').filter({ hasText: 'clientSecretBasic' })
    await basic.locator('#auth-basic-username').fill(ADMIN.id)
    await basic.locator('#auth-basic-password').fill(ADMIN.secret)
    await basic.locator('button.authorize').click()
    await page.locator('.dialog-ux .close-modal').click()

    const operation = page.locator('#operations-oauth2-post_oauth2_token')
    await operation.locator('.opblock-summary').click()
    await operation.getByRole('button', { name: 'Try it out' }).click()
    // Prefilled with what the field takes, not "string"; the optional fields empty.
    const fields = operation.locator('.opblock-section-request-body input[type=text]')
    expect(await fields.evaluateAll((inputs) => inputs.map((input) => [input.getAttribute('placeholder'), (input as HTMLInputElement).value]))).toEqual([
      ['grant_type', 'client_credentials'], ['scope', ''], ['resource', ''], ['client_id', ''], ['client_secret', ''], ['client_assertion_type', ''], ['client_assertion', ''], ['assertion', ''],
      ['subject_token', ''], ['subject_token_type', ''], ['actor_token', ''], ['actor_token_type', ''], ['requested_token_type', ''], ['audience', '']
    ])
    await operation.getByRole('button', { name: 'Execute' }).click()

    const status = operation.locator('.live-responses-table tr.response .response-col_status').first()
    await status.waitFor()
    const body = await operation.locator('.live-responses-table tr.response .response-col_description pre.microlight').first().innerText()
    expect({ status: (await status.innerText()).trim(), body }).toMatchObject({ status: '200', body: expect.stringContaining('"access_token"') })
    const token = JSON.parse(body) as { access_token: string, scope: string }
    expect((await app.verifyAccessToken(token.access_token, app.defaultIssuer)).client_id).toBe(ADMIN.id)
    // To the host the page was opened at, whatever ISSUER says, and within the page's CSP.
    expect(sent.map((request) => new URL(request.url).origin)).toEqual([`http://127.0.0.1:${port}`])
    // The fields left empty were left out.
    expect(sent.map((request) => request.body)).toEqual(['grant_type=client_credentials'])
    expect(refusedByPolicy).toEqual([])
  }, 90_000)
})

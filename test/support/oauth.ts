import type { App } from '../../src/app.js'

/** client_secret_basic as RFC 6749 §2.3.1 says: each part form-urlencoded, then base64. */
export function basicAuth (clientId: string, secret: string): string {
  const encode = (value: string): string => encodeURIComponent(value).replace(/%20/g, '+').replace(/[!'()*~-]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')}`
}

/** A form-encoded POST to an OAuth endpoint. */
export async function postForm (app: App, url: string, form: Record<string, string | string[]>, headers: Record<string, string> = {}, remoteAddress?: string) {
  const body = new URLSearchParams()
  for (const [name, value] of Object.entries(form)) for (const item of Array.isArray(value) ? value : [value]) body.append(name, item)
  return await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, payload: body.toString(), remoteAddress })
}

/** client_credentials with client_secret_basic (at an organization's token endpoint when `url` names it). */
export async function requestToken (app: App, clientId: string, secret: string, form: Record<string, string | string[]> = {}, remoteAddress?: string, url = '/oauth2/token') {
  return await postForm(app, url, { grant_type: 'client_credentials', ...form }, { authorization: basicAuth(clientId, secret) }, remoteAddress)
}

/** The payload of a JWT, unverified (tests verify separately where it matters). */
export function claimsOf (token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8'))
}

export function headerOf (token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString('utf8'))
}

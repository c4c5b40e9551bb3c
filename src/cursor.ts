import { badRequest } from './errors.js'

/** The opaque cursor of a keyset page that ends at `position` (an id, a seq): base64url of it. */
export function encodeCursor (position: string): string {
  return Buffer.from(position, 'utf8').toString('base64url')
}

/**
 * The position a cursor continues after, when it is one encodeCursor made of a position `valid` accepts; a 400
 * otherwise. Re-encoding must give the cursor back: base64url decoding alone accepts junk it silently skips.
 */
export function decodeCursor (cursor: string, valid: RegExp): string {
  const position = Buffer.from(cursor, 'base64url').toString('utf8')
  if (!valid.test(position) || encodeCursor(position) !== cursor) {
    throw badRequest('cursor is not valid: pass next_cursor from the previous page unchanged', [{ location: 'querystring/cursor', message: 'is not a cursor this server issued' }])
  }
  return position
}

/**
 * `npm run keys:generate [-- --type rsa|ec|ed25519]`: prints a fresh signing pair (RSA-2048 by default) as the
 * single-line env values JWT_PRIVATE_KEY and JWT_PUBLIC_KEY take.
 */
import { parseArgs } from 'node:util'
import { generateSigningKeyPair, SIGNING_KEY_TYPES, type SigningKeyType } from './embedded.js'

const isKeyType = (value: string): value is SigningKeyType => Object.hasOwn(SIGNING_KEY_TYPES, value)

/** The --type argument; an unknown option or type throws with a message for the operator. */
function keyType (): SigningKeyType {
  const { type } = parseArgs({ options: { type: { type: 'string', default: 'rsa' } } }).values
  if (!isKeyType(type)) throw new Error(`--type must be ${Object.keys(SIGNING_KEY_TYPES).join(', ')} or left out (rsa); got ${type}`)
  return type
}

let type: SigningKeyType
try {
  type = keyType()
} catch (error) {
  console.error(`agentidp: keys:generate: ${(error as Error).message}`)
  process.exit(2)
}
const pair = generateSigningKeyPair(type)
const oneLine = (pem: string): string => pem.trim().replace(/\n/g, '\\n')
console.log(`JWT_PRIVATE_KEY="${oneLine(pair.privateKey)}"`)
console.log(`JWT_PUBLIC_KEY="${oneLine(pair.publicKey)}"`)

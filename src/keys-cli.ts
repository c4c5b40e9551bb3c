/** `npm run keys:generate`: prints a fresh RSA-2048 pair as the single-line env values JWT_PRIVATE_KEY and JWT_PUBLIC_KEY take. */
import { generateRsaKeyPair } from './embedded.js'

const pair = generateRsaKeyPair()
const oneLine = (pem: string): string => pem.trim().replace(/\n/g, '\\n')
console.log(`JWT_PRIVATE_KEY="${oneLine(pair.privateKey)}"`)
console.log(`JWT_PUBLIC_KEY="${oneLine(pair.publicKey)}"`)

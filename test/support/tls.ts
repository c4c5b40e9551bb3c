import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A self-signed certificate for localhost (openssl), for serving AgentIdP over https in tests. */
export interface LocalhostCertificate {
  key: string
  cert: string
  /** The certificate's file: NODE_EXTRA_CA_CERTS or CURL_CA_BUNDLE of a child process that must trust it. */
  certFile: string
  remove(): void
}

export function localhostCertificate (): LocalhostCertificate {
  const directory = mkdtempSync(join(tmpdir(), 'agentidp-tls-'))
  const keyFile = join(directory, 'key.pem')
  const certFile = join(directory, 'cert.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' })
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), certFile, remove: () => { rmSync(directory, { recursive: true, force: true }) } }
}

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../src/config.js'
import { projectRoot } from '../../src/paths.js'

/**
 * Every environment variable the server's configuration reads: observed (each read of an empty environment) and
 * from the source of src/config.ts (reads behind a branch), so it follows the config as variables come and go.
 */
export function configVariables (): Set<string> {
  const observed = new Set<string>()
  loadConfig(new Proxy({}, { get: (_target, name) => { if (typeof name === 'string') observed.add(name); return undefined } }))
  const source = readFileSync(join(projectRoot, 'src/config.ts'), 'utf8')
  for (const match of source.matchAll(/\(env, '([A-Z][A-Z0-9_]*)'/g)) observed.add(match[1] as string)
  return observed
}

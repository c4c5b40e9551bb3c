import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import { validate as lintDockerfile, ValidationSeverity } from 'dockerfile-utils'
import { describe, expect, it } from 'vitest'
import { parseDocument } from 'yaml'
import { projectRoot } from '../../src/paths.js'

const read = (path: string): string => readFileSync(join(projectRoot, path), 'utf8')

/** The container engine that answers here (its server, not just a client binary), or undefined. */
function containerRuntime (): string | undefined {
  for (const [command, args] of [['docker', ['version', '--format', '{{.Server.Version}}']], ['podman', ['info', '--format', '{{.Host.Arch}}']]] as const) {
    const probe = spawnSync(command, args, { encoding: 'utf8', timeout: 20_000 })
    if (probe.status === 0 && probe.stdout.trim() !== '') return command
  }
  return undefined
}
const runtime = containerRuntime()
// Which of the two happens is said in the test names, so the run's output shows it.
console.info(runtime === undefined
  ? '[containers] no container runtime answers: Containerfile and compose.yaml are validated statically (dockerfile-utils, yaml and the Compose Specification schema)'
  : `[containers] ${runtime} answers: building and running the Containerfile, besides the static validation`)

/** compose.yaml parsed strictly (a duplicate key is an error), with YAML merge keys resolved as compose does. */
function composeFile (): Record<string, any> {
  const document = parseDocument(read('compose.yaml'), { uniqueKeys: true, merge: true })
  expect(document.errors.map((error) => error.message)).toEqual([])
  return document.toJS({ maxAliasCount: 100 }) as Record<string, any>
}

describe('static validation of Containerfile and compose.yaml', () => {
  it('the Containerfile passes dockerfile-utils\' linter, names its base images in full and puts the CLI on the PATH', () => {
    const containerfile = read('Containerfile')
    const problems = lintDockerfile(containerfile, { instructionWorkdirRelative: ValidationSeverity.ERROR, instructionJSONInSingleQuotes: ValidationSeverity.ERROR, emptyContinuationLine: ValidationSeverity.ERROR })
    expect(problems.map((problem) => `line ${problem.range.start.line + 1}: ${problem.message}`)).toEqual([])
    const bases = [...containerfile.matchAll(/^FROM (\S+)/gm)].map((match) => match[1] as string)
    expect(bases.length).toBeGreaterThan(0)
    // registry/namespace/name:tag: podman, and registries without short-name aliases, need all of it.
    for (const base of bases) expect(base, 'FROM names registry, namespace and tag').toMatch(/^[a-z0-9.-]+\.[a-z]+\/[a-z0-9_-]+\/[a-z0-9._-]+:[\w.-]+$/)
    expect(containerfile).toMatch(/ln -s \/app\/dist\/src\/cli\/index\.js \/usr\/local\/bin\/agentidp/)
    expect(JSON.parse(read('package.json')).bin.agentidp).toBe('dist/src/cli/index.js')
  })

  it('compose.yaml is valid against the Compose Specification schema', () => {
    // The spec's own schema (draft-07), vendored: see test/support/compose-spec/README.md.
    const schema = JSON.parse(read('test/support/compose-spec/compose-spec.json')) as Record<string, unknown>
    // Its $schema spells draft-07 as https://…/draft-07/schema, a name Ajv's copy of the meta-schema does not carry.
    const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false })
    const check = ajv.compile(schema)
    const compose = composeFile()
    expect(check(compose) ? [] : check.errors?.map((error) => `${error.instancePath} ${error.message ?? ''}`), 'compose-spec errors').toEqual([])
    // The schema has teeth: a misspelt member is refused.
    expect(check({ ...compose, services: { ...compose.services, app: { ...compose.services.app, helthcheck: {} } } })).toBe(false)
  })

  it('compose.yaml: full image names, data stores on 127.0.0.1 behind required passwords, a health check for every server', () => {
    const compose = composeFile()
    const services = compose.services as Record<string, any>
    for (const [name, service] of Object.entries(services)) {
      expect(service.image, `${name}: image`).toMatch(/^(docker\.io\/library\/[a-z0-9-]+|localhost\/agentidp):[\w.-]+$/)
    }
    for (const name of ['postgres', 'redis']) {
      for (const port of services[name].ports as string[]) expect(port, `${name} publishes on the loopback only`).toMatch(/^127\.0\.0\.1:/)
    }
    expect(services.postgres.environment.POSTGRES_PASSWORD).toBe('${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}')
    expect(services.redis.command.join(' ')).toContain('--requirepass ${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}')
    const env = services.app.environment as Record<string, string>
    expect(env.DATABASE_URL).toContain(':${POSTGRES_PASSWORD:?')
    expect(env.REDIS_URL).toContain(':${REDIS_PASSWORD:?')
    // An OCI-format build (podman's default) drops the Containerfile's HEALTHCHECK: compose must carry the app's.
    for (const name of ['postgres', 'redis', 'app']) expect(services[name].healthcheck?.test, `${name}: healthcheck`).toBeDefined()
    expect(services.app.healthcheck.test.join(' ')).toContain('/health/live')
    expect(services.migrate.healthcheck).toEqual({ disable: true })
  })
})

describe.runIf(runtime !== undefined)(`building and running the image with ${runtime ?? 'no runtime'}`, () => {
  const image = 'localhost/agentidp:test'
  const run = (...args: string[]): { status: number | null, stdout: string, stderr: string } => {
    const result = spawnSync(runtime as string, args, { cwd: projectRoot, encoding: 'utf8', timeout: 900_000 })
    return { status: result.status, stdout: result.stdout, stderr: result.stderr }
  }

  it('builds, generates keys and runs the CLI from the image, with no Node on the host', () => {
    const build = run('build', '-f', 'Containerfile', '-t', image, '.')
    expect(build.status, build.stderr.slice(-2000)).toBe(0)
    const keys = run('run', '--rm', '--entrypoint', 'node', image, 'dist/src/keys-cli.js')
    expect(keys.stdout).toMatch(/^JWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----/)
    const cli = run('run', '--rm', '--entrypoint', 'agentidp', image, '--help')
    expect(cli.status, cli.stderr).toBe(0)
    expect(cli.stdout).toContain('Usage: agentidp')
  }, 1_000_000)
})

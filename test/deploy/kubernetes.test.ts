import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { Deployment } from 'kubernetes-models/apps/v1'
import { Job } from 'kubernetes-models/batch/v1'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, Namespace, Secret, Service, ServiceAccount, type IContainer, type IPodSpec } from 'kubernetes-models/v1'
import { describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { loadSigningKeys } from '../../plugins/infra/keys.js'
import { loadConfig } from '../../src/config.js'
import { projectRoot } from '../../src/paths.js'
import { configVariables } from '../support/config-variables.js'

const DIRECTORY = 'deploy/kubernetes'
const read = (path: string): string => readFileSync(join(projectRoot, path), 'utf8')

/** The Kubernetes API models a manifest here may be, by apiVersion and kind. */
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy
}

interface Manifest { file: string, object: Record<string, any> }

/** Every YAML document under deploy/kubernetes, parsed strictly (a YAML error or warning fails). */
function manifests (): Manifest[] {
  return readdirSync(join(projectRoot, DIRECTORY)).filter((file) => file.endsWith('.yaml')).sort().flatMap((file) => {
    return parseAllDocuments(read(join(DIRECTORY, file)), { strict: true, uniqueKeys: true }).map((document) => {
      expect([...document.errors, ...document.warnings].map(String), file).toEqual([])
      return { file, object: document.toJS() as Record<string, any> }
    })
  })
}

function one (kind: string, file?: string): Record<string, any> {
  const found = manifests().filter((manifest) => manifest.object.kind === kind && (file === undefined || manifest.file === file))
  expect(found, kind).toHaveLength(1)
  return (found[0] as Manifest).object
}

const podSpec = (workload: Record<string, any>): IPodSpec => workload.spec.template.spec
const container = (workload: Record<string, any>): IContainer => podSpec(workload).containers[0] as IContainer

describe('deploy/kubernetes', () => {
  it('every manifest parses and validates against the Kubernetes API schemas (kubernetes-models)', () => {
    const all = manifests()
    expect(all.length).toBeGreaterThanOrEqual(10)
    for (const { file, object } of all) {
      if (object.kind === 'Kustomization') continue
      const Model = MODELS[`${object.apiVersion as string}/${object.kind as string}`]
      expect(Model, `${file}: ${object.apiVersion as string} ${object.kind as string} is not a kind this test knows`).toBeDefined()
      expect(() => new (Model as NonNullable<typeof Model>)(object).validate(), file).not.toThrow()
    }
  })

  it('the kustomization lists every manifest but the Secrets template, and sets the image the workloads use', () => {
    const kustomization = one('Kustomization', 'kustomization.yaml')
    expect(kustomization.apiVersion).toBe('kustomize.config.k8s.io/v1beta1')
    const files = readdirSync(join(projectRoot, DIRECTORY)).filter((file) => file.endsWith('.yaml'))
    expect([...kustomization.resources].sort()).toEqual(files.filter((file) => file !== 'kustomization.yaml' && file !== 'secrets.example.yaml').sort())
    expect(one('Namespace').metadata.name).toBe(kustomization.namespace)
    for (const workload of [one('Deployment'), one('Job')]) expect(container(workload).image).toBe(kustomization.images[0].name)
  })

  it('every environment variable the manifests set is one the server reads, and every reference resolves', () => {
    const variables = configVariables()
    const configMap = one('ConfigMap')
    const secrets = manifests().filter((manifest) => manifest.object.kind === 'Secret').map((manifest) => manifest.object)
    expect(secrets.map((secret) => secret.metadata.name).sort()).toEqual(['agentidp-connections', 'agentidp-keys'])
    const names = [
      ...Object.keys(configMap.data),
      ...secrets.flatMap((secret) => Object.keys(secret.stringData)),
      ...[one('Deployment'), one('Job')].flatMap((workload) => (container(workload).env ?? []).map((variable) => variable.name))
    ]
    for (const name of names) expect(variables.has(name), `${name} is set in ${DIRECTORY}, but the server does not read it`).toBe(true)

    for (const workload of [one('Deployment'), one('Job')]) {
      const { env = [], envFrom = [] } = container(workload)
      expect(envFrom).toEqual([{ configMapRef: { name: configMap.metadata.name } }])
      for (const variable of env) {
        const reference = variable.valueFrom?.secretKeyRef
        expect(reference, `${variable.name} comes from a Secret`).toBeDefined()
        const secret = secrets.find((candidate) => candidate.metadata.name === reference?.name)
        expect(Object.keys(secret?.stringData ?? {}), `${variable.name}: ${reference?.name}/${reference?.key}`).toContain(reference?.key)
        expect(reference?.key).toBe(variable.name)
      }
      // What production requires is never optional.
      const required = env.filter((variable) => variable.valueFrom?.secretKeyRef?.optional !== true).map((variable) => variable.name)
      expect(required.sort()).toEqual(['DATABASE_URL', 'JWT_PRIVATE_KEY', 'JWT_PUBLIC_KEY', 'REDIS_URL'])
    }
    // The Job reads the configuration the server reads: with NODE_ENV=production the CLI checks it whole.
    expect(container(one('Job')).env).toEqual(container(one('Deployment')).env)
  })

  it('the Secrets template holds placeholders only, never a key or password', () => {
    for (const { file, object } of manifests().filter((manifest) => manifest.object.kind === 'Secret')) {
      for (const [key, value] of Object.entries<string>(object.stringData)) {
        expect(value === '' || value.includes('REPLACE-ME'), `${file}: ${key}`).toBe(true)
      }
      expect(object.data, `${file}: base64 data hides what it holds`).toBeUndefined()
    }
    for (const file of readdirSync(join(projectRoot, DIRECTORY))) expect(read(join(DIRECTORY, file))).not.toMatch(/-----BEGIN [A-Z ]*KEY-----(?:\\n|\n)[A-Za-z0-9+/]{20}/)
  })

  it('the Deployment runs non-root on a read-only root filesystem with no capabilities, with resources', () => {
    expect(read('Containerfile')).toMatch(/^USER node$/m)
    for (const workload of [one('Deployment'), one('Job')]) {
      const spec = podSpec(workload)
      expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } })
      expect(spec.automountServiceAccountToken).toBe(false)
      expect(container(workload).securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })
      expect(container(workload).resources).toMatchObject({ requests: { cpu: expect.any(String), memory: expect.any(String) }, limits: { memory: expect.any(String) } })
    }
  })

  it('probes: startup and liveness on /health/live, readiness on /health/ready, on the port the image listens on', () => {
    const server = container(one('Deployment'))
    const port = server.ports?.find((candidate) => candidate.name === 'http')?.containerPort
    expect(read('Containerfile')).toContain(`EXPOSE ${port as number}`)
    expect(read('Containerfile')).toMatch(new RegExp(`^ENV .*\\bPORT=${port as number}\\b`, 'm'))
    expect(server.startupProbe?.httpGet).toEqual({ path: '/health/live', port: 'http' })
    expect(server.livenessProbe?.httpGet).toEqual({ path: '/health/live', port: 'http' })
    expect(server.readinessProbe?.httpGet).toEqual({ path: '/health/ready', port: 'http' })
    const health = read('plugins/operations/health.ts')
    for (const path of ['/health/live', '/health/ready']) expect(health).toContain(`app.get('${path}'`)
    // Metrics on the same port, for annotation-based scraping and for a ServiceMonitor on the Service's port "http".
    expect(one('Deployment').spec.template.metadata.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' })
    expect(read('plugins/operations/metrics.ts')).toContain("app.get('/metrics'")
    expect(one('Service').spec.ports).toEqual([expect.objectContaining({ name: 'http', targetPort: 'http' })])
  })

  it('terminationGracePeriodSeconds is above the preStop delay plus SHUTDOWN_TIMEOUT_MS', () => {
    const deployment = one('Deployment')
    const configMap = one('ConfigMap')
    const shutdownTimeoutMs = loadConfig({ SHUTDOWN_TIMEOUT_MS: configMap.data.SHUTDOWN_TIMEOUT_MS }).shutdownTimeoutMs
    const preStop = container(deployment).lifecycle?.preStop?.exec?.command ?? []
    expect(preStop.slice(0, 1)).toEqual(['sleep'])
    const preStopMs = Number(preStop[1]) * 1000
    expect(preStopMs).toBeGreaterThan(0)
    expect(podSpec(deployment).terminationGracePeriodSeconds as number * 1000).toBeGreaterThan(preStopMs + shutdownTimeoutMs)
  })

  it('the Service, PodDisruptionBudget, autoscaler and NetworkPolicy select the server, and the Job runs db:migrate', () => {
    const deployment = one('Deployment')
    const labels = deployment.spec.template.metadata.labels
    expect(deployment.spec.selector.matchLabels).toEqual(labels)
    expect(deployment.spec.replicas, 'the autoscaler owns the replica count').toBeUndefined()
    expect(one('Service').spec.selector).toEqual(labels)
    expect(one('PodDisruptionBudget').spec.selector.matchLabels).toEqual(labels)
    const autoscaler = one('HorizontalPodAutoscaler')
    expect(autoscaler.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name })
    expect(autoscaler.spec.metrics).toEqual([expect.objectContaining({ type: 'Resource', resource: expect.objectContaining({ name: 'cpu' }) })])
    expect(autoscaler.spec.minReplicas).toBeGreaterThanOrEqual(2)

    const policy = one('NetworkPolicy')
    for (const workload of [deployment, one('Job')]) {
      for (const [name, value] of Object.entries(policy.spec.podSelector.matchLabels)) expect(workload.spec.template.metadata.labels[name]).toBe(value)
    }
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress'])
    const egressPorts = policy.spec.egress.flatMap((rule: { ports: Array<{ port: number }> }) => rule.ports.map((port) => port.port))
    expect(new Set(egressPorts)).toEqual(new Set([5432, 6379, 53]))

    // kubernetes.md applies everything but the server first (the Job with its ConfigMap and ServiceAccount), then all.
    expect(read('docs/devops/kubernetes.md')).toContain("kubectl apply -k deploy/kubernetes -l 'app.kubernetes.io/component!=server'")
    for (const manifest of manifests()) {
      const server = manifest.object.metadata?.labels?.['app.kubernetes.io/component'] === 'server'
      expect(server, manifest.file).toBe(['Deployment', 'Service'].includes(manifest.object.kind))
    }

    const script = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts['db:migrate']
    expect(container(one('Job')).command?.join(' ')).toBe(script)
    expect(podSpec(one('Job')).restartPolicy).toBe('Never')
  })

  it('the kubectl command kubernetes.md gives for the key Secret makes values the server accepts', async () => {
    const guide = read('docs/devops/kubernetes.md')
    const pipeline = /^npm run --silent keys:generate -- --type (\w+) \| (sed .+) > jwt\.env$/m.exec(guide)
    expect(pipeline, 'kubernetes.md: npm run --silent keys:generate -- --type … | sed … > jwt.env').not.toBeNull()
    expect(guide).toContain('kubectl -n agentidp create secret generic agentidp-keys --from-env-file=jwt.env')
    const generated = spawnSync(process.execPath, ['--import', 'tsx', 'src/keys-cli.ts', '--type', (pipeline as RegExpExecArray)[1] as string], { cwd: projectRoot, encoding: 'utf8' })
    const envFile = spawnSync('sh', ['-c', (pipeline as RegExpExecArray)[2] as string], { input: generated.stdout, encoding: 'utf8' }).stdout
    // kubectl's --from-env-file takes each KEY=VALUE line literally: no quotes removed, no escapes expanded.
    const env = Object.fromEntries(envFile.trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
    expect(Object.keys(env)).toEqual(['JWT_PRIVATE_KEY', 'JWT_PUBLIC_KEY'])
    const config = loadConfig(env)
    const keys = await loadSigningKeys({ privateKey: config.jwtPrivateKey as string, publicKey: config.jwtPublicKey as string, previous: [] })
    expect(keys.current.alg).toBe('ES256')
  })
})

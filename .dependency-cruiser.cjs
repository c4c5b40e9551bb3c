/**
 * The import rules of the architecture (docs/devops/architecture.md), checked by `npm run lint:imports` in CI:
 * infra talks to the outside world and knows no capability; a capability reaches another only through the module
 * that one publishes on purpose, its public.ts (or the decorators it registers), types included. Only cycles of
 * type-only imports are allowed: the compiler erases them.
 */
module.exports = {
  forbidden: [
    {
      name: 'infra-imports-no-capability',
      comment: 'plugins/infra holds connections only: config, postgres, redis, keys, metrics, rate-limit.',
      severity: 'error',
      from: { path: '^plugins/infra/' },
      to: { path: '^plugins/', pathNot: '^plugins/infra/' }
    },
    {
      name: 'capabilities-meet-through-what-they-publish',
      comment: 'Import another capability through its public.ts, which publishes what others may use (index.ts is what app.ts registers).',
      severity: 'error',
      from: { path: '^plugins/([^/]+)/' },
      to: { path: '^plugins/[^/]+/', pathNot: ['^plugins/$1/', '^plugins/infra/', '^plugins/[^/]+/public\\.ts$'] }
    },
    {
      name: 'core-imports-no-plugin',
      comment: 'src/ is the core every plugin uses; only the composition root and the command-line entries import plugins.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/app\\.ts$', '^src/server\\.ts$', '^src/[a-z-]+-cli\\.ts$', '^src/cli/'] },
      to: { path: '^plugins/' }
    },
    {
      name: 'no-circular',
      comment: 'A cycle between modules makes load order matter.',
      severity: 'error',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: 'specify',
    tsConfig: { fileName: 'tsconfig.json' },
    moduleSystems: ['es6']
  }
}

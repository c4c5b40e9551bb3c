/**
 * How the server process is started wherever it serves (npm start, the Containerfile, the benchmarks): settings
 * that hold peak memory under load near the idle footprint, at a small cost in CPU (docs/performance.md).
 *
 * - A young generation of 8 MB semi-spaces (V8's default is 16): each request's garbage is short-lived and dies
 *   in a scavenge either way; a bigger nursery only holds more of it at once.
 * - The old generation grows by 15% after a full collection instead of V8's dynamic factor (up to 4x at high
 *   allocation rates). A growth factor, not a limit: a large export still gets the heap it needs.
 * - One glibc malloc arena instead of one per thread: the thread pool that signs tokens and hashes secrets would
 *   otherwise keep arenas of its own, 20–50 MB more at peak. Two arenas still left peak memory varying by 30 MB
 *   from run to run; one kept it flat, at no throughput cost measurable here (argon2's 19 MiB blocks are mmap'd
 *   outside the arenas, and signing allocates little).
 */
export const SERVER_NODE_FLAGS = ['--max-semi-space-size=8', '--heap-growing-percent=15'] as const

/**
 * Environment the server process needs before it starts (glibc reads it once, at exec, so `.env` is too late for
 * it). `npm start` sets it and then `exec`s node: npm signals the shell it started, and a shell that merely waited
 * for node would die and leave the server running, orphaned.
 */
export const SERVER_PROCESS_ENV = { MALLOC_ARENA_MAX: '1' } as const

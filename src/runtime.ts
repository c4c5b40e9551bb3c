/**
 * How the server process is started wherever it serves (npm start, the Containerfile, the benchmarks): settings
 * that hold peak memory under load near the idle footprint, at a small cost in CPU (docs/performance.md).
 *
 * - A young generation of 8 MB semi-spaces (V8's default is 16): each request's garbage is short-lived and dies
 *   in a scavenge either way; a bigger nursery only holds more of it at once.
 * - The old generation grows by 15% after a full collection instead of V8's dynamic factor (up to 4x at high
 *   allocation rates). A growth factor, not a limit: a large export still gets the heap it needs.
 * - Two glibc malloc arenas instead of one per thread: the thread pool that signs tokens and hashes secrets would
 *   otherwise keep an arena of its own per thread.
 */
export const SERVER_NODE_FLAGS = ['--max-semi-space-size=8', '--heap-growing-percent=15'] as const

/** Environment the server process needs before it starts (glibc reads it once, at exec). */
export const SERVER_PROCESS_ENV = { MALLOC_ARENA_MAX: '2' } as const

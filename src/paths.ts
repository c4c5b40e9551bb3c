import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The project root (the folder holding package.json), whether running from src/ with tsx or from dist/src/. */
function findProjectRoot (): string {
  let directory = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(directory, 'package.json'))) {
    const parent = dirname(directory)
    if (parent === directory) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url))
    directory = parent
  }
  return directory
}

export const projectRoot = findProjectRoot()
export const migrationsDirectory = join(projectRoot, 'sql')

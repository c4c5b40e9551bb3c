import { crc32 } from 'node:zlib'

/** A file of a zip archive: its path inside it (forward slashes) and its bytes. */
export interface ZipEntry { path: string, content: Buffer }

/** MS-DOS date and time (local fields, here UTC), as zip headers carry them. */
function dosDateTime (at: Date): { date: number, time: number } {
  const year = Math.max(at.getUTCFullYear(), 1980)
  return {
    date: ((year - 1980) << 9) | ((at.getUTCMonth() + 1) << 5) | at.getUTCDate(),
    time: (at.getUTCHours() << 11) | (at.getUTCMinutes() << 5) | Math.floor(at.getUTCSeconds() / 2)
  }
}

/**
 * The fields a local header and a central directory header share, in the same order, from `at`: version needed
 * (2.0), flags (UTF-8 names), method (stored), time, date, CRC-32, compressed and uncompressed size, name length.
 */
function writeCommonFields (header: Buffer, at: number, fields: { time: number, date: number, crc: number, size: number, nameLength: number }): void {
  header.writeUInt16LE(20, at)
  header.writeUInt16LE(0x0800, at + 2)
  header.writeUInt16LE(0, at + 4)
  header.writeUInt16LE(fields.time, at + 6)
  header.writeUInt16LE(fields.date, at + 8)
  header.writeUInt32LE(fields.crc, at + 10)
  header.writeUInt32LE(fields.size, at + 14)
  header.writeUInt32LE(fields.size, at + 18)
  header.writeUInt16LE(fields.nameLength, at + 22)
}

/**
 * A zip archive (APPNOTE 6.3) of the entries, stored without compression: small evidence files that anyone's unzip
 * opens, written without a dependency. Names are UTF-8 (general purpose bit 11). Not for more than 65,535 entries or
 * 4 GiB (no ZIP64).
 */
export function storedZip (entries: ZipEntry[], at = new Date()): Buffer {
  const { date, time } = dosDateTime(at)
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const entry of entries) {
    const name = Buffer.from(entry.path, 'utf8')
    const fields = { time, date, crc: crc32(entry.content), size: entry.content.length, nameLength: name.length }
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    writeCommonFields(local, 4, fields)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(0x0314, 4) // made by: Unix, 2.0
    writeCommonFields(central, 6, fields)
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38) // external attributes: a regular file, rw-r--r--
    central.writeUInt32LE(offset, 42)
    locals.push(local, name, entry.content)
    centrals.push(central, name)
    offset += local.length + name.length + entry.content.length
  }
  const directory = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(entries.length, 8)
  end.writeUInt16LE(entries.length, 10)
  end.writeUInt32LE(directory.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, directory, end])
}

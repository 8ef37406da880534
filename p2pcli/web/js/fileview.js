// One file of a folder share (a version-2 manifest, PROTOCOL 1.2.1) as the player sees
// content: bytes [0, size) of that file, mapped onto the share's pieces, which run across
// file boundaries. The player takes this where it takes the swarm.

export const VIDEO_EXTENSIONS = ['mp4', 'm4v', 'mkv', 'webm', 'mov', 'avi', 'ts', 'ogv', 'mpg',
  'mpeg', 'wmv', 'flv'];

/** Index into `files` of the first file that looks like a video, or -1. */
export function firstVideo(files) {
  return files.findIndex((f) => VIDEO_EXTENSIONS.includes(f.path.split('.').pop().toLowerCase()));
}

export class FileView {
  constructor(swarm, file) {
    const m = swarm.manifest;
    const base = file.offset;
    const size = file.size;
    this.swarm = swarm;
    this.base = base;
    this.file = file;
    this.manifest = {
      name: file.path.split('/').pop(),
      size,
      pieceSize: m.pieceSize,
      pieceCount: m.pieceCount,
      piecesFor: (start, end) => {
        end = Math.min(end, size);
        return end <= start ? null : m.piecesFor(base + start, base + end);
      },
      pieceAt: (offset) => Math.floor((base + Math.min(offset, Math.max(0, size - 1))) / m.pieceSize),
    };
  }

  read(start, end) {
    return this.swarm.read(this.base + start, this.base + Math.min(end, this.file.size));
  }

  contiguousFrom(start) {
    return Math.max(0, Math.min(this.swarm.contiguousFrom(this.base + start), this.file.size - start));
  }

  has(piece) {
    return this.swarm.has(piece);
  }

  setPriority(pieces, strict) {
    this.swarm.setPriority(pieces, strict);
  }

  setCursor(piece) {
    this.swarm.setCursor(piece);
  }
}

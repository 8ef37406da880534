// The disk side of store.js's OpfsBackend: one file in the Origin Private File System,
// written and read through a FileSystemSyncAccessHandle, which only a dedicated Worker may
// open and which is the fastest way in (no swap file, unlike createWritable()).
//
// Messages in: {id, op: 'open', dir, name, size} | {id, op: 'write', at, bytes}
// | {id, op: 'read', at, length} | {id, op: 'flush'} | {id, op: 'close'}.
// Each is answered in order with {id, ok: true, bytes?} or {id, ok: false, error}.
// Messages run one at a time in arrival order, so a read sent after a write sees it.

let handle = null;

async function open(dir, name, size) {
  const root = await navigator.storage.getDirectory();
  const folder = await root.getDirectoryHandle(dir, { create: true });
  const file = await folder.getFileHandle(name, { create: true });
  handle = await file.createSyncAccessHandle();
  // The full size up front: quota trouble shows now, not half way through.
  handle.truncate(size);
}

function read(at, length) {
  const bytes = new Uint8Array(length);
  const n = handle.read(bytes, { at });
  if (n !== length) throw new Error(`short read: ${n} of ${length} bytes at ${at}`);
  return bytes;
}

function write(at, bytes) {
  const n = handle.write(bytes, { at });
  if (n !== bytes.length) throw new Error(`short write: ${n} of ${bytes.length} bytes at ${at}`);
}

let queue = Promise.resolve();

self.onmessage = (e) => {
  const m = e.data;
  queue = queue.then(async () => {
    try {
      if (m.op === 'open') {
        await open(m.dir, m.name, m.size);
        self.postMessage({ id: m.id, ok: true });
      } else if (m.op === 'write') {
        write(m.at, m.bytes);
        self.postMessage({ id: m.id, ok: true });
      } else if (m.op === 'read') {
        const bytes = read(m.at, m.length);
        self.postMessage({ id: m.id, ok: true, bytes }, [bytes.buffer]);
      } else if (m.op === 'flush') {
        handle.flush();
        self.postMessage({ id: m.id, ok: true });
      } else if (m.op === 'close') {
        if (handle) {
          handle.flush();
          handle.close();
          handle = null;
        }
        self.postMessage({ id: m.id, ok: true });
      } else {
        throw new Error(`unknown operation ${m.op}`);
      }
    } catch (err) {
      self.postMessage({ id: m.id, ok: false, error: `${err.name || 'Error'}: ${err.message}` });
    }
  });
};

// Decodes folder-share manifests (version 2) with the page's code and prints what it found,
// so tests/test_tree.py can compare it with p2pcli/manifest.py.
//   node tests/js/tree_vectors.mjs < {"good": [hex], "bad": [hex]}

import { readFileSync } from 'node:fs';

import { decodeManifest } from '../../p2pcli/web/js/manifest.js';
import { fromHex } from '../../p2pcli/web/js/sha256.js';

const req = JSON.parse(readFileSync(0, 'utf8'));
const good = req.good.map((hex) => {
  const m = decodeManifest(fromHex(hex));
  return { name: m.name, size: m.size, pieceCount: m.pieceCount, files: m.files, folders: m.folders };
});
const bad = req.bad.map((hex) => {
  try {
    decodeManifest(fromHex(hex));
    return null;
  } catch (e) {
    return e.message;
  }
});
process.stdout.write(JSON.stringify({ good, bad }));

// The browser's file-name rule against the table Python is tested with (tests/data/names.json):
//   node --test tests/js/names.test.mjs
// tests/test_names.py runs this file, and also compares both checks on generated names
// through tests/js/name_verdicts.mjs.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { ManifestError, checkName, decodeManifest } from '../../p2pcli/web/js/manifest.js';

const TABLE = JSON.parse(readFileSync(new URL('../data/names.json', import.meta.url), 'utf8'));
const show = (name) => JSON.stringify(name);

/** A one-piece manifest of 1 byte carrying `nameBytes`, as p2pcli/manifest.py encodes it. */
function rawManifest(nameBytes) {
  const u = new Uint8Array(8 + nameBytes.length + 8 + 32);
  u.set([0x50, 0x32, 0x50, 0x4d, 1, 14, nameBytes.length >> 8, nameBytes.length & 0xff]);
  u.set(nameBytes, 8);
  u[8 + nameBytes.length + 7] = 1; // size 1
  return u;
}

/** Whether `name` can travel in a manifest at all: UTF-8 without lone surrogates, 1..255 bytes. */
function encodable(name) {
  const bytes = new TextEncoder().encode(name);
  return !/\p{Cs}/u.test(name) && bytes.length >= 1 && bytes.length <= 255 ? bytes : null;
}

test('every name the table refuses is refused, for the reason it gives', () => {
  for (const { name, why } of TABLE.refused) {
    assert.throws(() => checkName(name), (e) => e instanceof ManifestError && e.message.includes(why),
      `${show(name)} should be refused: ${why}`);
    const bytes = encodable(name);
    if (bytes) {
      assert.throws(() => decodeManifest(rawManifest(bytes)), ManifestError, `decoding ${show(name)}`);
    }
  }
});

test('every name the table accepts is accepted and decodes', () => {
  for (const { name } of TABLE.accepted) {
    assert.doesNotThrow(() => checkName(name), show(name));
    assert.equal(decodeManifest(rawManifest(encodable(name))).name, name);
  }
});

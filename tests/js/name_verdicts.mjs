// The browser's verdict on each file name read from stdin (a JSON list): null when
// p2pcli/web/js/manifest.js accepts it, else its error message. tests/test_names.py compares
// these with Python's check_name on generated names.
//   node tests/js/name_verdicts.mjs < names.json

import { readFileSync } from 'node:fs';

import { checkName } from '../../p2pcli/web/js/manifest.js';

const names = JSON.parse(readFileSync(0, 'utf8'));
const verdicts = names.map((name) => {
  try {
    checkName(name);
    return null;
  } catch (e) {
    return e.message;
  }
});
process.stdout.write(JSON.stringify(verdicts));

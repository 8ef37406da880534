// What a person pastes into the page (sans-IO): a p2p:// share link, a watch URL, or a
// bare content hash (docs/PROTOCOL.md section 1.4), and the watch URL for it.

const HEX64 = /^[0-9a-fA-F]{64}$/;
// What the page reads, as p2pcli/link.py's ACCEPTED says it.
const EXPECTED = 'expected a p2p:// link, a watch URL (http(s)://HOST/watch/HASH) or a content hash (64 hex digits)';

export class LinkError extends Error {}

/** {hash, signal, token}: `signal` is null when the page's own server is meant. */
export function parseTarget(text) {
  const t = String(text).trim();
  if (HEX64.test(t)) return { hash: t.toLowerCase(), signal: null, token: null };
  if (!t.includes('://')) {
    throw new LinkError(`"${t.slice(0, 80)}" is not a link or a content hash; ${EXPECTED}`);
  }
  const scheme = t.slice(0, t.indexOf('://')).toLowerCase();
  if (scheme === 'p2p') {
    const rest = t.slice(6);
    const q = rest.indexOf('?');
    const hash = q < 0 ? rest : rest.slice(0, q);
    if (!HEX64.test(hash)) throw new LinkError('this p2p:// link does not carry a 64-hex-digit content hash');
    const params = new URLSearchParams(q < 0 ? '' : rest.slice(q + 1));
    const signal = params.getAll('signal').find((s) => /^(https?|wss?):\/\/./i.test(s)) || null;
    return { hash: hash.toLowerCase(), signal, token: params.get('token') || null };
  }
  if (scheme === 'http' || scheme === 'https') {
    let url;
    try {
      url = new URL(t);
    } catch {
      throw new LinkError(`"${t.slice(0, 80)}" is not a valid URL`);
    }
    const m = url.pathname.match(/^\/watch\/([0-9a-fA-F]{64})\/?$/);
    if (m) return { hash: m[1].toLowerCase(), signal: url.origin, token: url.searchParams.get('token') };
  }
  throw new LinkError(`"${t.slice(0, 80)}" is not a p2p link; ${EXPECTED}`);
}

/** The signaling server URL as socket.io-client wants it (http(s), no trailing slash). */
export function socketUrl(signal) {
  return signal.replace(/^ws(s?):\/\//i, 'http$1://').replace(/\/+$/, '');
}

/** The page to open for a target, relative to the page's origin `origin`. */
export function watchPath({ hash, signal, token }, origin) {
  const params = new URLSearchParams();
  if (signal && socketUrl(signal) !== origin) params.set('signal', socketUrl(signal));
  if (token) params.set('token', token);
  const q = params.toString();
  return `/watch/${hash}${q ? `?${q}` : ''}`;
}

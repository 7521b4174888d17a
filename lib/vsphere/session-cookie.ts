// The vSphere session cookie. vCenter quotes its value, vcsim does not; the client stores the
// `name=value` pair exactly as received and sends it back verbatim, because re-quoting or
// unquoting changes the key the server looks up.

export const SESSION_COOKIE = 'vmware_soap_session';

/** Finds `vmware_soap_session=<value>` among Set-Cookie headers, or undefined. */
export function sessionCookieFrom(setCookie: readonly string[] | string | undefined): string | undefined {
  if (setCookie === undefined) return undefined;
  for (const header of Array.isArray(setCookie) ? setCookie : [setCookie as string]) {
    const pair = firstPair(header);
    if (pair !== undefined && pair.name === SESSION_COOKIE && pair.value !== '' && pair.value !== '""') return `${pair.name}=${pair.value}`;
  }
  return undefined;
}

function firstPair(header: string): { name: string; value: string } | undefined {
  const eq = header.indexOf('=');
  if (eq < 0) return undefined;
  const name = header.slice(0, eq).trim();
  const rest = header.slice(eq + 1).trimStart();
  if (rest.startsWith('"')) {
    // A quoted value may legally contain ';' and spaces, so it ends at the closing quote.
    const close = rest.indexOf('"', 1);
    if (close < 0) return undefined;
    return { name, value: rest.slice(0, close + 1) };
  }
  const semi = rest.indexOf(';');
  return { name, value: (semi < 0 ? rest : rest.slice(0, semi)).trim() };
}

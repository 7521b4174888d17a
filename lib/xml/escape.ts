// The five characters that could end a text node or a quoted attribute value, as entities: for
// the XML oneswap writes (SOAP requests, libvirt domains) and the HTML report of a plan run
// (HTML5 knows &apos; too).

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

const ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

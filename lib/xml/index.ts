/**
 * XML documents read into an ordered element tree, for the readers of OpenNebula's documents
 * (lib/one) and OVF descriptors (lib/input).
 *
 * - `parseElementTree(xml, what)`: the root element. Every child list is an array in document
 *   order, whatever the tag; values stay text; entities are decoded (CDATA never); a DOCTYPE
 *   cannot define entities that expand. Malformed XML throws a `OneswapError` of kind 'data'
 *   naming `what`.
 * - `localName(qname)`: a name without its prefix.
 * - `escapeXml(s)`: text or an attribute value with & < > " ' as entities, for what oneswap writes.
 *
 * The vSphere SOAP reader (lib/vsphere/xml-tree.ts) keeps its own tree: it resolves namespaces,
 * which neither of these readers wants.
 */

export { parseElementTree, localName, type Element } from './element-tree.js';
export { escapeXml } from './escape.js';

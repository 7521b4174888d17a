#!/usr/bin/env node
// Prints the text of each XPath-like /A/B/C argument, NUL-terminated, from a
// base64 DS_DRIVER_ACTION_DATA (argument after -b, or stdin). The simulator's
// stand-in for OpenNebula's xpath.rb: accepts escaped text and CDATA alike.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
let b64;
if (args[0] === '-b') {
  b64 = args[1] ?? '';
  args.splice(0, 2);
} else {
  b64 = readFileSync(0, 'utf8');
}
const xml = Buffer.from(b64.trim(), 'base64').toString('utf8');

const ENT = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const dec = (s) =>
  s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (w, e) =>
    e[0] === '#' ? String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)) : (ENT[e] ?? w));

function parse(src) {
  const root = { name: '#doc', kids: [], text: '' };
  const stack = [root];
  let i = 0;
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    const top = stack[stack.length - 1];
    if (lt === -1) { top.text += dec(src.slice(i)); break; }
    if (lt > i) top.text += dec(src.slice(i, lt));
    if (src.startsWith('<![CDATA[', lt)) {
      const e = src.indexOf(']]>', lt);
      top.text += src.slice(lt + 9, e);
      i = e + 3;
    } else if (src.startsWith('<!--', lt)) {
      i = src.indexOf('-->', lt) + 3;
    } else if (src[lt + 1] === '?' || src[lt + 1] === '!') {
      i = src.indexOf('>', lt) + 1;
    } else if (src[lt + 1] === '/') {
      stack.pop();
      i = src.indexOf('>', lt) + 1;
    } else {
      const e = src.indexOf('>', lt);
      let body = src.slice(lt + 1, e);
      const self = body.endsWith('/');
      if (self) body = body.slice(0, -1);
      const el = { name: body.trim().split(/\s+/)[0], kids: [], text: '' };
      top.kids.push(el);
      if (!self) stack.push(el);
      i = e + 1;
    }
  }
  return root;
}

const fullText = (el) => el.text + el.kids.map(fullText).join('');
const doc = parse(xml);
let out = '';
for (const p of args) {
  let cur = doc;
  for (const part of p.split('/').filter(Boolean)) {
    cur = cur?.kids.find((k) => k.name === part);
  }
  out += (cur ? fullText(cur) : '') + '\0';
}
process.stdout.write(out);

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { sanitizeName } from '../../lib/one/names.js';

describe('sanitizeName', () => {
  it('replaces every forbidden character by _ and keeps spaces', () => {
    assert.equal(sanitizeName('a&b|c:d\\e"f;g/h\'i#j{k}l$m<n>o'), 'a_b_c_d_e_f_g_h_i_j_k_l_m_n_o');
    assert.equal(sanitizeName('web 01\t(prod)\r\n\v\f'), 'web 01_(prod)____');
    assert.equal(sanitizeName('DC1/vm:web01'), 'DC1_vm_web01');
  });

  it('leaves valid names alone, accents included', () => {
    assert.equal(sanitizeName('Serveur été-01_(copy) [2]'), 'Serveur été-01_(copy) [2]');
  });

  it('cuts to 128 bytes of UTF-8 without splitting a character', () => {
    assert.equal(sanitizeName('x'.repeat(300)), 'x'.repeat(128));
    const cut = sanitizeName('é'.repeat(100)); // 2 bytes each
    assert.equal(cut, 'é'.repeat(64));
    const emoji = sanitizeName('a' + '\u{1F600}'.repeat(40)); // 1 + 4 bytes each
    assert.equal(Buffer.byteLength(emoji), 125);
    assert.ok(!emoji.endsWith('\uD83D'));
  });

  it('refuses a name that is empty', () => {
    assert.throws(() => sanitizeName('  '), (e: unknown) => e instanceof OneswapError && e.kind === 'usage');
  });
});

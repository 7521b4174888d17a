import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { OneApiError, replyValue } from '../../lib/one/errors.js';
import type { XmlRpcValue } from '../../lib/one/xmlrpc.js';

function failure(message: string, code: number, respId = -1): OneApiError {
  try {
    replyValue('one.image.allocate', { fault: false, value: [false, message, code, respId, '-1'] });
  } catch (e) {
    assert.ok(e instanceof OneApiError);
    return e;
  }
  assert.fail('no error thrown');
}

describe('oned failure mapping', () => {
  it('returns element 1 of a success array', () => {
    assert.equal(replyValue('m', { fault: false, value: [true, 42, 0] }), 42);
    assert.equal(replyValue('m', { fault: false, value: [true, '<IMAGE/>', 0] }), '<IMAGE/>');
  });

  const cases: [number, string, string][] = [
    [256, "[one.user.info] User couldn't be authenticated, aborting call.", 'auth'],
    [512, '[one.image.allocate] User [2] : Not authorized to perform CREATE IMAGE.', 'auth'],
    [1024, '[one.image.info] Error getting image [99].', 'not-found'],
    [2048, '[one.image.allocate] Not enough space in datastore', 'capacity'],
    [2048, '[one.image.persistent] Cannot change persistent state in USED state', 'conflict'],
    [4096, '[one.imagepool.info] Incorrect filter_flag', 'remote'],
    [8192, '[one.image.allocate] Cannot parse image SIZE: no such file', 'remote'],
    [16384, '[one.image.allocate] Error allocating a new image. NAME is already taken by IMAGE 12.', 'conflict'],
    [16384, '[one.image.allocate] New images can only be allocated in a files or image datastore.', 'remote'],
    [32768, '[one.image.delete] The image is locked.', 'conflict'],
    [65536, '[one.image.allocate] Error replicating log entry', 'remote'],
  ];
  for (const [code, message, kind] of cases) {
    it(`${code} → ${kind}: ${message.slice(0, 50)}`, () => {
      const e = failure(message, code);
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, kind);
      assert.equal(e.message, message, "oned's message verbatim");
      assert.equal(e.code, code);
      assert.equal(e.method, 'one.image.allocate');
    });
  }

  it('hints at ONE_AUTH on authentication failures', () => {
    assert.match(failure('x', 256).hint ?? '', /ONE_AUTH/);
  });

  it('keeps the object id, and multi-line messages on one line (verbatim in remoteMessage)', () => {
    const e = failure('[one.image.allocate] Cannot parse image SIZE:\nline two\n', 8192, 12);
    assert.equal(e.objectId, 12);
    assert.equal(e.message, '[one.image.allocate] Cannot parse image SIZE: line two');
    assert.equal(e.remoteMessage, '[one.image.allocate] Cannot parse image SIZE:\nline two\n');
  });

  it('accepts the short 3-element failure of old servers', () => {
    assert.throws(() => replyValue('m', { fault: false, value: [false, 'old', 1024] }), (e: unknown) => e instanceof OneApiError && e.kind === 'not-found');
  });

  it('refuses replies that are not [ok, value, code]', () => {
    for (const value of ['x', [], ['true', 1, 0], { a: 1 }] as XmlRpcValue[]) {
      assert.throws(() => replyValue('m', { fault: false, value }), (e: unknown) => e instanceof OneswapError && e.kind === 'remote');
    }
  });
});

describe('XML-RPC fault mapping', () => {
  for (const code of [-501, -502, -506]) {
    it(`${code} is a client bug or an unsupported version`, () => {
      assert.throws(
        () => replyValue('one.vmpool.info', { fault: true, code, message: 'Not enough parameters' }),
        (e: unknown) =>
          e instanceof OneApiError &&
          e.kind === 'internal' &&
          e.code === code &&
          e.message === 'client bug or unsupported OpenNebula version: one.vmpool.info Not enough parameters',
      );
    });
  }

  it('other faults are remote errors', () => {
    assert.throws(
      () => replyValue('m', { fault: true, code: -500, message: 'boom' }),
      (e: unknown) => e instanceof OneApiError && e.kind === 'remote' && /fault -500: boom/.test(e.message),
    );
  });
});

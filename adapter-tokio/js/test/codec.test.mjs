import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeFrame, encodeFrame, ProtocolError, ValidationError, CloseCode, utf8Length } from '../eventwire.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const vectors = path.resolve(here, '../../../core/tests/vectors');
const files = fs.readdirSync(vectors).filter((f) => f.endsWith('.json')).sort();

const read = (name) => fs.readFileSync(path.join(vectors, name), 'utf8');

test('there are golden vectors to check', () => {
  assert.ok(files.length >= 18, `found ${files.length} vectors in ${vectors}`);
});

for (const file of files) {
  test(`vector ${file} round-trips byte for byte`, () => {
    const text = read(file);
    const frame = decodeFrame(text);
    assert.equal(encodeFrame(frame), text.trim());
    assert.equal(frame.type, Object.keys(JSON.parse(text))[0]);
  });
}

test('hello decodes to its fields', () => {
  assert.deepEqual(decodeFrame(read('hello.json')), {
    type: 'hello',
    version: 1,
    client_id: 20015998343868,
    token: 'eyJhbGciOiJIUzI1NiJ9.e30.sig-_',
    max_frame: 65536,
    max_batch: 50,
    rooms: [
      { room: 'agents', from: { epoch: 3, offset: 299 } },
      { room: 'system', from: null },
    ],
  });
});

test('batch decodes with parsed payloads and their exact text', () => {
  const f = decodeFrame(read('batch.json'));
  assert.equal(f.type, 'batch');
  assert.equal(f.room, 'agent:agent-7');
  assert.equal(f.epoch, 3);
  assert.deepEqual(f.events.map((e) => [e.offset, e.kind, e.payload]), [
    [41, 'agent.metrics', { cpu: 0.42, mem_mb: 512 }],
    [43, 'agent.metrics', { cpu: 0.47, mem_mb: 520 }],
  ]);
  assert.equal(f.events[0].payloadText, '{"cpu":0.42,"mem_mb":512}');
});

test('gaps decode to range and reset', () => {
  assert.deepEqual(decodeFrame(read('gap_range.json')), { type: 'gap', room: 'agents', missed: { range: { epoch: 3, first: 121, last: 180 } } });
  assert.deepEqual(decodeFrame(read('gap_reset.json')), { type: 'gap', room: 'agents', missed: { reset: { position: { epoch: 4, offset: 0 } } } });
});

test('error and close decode with optional fields', () => {
  assert.deepEqual(decodeFrame(read('error_rate_limited.json')), {
    type: 'error', code: 3, id: 6, room: 'commands', retry_after_ms: 250, reason: 'publish rate 100 per second',
  });
  assert.deepEqual(decodeFrame(read('close.json')), { type: 'close', code: 1001, retry_after_ms: 2000, reason: 'server restarting' });
});

test('a payload keeps its exact text, white space and number forms included', () => {
  const text = '{"event":{"room":"r","position":{"epoch":1,"offset":2},"kind":"k","payload":{"a" : 1.0, "b":[1e3,"x\\"y"]}}}';
  const f = decodeFrame(text);
  assert.deepEqual(f.payload, { a: 1, b: [1000, 'x"y'] });
  assert.equal(encodeFrame(f), text);
});

test('white space around the frame and unknown fields are accepted; missing options are null', () => {
  const f = decodeFrame(' {"close" : {"code":1000,"reason":"", "extra": {"deep":[1,"\\u0041"]}}}\n');
  assert.deepEqual(f, { type: 'close', code: 1000, retry_after_ms: null, reason: '' });
});

test('an unknown frame kind decodes as unknown (ignored by the client)', () => {
  assert.deepEqual(decodeFrame('{"telemetry":{"x":[1,2,{"y":null}]}}'), { type: 'unknown', name: 'telemetry' });
  assert.throws(() => encodeFrame({ type: 'unknown', name: 'telemetry' }), ValidationError);
});

/** @param {string} text @param {number} code */
function refused(text, code) {
  assert.throws(() => decodeFrame(text), (e) => e instanceof ProtocolError && e.closeCode === code, text);
}

test('malformed JSON is refused with 1002', () => {
  for (const text of [
    '', '   ', '{', '{"ping":{"nonce":1}', '{"ping":{"nonce":1}}x', '[1]', '{"ping":{"nonce":01}}',
    '{"ping":{"nonce":1,}}', '{"ping":{"nonce":1}, "pong":{"nonce":1}}', '{"ping":{"nonce":"1"}}',
    '{"ping":{"nonce":1.5}}', '{"ping":{"nonce":1e3}}', '{"ping":{"nonce":-1}}', '{"ping":{}}',
    '{"ping":{"nonce":1,"nonce":2}}', '{"ping":null}', '{"subscribed":{"room":"r","position":{"epoch":1}}}',
    '{"welcome":{"version":70000,"session_id":1,"heartbeat_ms":1,"max_frame":1,"max_subscriptions":1,"publish_rate":1}}',
    '{"gap":{"room":"r","missed":{"range":{"epoch":1,"first":1,"last":2},"reset":{"position":{"epoch":1,"offset":0}}}}}',
    '{"foo":{"x":[1,,2]}}', '{"event":{"room":"r","position":{"epoch":1,"offset":1},"kind":"k","payload":{"a":}}}',
  ]) {
    refused(text, CloseCode.PROTOCOL_ERROR);
  }
});

test('strings with escapes in frame fields are refused', () => {
  refused('{"unsubscribe":{"room":"ag\\u0065nts"}}', CloseCode.PROTOCOL_ERROR);
  refused('{"close":{"code":1000,"retry_after_ms":null,"reason":"a\\"b"}}', CloseCode.PROTOCOL_ERROR);
  refused('{"unsubscribe":{"room":"a\nb"}}', CloseCode.PROTOCOL_ERROR);
});

test('integers above 2^53 - 1 are refused with 1007', () => {
  assert.equal(decodeFrame('{"ping":{"nonce":9007199254740991}}').nonce, 9007199254740991);
  refused('{"ping":{"nonce":9007199254740992}}', CloseCode.INVALID_DATA);
  refused('{"ping":{"nonce":18446744073709551615}}', CloseCode.INVALID_DATA);
  refused('{"publish_ack":{"id":1,"position":{"epoch":1,"offset":9007199254740993}}}', CloseCode.INVALID_DATA);
  assert.throws(() => encodeFrame({ type: 'ping', nonce: 2 ** 53 }), ValidationError);
});

test('field rules are checked on decode (1007) and encode (ValidationError)', () => {
  refused('{"unsubscribe":{"room":""}}', CloseCode.INVALID_DATA);
  refused('{"unsubscribe":{"room":"a/b"}}', CloseCode.INVALID_DATA);
  refused(`{"unsubscribe":{"room":"${'x'.repeat(65)}"}}`, CloseCode.INVALID_DATA);
  refused('{"close":{"code":1000,"retry_after_ms":null,"reason":"<b>"}}', CloseCode.INVALID_DATA);
  refused('{"gap":{"room":"r","missed":{"range":{"epoch":1,"first":5,"last":4}}}}', CloseCode.INVALID_DATA);
  refused('{"batch":{"room":"r","epoch":1,"events":[{"offset":2,"kind":"k","payload":1},{"offset":2,"kind":"k","payload":1}]}}', CloseCode.INVALID_DATA);
  const rooms = Array.from({ length: 65 }, (_, i) => ({ room: `r${i}`, from: null }));
  refused(JSON.stringify({ hello: { version: 1, client_id: 1, token: null, max_frame: 1, max_batch: 1, rooms } }), CloseCode.INVALID_DATA);
  assert.throws(() => encodeFrame({ type: 'subscribe', room: 'a b', from: null }), ValidationError);
  assert.throws(() => encodeFrame({ type: 'publish', room: 'r', id: 1, kind: 'k', payload: undefined }), ValidationError);
  assert.throws(() => encodeFrame({ type: 'close', code: 1000, reason: 'a/b' }), ValidationError);
  assert.throws(() => encodeFrame({ type: 'nope' }), ValidationError);
});

test('a message over maxFrame is refused with 1009 before parsing', () => {
  const text = `{"ping":{"nonce":1}}${' '.repeat(100)}`;
  assert.equal(decodeFrame(text, { maxFrame: 200 }).nonce, 1);
  assert.throws(() => decodeFrame(text, { maxFrame: 50 }), (e) => e instanceof ProtocolError && e.closeCode === CloseCode.MESSAGE_TOO_BIG);
  // Counted in UTF-8 bytes, not UTF-16 units.
  const wide = `{"event":{"room":"r","position":{"epoch":1,"offset":1},"kind":"k","payload":"${'é'.repeat(40)}"}}`;
  assert.equal(utf8Length(wide), wide.length + 40);
  assert.doesNotThrow(() => decodeFrame(wide, { maxFrame: wide.length + 40 }));
  assert.throws(() => decodeFrame(wide, { maxFrame: wide.length + 39 }), (e) => e.closeCode === CloseCode.MESSAGE_TOO_BIG);
  assert.equal(utf8Length('a\u{1F600}'), 5);
});

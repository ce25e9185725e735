'use strict';
// Runs against a running suite: TOLLGATE_GATEWAY_ADDRESS and TOLLGATE_API_KEY say where
// and with which key (tests/e2e/test_clients_e2e.py starts one and sets both).
//   TOLLGATE_API_KEY=$(cat .tollgate/dev-api-key) npm test

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { after, before, describe, it } = require('node:test');
const { TollgateClient, grpc } = require('../client');

const address = process.env.TOLLGATE_GATEWAY_ADDRESS || '127.0.0.1:50051';
const apiKey = process.env.TOLLGATE_API_KEY;
const skip = apiKey ? false : 'set TOLLGATE_API_KEY (and TOLLGATE_GATEWAY_ADDRESS)';

// A question no earlier run has asked, so the answer comes from upstream.
const fresh = (topic) => `${topic} (${crypto.randomUUID()})`;

describe('Tollgate gateway from Node.js', { skip }, () => {
  let client;
  before(() => {
    client = new TollgateClient({ address, apiKey });
  });
  after(() => client.close());

  it('CreateResponse answers with usage, an integer cost and our request id', async () => {
    const requestId = `req_node_${crypto.randomUUID()}`;
    const reply = await client.createResponse(
      { input: fresh('How do token buckets refill?'), priority: 'PRIORITY_REALTIME' },
      { requestId },
    );
    assert.ok(reply.output_text.length > 0);
    assert.ok(reply.model.length > 0);
    assert.equal(reply.cache_status, 'CACHE_STATUS_MISS');
    assert.equal(reply.request_id, requestId);
    assert.equal(reply.currency_code, 'USD');
    // int64 arrives as a decimal string: exact micro-dollars, never a float.
    assert.match(reply.cost_micros, /^[0-9]+$/);
    assert.ok(BigInt(reply.cost_micros) > 0n);
    assert.ok(BigInt(reply.usage.input_tokens) > 0n);
    assert.ok(BigInt(reply.usage.output_tokens) > 0n);
  });

  it('a repeated question is an exact cache hit that costs nothing', async () => {
    const input = fresh('What is a circuit breaker?');
    const first = await client.createResponse({ input });
    const second = await client.createResponse({ input });
    assert.equal(second.cache_status, 'CACHE_STATUS_EXACT');
    assert.equal(second.output_text, first.output_text);
    assert.equal(second.cost_micros, '0');
  });

  it('StreamResponse sends started, text deltas, then completed with usage', async () => {
    const events = [];
    for await (const event of client.streamResponse({ input: fresh('Explain backoff') })) {
      events.push(event);
    }
    assert.ok(events.length >= 3, `only ${events.length} events`);
    assert.equal(events[0].event, 'started');
    assert.ok(events[0].started.request_id.length > 0);
    const deltas = events.slice(1, -1);
    assert.ok(deltas.every((event) => event.event === 'delta'));
    const text = deltas.map((event) => event.delta.text).join('');
    assert.ok(text.length > 0);
    const last = events.at(-1);
    assert.equal(last.event, 'completed');
    assert.ok(BigInt(last.completed.usage.output_tokens) > 0n);
    assert.ok(BigInt(last.completed.cost_micros) > 0n);
  });

  it('an unknown key is UNAUTHENTICATED', async () => {
    const stranger = new TollgateClient({ address, apiKey: 'tg_not_a_key' });
    try {
      await assert.rejects(stranger.createResponse({ input: 'hello' }), {
        code: grpc.status.UNAUTHENTICATED,
      });
    } finally {
      stranger.close();
    }
  });

  it('bad input is INVALID_ARGUMENT, on a stream too', async () => {
    await assert.rejects(client.createResponse({ input: '' }), {
      code: grpc.status.INVALID_ARGUMENT,
    });
    const consume = async () => {
      for await (const _event of client.streamResponse({ input: '' })) {
        // An invalid request yields no event.
      }
    };
    await assert.rejects(consume(), { code: grpc.status.INVALID_ARGUMENT });
  });
});

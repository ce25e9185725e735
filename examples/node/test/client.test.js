'use strict';
// Runs against a running suite: TOLLGATE_GATEWAY_ADDRESS and TOLLGATE_API_KEY say where
// and with which key (tests/e2e/test_clients_e2e.py starts one and sets both).
//   TOLLGATE_API_KEY=$(cat .tollgate/dev-api-key) npm test

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { after, before, describe, it } = require('node:test');
const { TollgateClient, grpc, loadGatewayPackage } = require('../client');
const {
  TRIP_SCHEMA,
  WEATHER_PARAMETERS,
  getWeather,
  structuredOutput,
  toStruct,
  toolLoop,
} = require('../tools');

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

describe('tools.js toStruct', () => {
  it('survives the wire: a JSON Schema comes back from CreateResponseRequest bytes', () => {
    // No server: encode and decode with the service's own serializers. A Struct in the
    // wrong form (plain object, snake_case Value fields) would come back empty.
    const { requestSerialize, requestDeserialize } =
      loadGatewayPackage().GatewayService.service.CreateResponse;
    const schema = { ...TRIP_SCHEMA, examples: [null, { nights: 2.5, ok: true }] };
    const decoded = requestDeserialize(
      requestSerialize({ input: 'x', tools: [{ name: 't', parameters: toStruct(schema) }] }),
    );
    const fromValue = (value) => {
      switch (value.kind) {
        case 'nullValue':
          return null;
        case 'listValue':
          return value.listValue.values.map(fromValue);
        case 'structValue':
          return fromStruct(value.structValue);
        default:
          return value[value.kind];
      }
    };
    const fromStruct = (struct) =>
      Object.fromEntries(Object.entries(struct.fields).map(([k, v]) => [k, fromValue(v)]));
    assert.deepEqual(fromStruct(decoded.tools[0].parameters), schema);
  });
});

describe('Tollgate tools and structured output from Node.js', { skip }, () => {
  let client;
  before(() => {
    client = new TollgateClient({ address, apiKey });
  });
  after(() => client.close());

  it('a tool-calling loop runs get_weather and the answer quotes its result', async () => {
    const { first, results, final } = await toolLoop(client, fresh('Paris'));
    assert.equal(first.finish_reason, 'FINISH_REASON_TOOL_CALLS');
    assert.equal(results.length, 1);
    const [{ call, result }] = results;
    assert.equal(call.name, 'get_weather');
    assert.match(call.id, /.+/);
    // Strict: exactly the schema's properties, each of its type.
    const args = JSON.parse(call.arguments);
    assert.deepEqual(Object.keys(args).sort(), [...WEATHER_PARAMETERS.required].sort());
    assert.equal(typeof args.city, 'string');
    assert.ok(WEATHER_PARAMETERS.properties.unit.enum.includes(args.unit));
    assert.equal(result, getWeather(args));
    assert.equal(final.finish_reason, 'FINISH_REASON_STOP');
    assert.equal(final.tool_calls.length, 0);
    assert.ok(final.output_text.includes(result), final.output_text);
  });

  it('a json_schema answer is JSON with the schema\'s fields', async () => {
    const { reply, plan } = await structuredOutput(client, fresh('Oslo'));
    assert.equal(reply.finish_reason, 'FINISH_REASON_STOP');
    assert.deepEqual(Object.keys(plan).sort(), [...TRIP_SCHEMA.required].sort());
    assert.equal(typeof plan.destination, 'string');
    assert.ok(Number.isInteger(plan.nights) && plan.nights >= 1 && plan.nights <= 30);
    assert.ok(plan.packing_list.length >= 1);
    assert.ok(plan.packing_list.every((item) => typeof item === 'string'));
  });
});

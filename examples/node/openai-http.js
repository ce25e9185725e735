'use strict';
// The official `openai` npm package against Tollgate's OpenAI-compatible HTTP door:
// the only change from calling OpenAI is the base URL and the key.
//   TOLLGATE_HTTP_BASE_URL=http://127.0.0.1:8080/v1 \
//   TOLLGATE_API_KEY=$(cat .tollgate/dev-api-key) npm run test:http
// tests/e2e/test_http_door_e2e.py starts a suite and runs this file; the 429 test
// needs its limits file (user `node-burst` limited to 1 request per minute).
// It lives outside test/ on purpose: `node --test` there is the gRPC client's run,
// whose caller counts its tests, and a file with none would still count as one.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { describe, it } = require('node:test');

const baseURL = process.env.TOLLGATE_HTTP_BASE_URL;
const apiKey = process.env.TOLLGATE_API_KEY;
let OpenAI = null;
try {
  OpenAI = require('openai');
} catch {
  OpenAI = null;
}
const skip = !OpenAI
  ? 'the openai package is not installed: run `npm ci` in examples/node'
  : !(baseURL && apiKey)
    ? 'set TOLLGATE_HTTP_BASE_URL and TOLLGATE_API_KEY'
    : false;

const fresh = (topic) => `${topic} (${crypto.randomUUID()})`;
const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The current weather in a city.',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
  },
};

describe('Tollgate HTTP door with the openai npm package', { skip }, () => {
  const client = () => new OpenAI({ baseURL, apiKey, maxRetries: 0 });

  it('chat.completions.create answers with usage and Tollgate headers', async () => {
    const { data, response } = await client()
      .chat.completions.create({
        model: 'auto',
        messages: [{ role: 'user', content: fresh('What is a token bucket?') }],
      })
      .withResponse();
    assert.ok(data.choices[0].message.content.length > 0);
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.ok(data.usage.prompt_tokens > 0);
    assert.ok(data.usage.completion_tokens > 0);
    assert.equal(response.headers.get('x-tollgate-cache-status'), 'miss');
    assert.match(response.headers.get('x-tollgate-cost-micros'), /^[0-9]+$/);
    assert.ok(response.headers.get('x-request-id'));
  });

  it('streams chunks and a usage chunk', async () => {
    const stream = await client().chat.completions.create({
      model: 'auto',
      messages: [{ role: 'user', content: fresh('Explain exponential backoff') }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage = null;
    let finish = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        text += choice.delta.content || '';
        finish = choice.finish_reason || finish;
      }
    }
    assert.ok(text.length > 0);
    assert.equal(finish, 'stop');
    assert.ok(usage && usage.completion_tokens > 0);
  });

  it('a tool call comes back and its answer completes the loop', async () => {
    const messages = [{ role: 'user', content: fresh('Weather in Paris?') }];
    const first = await client().chat.completions.create({
      model: 'auto',
      messages,
      tools: [weatherTool],
      tool_choice: 'required',
    });
    const choice = first.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    const call = choice.message.tool_calls[0];
    assert.equal(call.function.name, 'get_weather');
    JSON.parse(call.function.arguments);
    messages.push(choice.message);
    messages.push({ role: 'tool', tool_call_id: call.id, content: '{"celsius": 18}' });
    const second = await client().chat.completions.create({
      model: 'auto',
      messages,
      tools: [weatherTool],
    });
    assert.equal(second.choices[0].finish_reason, 'stop');
  });

  it('a rate-limited caller gets RateLimitError with retry-after', async () => {
    const request = {
      model: 'auto',
      user: 'node-burst',
      messages: [{ role: 'user', content: fresh('ping') }],
    };
    let denied = null;
    for (let attempt = 0; attempt < 5 && !denied; attempt += 1) {
      try {
        await client().chat.completions.create(request);
      } catch (error) {
        denied = error;
      }
    }
    assert.ok(denied instanceof OpenAI.RateLimitError, `got ${denied}`);
    assert.equal(denied.status, 429);
    assert.ok(Number(denied.headers.get('retry-after')) >= 1);
    assert.ok(Number(denied.headers.get('retry-after-ms')) > 0);
    assert.equal(denied.code, 'rate_limit_exceeded');
  });
});

'use strict';
// Tool calling and structured output through the Tollgate gateway, from Node.js.
//   TOLLGATE_API_KEY=... node tools.js [--city Lisbon]
// Reads TOLLGATE_GATEWAY_ADDRESS (default 127.0.0.1:50051) and TOLLGATE_API_KEY.
//
// 1. A two-turn tool-calling loop: offer a get_weather tool (parameters: a JSON
//    Schema); when the reply has tool_calls, run the tool here and send the
//    conversation back with the assistant turn and one ROLE_TOOL message per call id.
// 2. Structured output: a json_schema response_format; the answer is parsed as JSON.
//
// proto-loader sends google.protobuf.Struct (tool parameters, response schemas) in
// its protobuf form, { fields: { name: Value } }, not as a plain object: toStruct()
// converts. The Value fields are camelCase (stringValue, structValue...) even with
// keepCase: proto-loader takes the well-known types from protobufjs' built-in copies,
// whose names are already camelCase. A snake_case field there is silently dropped.

const { TollgateClient, grpc } = require('./client');

// With strict, OpenAI's rules apply: every property required, no others allowed.
const WEATHER_PARAMETERS = {
  type: 'object',
  properties: {
    city: { type: 'string', description: 'The city, e.g. Paris.' },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
  },
  required: ['city', 'unit'],
  additionalProperties: false,
};

const TRIP_SCHEMA = {
  type: 'object',
  properties: {
    destination: { type: 'string' },
    nights: { type: 'integer', minimum: 1, maximum: 30 },
    packing_list: { type: 'array', minItems: 1, items: { type: 'string' } },
  },
  required: ['destination', 'nights', 'packing_list'],
  additionalProperties: false,
};

const INSTRUCTIONS = 'You answer travel questions.';

/** A JSON value as a google.protobuf.Value, in proto-loader's keepCase form. */
function toValue(value) {
  if (value === null || value === undefined) {
    return { nullValue: 'NULL_VALUE' };
  }
  if (Array.isArray(value)) {
    return { listValue: { values: value.map(toValue) } };
  }
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'number':
      if (!Number.isFinite(value)) {
        throw new TypeError(`a Struct cannot hold ${value}`);
      }
      return { numberValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      return { structValue: toStruct(value) };
    default:
      throw new TypeError(`a Struct cannot hold a ${typeof value}`);
  }
}

/** A plain object (a JSON Schema) as a google.protobuf.Struct: { fields: {...} }. */
function toStruct(object) {
  const fields = {};
  for (const [key, value] of Object.entries(object)) {
    fields[key] = toValue(value);
  }
  return { fields };
}

function weatherTool() {
  return {
    name: 'get_weather',
    description: 'The current weather in a city.',
    parameters: toStruct(WEATHER_PARAMETERS),
    strict: true,
  };
}

/** The local tool: a made-up forecast, as JSON text for the tool message. */
function getWeather({ city, unit }) {
  const celsius = 8 + ([...city].reduce((sum, ch) => sum + ch.codePointAt(0), 0) % 20);
  const temperature = unit === 'celsius' ? celsius : Math.round((celsius * 9) / 5 + 32);
  return JSON.stringify({ city, temperature, unit, sky: 'light rain' });
}

/** Run the tool a call names; a failure goes back to the model as the result. */
function runTool(call) {
  if (call.name !== 'get_weather') {
    return JSON.stringify({ error: `unknown tool ${call.name}` });
  }
  try {
    return getWeather(JSON.parse(call.arguments));
  } catch (error) {
    return JSON.stringify({ error: `bad arguments: ${error.message}` });
  }
}

const userText = (text) => ({ role: 'ROLE_USER', content: [{ text }] });

/**
 * Ask, run the tools the model calls, send their results, return everything:
 * { question, first, results: [{ call, result }], final }.
 */
async function toolLoop(client, city, log = () => {}) {
  const question = userText(`Use get_weather: what is it like in ${city}?`);
  const tools = [weatherTool()];
  log(`user: ${question.content[0].text}`);
  const first = await client.createResponse({
    instructions: INSTRUCTIONS,
    messages: [question],
    tools,
  });
  if (first.tool_calls.length === 0) {
    return { question, first, results: [], final: null };
  }
  // The next request replays the conversation: the question, the assistant's turn
  // with its calls, then one tool message answering each call by its id.
  const messages = [question, { role: 'ROLE_ASSISTANT', tool_calls: first.tool_calls }];
  const results = [];
  for (const call of first.tool_calls) {
    log(`model calls ${call.name} (${call.id}) with ${call.arguments}`);
    const result = runTool(call);
    log(`tool ${call.name} returns ${result}`);
    results.push({ call, result });
    messages.push({ role: 'ROLE_TOOL', tool_call_id: call.id, content: [{ text: result }] });
  }
  const final = await client.createResponse({ instructions: INSTRUCTIONS, messages, tools });
  log(`answer (${final.finish_reason}): ${final.output_text}`);
  return { question, first, results, final };
}

/** Ask for JSON matching TRIP_SCHEMA; returns { reply, plan } (plan: the parsed JSON). */
async function structuredOutput(client, city) {
  const reply = await client.createResponse({
    input: `Plan a short trip to ${city}: how many nights, and what to pack?`,
    response_format: {
      json_schema: {
        name: 'trip_plan',
        description: 'A trip plan with a packing list.',
        schema: toStruct(TRIP_SCHEMA),
        strict: true,
      },
    },
  });
  return { reply, plan: JSON.parse(reply.output_text) };
}

async function main(argv) {
  const cityAt = argv.indexOf('--city');
  const city = cityAt >= 0 ? argv[cityAt + 1] : 'Paris';
  const apiKey = process.env.TOLLGATE_API_KEY;
  if (!apiKey || !city) {
    console.error('usage: TOLLGATE_API_KEY=... node tools.js [--city NAME]');
    return 2;
  }
  const client = new TollgateClient({
    address: process.env.TOLLGATE_GATEWAY_ADDRESS || '127.0.0.1:50051',
    apiKey,
  });
  try {
    console.log('== tool calling ==');
    const loop = await toolLoop(client, city, (line) => console.log(line));
    if (loop.final === null) {
      console.log(`answer (no tool called): ${loop.first.output_text}`);
      return 1;
    }
    console.log('\n== structured output (json_schema trip_plan) ==');
    const { plan } = await structuredOutput(client, city);
    console.log(JSON.stringify(plan, null, 2));
    return 0;
  } catch (error) {
    if (error.code === undefined) {
      console.error(`error: ${error.message}`);
    } else {
      console.error(`${grpc.status[error.code]}: ${error.details}`);
    }
    return 1;
  } finally {
    client.close();
  }
}

module.exports = {
  TRIP_SCHEMA,
  WEATHER_PARAMETERS,
  getWeather,
  structuredOutput,
  toStruct,
  toValue,
  toolLoop,
  weatherTool,
};

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}

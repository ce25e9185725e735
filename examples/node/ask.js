'use strict';
// node ask.js [--stream] "your question"
// Reads TOLLGATE_GATEWAY_ADDRESS (default 127.0.0.1:50051) and TOLLGATE_API_KEY.

const { TollgateClient, grpc } = require('./client');

async function main(argv) {
  const stream = argv.includes('--stream');
  const input = argv.filter((arg) => arg !== '--stream').join(' ');
  const apiKey = process.env.TOLLGATE_API_KEY;
  if (!input || !apiKey) {
    console.error('usage: TOLLGATE_API_KEY=... node ask.js [--stream] "question"');
    return 2;
  }
  const client = new TollgateClient({
    address: process.env.TOLLGATE_GATEWAY_ADDRESS || '127.0.0.1:50051',
    apiKey,
  });
  try {
    if (stream) {
      for await (const event of client.streamResponse({ input })) {
        if (event.event === 'delta') {
          process.stdout.write(event.delta.text);
        } else if (event.event === 'completed') {
          const done = event.completed;
          process.stdout.write(
            `\n[${done.usage.input_tokens}+${done.usage.output_tokens} tokens, ` +
              `${done.cost_micros} micro-${done.currency_code}]\n`,
          );
        }
      }
    } else {
      const reply = await client.createResponse({ input });
      console.log(reply.output_text);
      console.log(
        `[${reply.model}, cache ${reply.cache_status}, ` +
          `${reply.cost_micros} micro-${reply.currency_code}]`,
      );
    }
    return 0;
  } catch (error) {
    console.error(`error: ${grpc.status[error.code] || error.message}: ${error.details}`);
    return 1;
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});

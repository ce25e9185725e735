'use strict';
// A small Tollgate gateway client for Node.js. The stubs are built at run time from the
// repository's protos/ with @grpc/proto-loader: no generated code to keep in sync.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// protos/ at the repository root; the imports inside the files resolve against it.
const PROTOS_DIR = path.resolve(__dirname, '..', '..', 'protos');

// keepCase keeps the proto field names (output_text, cost_micros) as they are on the
// wire and in every other language; int64 money and token counts arrive as decimal
// strings so no micro-dollar is lost to floating point; enums arrive by name.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Load tollgate.gateway.v1 from a protos directory (default: the repository's). */
function loadGatewayPackage(protosDir = PROTOS_DIR) {
  const definition = protoLoader.loadSync('tollgate/gateway/v1/gateway.proto', {
    ...LOADER_OPTIONS,
    includeDirs: [protosDir],
  });
  return grpc.loadPackageDefinition(definition).tollgate.gateway.v1;
}

class TollgateClient {
  /**
   * @param {object} options
   * @param {string} options.address host:port of the gateway.
   * @param {string} options.apiKey the API key, sent as `authorization: Bearer <key>`.
   * @param {grpc.ChannelCredentials} [options.credentials] insecure unless given.
   * @param {string} [options.protosDir] where the .proto files are.
   */
  constructor({ address, apiKey, credentials, protosDir }) {
    if (!address || !apiKey) {
      throw new Error('TollgateClient needs an address and an apiKey');
    }
    const gateway = loadGatewayPackage(protosDir);
    this.apiKey = apiKey;
    this.stub = new gateway.GatewayService(
      address,
      credentials || grpc.credentials.createInsecure(),
    );
  }

  metadata(requestId) {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${this.apiKey}`);
    if (requestId) {
      metadata.set('x-request-id', requestId);
    }
    return metadata;
  }

  static deadline(timeoutMs) {
    return new Date(Date.now() + timeoutMs);
  }

  /**
   * One answer (CreateResponseRequest fields in snake_case, e.g. { input: 'hi' }).
   * google.protobuf.Struct fields (tool parameters, json_schema.schema) go in their
   * protobuf form: see toStruct() in tools.js.
   * Rejects with a grpc ServiceError (`code`, `details`, `metadata`) on failure.
   */
  createResponse(request, { timeoutMs = 30000, requestId } = {}) {
    return new Promise((resolve, reject) => {
      this.stub.CreateResponse(
        request,
        this.metadata(requestId),
        { deadline: TollgateClient.deadline(timeoutMs) },
        (error, reply) => (error ? reject(error) : resolve(reply)),
      );
    });
  }

  /**
   * A streamed answer: an async iterator of StreamResponseResponse events, each with
   * `event` naming the one field set ('started', 'delta', 'tool_call_delta' or
   * 'completed'). A broken stream throws from the loop.
   */
  streamResponse(request, { timeoutMs = 60000, requestId } = {}) {
    return this.stub.StreamResponse(request, this.metadata(requestId), {
      deadline: TollgateClient.deadline(timeoutMs),
    });
  }

  close() {
    this.stub.close();
  }
}

module.exports = { TollgateClient, loadGatewayPackage, PROTOS_DIR, grpc };

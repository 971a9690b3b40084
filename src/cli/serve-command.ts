/**
 * `reward-pool-engine serve [--config file.json] [flags]`: open the engine, serve it over
 * HTTP(S) until SIGTERM or SIGINT, then stop accepting, answer what is in flight, close the
 * engine and exit 0.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { EngineError, messageOf } from '../errors.js';
import { kServeFlags, loadServeConfig, type ServeConfig } from '../server/config.js';
import { createServer } from '../server/create-server.js';
import { createGrpcServer, type GrpcServer } from '../server/grpc/index.js';
import { describe, exitCodeFor, kExitFailure, kExitOk, kExitUsage } from './exit-codes.js';
import { ServeEngine } from './serve-engine.js';

function usage(): string {
  const width = Math.max(...kServeFlags.map(([name, kind]) => name.length + (kind === 'boolean' ? 0 : 4)));
  const lines = kServeFlags.map(([name, kind, , help]) => `  --${`${name}${kind === 'boolean' ? '' : kind === 'int' ? ' <n>' : ' <s>'}`.padEnd(width + 2)}${help}`);
  return `usage: reward-pool-engine serve [--config file.json] [options]

Serves the engine over HTTP (DESIGN.md "Service (HTTP)"): the /v1 routes, /healthz, /readyz,
/metrics, /openapi.json and the live page at /. Prints "listening on <url>" once it accepts
connections. SIGTERM or SIGINT: stop accepting, answer what is in flight, close the engine,
exit 0. API keys are only read from the config file (auth.keys), never from flags. Without any
key the server listens on loopback only.

options:
${lines.join('\n')}
${'  -h, --help'.padEnd(width + 6)}this text

Exit codes: 0 closed cleanly, 2 usage or invalid config (also a non-loopback --host without
keys), 4 data directory locked, 5 corrupt data directory, 1 anything else.
`;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new EngineError('ERR_INVALID_CONFIG', `${what} file ${JSON.stringify(path)} cannot be read: ${messageOf(err)}`, { cause: err });
  }
}

export async function run(argv: string[]): Promise<number> {
  let config: ServeConfig;
  try {
    const { values } = parseArgs({
      args: argv,
      options: { ...Object.fromEntries(kServeFlags.map(([name, kind]) => [name, { type: kind === 'boolean' ? 'boolean' : 'string' }] as const)), help: { type: 'boolean', short: 'h' } },
    });
    if (values.help) {
      process.stdout.write(usage());
      return kExitOk;
    }
    config = loadServeConfig(values as Record<string, string | boolean | undefined>);
  } catch (err) {
    process.stderr.write(`reward-pool-engine serve: ${err instanceof EngineError ? describe(err) : messageOf(err)}\n${err instanceof EngineError ? '' : usage()}`);
    return kExitUsage;
  }

  let tls: { cert: Buffer; key: Buffer } | undefined;
  try {
    tls = config.tls === undefined ? undefined : { cert: readPem(config.tls.cert, 'TLS certificate'), key: readPem(config.tls.key, 'TLS key') };
  } catch (err) {
    process.stderr.write(`reward-pool-engine serve: ${describe(err)}\n`);
    return kExitUsage;
  }

  let engine: ServeEngine;
  try {
    engine = await ServeEngine.open(config.engine, (line) => process.stderr.write(`reward-pool-engine serve: ${line}\n`));
  } catch (err) {
    process.stderr.write(`reward-pool-engine serve: cannot open the engine: ${describe(err)}\n`);
    return exitCodeFor(err);
  }

  const app = createServer(engine, {
    auth: { keys: config.auth.keys },
    ...(tls === undefined ? {} : { tls }),
    limits: config.limits,
    retryAfterSeconds: config.retryAfterSeconds,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    logger: { level: config.logLevel, stream: process.stderr },
  });

  let address: string;
  try {
    address = await app.listen({ host: config.listen.host, port: config.listen.port });
  } catch (err) {
    process.stderr.write(`reward-pool-engine serve: cannot listen on ${config.listen.host}:${config.listen.port}: ${describe(err)}\n`);
    await app.close().catch(() => {});
    await engine.close().catch(() => {});
    return err instanceof EngineError ? exitCodeFor(err) : kExitFailure;
  }
  process.stdout.write(`listening on ${address}\n`);

  let grpc: GrpcServer | undefined;
  if (config.grpc !== undefined) {
    try {
      grpc = await createGrpcServer(engine, config.grpc.host, config.grpc.port, {
        auth: { keys: config.auth.keys },
        ...(tls === undefined ? {} : { tls }),
        ...(config.grpc.defaultPool === undefined ? {} : { defaultPool: config.grpc.defaultPool }),
        maxDrawCount: config.limits.maxDrawCount,
      });
    } catch (err) {
      process.stderr.write(`reward-pool-engine serve: cannot serve gRPC on ${config.grpc.host}:${config.grpc.port}: ${describe(err)}\n`);
      await app.close().catch(() => {});
      return kExitFailure;
    }
    process.stdout.write(`grpc listening on ${config.grpc.host}:${grpc.port}\n`);
  }

  // One close per process, whichever signal comes first; a second signal only says so.
  return new Promise<number>((resolve) => {
    let closing = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (closing) {
        process.stderr.write(`reward-pool-engine serve: ${signal} again: already closing (in-flight requests are being answered)\n`);
        return;
      }
      closing = true;
      process.stderr.write(`reward-pool-engine serve: ${signal}: closing\n`);
      // gRPC streams first (they answer what they received), then HTTP, which closes the engine.
      (grpc?.close(config.shutdownTimeoutMs) ?? Promise.resolve()).then(() => app.close()).then(
        () => {
          process.stdout.write('closed\n');
          resolve(kExitOk);
        },
        (err: unknown) => {
          process.stderr.write(`reward-pool-engine serve: close failed: ${describe(err)}\n`);
          resolve(kExitFailure);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

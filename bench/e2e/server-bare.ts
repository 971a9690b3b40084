/**
 * The ceiling of bench/e2e/server.ts: a bare fastify route answering every draw request with a
 * constant body of the draw route's shape (and the same response schema), no engine, no auth.
 * Prints "listening on <url>"; SIGTERM closes it.
 */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
const schema = {
  response: { 200: { type: 'object', properties: { requestId: { type: 'integer' }, itemId: { type: ['string', 'null'] } } } },
};
app.post('/v1/pools/:pool/draw', { schema }, async () => ({ requestId: 1, itemId: 'mud' }));
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`listening on ${url}\n`);
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));

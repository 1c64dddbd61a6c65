// A Hono app on wasmdyno: the module's default export is a fetch handler, bundled with its dependencies into one
// wasi:http component by the Node.js buildpack. Top-level code runs at build time: read config vars per request.
import { Hono } from 'hono';

const app = new Hono();
const greeting = () => process.env.GREETING ?? 'Hello';

app.get('/', (c) => c.text(`${greeting()} from Hono on wasmdyno!\n`));

app.get('/api/info', (c) =>
  c.json({ dyno: process.env.DYNO ?? null, greeting: greeting(), runtime: 'StarlingMonkey' }),
);

app.post('/echo', async (c) => c.json({ echoed: await c.req.parseBody() }));

export default app;

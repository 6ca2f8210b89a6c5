// SPDX-License-Identifier: LGPL-2.1-or-later
// The official openai package against swarm-api: what a developer's code
// does, unchanged but for baseURL.  Run by tests/test-api.sh with
// BASE_URL and MODEL; prints TAP.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY || 'unused', maxRetries: 0 });
const model = process.env.MODEL;
let n = 0;
function ok(cond, what) {
  n++;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${what}`);
  if (!cond) process.exitCode = 1;
}

const models = await client.models.list();
ok(models.data.some((m) => m.id === model), `models.list() has ${model}`);

const chat = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 8, seed: 1, temperature: 0,
});
ok(chat.choices.length === 1 && typeof chat.choices[0].message.content === 'string', 'chat completion has content');
ok(chat.usage.completion_tokens > 0 && chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens,
   'chat completion counts its tokens');

const stream = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'Count' }], max_tokens: 8, seed: 1, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let text = '', finish = null, usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    text += c.delta?.content ?? '';
    if (c.finish_reason) finish = c.finish_reason;
  }
}
ok(finish === 'stop' || finish === 'length', `stream ends with finish_reason ${finish}`);
ok(usage && usage.completion_tokens > 0, 'stream reports usage');
// Same seed, temperature 0, same prompt: the streamed text is the text.
const again = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'Count' }], max_tokens: 8, seed: 1, temperature: 0,
});
ok(again.choices[0].message.content === text, 'streamed text equals the non-streamed text of the same job');

const completion = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 5 });
ok(typeof completion.choices[0].text === 'string', 'completions.create() has text');

try {
  await client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] });
  ok(false, 'unknown model refused');
} catch (e) {
  ok(e.status === 404 && e.code === 'model_not_found', `unknown model: ${e.status} ${e.code}`);
}
console.log(`1..${n}`);

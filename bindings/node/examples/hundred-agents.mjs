// 100 agents in one Node process sharing one system prompt and one tool set,
// each with its own real conversation (tau2-bench, from the data directory).
//
//   node --expose-gc examples/hundred-agents.mjs            # agentmem
//   node --expose-gc examples/hundred-agents.mjs --plain    # plain JS strings
//   ... [--agents N] [--data DIR]   (default: the repository's data/sample)
//
// Prints the store's stats and the growth of the process's resident memory
// while building the agents (the input corpus is loaded in both modes), also
// after handing freed memory back to the OS (releaseFreeMemory), and the
// growth of live V8 heap objects.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { AgentMemory, releaseFreeMemory } = require('../index.js');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const plain = args.includes('--plain');
const socketPath = opt('--socket', undefined);
const n = Number(opt('--agents', 100));
const here = dirname(fileURLToPath(import.meta.url));
const data = opt('--data', join(here, '../../../data/sample'));

// The data files are zstd-compressed in data/sample, plain in the full set.
function load(rel) {
  const p = join(data, rel);
  if (existsSync(p)) return readFileSync(p, 'utf8');
  return execFileSync('zstd', ['-dc', p + '.zst'], { maxBuffer: 1 << 30 }).toString('utf8');
}
const promptText = JSON.parse(load('prompts/system_prompt_variants.json'))[0].text;
const toolsText = JSON.stringify(JSON.parse(load('prompts/tool_declarations.json'))['gemini-3']);
const convFile = readdirSync(join(data, 'conversations')).find((f) => /\.jsonl(\.zst)?$/.test(f));
let convLines = load(join('conversations', convFile.replace(/\.zst$/, '')));
convLines = convLines.split('\n').filter(Boolean);
if (convLines.length < n) throw new Error(`${data} holds ${convLines.length} conversations; asked for ${n}`);

const rss = (trim = false) => {
  globalThis.gc?.();
  if (trim) releaseFreeMemory();
  return Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096;
};
const heapUsed = () => {
  globalThis.gc?.();
  return process.memoryUsage().heapUsed;
};
// What a runtime receives for each agent: its own copy of the prompt and
// tools text (read or fetched per agent), and its messages.
const fresh = (s) => Buffer.from(s, 'utf8').toString('utf8');

const before = rss(true);
const heapBefore = heapUsed();
const agents = [];
let messages = 0;
for (let i = 0; i < n; i++) {
  const conv = JSON.parse(convLines[i]).messages;
  if (plain) {
    const a = { systemPrompt: fresh(promptText), tools: JSON.parse(fresh(toolsText)), messages: [] };
    for (const m of conv) a.messages.push({ role: m.role, content: m.content ?? '', tool_calls: m.tool_calls });
    agents.push(a);
  } else {
    const a = new AgentMemory(fresh(promptText), { tools: JSON.parse(fresh(toolsText)), socketPath });
    for (const m of conv) a.conversation.append({ role: m.role, content: m.content ?? '', tool_calls: m.tool_calls });
    // Its turn is over: it waits for the person, as most agents do most of
    // the time, so the store compresses what only it holds.
    a.setState('idle');
    agents.push(a);
  }
  messages += conv.length;
}
const after = rss();
// What is left once the allocator returns freed memory (the store's
// dictionary training and parse buffers) to the OS.
const afterTrim = rss(true);
const heapGrowth = heapUsed() - heapBefore;

const out = {
  mode: plain ? 'plain' : socketPath ? 'agentmem-daemon' : 'agentmem',
  agents: n,
  messages,
  rss_growth_bytes: after - before,
  rss_growth_after_trim_bytes: afterTrim - before,
  // Live JS objects: V8 sizes its heap by its own rules, so RSS alone can
  // hide (or inflate) what the agents hold in JS.
  v8_heap_used_growth_bytes: heapGrowth,
};
if (!plain) {
  agents[n - 1].setState('active');
  const ctx = agents[n - 1].conversation.getContext();
  if (ctx[0].content !== promptText || ctx.length !== JSON.parse(convLines[n - 1]).messages.length + 1)
    throw new Error('context read back differs from what was appended');
  out.stats = agents[0].getStats();
}
console.log(JSON.stringify(out, null, 2));

// node --test: the binding end to end on an embedded store (and on agentmemd
// when AGENTMEM_TEST_SOCKET names a running daemon's socket).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { AgentMemory, Store } = require('../index.js');

const PROMPT = 'You are a careful coding agent. Read the code before you change it.';
const TOOLS = [{ name: 'read_file', parameters: { path: 'string' } }];

function expectCode(fn, code, pattern) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof Error, 'an Error');
    assert.equal(e.code, code);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

// Agent names unique in this run: agentmemd keeps a closed store's agents
// (by name) for their grace time.
let serial = 0;
const uniq = (name) => `${name}-${process.pid}-${serial++}`;

const backends = [['embedded', () => Store.embedded()]];
if (process.env.AGENTMEM_TEST_SOCKET) {
  backends.push(['daemon', () => Store.connect(process.env.AGENTMEM_TEST_SOCKET)]);
}

for (const [name, open] of backends) {
  test(`${name}: 100 agents share one prompt and keep their own conversations`, () => {
    const store = open();
    const agents = [];
    for (let i = 0; i < 100; i++) {
      const a = store.agentMemory(PROMPT, { tools: TOOLS, name: uniq(`agent-${i}`) });
      a.conversation.append({ role: 'user', content: `task ${i}` });
      a.conversation.append(`follow-up ${i}`);
      agents.push(a);
    }
    const s = agents[0].getStats();
    const per = Buffer.byteLength(PROMPT) + Buffer.byteLength(JSON.stringify(TOOLS));
    assert.ok(s.totalDeduplicated >= 99 * per, `deduplicated ${s.totalDeduplicated}`);
    // Held: one prompt, one tool list and the 200 distinct messages.
    assert.ok(s.hotBytes + s.warmBytes + s.coldBytes < s.totalAllocated / 2);
    const ctx = agents[42].conversation.getContext();
    assert.deepEqual(ctx, [
      { role: 'system', content: PROMPT },
      { role: 'user', content: 'task 42' },
      { role: 'user', content: 'follow-up 42' },
    ]);
    assert.deepEqual(agents[42].conversation.getContext(1).length, 2);
    assert.deepEqual(agents[7].tools, TOOLS);
    assert.equal(agents[7].systemPrompt, PROMPT);
    assert.equal(agents[7].conversation.length, 2);
    agents[3].setState('paused');
    agents[3].setState('active');
    assert.equal(agents[3].conversation.getContext().length, 3);
    agents[5].release();
    expectCode(() => agents[5].conversation.getContext(), 'AGENTMEM_UNKNOWN_CONVERSATION');
    store.close();
  });

  test(`${name}: low-level store access`, () => {
    const store = open();
    const a = store.registerAgent(uniq('a'), 'tenant-a');
    const b = store.registerAgent(uniq('b'), 'tenant-b');
    const id = store.put(a, 'tool_result', Buffer.from([1, 2, 3, 0, 255]));
    assert.match(id, /^[0-9a-f]{64}$/);
    assert.deepEqual([...store.get(a, id)], [1, 2, 3, 0, 255]);
    if (name === 'daemon') {
      // agentmemd does not tell "not yours" from "not there".
      expectCode(() => store.get(b, id), 'AGENTMEM_UNKNOWN_UNIT');
    } else {
      expectCode(() => store.get(b, id), 'AGENTMEM_ACCESS_DENIED', /shared/);
    }
    store.share(a, id, b);
    assert.deepEqual([...store.get(b, id)], [1, 2, 3, 0, 255]);
    store.markHot(b, id);
    store.release(a, id);
    store.release(b, id);
    expectCode(() => store.release(b, id), 'AGENTMEM_UNKNOWN_UNIT');
    const text = store.put(a, 'blob', 'héllo', { public: true });
    assert.equal(store.getString(b, text), 'héllo');
    const c = store.createConversation(a);
    for (let i = 0; i < 50; i++) assert.equal(store.append(c, `m${i}`), i);
    assert.equal(store.conversationLength(c), 50);
    assert.deepEqual(store.readMessages(c, 48).map(String), ['m48', 'm49']);
    assert.equal(store.readMessages(c).length, 50);
    store.setState(a, 'waiting_for_human');
    store.releaseAgent(b);
    expectCode(() => store.get(b, text), 'AGENTMEM_UNKNOWN_AGENT');
    assert.equal(store.backend, name);
    store.close();
  });

  test(`${name}: bad input throws errors with codes, never crashes`, () => {
    const store = open();
    const a = store.registerAgent(uniq('a'));
    expectCode(() => store.put(a, 'nope', 'x'), 'AGENTMEM_INVALID_ARGUMENT', /system_prompt/);
    expectCode(() => store.put(a, 'blob', ''), 'AGENTMEM_INVALID_ARGUMENT', /empty/);
    expectCode(() => store.get(a, 'not-an-id'), 'AGENTMEM_INVALID_ARGUMENT', /hex/);
    expectCode(() => store.get(a, '00'.repeat(32)), 'AGENTMEM_UNKNOWN_UNIT');
    expectCode(() => store.setState(a, 'sleepy'), 'AGENTMEM_INVALID_ARGUMENT', /waiting_for_human/);
    expectCode(() => store.readMessages(999), 'AGENTMEM_UNKNOWN_CONVERSATION');
    expectCode(() => store.registerAgent(uniq('x'), 't', 1000), 'AGENTMEM_INVALID_ARGUMENT');
    // Wrong JS types: napi's own type errors, thrown as Errors.
    assert.throws(() => store.put(a, 'blob', 42), Error);
    assert.throws(() => store.get('a', 5), Error);
    assert.throws(() => store.agentMemory(5), Error);
    const m = store.agentMemory(PROMPT);
    expectCode(() => m.conversation.append(42), 'AGENTMEM_INVALID_ARGUMENT', /object or a string/);
    store.close();
    assert.equal(store.closed, true);
    expectCode(() => store.stats(), 'AGENTMEM_CLOSED', /open a new one/);
    expectCode(() => m.conversation.append('x'), 'AGENTMEM_CLOSED');
    expectCode(() => m.getStats(), 'AGENTMEM_CLOSED');
    store.close(); // closing twice is harmless
  });
}

test('oversized data', () => {
  const store = Store.embedded({ maxUnitSize: 1024 });
  const a = store.registerAgent('a');
  expectCode(() => store.put(a, 'blob', Buffer.alloc(4096, 1)), 'AGENTMEM_TOO_LARGE', /maximum unit size/);
  expectCode(() => store.agentMemory('p'.repeat(2000)), 'AGENTMEM_TOO_LARGE');
  expectCode(() => Store.embedded({ ramBudget: -1 }), 'AGENTMEM_INVALID_ARGUMENT');
  store.close();
});

test('a daemon that is not running', () => {
  expectCode(() => Store.connect('/nonexistent/agentmem.sock'), 'AGENTMEM_NOT_RUNNING', /agentmemd/);
  expectCode(
    () => new AgentMemory(PROMPT, { socketPath: '/nonexistent/agentmem.sock' }),
    'AGENTMEM_NOT_RUNNING',
  );
});

test('new AgentMemory shares the process default store', () => {
  const before = Store.default().stats().totalDeduplicated;
  const x = new AgentMemory(PROMPT + ' default');
  const y = new AgentMemory(PROMPT + ' default');
  const after = y.getStats().totalDeduplicated;
  assert.equal(after - before, Buffer.byteLength(PROMPT + ' default'));
  x.release();
  y.release();
});

test('embedded store in a directory: write, close, reopen, read back', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const root = mkdtempSync(join(tmpdir(), 'agentmem-node-'));
  const dir = join(root, 'store');
  try {
    const big = Buffer.alloc(60000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131) ^ (i >> 5);
    let store = Store.embedded({ dir });
    // Locked while open.
    expectCode(() => Store.embedded({ dir }), 'AGENTMEM_IO', /already opened/);
    let a = store.registerAgent('keeper', 'team');
    const id = store.put(a, 'tool_result', big);
    const text = store.put(a, 'blob', 'héllo ✓');
    const conv = store.createConversation(a);
    for (let i = 0; i < 12; i++) store.append(conv, `message ${i}`);
    store.append(conv, Buffer.from([0, 255, 1]));
    store.close();

    store = Store.embedded({ dir });
    a = store.registerAgent('keeper', 'team'); // the restored agent
    assert.ok(store.get(a, id).equals(big));
    assert.equal(store.getString(a, text), 'héllo ✓');
    assert.equal(store.conversationLength(conv), 13);
    const msgs = store.readMessages(conv);
    assert.equal(msgs[5].toString(), 'message 5');
    assert.ok(msgs[12].equals(Buffer.from([0, 255, 1])));
    // Another tenant's agent of the same name is someone else.
    const stranger = store.registerAgent('keeper', 'other');
    expectCode(() => store.get(stranger, id), 'AGENTMEM_ACCESS_DENIED');
    store.close();
    expectCode(() => Store.embedded({ dir: '' }), 'AGENTMEM_INVALID_ARGUMENT');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

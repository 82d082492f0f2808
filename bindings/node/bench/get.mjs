// Latency of one get of a 1 KiB message through the Node.js binding
// (Store.get -> Buffer), measured like crates/agentmem-capi/examples/get_latency.rs:
// 30 batches of 20,000 gets (15 of 2,000 through the daemon), one JSON line. Optional argument: a socket path
// to measure through agentmemd instead of the embedded store.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Store } = require('../index.js');

const body = "I'd like to change my flight to the one leaving two hours later, same fare class please. ";
let text = '{"role":"user","content":"';
while (text.length < 1022) text += body[text.length % body.length];
text = (text + '"}').slice(0, 1024);

const socket = process.argv[2];
const store = socket ? Store.connect(socket) : Store.embedded();
const agent = store.registerAgent(`bench-node-${process.pid}`);
const id = store.put(agent, 'conversation', Buffer.from(text));
const BATCH = socket ? 2000 : 20000;
const BATCHES = socket ? 15 : 30;
const run = () => {
  for (let i = 0; i < BATCH; i++) {
    if (store.get(agent, id).length !== 1024) throw new Error('wrong size');
  }
};
run();
const per = [];
for (let b = 0; b < BATCHES; b++) {
  const t = process.hrtime.bigint();
  run();
  per.push(Number(process.hrtime.bigint() - t) / BATCH);
}
per.sort((x, y) => x - y);
console.log(JSON.stringify({
  path: socket ? 'node-daemon' : 'node-embedded',
  ns_per_get_p50: Math.round(per[BATCHES >> 1]),
  ns_per_get_min: Math.round(per[0]),
}));
store.close();

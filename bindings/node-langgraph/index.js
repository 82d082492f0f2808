// agentmem as the checkpointer of LangGraph.js.
//
// The layout follows the Python saver (agentmem.langgraph.AgentmemSaver):
// each thread is an agentmem agent with a log, an append-only conversation
// of records — one per put (the checkpoint without its channel values, its
// metadata and one reference per channel) and one per write. A channel in
// `conversationChannels` (default: `messages`) whose value is an array that
// grows is an agentmem conversation, one message per item, and a checkpoint
// refers to a prefix of it; a value that parts from the stored one forks the
// conversation where they part. Other values stay in the record (up to
// `inlineLimit` bytes) or become content-addressed units; a channel whose
// version did not change refers to what its parent checkpoint stored.
//
// A thread's agent is registered on its first put and made active by every
// call on the thread; `pauseThread(id)` parks it (its data moves to the
// compressed tiers) until its next use; `deleteThread` releases it.
import { createHash, randomBytes } from "node:crypto";

import {
  BaseCheckpointSaver,
  WRITES_IDX_MAP,
  compareWritesSortKeys,
  TASKS,
  copyCheckpoint,
  getCheckpointId,
  maxChannelVersion,
  writesSortKey,
} from "@langchain/langgraph-checkpoint";
import { Store } from "agentmem";

const CP = 0;
const WR = 1;
const EMPTY = 0;
const INLINE = 1; // [INLINE, type, data (string for json, else base64)]
const UNIT = 2; // [UNIT, type, unit id]
const CONV = 3; // [CONV, conversation, length]

const utf8 = new TextDecoder();

function digest(buf) {
  return createHash("sha256").update(buf).digest("base64").slice(0, 16);
}

function encodeData(type, bytes) {
  return type === "json" ? utf8.decode(bytes) : Buffer.from(bytes).toString("base64");
}

function decodeData(type, data) {
  return type === "json" ? Buffer.from(data, "utf8") : Buffer.from(data, "base64");
}

function newName(prefix) {
  return `${prefix}-${randomBytes(6).toString("hex")}`;
}

export class AgentmemSaver extends BaseCheckpointSaver {
  /**
   * `new AgentmemSaver()` keeps everything in a new embedded in-RAM store;
   * options: `store` (an agentmem `Store`), `socketPath` (agentmemd),
   * `dir` (an embedded store in a directory), `tenant`, `serde`,
   * `conversationChannels`, `inlineLimit`.
   */
  constructor(options = {}) {
    super(options.serde);
    const given = [options.store, options.socketPath, options.dir].filter((x) => x !== undefined);
    if (given.length > 1) throw new Error("give one of store, socketPath or dir");
    this.ownsStore = options.store === undefined;
    if (options.store !== undefined) this.store = options.store;
    else if (options.socketPath !== undefined) this.store = Store.connect(options.socketPath);
    else this.store = Store.embedded(options.dir !== undefined ? { dir: options.dir } : undefined);
    this.tenant = options.tenant ?? "default";
    this.conversationChannels = new Set(options.conversationChannels ?? ["messages"]);
    this.inlineLimit = options.inlineLimit ?? 256;
    this.threads = new Map();
  }

  /** Close the store if this saver opened it. */
  close() {
    if (this.ownsStore && !this.store.closed) this.store.close();
  }

  /** Park a thread's agent until its next use (unknown threads: ignored). */
  pauseThread(threadId) {
    const t = this.threads.get(String(threadId));
    if (t && t.state !== "paused") {
      this.store.setState(t.agent, "paused");
      t.state = "paused";
    }
  }

  _touch(t) {
    if (t.state !== "active") {
      this.store.setState(t.agent, "active");
      t.state = "active";
    }
  }

  _thread(threadId, create) {
    let t = this.threads.get(threadId);
    if (t === undefined && create) {
      const agent = this.store.registerAgent(newName("langgraph"), this.tenant);
      let log;
      try {
        log = this.store.createConversation(agent);
      } catch (e) {
        this.store.releaseAgent(agent);
        throw e;
      }
      // heads: ns -> [checkpoint id, log index]; last: ns -> [id, refs];
      // convs: "ns\0channel" -> {id, hashes}.
      t = { agent, log, logLen: 0, state: "active", heads: new Map(), last: new Map(), convs: new Map(), stray: new Set() };
      this.threads.set(threadId, t);
    }
    return t;
  }

  _append(t, record) {
    const i = this.store.append(t.log, JSON.stringify(record));
    t.logLen = i + 1;
    return i;
  }

  _records(t, start = 0) {
    return this.store.readMessages(t.log, start, t.logLen).map((b) => JSON.parse(b.toString("utf8")));
  }

  _noteCheckpoint(t, rec, index) {
    const [, ns, id, , , , refs] = rec;
    const head = t.heads.get(ns);
    if (head === undefined || id >= head[0]) t.heads.set(ns, [id, index]);
    t.last.set(ns, [id, refs]);
  }

  async _dump(value) {
    try {
      return await this.serde.dumpsTyped(value);
    } catch (e) {
      throw new TypeError(`cannot serialize a value for the checkpoint: ${e.message}`, { cause: e });
    }
  }

  async _load(type, data) {
    return this.serde.loadsTyped(type, data);
  }

  _storeBytes(t, type, bytes) {
    if (bytes.length <= this.inlineLimit) return [INLINE, type, encodeData(type, bytes)];
    return [UNIT, type, this.store.put(t.agent, "blob", Buffer.from(bytes))];
  }

  async _loadRef(t, ref) {
    if (ref[0] === INLINE) return this._load(ref[1], decodeData(ref[1], ref[2]));
    return this._load(ref[1], this.store.get(t.agent, ref[2]));
  }

  async _loadList(conv, length) {
    const out = [];
    for (const m of this.store.readMessages(conv, 0, length)) {
      const cut = m.indexOf(0);
      out.push(await this._load(m.subarray(0, cut).toString("utf8"), m.subarray(cut + 1)));
    }
    return out;
  }

  _convHashes(c) {
    if (c.hashes === null) c.hashes = this.store.readMessages(c.id).map(digest);
    return c.hashes;
  }

  async _storeList(t, ns, channel, items) {
    const encoded = [];
    for (const item of items) {
      const [type, bytes] = await this._dump(item);
      encoded.push(Buffer.concat([Buffer.from(type, "utf8"), Buffer.from([0]), Buffer.from(bytes)]));
    }
    const hashes = encoded.map(digest);
    const key = `${ns}\0${channel}`;
    let c = t.convs.get(key);
    let p = 0;
    if (c !== undefined) {
      const old = this._convHashes(c);
      while (p < old.length && p < hashes.length && old[p] === hashes[p]) p += 1;
      if (p < old.length) c = { id: this.store.forkConversation(t.agent, c.id, p), hashes: old.slice(0, p) };
    } else {
      c = { id: this.store.createConversation(t.agent), hashes: [] };
    }
    for (let i = p; i < encoded.length; i += 1) {
      this.store.append(c.id, encoded[i]);
      c.hashes.push(hashes[i]);
    }
    t.convs.set(key, c);
    return [CONV, c.id, items.length];
  }

  async _tuple(threadId, t, rec, writes, parentWrites) {
    const [, ns, id, parent, cpType, cpData, refs, mdType, mdData] = rec;
    const checkpoint = await this._load(cpType, decodeData(cpType, cpData));
    checkpoint.channel_values = {};
    for (const [ch, [, ...ref]] of Object.entries(refs)) {
      if (ref[0] === EMPTY) continue;
      checkpoint.channel_values[ch] = ref[0] === CONV ? await this._loadList(ref[1], ref[2]) : await this._loadRef(t, ref);
    }
    if (checkpoint.v < 4 && parent !== undefined && parent !== null) {
      // Checkpoints before v4 kept their sends as the parent's TASKS writes.
      const sends = [];
      for (const w of (await this._pending(t, parentWrites ?? this._writesOf(t, ns, parent))).filter((w) => w[1] === TASKS)) {
        sends.push(w[2]);
      }
      checkpoint.channel_values[TASKS] = sends;
      checkpoint.channel_versions ??= {};
      const versions = Object.values(checkpoint.channel_versions);
      checkpoint.channel_versions[TASKS] = versions.length > 0 ? maxChannelVersion(...versions) : this.getNextVersion(undefined);
    }
    const tuple = {
      config: { configurable: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: id } },
      checkpoint,
      metadata: await this._load(mdType, decodeData(mdType, mdData)),
      pendingWrites: await this._pending(t, writes),
    };
    if (parent !== undefined && parent !== null) {
      tuple.parentConfig = { configurable: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: parent } };
    }
    return tuple;
  }

  async _pending(t, writes) {
    if (!writes) return [];
    const ordered = [...writes.values()].sort((a, b) =>
      compareWritesSortKeys(writesSortKey(a[4], a[3], a[5]), writesSortKey(b[4], b[3], b[5])),
    );
    const out = [];
    for (const w of ordered) out.push([w[3], w[6], await this._loadRef(t, w[7])]);
    return out;
  }

  _parentRefs(t, ns, parent) {
    if (parent === undefined || parent === null) return {};
    const recs = this._records(t);
    for (let i = recs.length - 1; i >= 0; i -= 1) {
      if (recs[i][0] === CP && recs[i][1] === ns && recs[i][2] === parent) return recs[i][6];
    }
    return {};
  }

  _findRef(t, ns, ch, ver) {
    const recs = this._records(t);
    for (let i = recs.length - 1; i >= 0; i -= 1) {
      const ref = recs[i][0] === CP && recs[i][1] === ns ? recs[i][6][ch] : undefined;
      if (ref !== undefined && ref[0] === ver) return ref;
    }
    return undefined;
  }

  _writesOf(t, ns, id) {
    return this._index(this._records(t))[1].get(`${ns}\0${id}`);
  }

  // (ns, id) -> [index, record] (the last put of an id wins) and
  // (ns, id) -> Map(task,idx -> record) (idx >= 0: first put wins).
  _index(records, start = 0) {
    const cps = new Map();
    const writes = new Map();
    records.forEach((rec, i) => {
      const key = `${rec[1]}\0${rec[2]}`;
      if (rec[0] === CP) cps.set(key, [start + i, rec]);
      else {
        let w = writes.get(key);
        if (w === undefined) writes.set(key, (w = new Map()));
        const k = `${rec[3]},${rec[5]}`;
        if (rec[5] >= 0 && w.has(k)) return;
        w.set(k, rec);
      }
    });
    return [cps, writes];
  }

  async getTuple(config) {
    const threadId = config.configurable?.thread_id;
    if (threadId === undefined) return undefined;
    const ns = config.configurable?.checkpoint_ns ?? "";
    const id = getCheckpointId(config);
    const t = this.threads.get(String(threadId));
    if (t === undefined) return undefined;
    const head = t.heads.get(ns);
    if (head === undefined) return undefined;
    this._touch(t);
    const target = id || head[0];
    const key = `${ns}\0${target}`;
    if (target === head[0] && !t.stray.has(key)) {
      const [cps, writes] = this._index(this._records(t, head[1]), head[1]);
      const hit = cps.get(key);
      if (hit) return this._tuple(String(threadId), t, hit[1], writes.get(key));
    }
    const [cps, writes] = this._index(this._records(t));
    const hit = cps.get(key);
    if (!hit) return undefined;
    const tuple = await this._tuple(String(threadId), t, hit[1], writes.get(key));
    if (id) tuple.config = config;
    return tuple;
  }

  async *list(config, options) {
    const { before, filter } = options ?? {};
    let limit = options?.limit;
    const threadIds = config.configurable?.thread_id !== undefined ? [String(config.configurable.thread_id)] : [...this.threads.keys()];
    const wantNs = config.configurable?.checkpoint_ns;
    const wantId = config.configurable?.checkpoint_id;
    const beforeId = before?.configurable?.checkpoint_id;
    for (const threadId of threadIds) {
      const t = this.threads.get(threadId);
      if (t === undefined) continue;
      const [cps, writes] = this._index(this._records(t));
      const byNs = new Map();
      for (const [, rec] of cps.values()) {
        if (!byNs.has(rec[1])) byNs.set(rec[1], []);
        byNs.get(rec[1]).push(rec);
      }
      for (const [ns, recs] of byNs) {
        if (wantNs !== undefined && ns !== wantNs) continue;
        recs.sort((a, b) => (a[2] < b[2] ? 1 : a[2] > b[2] ? -1 : 0));
        for (const rec of recs) {
          if (wantId && rec[2] !== wantId) continue;
          if (beforeId && rec[2] >= beforeId) continue;
          if (filter) {
            const md = await this._load(rec[7], decodeData(rec[7], rec[8]));
            if (!Object.entries(filter).every(([k, v]) => md[k] === v)) continue;
          }
          if (limit !== undefined) {
            if (limit <= 0) return;
            limit -= 1;
          }
          yield await this._tuple(threadId, t, rec, writes.get(`${ns}\0${rec[2]}`), writes.get(`${ns}\0${rec[3]}`));
        }
      }
    }
  }

  async put(config, checkpoint, metadata, newVersions) {
    const threadId = config.configurable?.thread_id;
    if (threadId === undefined) {
      throw new Error('Failed to put checkpoint: the config has no "thread_id" in its "configurable" property.');
    }
    const ns = config.configurable?.checkpoint_ns ?? "";
    const parent = config.configurable?.checkpoint_id;
    const c = copyCheckpoint(checkpoint);
    const values = c.channel_values ?? {};
    delete c.channel_values;
    // Serialize first: a bad value fails before anything is written.
    const [cpType, cpBytes] = await this._dump(c);
    const [mdType, mdBytes] = await this._dump(metadata);
    const versions = c.channel_versions ?? {};
    const changed = newVersions ?? versions;
    const plain = {};
    for (const ch of Object.keys(changed)) {
      if (!(ch in values) || (this.conversationChannels.has(ch) && Array.isArray(values[ch]))) continue;
      plain[ch] = await this._dump(values[ch]);
    }
    const t = this._thread(String(threadId), true);
    this._touch(t);
    // A channel whose version did not change has its parent's value.
    const last = t.last.get(ns);
    const base = last !== undefined && last[0] === parent ? last[1] : this._parentRefs(t, ns, parent);
    const refs = {};
    for (const [ch, ver] of Object.entries(versions)) {
      if (ch in changed) continue;
      let ref = base[ch];
      if (ref === undefined || ref[0] !== ver) ref = this._findRef(t, ns, ch, ver);
      if (ref !== undefined) refs[ch] = ref;
    }
    for (const [ch, ver] of Object.entries(changed)) {
      if (!(ch in values)) refs[ch] = [ver, EMPTY];
      else if (ch in plain) refs[ch] = [ver, ...this._storeBytes(t, ...plain[ch])];
      else refs[ch] = [ver, ...(await this._storeList(t, ns, ch, values[ch]))];
    }
    const rec = [CP, ns, checkpoint.id, parent ?? null, cpType, encodeData(cpType, cpBytes), refs, mdType, encodeData(mdType, mdBytes)];
    const i = this._append(t, rec);
    this._noteCheckpoint(t, rec, i);
    t.stray.delete(`${ns}\0${checkpoint.id}`);
    return { configurable: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpoint.id } };
  }

  async putWrites(config, writes, taskId, taskPath = "") {
    const threadId = config.configurable?.thread_id;
    const ns = config.configurable?.checkpoint_ns ?? "";
    const id = config.configurable?.checkpoint_id;
    if (threadId === undefined) throw new Error('Failed to put writes: the config has no "thread_id".');
    if (id === undefined) throw new Error('Failed to put writes: the config has no "checkpoint_id".');
    const typed = [];
    for (const [ch, v] of writes) typed.push([ch, await this._dump(v)]);
    const t = this._thread(String(threadId), true);
    this._touch(t);
    const head = t.heads.get(ns);
    if (head === undefined || head[0] !== id) t.stray.add(`${ns}\0${id}`);
    typed.forEach(([ch, [type, bytes]], idx) => {
      const widx = WRITES_IDX_MAP[ch] ?? idx;
      this._append(t, [WR, ns, id, taskId, taskPath ?? "", widx, ch, this._storeBytes(t, type, bytes)]);
    });
  }

  async deleteThread(threadId) {
    const t = this.threads.get(String(threadId));
    if (t === undefined) return;
    this.threads.delete(String(threadId));
    this.store.releaseAgent(t.agent);
  }
}

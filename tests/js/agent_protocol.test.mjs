// The JS LangGraph SDK (what useStream, Agent Chat UI and Studio are built on) against
// a server: AP_URL (base URL), AP_API_KEY (x-api-key, empty for none), AP_SLOW_MODEL
// (a model id whose answer streams for a couple of seconds). Run by
// tests/agent_protocol/test_js_client.py, which starts the server: `node --test`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Client } from "@langchain/langgraph-sdk";

const apiUrl = process.env.AP_URL;
if (!apiUrl) throw new Error("AP_URL is not set");
const apiKey = process.env.AP_API_KEY || undefined;
const slowModel = process.env.AP_SLOW_MODEL || "slow";
const GRAPH = "agent";

const client = new Client({ apiUrl, apiKey });
const ask = (content) => ({ messages: [{ role: "human", content }] });
const text = (message) =>
  typeof message.content === "string"
    ? message.content
    : message.content.map((block) => block.text ?? "").join("");
const lastAi = (values) => values.messages.filter((m) => m.type === "ai").at(-1);

test("assistants: search and get", async () => {
  const found = await client.assistants.search({ graphId: GRAPH, limit: 10 });
  assert.equal(found.length, 1);
  assert.equal(found[0].graph_id, GRAPH);
  const system = await client.assistants.search({ metadata: { created_by: "system" } });
  assert.deepEqual(
    system.map((a) => a.assistant_id),
    [found[0].assistant_id],
  );
  const assistant = await client.assistants.get(found[0].assistant_id);
  assert.equal(assistant.assistant_id, found[0].assistant_id);
  assert.equal(assistant.graph_id, GRAPH);
});

test("threads: create, get, search", async () => {
  const tag = `js-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  const thread = await client.threads.create({ metadata: { tag } });
  assert.equal(thread.metadata.tag, tag);
  assert.equal(thread.status, "idle");
  const got = await client.threads.get(thread.thread_id);
  assert.equal(got.thread_id, thread.thread_id);
  assert.equal(got.metadata.tag, tag);
  const found = await client.threads.search({ metadata: { tag }, limit: 10 });
  assert.deepEqual(
    found.map((t) => t.thread_id),
    [thread.thread_id],
  );
});

test("runs.stream with values and messages-tuple: chunks merge into the answer", async () => {
  const thread = await client.threads.create();
  const events = [];
  for await (const chunk of client.runs.stream(thread.thread_id, GRAPH, {
    input: ask("hello from js"),
    streamMode: ["values", "messages-tuple"],
  })) {
    events.push(chunk);
  }
  assert.equal(events[0].event, "metadata");
  assert.ok(events[0].data.run_id);
  const names = new Set(events.slice(1).map((e) => e.event));
  names.delete("end");
  assert.deepEqual([...names].sort(), ["messages", "values"]);
  // useStream merges AIMessageChunks by id (js/ui/manager.js).
  const merged = new Map();
  for (const { event, data } of events) {
    if (event !== "messages") continue;
    const [message, metadata] = data;
    if (message.type !== "AIMessageChunk") continue;
    assert.equal(metadata.langgraph_node, "model");
    merged.set(message.id, (merged.get(message.id) ?? "") + text(message));
  }
  assert.equal(merged.size, 1);
  const values = events.filter((e) => e.event === "values").at(-1).data;
  const answer = lastAi(values);
  assert.equal([...merged.values()][0], text(answer));
  assert.ok(text(answer).length > 0);
  const run = await client.runs.get(thread.thread_id, events[0].data.run_id);
  assert.equal(run.status, "success");
});

test("runs.wait returns the final values", async () => {
  const thread = await client.threads.create();
  const values = await client.runs.wait(thread.thread_id, GRAPH, { input: ask("wait for it") });
  assert.deepEqual(
    values.messages.map((m) => m.type),
    ["human", "ai"],
  );
  assert.equal(values.messages[0].content, "wait for it");
  assert.ok(text(lastAi(values)).length > 0);
});

test("joinStream of a background run", async () => {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, GRAPH, {
    input: ask("take your time"),
    context: { model: slowModel },
    streamResumable: true,
  });
  assert.ok(["pending", "running"].includes(run.status));
  const events = [];
  for await (const chunk of client.runs.joinStream(thread.thread_id, run.run_id, {
    lastEventId: "-1",
  })) {
    events.push(chunk);
  }
  const values = events.filter((e) => e.event === "values");
  assert.ok(values.length > 0, JSON.stringify(events.map((e) => e.event)));
  assert.equal(values[0].data.messages[0].content, "take your time");
  const done = await client.runs.get(thread.thread_id, run.run_id);
  assert.equal(done.status, "success");
  const state = await client.threads.getState(thread.thread_id);
  assert.equal(text(lastAi(values.at(-1).data)), text(lastAi(state.values)));
});

// Smoke test of taskyard with the official TypeScript SDK (`parallel-web`
// 1.3.3, pinned in package.json), run by tests/sdk_ts.rs against a fresh
// server: `TASKYARD_BASE_URL=http://127.0.0.1:PORT node smoke.mjs`.
//
// Steps: create a group, add 20 runs with a JSON output schema, follow
// the group's events until the stream ends by itself, read the runs with
// their outputs, retrieve the group and one of its runs, and run one
// standalone task to its result. Every answer is checked; any failure
// exits non-zero.

import assert from 'node:assert/strict';
import Parallel from 'parallel-web';

const baseURL = process.env.TASKYARD_BASE_URL;
if (!baseURL) {
  console.error('ts smoke: TASKYARD_BASE_URL is not set');
  process.exit(2);
}

/// The group's runs; one of them is slowed down with `mock_delay_ms`.
const RUNS = 20;
const SLOW_INDEX = 7;
/// Longest wait for a stream that must end by itself.
const STREAM_DEADLINE_MS = 30_000;

// maxRetries 0: a 408 or 5xx must show up here, not be retried away.
const client = new Parallel({ apiKey: 'test', baseURL, maxRetries: 0 });

let checks = 0;
/** Runs one named check; counts it when it passes. */
function check(name, fn) {
  try {
    fn();
  } catch (err) {
    err.message = `${name}: ${err.message}`;
    throw err;
  }
  checks += 1;
}

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const RUN_ID = /^trun_[0-9a-f]{32}$/;
const GROUP_ID = /^tgrp_[0-9a-f]{32}$/;
const EVENT_ID = /^[0-9]+$/;

const OUTPUT_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'Official name of the company' },
    founded: { type: 'integer', description: 'Year the company was founded' },
    public: { type: 'boolean', description: 'Whether it is listed' },
    products: {
      type: 'array',
      items: { type: 'string' },
      description: 'Main products',
    },
  },
  required: ['name', 'founded', 'public', 'products'],
  additionalProperties: false,
};

/** Asserts that `output` is a TaskRunJsonOutput whose content fits OUTPUT_SCHEMA. */
function assertJsonOutput(output) {
  assert.ok(output && typeof output === 'object', 'output present');
  assert.equal(output.type, 'json');
  const c = output.content;
  assert.ok(c && typeof c === 'object' && !Array.isArray(c), 'content is an object');
  assert.deepEqual(Object.keys(c).sort(), ['founded', 'name', 'products', 'public']);
  assert.equal(typeof c.name, 'string');
  assert.ok(Number.isInteger(c.founded), `founded is an integer: ${c.founded}`);
  assert.equal(typeof c.public, 'boolean');
  assert.ok(Array.isArray(c.products), 'products is an array');
  for (const p of c.products) assert.equal(typeof p, 'string');
  // One basis entry per top-level key in key order, plus `products.N`
  // right after `products` (spec 2.4).
  const expected = [];
  for (const key of Object.keys(c)) {
    expected.push(key);
    if (Array.isArray(c[key])) c[key].forEach((_, i) => expected.push(`${key}.${i}`));
  }
  assert.ok(Array.isArray(output.basis), 'basis is an array');
  assert.deepEqual(
    output.basis.map((b) => b.field),
    expected,
  );
  for (const b of output.basis) {
    assert.equal(typeof b.reasoning, 'string');
    assert.ok(Array.isArray(b.citations), 'citations is an array');
    assert.ok(b.confidence === null || ['low', 'medium', 'high'].includes(b.confidence));
  }
  assert.equal(output.mcp_tool_calls, null);
  assert.equal(output.beta_fields, null);
  // The schema was json, not auto: no output_schema echoed.
  assert.equal(output.output_schema, null);
}

/** Asserts the TaskRun shape of spec 2.1. */
function assertRun(run, { status, groupId, metadata }) {
  assert.match(run.run_id, RUN_ID);
  assert.equal(run.interaction_id, run.run_id);
  assert.equal(run.status, status);
  assert.equal(run.is_active, ['queued', 'running', 'cancelling'].includes(status));
  assert.equal(run.processor, 'lite');
  assert.deepEqual(run.metadata, metadata);
  assert.equal(run.error, null);
  assert.equal(run.taskgroup_id, groupId);
  assert.match(run.created_at, TIMESTAMP);
  assert.match(run.modified_at, TIMESTAMP);
  assert.ok(run.modified_at >= run.created_at, 'modified_at >= created_at');
}

/** Metadata the group's run `i` was created with. */
function runMetadata(i) {
  return i === SLOW_INDEX ? { mock_delay_ms: 200 } : { row: i, label: `company-${i}` };
}

/** Iterates an SDK stream to its end, failing if it does not end in time. */
async function collect(makeStream, what) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), STREAM_DEADLINE_MS);
  try {
    const stream = await makeStream({ signal: abort.signal });
    const events = [];
    for await (const event of stream) events.push(event);
    return events;
  } catch (err) {
    if (abort.signal.aborted) {
      throw new Error(`${what}: stream did not end within ${STREAM_DEADLINE_MS} ms`);
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function main() {
  // 1. Create the group.
  const groupMetadata = { suite: 'ts-smoke', attempt: 1, nightly: false };
  const group = await client.taskGroup.create({ metadata: groupMetadata });
  const groupId = group.taskgroup_id;
  check('taskGroup.create', () => {
    assert.match(groupId, GROUP_ID);
    assert.deepEqual(group.metadata, groupMetadata);
    assert.match(group.created_at, TIMESTAMP);
    assert.deepEqual(group.status, {
      num_task_runs: 0,
      task_run_status_counts: {},
      is_active: false,
      status_message: null,
      modified_at: group.status.modified_at,
    });
    assert.match(group.status.modified_at, TIMESTAMP);
  });

  // 2. Add the runs, all with the group's default task spec.
  const inputs = [];
  for (let i = 0; i < RUNS; i++) {
    inputs.push({
      input: i % 2 === 0 ? `Company number ${i}` : { company: `company-${i}`, rank: i },
      processor: 'lite',
      metadata: runMetadata(i),
    });
  }
  const added = await client.taskGroup.addRuns(groupId, {
    inputs,
    default_task_spec: {
      output_schema: { type: 'json', json_schema: OUTPUT_SCHEMA },
    },
  });
  const runIds = added.run_ids;
  check('taskGroup.addRuns', () => {
    assert.equal(runIds.length, RUNS);
    for (const id of runIds) assert.match(id, RUN_ID);
    assert.equal(new Set(runIds).size, RUNS, 'run ids are unique');
    // First runs of the group: no cursor yet (spec 6).
    assert.equal(added.run_cursor, null);
    assert.equal(added.event_cursor, null);
    assert.equal(added.status.num_task_runs, RUNS);
    const counted = Object.values(added.status.task_run_status_counts).reduce((a, b) => a + b, 0);
    assert.equal(counted, RUNS);
    assert.match(added.status.modified_at, TIMESTAMP);
    assert.equal(added.status.status_message, null);
  });

  // 3. Follow the group's events; the stream ends once the group is inactive.
  const events = await collect(
    (options) => client.taskGroup.events(groupId, {}, options),
    'taskGroup.events',
  );
  check('taskGroup.events', () => {
    const stateEvents = events.filter((e) => e.type === 'task_run.state');
    const statusEvents = events.filter((e) => e.type === 'task_group_status');
    assert.equal(stateEvents.length, RUNS, 'one task_run.state per run');
    assert.equal(statusEvents.length, 2, 'status after the add and at the end');
    assert.equal(events.length, RUNS + 2, `no other events: ${JSON.stringify(events.map((e) => e.type))}`);
    // Event ids: decimal strings, strictly increasing.
    let previous = -1n;
    for (const e of events) {
      assert.match(e.event_id, EVENT_ID);
      assert.ok(BigInt(e.event_id) > previous, 'event ids increase');
      previous = BigInt(e.event_id);
    }
    // The first is the status recorded right after the add.
    assert.equal(events[0].type, 'task_group_status');
    assert.equal(events[0].status.num_task_runs, RUNS);
    assert.equal(events[0].status.is_active, true);
    // Each run finished exactly once, completed, as recorded.
    assert.deepEqual(
      stateEvents.map((e) => e.run.run_id).sort(),
      [...runIds].sort(),
    );
    for (const e of stateEvents) {
      const i = runIds.indexOf(e.run.run_id);
      assertRun(e.run, { status: 'completed', groupId, metadata: runMetadata(i) });
      assert.equal(e.input ?? null, null);
      assert.equal(e.output ?? null, null);
    }
    // The last is the group turning inactive.
    const last = events[events.length - 1];
    assert.equal(last.type, 'task_group_status');
    assert.equal(last.status.is_active, false);
    assert.equal(last.status.num_task_runs, RUNS);
    assert.deepEqual(last.status.task_run_status_counts, { completed: RUNS });
  });

  // 4. Read every run with its output.
  const runEvents = await collect(
    (options) => client.taskGroup.getRuns(groupId, { include_output: true }, options),
    'taskGroup.getRuns',
  );
  check('taskGroup.getRuns', () => {
    assert.equal(runEvents.length, RUNS);
    // In the order the runs were added.
    assert.deepEqual(
      runEvents.map((e) => e.run?.run_id),
      runIds,
    );
    let previous = -1n;
    runEvents.forEach((e, i) => {
      assert.equal(e.type, 'task_run.state');
      assert.match(e.event_id, EVENT_ID);
      assert.ok(BigInt(e.event_id) > previous, 'run cursors increase');
      previous = BigInt(e.event_id);
      assertRun(e.run, { status: 'completed', groupId, metadata: runMetadata(i) });
      assert.equal(e.input ?? null, null, 'no input unless include_input');
      assertJsonOutput(e.output);
    });
  });

  // 5. The group, now finished.
  const finished = await client.taskGroup.retrieve(groupId);
  check('taskGroup.retrieve', () => {
    assert.equal(finished.taskgroup_id, groupId);
    assert.deepEqual(finished.metadata, groupMetadata);
    assert.equal(finished.created_at, group.created_at);
    assert.equal(finished.status.num_task_runs, RUNS);
    assert.equal(finished.status.is_active, false);
    assert.deepEqual(finished.status.task_run_status_counts, { completed: RUNS });
    assert.equal(finished.status.status_message, null);
    assert.match(finished.status.modified_at, TIMESTAMP);
  });

  // 6. One run of the group: the slow one, whose metadata holds a number.
  const slowRun = await client.taskGroup.retrieveRun(runIds[SLOW_INDEX], { taskgroup_id: groupId });
  check('taskGroup.retrieveRun', () => {
    assert.equal(slowRun.run_id, runIds[SLOW_INDEX]);
    assertRun(slowRun, { status: 'completed', groupId, metadata: { mock_delay_ms: 200 } });
  });

  // 7. A standalone run, waited for with result().
  const created = await client.taskRun.create({
    input: 'What was the GDP of France in 2023?',
    processor: 'lite',
    metadata: { smoke: 'standalone' },
    task_spec: { output_schema: { type: 'json', json_schema: OUTPUT_SCHEMA } },
  });
  check('taskRun.create', () => {
    assertRun(created, { status: 'queued', groupId: null, metadata: { smoke: 'standalone' } });
    assert.equal(created.warnings ?? null, null);
  });
  const result = await client.taskRun.result(created.run_id, { timeout: 30 });
  check('taskRun.result', () => {
    assertRun(result.run, { status: 'completed', groupId: null, metadata: { smoke: 'standalone' } });
    assert.equal(result.run.run_id, created.run_id);
    assertJsonOutput(result.output);
  });

  // 8. A follow-up of that run, and of a run that never was: the SDK
  // throws its 422 class, whose message names the field.
  const followUp = await client.taskRun.create({
    input: 'And in 2024?',
    processor: 'lite',
    previous_interaction_id: created.interaction_id,
  });
  check('taskRun.create follow-up', () => {
    assertRun(followUp, { status: 'queued', groupId: null, metadata: null });
  });
  let refused = null;
  try {
    await client.taskRun.create({
      input: 'x',
      processor: 'lite',
      previous_interaction_id: `trun_${'0'.repeat(32)}`,
    });
  } catch (err) {
    refused = err;
  }
  check('taskRun.create unknown previous_interaction_id', () => {
    assert.ok(refused instanceof Parallel.UnprocessableEntityError, `got ${refused}`);
    assert.equal(refused.status, 422);
    assert.match(refused.message, /previous_interaction_id/);
    assert.deepEqual(refused.error.error.detail.errors[0].loc, ['body', 'previous_interaction_id']);
  });

  console.log(`ts smoke: ${checks} checks passed`);
}

main().catch((err) => {
  console.error(`ts smoke: FAILED after ${checks} checks passed`);
  console.error(err);
  process.exit(1);
});

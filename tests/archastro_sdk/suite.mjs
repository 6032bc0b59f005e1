// The ArchAstro face driven by the official TypeScript SDK
// (`@archastro/sdk` 0.19.0, pinned in package.json and its lock file),
// run by tests/archastro_sdk.rs against a fresh `taskyard serve
// --test-clock`:
//   TASKYARD_BASE_URL=http://127.0.0.1:PORT TASKYARD_API_KEY=sk_... node suite.mjs
//
// Agents: `agi_scribe` runs historian.mjs (it names its turn, input and
// the earlier turns' inputs), `agi_slow` a mock that takes seconds (to be
// cancelled), `agi_core` the default mock. Every method of spec section 4
// is called and its answer checked; any failure exits non-zero.

import assert from 'node:assert/strict';
import { ApiError, PlatformClient } from '@archastro/sdk';

const baseUrl = process.env.TASKYARD_BASE_URL;
const apiKey = process.env.TASKYARD_API_KEY;
if (!baseUrl || !apiKey) {
  console.error('archastro suite: TASKYARD_BASE_URL and TASKYARD_API_KEY must be set');
  process.exit(2);
}

/// Longest wait for any condition (a turn to end, a stream to close).
const DEADLINE_MS = 30_000;
/// Between two looks at a condition.
const LOOK_MS = 20;

const client = PlatformClient.withSecretKey(apiKey, baseUrl);
const SESSION_ID = /^ase_[0-9A-Za-z]{22}$/;
const ROUTINE_ID = /^arn_[0-9A-Za-z]{22}$/;
const RUN_ID = /^arr_[0-9A-Za-z]{22}$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const TERMINAL = ['completed', 'failed', 'cancelled', 'skipped'];

let checks = 0;
async function check(name, fn) {
  try {
    await fn();
  } catch (err) {
    err.message = `${name}: ${err.message}`;
    throw err;
  }
  checks += 1;
  console.log(`ok ${checks} ${name}`);
}

/** Looks at `look` until it answers something truthy, or fails at the deadline. */
async function until(label, look) {
  const end = Date.now() + DEADLINE_MS;
  for (;;) {
    const value = await look();
    if (value) return value;
    if (Date.now() > end) throw new Error(`no ${label} within ${DEADLINE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, LOOK_MS));
  }
}

/** Every event of an SDK stream, read until the server closes it. */
async function readAll(stream) {
  const events = [];
  const timer = setTimeout(() => {
    console.error('archastro suite: a stream did not end');
    process.exit(3);
  }, DEADLINE_MS);
  for await (const event of stream) events.push(event);
  clearTimeout(timer);
  return events;
}

/** The ApiError `call` throws. */
async function apiError(call) {
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof ApiError, `expected ApiError, got ${err}`);
    return err;
  }
  assert.fail('expected an ApiError');
}

async function completed(id) {
  return until(`session ${id} completed`, async () => {
    const session = await client.agent_sessions.get(id);
    assert.ok(!['failed', 'cancelled'].includes(session.status), JSON.stringify(session));
    return session.status === 'completed' && session;
  });
}

// ---- sessions ----

let session;
await check('session create answers 201 with every key, null when unset', async () => {
  session = await client.agent_sessions.create({
    agent: 'agi_scribe',
    instructions: 'Summarize the report',
    name: 'report',
  });
  assert.match(session.id, SESSION_ID);
  assert.equal(session.agent, 'agi_scribe');
  assert.ok(['pending', 'running', 'completed'].includes(session.status), session.status);
  assert.equal(session.error, null);
  assert.deepEqual(session.metadata, {});
  assert.deepEqual(session.inbox, []);
  assert.equal(session.is_system_session, false);
  assert.equal(session.max_turns, 100);
  assert.match(session.created_at, TIMESTAMP);
});

await check('the first turn completes with the instructions as its input', async () => {
  const done = await completed(session.id);
  assert.deepEqual(done.result, { content: 'turn 1: Summarize the report; earlier: ' });
  assert.match(done.completed_at, TIMESTAMP);
  assert.equal(done.trajectory, `trj_${session.id.slice(4)}`);
});

await check('a message is a follow-up turn that sees the earlier one', async () => {
  const reopened = await client.agent_sessions.message(session.id, {
    content: 'And now in French',
    role: 'user',
  });
  assert.ok(['pending', 'running'].includes(reopened.status), reopened.status);
  assert.equal(reopened.result, null);
  assert.equal(reopened.inbox.length, 1);
  assert.equal(reopened.inbox[0].content, 'And now in French');
  assert.equal(reopened.inbox[0].role, 'user');
  const done = await completed(session.id);
  assert.deepEqual(done.result, {
    content: 'turn 2: And now in French; earlier: Summarize the report',
  });
});

await check('a third message, its stream read to the end, completes in order', async () => {
  await client.agent_sessions.message(session.id, { content: 'Shorter' });
  const events = await readAll(client.agent_sessions.stream(session.id));
  assert.ok(events.length >= 1);
  for (const event of events) assert.equal(event.event, 'session_update');
  const statuses = events.map((event) => event.data.status);
  assert.deepEqual([...new Set(statuses)], statuses, 'one event per status change');
  const last = events.at(-1).data;
  assert.equal(last.status, 'completed');
  assert.deepEqual(last.result, {
    content: 'turn 3: Shorter; earlier: Summarize the report | And now in French',
  });
  assert.equal(last.inbox.length, 2);
});

await check('update replaces the metadata', async () => {
  const updated = await client.agent_sessions.update(session.id, { metadata: { team: 'red' } });
  assert.deepEqual(updated.metadata, { team: 'red' });
  assert.equal((await client.agent_sessions.get(session.id)).metadata.team, 'red');
});

await check('list filters by agent in both forms, and by status', async () => {
  const ids = (page) => page.data.map((s) => s.id);
  assert.ok(ids(await client.agent_sessions.list({ agent: ['agi_scribe'] })).includes(session.id));
  // 0.5.3's single `agent` string travels as `agent=`.
  assert.ok(ids(await client.agent_sessions.list({ agent: 'agi_scribe' })).includes(session.id));
  assert.ok(!ids(await client.agent_sessions.list({ agent: ['agi_core'] })).includes(session.id));
  assert.ok(
    ids(await client.agent_sessions.list({ status: ['completed'], limit: 100 })).includes(session.id),
  );
  assert.ok(!ids(await client.agent_sessions.list({ status: ['running'] })).includes(session.id));
  assert.deepEqual((await client.agent_sessions.list({ routineRun: ['arr_x'] })).data, []);
});

await check('an idle session waits for its first message', async () => {
  const idle = await client.agent_sessions.create({
    agent: 'agi_scribe',
    instructions: 'Be brief',
    start_idle: true,
  });
  assert.equal(idle.status, 'waiting');
  assert.equal(idle.started_at, null);
  const events = await readAll(client.agent_sessions.stream(idle.id));
  assert.deepEqual(events.map((e) => e.data.status), ['waiting']);
  await client.agent_sessions.message(idle.id, { content: 'Hello' });
  const done = await completed(idle.id);
  assert.deepEqual(done.result, { content: 'turn 1: Be brief\n\nHello; earlier: ' });
});

await check('cancel ends a running session, which then refuses messages (422)', async () => {
  const slow = await client.agent_sessions.create({ agent: 'agi_slow', instructions: 'Take your time' });
  const cancelled = await client.agent_sessions.cancel(slow.id);
  assert.equal(cancelled.status, 'cancelled');
  assert.equal((await client.agent_sessions.cancel(slow.id)).status, 'cancelled', 'idempotent');
  const error = await apiError(() => client.agent_sessions.message(slow.id, { content: 'more' }));
  assert.equal(error.status, 422);
  assert.equal(error.errorCode, 'validation_failed');
});

await check('delete answers 204 (undefined); the session is then 404', async () => {
  assert.equal(await client.agent_sessions.delete(session.id), undefined);
  const error = await apiError(() => client.agent_sessions.get(session.id));
  assert.equal(error.status, 404);
  assert.equal(error.errorCode, 'not_found');
});

await check('unknown ids are ApiError 404, bad input ApiError 422 naming the field', async () => {
  const missing = await apiError(() => client.agent_sessions.get('ase_0000000000000000000000'));
  assert.equal(missing.status, 404);
  assert.equal(missing.errorCode, 'not_found');
  const agent = await apiError(() =>
    client.agent_sessions.create({ agent: 'agi_nobody', instructions: 'x' }),
  );
  assert.equal(agent.status, 404);
  const invalid = await apiError(() => client.agent_sessions.create({ agent: 'agi_core' }));
  assert.equal(invalid.status, 422);
  assert.equal(invalid.errorCode, 'validation_failed');
  assert.match(invalid.message, /instructions: is required/);
  const routine = await apiError(() => client.agent_routines.get('arn_missing'));
  assert.equal(routine.status, 404);
  const run = await apiError(() => client.agent_routines.agent_routine_runs.get('arr_missing'));
  assert.equal(run.status, 404);
});

// ---- routines ----

await check('presets lists do_task', async () => {
  const presets = await client.agent_routines.presets();
  assert.ok(Array.isArray(presets));
  assert.deepEqual(presets.map((p) => p.name), ['do_task']);
  assert.deepEqual(presets[0].applicable_events, ['*']);
});

let routine;
await check('a routine is made under its agent, as a draft', async () => {
  routine = await client.agents.agentRoutines('agi_scribe', {
    name: 'Digest',
    handler_type: 'preset',
    preset_name: 'do_task',
    preset_config: { instructions: 'Write the digest' },
    lookup_key: 'digest',
  });
  assert.match(routine.id, ROUTINE_ID);
  assert.equal(routine.status, 'draft');
  assert.equal(routine.agent, 'agi_scribe');
  assert.equal(routine.app, 'dap_local');
  assert.equal(routine.schedule, null);
  const bad = await apiError(() =>
    client.agents.agentRoutines('agi_scribe', { handler_type: 'preset' }),
  );
  assert.equal(bad.status, 422);
  assert.match(bad.message, /name: is required/);
});

await check('a draft is not invoked (422); activate makes it active', async () => {
  const error = await apiError(() =>
    client.agent_routines.invoke(routine.id, { message: 'too early' }),
  );
  assert.equal(error.status, 422);
  const active = await client.agent_routines.activate(routine.id);
  assert.equal(active.status, 'active');
});

let run;
await check('invoke runs the saved task with the message; the run reads back', async () => {
  run = await client.agent_routines.invoke(routine.id, {
    message: 'Run it now',
    idempotency_key: 'first',
    metadata: { origin: 'suite' },
  });
  assert.match(run.id, RUN_ID);
  assert.equal(run.routine, routine.id);
  assert.deepEqual(run.payload, { message: 'Run it now', metadata: { origin: 'suite' } });
  assert.deepEqual(run.delivery, { type: 'none', status: 'not_requested' });
  const events = await readAll(client.agent_routine_runs.stream(run.id));
  for (const event of events) assert.equal(event.event, 'run_update');
  assert.equal(events.at(-1).data.status, 'completed');
  const done = await client.agent_routines.agent_routine_runs.get(run.id);
  assert.equal(done.status, 'completed');
  assert.deepEqual(done.result, { content: 'turn 1: Write the digest\n\nRun it now; earlier: ' });
  assert.equal(done.worker.status, 'completed');
  assert.equal(typeof done.duration_ms, 'number');
});

await check('the same idempotency_key after the run ended is a 409', async () => {
  const error = await apiError(() =>
    client.agent_routines.invoke(routine.id, { message: 'again', idempotency_key: 'first' }),
  );
  assert.equal(error.status, 409);
  assert.equal(error.errorCode, 'conflict');
});

await check('invoke by lookup_key; journal; runs page; the top-level list', async () => {
  const second = await client.agent_routines.invoke('digest', { message: 'By key' });
  await until('the second run', async () =>
    TERMINAL.includes((await client.agent_routines.agent_routine_runs.get(second.id)).status));
  const journal = await client.agent_routines.agent_routine_runs.journal(run.id);
  assert.deepEqual(journal, {
    data: [], has_more: false, journal: null, after_cursor: null, before_cursor: null,
  });
  const page = await client.agent_routines.runs(routine.id);
  assert.deepEqual(page.data.map((r) => r.id), [second.id, run.id]);
  assert.equal(page.before_cursor, null);
  assert.equal(page.after_cursor, null);
  const first = await client.agent_routines.runs(routine.id, { limit: 1 });
  assert.deepEqual(first.data.map((r) => r.id), [second.id]);
  const older = await client.agent_routines.runs(routine.id, { limit: 1, beforeCursor: first.before_cursor });
  assert.deepEqual(older.data.map((r) => r.id), [run.id]);
  const all = await client.agent_routine_runs.list({ agent: ['agi_scribe'] });
  assert.ok(all.data.map((r) => r.id).includes(run.id));
  const none = await client.agent_routine_runs.list({ agent: ['agi_core'] });
  assert.ok(!none.data.map((r) => r.id).includes(run.id));
});

await check('get, update and list routines', async () => {
  assert.equal((await client.agent_routines.get(routine.id)).name, 'Digest');
  const updated = await client.agent_routines.update(routine.id, { description: 'Daily digest' });
  assert.equal(updated.description, 'Daily digest');
  assert.equal(updated.name, 'Digest', 'unsent fields stay');
  const listed = await client.agent_routines.list({ agent: ['agi_scribe'] });
  assert.ok(listed.data.map((r) => r.id).includes(routine.id));
  const hourly = await apiError(() => client.agent_routines.update(routine.id, { schedule: '*/5 * * * *' }));
  assert.equal(hourly.status, 422);
  assert.match(hourly.message, /schedule/);
});

await check('a scheduled routine fires when the test clock passes its cron; pause stops it', async () => {
  const scheduled = await client.agents.agentRoutines('agi_scribe', {
    name: 'Hourly',
    handler_type: 'preset',
    preset_name: 'do_task',
    preset_config: { instructions: 'Tick' },
    schedule: '0 * * * *',
  });
  assert.equal((await client.agent_routines.activate(scheduled.id)).status, 'active');
  const moved = await fetch(`${baseUrl}/taskyard/clock`, {
    method: 'POST',
    headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
    body: JSON.stringify({ advance_s: 3600 }),
  });
  assert.equal(moved.status, 200, await moved.text());
  const fired = await until('a scheduled run', async () =>
    (await client.agent_routines.runs(scheduled.id)).data[0]);
  assert.deepEqual(fired.payload, {});
  const events = await readAll(client.agent_routine_runs.stream(fired.id));
  assert.equal(events.at(-1).data.status, 'completed');
  assert.deepEqual(events.at(-1).data.result, { content: 'turn 1: Tick; earlier: ' });
  assert.equal((await client.agent_routines.pause(scheduled.id)).status, 'paused');
  const paused = await apiError(() => client.agent_routines.invoke(scheduled.id, { message: 'x' }));
  assert.equal(paused.status, 422);
});

await check('delete answers 204 (undefined); the routine is 404, its runs stay', async () => {
  assert.equal(await client.agent_routines.delete(routine.id), undefined);
  const error = await apiError(() => client.agent_routines.get(routine.id));
  assert.equal(error.status, 404);
  assert.equal((await client.agent_routines.agent_routine_runs.get(run.id)).status, 'completed');
});

await check('a base URL ending in / still reaches the face (slashes collapse)', async () => {
  const slashed = PlatformClient.withSecretKey(apiKey, `${baseUrl}/`);
  assert.deepEqual((await slashed.agent_routines.presets()).map((p) => p.name), ['do_task']);
});

console.log(`archastro suite: ${checks} checks passed`);

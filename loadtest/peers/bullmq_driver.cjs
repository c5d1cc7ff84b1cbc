// BullMQ's side of `just bench`: one workload (w1, w2, w4, w7, enqueue, or w3-enqueue: W3's jobs,
// whose worker py_peers.py runs and kills itself) against the redis-server on
// BENCH_REDIS_PORT, with BullMQ's own producer API and one worker process (bullmq_worker.cjs,
// which reads BENCH_CONCURRENCY and BENCH_HANDLER from the environment passed on); prints one
// JSON object. Run by loadtest/peers/py_peers.py, which starts the fresh redis-server and
// ends everything by pid.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Queue } = require('bullmq');
const IORedis = require('ioredis');

const W1_TASKS = Number(process.env.BENCH_TASKS || '10000');
const W1_DRAIN_LIMIT_MS = 20000; // as harness.SIZES["w1_drain_limit_s"]
const ENQUEUE = JSON.parse(process.env.BENCH_ENQUEUE || '{}'); // sizes of the enqueue workload
const [W2_TASKS, W2_SPREAD_MS, W2_LEAD_MS, W2_GRACE_MS] = [2000, 10000, 1500, 3000];
const [W4_TASKS, W4_PAYLOAD] = [100000, 100];
const FAR_FUTURE_MS = 2 * 3600 * 1000;
const BOOT_MS = 3000;
const BULK = 1000;

const port = Number(process.env.BENCH_REDIS_PORT);
const tmp = process.env.BENCH_TMP;
const connection = { host: '127.0.0.1', port };
const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function startWorker(records) {
  const log = fs.openSync(records + '.log', 'a');
  return spawn(process.execPath, [path.join(__dirname, 'bullmq_worker.cjs')], {
    env: { ...process.env, BENCH_RECORDS: records },
    stdio: ['ignore', log, log],
  });
}

async function stopWorker(child) {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
  await exited;
  clearTimeout(timer);
}

function countRecords(file) {
  try {
    return Math.floor(fs.statSync(file).size / 16);
  } catch {
    return 0;
  }
}

async function waitForRecords(file, count, limitMs) {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline && countRecords(file) < count) await sleep(10);
  return countRecords(file) >= count;
}

function readRecords(file) {
  const data = fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0);
  const out = [];
  for (let i = 0; i + 16 <= data.length; i += 16) {
    out.push([data.readDoubleLE(i), data.readDoubleLE(i + 8)]);
  }
  return out;
}

async function addAll(queue, jobs) {
  for (let i = 0; i < jobs.length; i += BULK) await queue.addBulk(jobs.slice(i, i + BULK));
}

async function w1(queue) {
  const jobs = Array.from({ length: W1_TASKS }, () => ({ name: 'noop', data: { due: 0 } }));
  const start = nowMs();
  await addAll(queue, jobs);
  const enqueuePerS = W1_TASKS / ((nowMs() - start) / 1000);
  const records = path.join(tmp, 'w1.rec');
  const child = startWorker(records);
  const complete = await waitForRecords(records, W1_TASKS, W1_DRAIN_LIMIT_MS + BOOT_MS);
  await stopWorker(child);
  // The rate itself is computed by the Python side from the records (one formula for all).
  return { enqueue_per_s: enqueuePerS, complete, records };
}

async function w2(queue) {
  const records = path.join(tmp, 'w2.rec');
  const child = startWorker(records);
  await sleep(BOOT_MS);
  const base = nowMs() + W2_LEAD_MS;
  const due = Array.from({ length: W2_TASKS }, (_, i) =>
    Math.floor(base + (i * W2_SPREAD_MS) / W2_TASKS),
  );
  for (let i = 0; i < due.length; i += BULK) {
    // created "now" with delay = due - now, so each job is due exactly at its due time
    const now = Date.now();
    const chunk = due.slice(i, i + BULK).map((d) => ({
      name: 'noop',
      data: { due: d },
      opts: { timestamp: now, delay: Math.max(d - now, 0) },
    }));
    await queue.addBulk(chunk);
  }
  await waitForRecords(records, W2_TASKS, Math.max(due[due.length - 1] + W2_GRACE_MS - nowMs(), 100));
  await sleep(200);
  await stopWorker(child);
  return { due, records };
}

async function timed(count, body) {
  const start = nowMs();
  await body();
  return count / ((nowMs() - start) / 1000);
}

// One at a time (await queue.add), batched (addBulk of 1,000), concurrent (queue.add with
// `inflight` calls in flight), 100-byte payloads: the same shapes as atp's enqueue workload.
async function enqueue(queue) {
  const data = { due: 0, p: 'x'.repeat(100) };
  for (let i = 0; i < (ENQUEUE.warmup || 200); i++) await queue.add('noop', data); // not counted
  const seq = ENQUEUE.sequential || 3000;
  const sequential = await timed(seq, async () => {
    for (let i = 0; i < seq; i++) await queue.add('noop', data);
  });
  const bulk = ENQUEUE.batched || 20000;
  const batch = Array.from({ length: BULK }, () => ({ name: 'noop', data }));
  const batched = await timed(Math.floor(bulk / BULK) * BULK, async () => {
    for (let i = 0; i + BULK <= bulk; i += BULK) await queue.addBulk(batch);
  });
  const conc = ENQUEUE.concurrent || 20000;
  let left = conc;
  const caller = async () => {
    while (left > 0) {
      left -= 1;
      await queue.add('noop', data);
    }
  };
  const inflight = ENQUEUE.inflight || 100;
  const concurrent = await timed(conc, () => Promise.all(Array.from({ length: inflight }, caller)));
  return { sequential_per_s: sequential, batched_per_s: batched, concurrent_per_s: concurrent };
}

// W3's jobs: numbered 0..N-1 (job.data.due carries the number), added before any worker runs.
async function w3Enqueue(queue) {
  const count = Number(process.env.BENCH_TASKS || '40');
  await queue.addBulk(Array.from({ length: count }, (_, n) => ({ name: 'sleep', data: { due: n } })));
  return { added: count };
}

async function usedMemory(redis) {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)[1]);
}

async function w4(queue) {
  const redis = new IORedis(connection);
  const job = (data) => ({ name: 'noop', data, opts: { delay: FAR_FUTURE_MS } });
  await queue.addBulk([job({ due: 0, p: 'x' })]);
  await sleep(500);
  const before = await usedMemory(redis);
  const payload = 'p'.repeat(W4_PAYLOAD);
  await addAll(queue, Array.from({ length: W4_TASKS }, () => job({ due: 0, p: payload })));
  await sleep(500);
  const perTask = ((await usedMemory(redis)) - before) / W4_TASKS;
  await redis.quit();
  return { bytes_per_task: perTask, beyond_payload: perTask - W4_PAYLOAD };
}

// W7: 3-step chains as BullMQ flows (a parent runs after its child: s0 is the innermost
// child, s2 the root); job.data.due is the step's record mark (run * 4 + step).
const W7 = JSON.parse(process.env.BENCH_W7 || '{}'); // runs, handoff_runs, gap_ms, limit_ms

function chainFlow(n) {
  const node = (k, children) => ({ name: `s${k}`, queueName: 'bench', data: { due: n * 4 + k }, children });
  return node(2, [node(1, [node(0)])]);
}

async function w7(queue) {
  const { FlowProducer } = require('bullmq');
  const flows = new FlowProducer({ connection });
  const throughput = path.join(tmp, 'w7-throughput.rec');
  const all = Array.from({ length: W7.runs }, (_, n) => chainFlow(n));
  for (let i = 0; i < all.length; i += 100) await flows.addBulk(all.slice(i, i + 100));
  let child = startWorker(throughput);
  await waitForRecords(throughput, W7.runs * 3, W7.limit_ms + BOOT_MS);
  await stopWorker(child);
  const handoff = path.join(tmp, 'w7-handoff.rec');
  child = startWorker(handoff);
  const first = 1000000;
  for (let n = first - 5; n < first; n++) await flows.add(chainFlow(n)); // warm-up
  await waitForRecords(handoff, 15, BOOT_MS + 30000);
  const skip = countRecords(handoff);
  const began = nowMs();
  for (let i = 0; i < W7.handoff_runs; i++) {
    await sleep(Math.max(began + i * W7.gap_ms - nowMs(), 0));
    await flows.add(chainFlow(first + i));
  }
  await waitForRecords(handoff, skip + W7.handoff_runs * 3, W7.limit_ms);
  await stopWorker(child);
  await flows.close();
  return { throughput, handoff, skip };
}

async function main() {
  const workload = { w1, w2, w4, w7, enqueue, 'w3-enqueue': w3Enqueue }[process.argv[2]];
  if (!workload) throw new Error('usage: bullmq_driver.cjs w1|w2|w4|w7|enqueue|w3-enqueue');
  const queue = new Queue('bench', { connection });
  const killer = setTimeout(() => process.exit(3), 240000); // bounded, whatever happens
  try {
    const result = await workload(queue);
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await queue.close();
    clearTimeout(killer);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

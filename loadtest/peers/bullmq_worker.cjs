// The BullMQ worker of the benchmarks: a processor that appends a start record (two
// little-endian float64s: due ms, start ms; see loadtest/harness.py) per job.
// env: BENCH_REDIS_PORT, BENCH_RECORDS, BENCH_CONCURRENCY (default 10),
// BENCH_HANDLER: noop (default) | incr (then one INCR on a counter key over its own ioredis
// connection: the async equivalent of the Python systems' sync handler) | sleep (W3: sleeps
// BENCH_SLEEP_S, then records the finish in BENCH_FINISHES; job.data.due is the task number).
'use strict';
const fs = require('node:fs');
const { Worker } = require('bullmq');
const IORedis = require('ioredis');

const COUNTER_KEY = 'bench:counter';
const fd = fs.openSync(process.env.BENCH_RECORDS, 'a');
const connection = { host: '127.0.0.1', port: Number(process.env.BENCH_REDIS_PORT) };
const concurrency = Number(process.env.BENCH_CONCURRENCY || '10');
const kind = process.env.BENCH_HANDLER || 'noop';

const buf = Buffer.alloc(16); // one buffer: writeSync is synchronous
function record(file, due) {
  buf.writeDoubleLE(due, 0);
  buf.writeDoubleLE(performance.timeOrigin + performance.now(), 8);
  fs.writeSync(file, buf);
}

function processor() {
  if (kind === 'incr') {
    const counter = new IORedis(connection);
    return async (job) => {
      record(fd, job.data.due);
      await counter.incr(COUNTER_KEY);
    };
  }
  if (kind === 'sleep') {
    const finishes = fs.openSync(process.env.BENCH_FINISHES, 'a');
    const ms = Number(process.env.BENCH_SLEEP_S || '3') * 1000;
    return async (job) => {
      record(fd, job.data.due);
      await new Promise((r) => setTimeout(r, ms));
      record(finishes, job.data.due);
    };
  }
  return async (job) => record(fd, job.data.due);
}

const worker = new Worker('bench', processor(), { connection, concurrency });
worker.on('error', (err) => console.error('worker error', err));

const stop = async () => {
  await worker.close(true);
  fs.closeSync(fd);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, 300_000).unref(); // bounded, whatever happens

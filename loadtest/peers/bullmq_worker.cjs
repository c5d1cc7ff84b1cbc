// The BullMQ worker of the benchmarks: one no-op processor that appends a start record
// (two little-endian float64s: due ms, start ms; see loadtest/harness.py) per job.
// env: BENCH_REDIS_PORT, BENCH_RECORDS, BENCH_CONCURRENCY (default 10: BullMQ's own default of 1
// moves about half as many no-op jobs per second here).
'use strict';
const fs = require('node:fs');
const { Worker } = require('bullmq');

const fd = fs.openSync(process.env.BENCH_RECORDS, 'a');
const record = Buffer.alloc(16);
const connection = { host: '127.0.0.1', port: Number(process.env.BENCH_REDIS_PORT) };
const concurrency = Number(process.env.BENCH_CONCURRENCY || '10');

const worker = new Worker(
  'bench',
  async (job) => {
    record.writeDoubleLE(job.data.due, 0);
    record.writeDoubleLE(performance.timeOrigin + performance.now(), 8);
    fs.writeSync(fd, record);
  },
  { connection, concurrency },
);
worker.on('error', (err) => console.error('worker error', err));

const stop = async () => {
  await worker.close(true);
  fs.closeSync(fd);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, 300_000).unref(); // bounded, whatever happens

// Send one pre-built message COUNT times through a Nodemailer pool, then print
// {"wall": seconds, "cpu": seconds, "sent": n} as JSON on stdout.
//
// Driven by benchmarks/bench.py (clients_ext.py), which installs nodemailer into
// benchmarks/.node/ on first use.  Usage:
//   node nodemailer_driver.js '{"host": ..., "port": ..., "count": ..., "connections": ...,
//                               "file": "message.eml", "sender": ..., "recipient": ...,
//                               "ca_file": null | "ca.pem"}'
// The timing covers creating the transport, every send and closing the pool, so
// node's own start-up (about 40 ms of CPU) is not charged to the messages.
"use strict";

const fs = require("fs");
const nodemailer = require("nodemailer");

async function main() {
  const opts = JSON.parse(process.argv[2]);
  const raw = fs.readFileSync(opts.file);
  const tls = opts.ca_file
    ? { requireTLS: true, tls: { ca: [fs.readFileSync(opts.ca_file)] } }
    : { ignoreTLS: true };
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const transport = nodemailer.createTransport({
    pool: true,
    host: opts.host,
    port: opts.port,
    secure: false,
    maxConnections: opts.connections,
    maxMessages: Infinity,
    name: "client.example.com",
    ...tls,
  });
  const envelope = { from: opts.sender, to: [opts.recipient] };
  const sends = [];
  for (let i = 0; i < opts.count; i++) {
    sends.push(transport.sendMail({ envelope, raw }));
  }
  const infos = await Promise.all(sends);
  transport.close();
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  const used = process.cpuUsage(cpu0);
  const bad = infos.filter((info) => info.accepted.length !== 1 || info.rejected.length);
  if (bad.length) {
    throw new Error(`${bad.length} messages not accepted: ${JSON.stringify(bad[0])}`);
  }
  const cpu = (used.user + used.system) / 1e6;
  process.stdout.write(JSON.stringify({ wall, cpu, sent: infos.length }) + "\n");
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});

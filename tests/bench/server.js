// The benchmarks' WebSocket server: Node + the `ws` package, on 127.0.0.1.
//
// It is never the bottleneck: every frame it streams is built once, in
// advance, and written to the socket in batches of about 1 MiB (waiting for
// 'drain' between them). Started by tests/bench/run.py; prints
// "listening <port>" on stdout once ready.
//
//   node server.js [--port 0] [--messages FILE] [--fleet-interval 0.5]
//
// What a client gets depends on the path it asks for:
//
//   /stream/<count>/<size>/<text|binary>   after the client's first message
//       ("go"), <count> frames of <size> bytes; nothing else.
//   /echo                                  every message is sent back.
//   /octoprint/<count>/sockjs/<server>/<session>/websocket
//       SockJS: "o", then a[{"connected": ...}]; after the client's first
//       message, <count> frames a[{"current": ...}] cycling through the
//       messages in FILE (a JSON array of `current` payloads).
//   /fleet/sockjs/<server>/<session>/websocket
//       SockJS: "o", a[{"connected": ...}], then a[{"current": ...}] every
//       --fleet-interval seconds (one timer for every socket; the frames are
//       pre-built), and "h" every 25 s.
//
// Every stream ends by itself (bounded count); the fleet runs until the
// process is stopped (run.py bounds it in time).

"use strict";

const fs = require("fs");
const path = require("path");
const { WebSocketServer } = require(path.join(__dirname, "../../.servers/bench-node/node_modules/ws"));

const args = { port: 0, messages: null, fleetInterval: 0.5 };
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i];
  const value = process.argv[i + 1];
  if (name === "--port") args.port = Number(value);
  else if (name === "--messages") args.messages = value;
  else if (name === "--fleet-interval") args.fleetInterval = Number(value);
  else throw new Error(`unknown option ${name}`);
}

const BATCH = 1 << 20;

function frame(opcode, payload) {
  const n = payload.length;
  let header;
  if (n < 126) {
    header = Buffer.from([0x80 | opcode, n]);
  } else if (n < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(n, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([header, payload]);
}

const textFrame = (s) => frame(0x1, Buffer.from(s, "utf8"));

// The `current` payloads, as SockJS frames, built once.
let currentFrames = [];
if (args.messages) {
  const payloads = JSON.parse(fs.readFileSync(args.messages, "utf8"));
  currentFrames = payloads.map((p) => textFrame("a" + JSON.stringify([{ current: p }])));
}
const CONNECTED = textFrame(
  "a" +
    JSON.stringify([
      {
        connected: {
          version: "1.11.8",
          display_version: "1.11.8",
          branch: null,
          python_version: "3.11.9",
          plugin_hash: "0".repeat(32),
          config_hash: "1".repeat(32),
          debug: false,
          safe_mode: null,
          online: null,
          permissions: [],
        },
      },
    ]),
);
const OPEN = textFrame("o");
const HEARTBEAT = textFrame("h");

// Batches of whole frames, each about BATCH bytes: frames[i % frames.length].
function batches(frames, count) {
  const out = [];
  let parts = [];
  let size = 0;
  for (let i = 0; i < count; i++) {
    const f = frames[i % frames.length];
    parts.push(f);
    size += f.length;
    if (size >= BATCH) {
      out.push(parts.length === 1 ? parts[0] : Buffer.concat(parts, size));
      parts = [];
      size = 0;
    }
  }
  if (parts.length) out.push(Buffer.concat(parts, size));
  return out;
}

// Built once per (count, size, kind): a run repeats the same request.
const cache = new Map();
function streamBatches(key, build) {
  if (!cache.has(key)) {
    if (cache.size > 8) cache.clear();
    cache.set(key, build());
  }
  return cache.get(key);
}

function pump(socket, list) {
  let i = 0;
  const next = () => {
    while (i < list.length) {
      if (socket.destroyed) return;
      if (!socket.write(list[i++])) {
        socket.once("drain", next);
        return;
      }
    }
  };
  next();
}

const fleet = new Set();
let fleetTick = 0;
setInterval(() => {
  if (!fleet.size || !currentFrames.length) return;
  const f = currentFrames[fleetTick++ % currentFrames.length];
  for (const socket of fleet) if (!socket.destroyed) socket.write(f);
}, args.fleetInterval * 1000).unref();
setInterval(() => {
  for (const socket of fleet) if (!socket.destroyed) socket.write(HEARTBEAT);
}, 25000).unref();

const wss = new WebSocketServer({ host: "127.0.0.1", port: args.port, backlog: 4096, maxPayload: 64 << 20 });

wss.on("connection", (ws, request) => {
  const socket = ws._socket;
  socket.setNoDelay(true);
  ws.on("error", () => {}); // a client's protocol error ends its socket, never the server
  const parts = request.url.split("?")[0].split("/").filter(Boolean);
  const mode = parts[0];
  if (mode === "echo") {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    return;
  }
  if (mode === "stream") {
    const count = Number(parts[1]);
    const size = Number(parts[2]);
    const binary = parts[3] === "binary";
    const list = streamBatches(`s/${count}/${size}/${binary}`, () => {
      const payload = Buffer.alloc(size, binary ? 0xa5 : 0x61);
      return batches([frame(binary ? 0x2 : 0x1, payload)], count);
    });
    ws.once("message", () => pump(socket, list));
    return;
  }
  if (mode === "octoprint") {
    const count = Number(parts[1]);
    const list = streamBatches(`o/${count}`, () => batches(currentFrames, count));
    socket.write(Buffer.concat([OPEN, CONNECTED]));
    ws.once("message", () => pump(socket, list));
    return;
  }
  if (mode === "fleet") {
    socket.write(Buffer.concat([OPEN, CONNECTED]));
    fleet.add(socket);
    socket.on("close", () => fleet.delete(socket));
    return;
  }
  ws.close(1008, "unknown path");
});

wss.on("listening", () => {
  process.stdout.write(`listening ${wss.address().port}\n`);
});

process.on("SIGTERM", () => process.exit(0));

// A real rpc-websockets server for octoproto's integration tests.
//
// Started by tests/servers/rpc_server.py (which installs the npm packages):
//
//     node rpc_server.js JSON_PORT MSGPACK_PORT
//
// One process, two servers on 127.0.0.1 with the same methods and events:
// JSON_PORT speaks rpc-websockets' JSON-RPC 2.0 in text frames, MSGPACK_PORT
// uses a MessagePack data pack, so every message is one binary frame holding
// a msgpack map (the framing of msgpack-rpc-websockets, which is not on npm).
// Prints one "READY <json port> <msgpack port>" line once both listen.
"use strict";

const { Server } = require("rpc-websockets");
const { encode, decode } = require("@msgpack/msgpack");

const HOST = "127.0.0.1";

// rpc-websockets 10 takes any {encode, decode} pair. decode() gets a Buffer
// for every frame (ws hands text frames over as Buffers too), and a
// Uint8Array from encode() makes ws send a binary frame.
class MsgpackDataPack {
  encode(value) {
    return encode(value);
  }
  decode(value) {
    return decode(value);
  }
}

// What login accepts; the tests use the same values.
const USER = "octoproto";
const PASSWORD = "let-me-in";

function setUp(server) {
  server.register("sum", (params) => params.reduce((a, b) => a + b, 0));
  server.register("echo", (params) => (params === undefined ? null : params));
  server.register("protected_secret", () => "the secret").protected();
  server.register("fail", () => {
    throw new Error("it failed on purpose");
  });
  server.register("fail_structured", (params) => {
    throw server.createError(params.code, params.message, params.data);
  });
  // Replies after params[0] milliseconds (for timeouts and late replies).
  server.register("slow", (params) => {
    return new Promise((resolve) => setTimeout(() => resolve(params[0]), params[0]));
  });
  // Emits event "tick" in the shape params[0] names, to every subscriber.
  server.register("trigger", (params) => {
    const shape = params[0];
    if (shape === "empty") server.emit("tick");
    else if (shape === "object") server.emit("tick", { n: 1, s: "x" });
    else if (shape === "array") server.emit("tick", [1, "two", 3.5]);
    else if (shape === "spread") server.emit("tick", 1, 2);
    else if (shape === "secret") server.emit("secret_tick", "classified");
    else throw new Error("unknown shape " + shape);
    return true;
  });
  // Closes the caller's socket with params[0] as the code, after replying.
  server.register("close_me", (params, socketId) => {
    const socket = server.namespaces["/"].clients.get(socketId);
    setTimeout(() => socket.close(params[0], "asked to"), 20);
    return true;
  });
  // Answers with the socket's id (as set by ?socket_id=).
  server.register("whoami", (params, socketId) => socketId);
  server.setAuth((params) => params.user === USER && params.password === PASSWORD);

  server.event("tick");
  server.event("secret_tick").protected();

  // A second namespace with its own method and event.
  const chat = server.of("/chat");
  chat.register("post", (params) => {
    chat.emit("message", params[0]);
    return "posted";
  });
  chat.event("message");
}

function listen(port, dataPack) {
  return new Promise((resolve, reject) => {
    const server = new Server({ host: HOST, port }, dataPack);
    server.on("listening", () => resolve(server));
    server.on("error", reject);
    setUp(server);
  });
}

async function main() {
  const [jsonPort, msgpackPort] = process.argv.slice(2).map(Number);
  // stdin is a pipe from the process that started us: when it ends (that
  // process exited, even killed), so do we. No server outlives its tests.
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
  await listen(jsonPort);
  await listen(msgpackPort, new MsgpackDataPack());
  process.stdout.write(`READY ${jsonPort} ${msgpackPort}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});

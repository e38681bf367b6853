// run_v86.mjs: boot a Linux bzImage + initrd in the real v86 emulator (npm package `v86`)
// under Node.js, serial console on stdout, stdin to the serial port.
//
// This is pyv86's *peer*: benchmarks/boot.py times it against pyv86 and QEMU, and
// tests/interop drive it against `pyv86 relay serve`. The Python side is
// pyv86.peers.v86 (it installs this folder's node_modules and parses what we print).
//
//   node run_v86.mjs --bzimage K --initrd I --cmdline "console=ttyS0 ..." [--memory 128]
//        [--relay ws://127.0.0.1:PORT/] [--marker PYV86-READY] [--exit-on-marker]
//        [--timeout 300] [--bios FILE] [--vga-bios FILE] [--no-jit]
//
// stdout carries the guest's serial bytes only. Everything the runner says goes to stderr
// as lines starting with "v86-runner: "; the one the Python side reads is
//   v86-runner: marker {"marker": ..., "wall_s": ..., "emulator_s": ..., "instructions": ...,
//                       "user_cpu_s": ..., "system_cpu_s": ..., "main_thread_cpu_s": ...,
//                       "cpu_wait_s": ...}
// and, on every exit, the same object after "v86-runner: exit ".
// Exit status: 0 marker seen (with --exit-on-marker) or stopped by SIGTERM/SIGINT/stdin EOF
// with --quit-on-eof; 2 bad arguments or files; 3 timeout before the marker; 4 emulator error.

import fs from "node:fs";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

const T0 = performance.now();
const say = (msg) => process.stderr.write(`v86-runner: ${msg}\n`);
const fail = (status, msg) => { say(`error: ${msg}`); process.exit(status); };

let args;
try {
    ({ values: args } = parseArgs({
        options: {
            bzimage: { type: "string" },
            initrd: { type: "string" },
            cmdline: { type: "string", default: "console=ttyS0" },
            memory: { type: "string", default: "128" },
            relay: { type: "string" },
            marker: { type: "string", default: "PYV86-READY" },
            "exit-on-marker": { type: "boolean", default: false },
            "quit-on-eof": { type: "boolean", default: false },
            timeout: { type: "string", default: "0" },
            bios: { type: "string", default: "/usr/share/seabios/bios.bin" },
            "vga-bios": { type: "string", default: "/usr/share/seabios/vgabios-stdvga.bin" },
            "no-jit": { type: "boolean", default: false },
        },
        strict: true,
    }));
} catch (e) {
    fail(2, `${e.message}; usage: node run_v86.mjs --bzimage K --initrd I [--cmdline S] ...`);
}

function readImage(option, hint) {
    const path = args[option];
    if (!path) fail(2, `--${option}: missing; ${hint}`);
    try {
        const buf = fs.readFileSync(path);
        return { buffer: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) };
    } catch (e) {
        fail(2, `--${option} ${path}: ${e.code || e.message}; ${hint}`);
    }
}

const memoryMiB = Number(args.memory);
if (!Number.isInteger(memoryMiB) || memoryMiB < 16 || memoryMiB > 2048) {
    fail(2, `--memory ${args.memory}: not a whole number of MiB in 16..2048`);
}
const timeoutS = Number(args.timeout);
if (!(timeoutS >= 0)) fail(2, `--timeout ${args.timeout}: not a number of seconds >= 0`);
if (args.relay !== undefined && !/^wss?:\/\/\S+$/.test(args.relay)) {
    fail(2, `--relay ${args.relay}: not a ws:// or wss:// URL`);
}

const biosHint = "install Debian's seabios package (apt-get install seabios)";
const options = {
    bios: readImage("bios", biosHint),
    vga_bios: readImage("vga-bios", biosHint),
    bzimage: readImage("bzimage", "run `pyv86 guest build`"),
    initrd: readImage("initrd", "run `pyv86 guest build`"),
    cmdline: args.cmdline,
    memory_size: memoryMiB * 1024 * 1024,
    autostart: true,
    disable_keyboard: true,
    disable_mouse: true,
    disable_jit: args["no-jit"],
    // v86 looks for build/v86.wasm relative to the working directory unless told.
    wasm_path: new URL("./node_modules/v86/build/v86.wasm", import.meta.url).pathname,
};

if (args.relay !== undefined) {
    // Node 20 has no global WebSocket; v86's relay client looks for one.
    const { WebSocket } = await import("ws");
    globalThis.WebSocket = WebSocket;
    options.network_relay_url = args.relay;
}

let V86;
try {
    ({ V86 } = await import("v86"));
} catch (e) {
    fail(2, `cannot load the v86 package: ${e.message}; run \`npm install\` in ${new URL(".", import.meta.url).pathname}`);
}

// v86's instruction counter is 32 bits wide; sample it often enough that it cannot wrap
// twice between two samples (4.29 G instructions at a few hundred MIPS is many seconds).
let emulator = null;
let lastCounter = 0;
let instructions = 0;
let emulatorStart = null;
function sampleInstructions() {
    if (!emulator) return instructions;
    const now = emulator.get_instruction_counter() >>> 0;
    instructions += (now - lastCounter + 0x100000000) % 0x100000000;
    lastCounter = now;
    return instructions;
}

// Linux scheduler figures: CPU time of the main thread (where v86 runs the guest; V8 compiles
// and collects garbage on other threads) and how long all threads waited for a CPU while
// runnable (large on a loaded machine: the wall time is then not v86's own).
function schedFigures() {
    try {
        let waited = 0;
        let main = null;
        for (const tid of fs.readdirSync("/proc/self/task")) {
            const [run, wait] = fs.readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").split(" ").map(Number);
            waited += wait;
            if (Number(tid) === process.pid) main = run;
        }
        return { main_thread_cpu_s: main === null ? null : +(main / 1e9).toFixed(3),
                 cpu_wait_s: +(waited / 1e9).toFixed(3) };
    } catch {
        return { main_thread_cpu_s: null, cpu_wait_s: null };
    }
}

function figures(extra = {}) {
    const cpu = process.cpuUsage();
    const now = performance.now();
    return {
        marker: args.marker,
        wall_s: +((now - T0) / 1000).toFixed(3),
        emulator_s: emulatorStart === null ? null : +((now - emulatorStart) / 1000).toFixed(3),
        instructions: sampleInstructions(),
        user_cpu_s: +(cpu.user / 1e6).toFixed(3),
        system_cpu_s: +(cpu.system / 1e6).toFixed(3),
        ...schedFigures(),
        v86_version: V86_VERSION,
        jit: !args["no-jit"],
        ...extra,
    };
}

let V86_VERSION = null;
try {
    const pkg = new URL("./node_modules/v86/package.json", import.meta.url);
    V86_VERSION = JSON.parse(fs.readFileSync(pkg, "utf8")).version;
} catch { /* reported as null */ }

let finished = false;
function finish(status, reason) {
    if (finished) return;
    finished = true;
    say(`exit ${JSON.stringify(figures({ reason, status }))}`);
    try {
        if (emulator) Promise.resolve(emulator.destroy()).catch(() => { /* exiting anyway */ });
    } catch { /* exiting anyway */ }
    // stdout may still hold console bytes; exit once it has drained.
    process.stdout.write("", () => process.exit(status));
    setTimeout(() => process.exit(status), 2000).unref();
}

try {
    emulator = new V86(options);
} catch (e) {
    fail(4, `v86 refused the configuration: ${e.message}`);
}
const sampler = setInterval(sampleInstructions, 200);
sampler.unref();

// Match the marker as a whole console line (the shell echo of a typed command never
// equals it, since input lines are longer than the marker alone).
const markerLine = args.marker;
let line = "";
let markerSeen = false;
emulator.add_listener("serial0-output-byte", (byte) => {
    process.stdout.write(Uint8Array.of(byte));
    if (byte === 0x0a) {
        if (!markerSeen && line.replace(/\r$/, "") === markerLine) {
            markerSeen = true;
            say(`marker ${JSON.stringify(figures())}`);
            if (args["exit-on-marker"]) finish(0, "marker");
        }
        line = "";
    } else if (line.length < 4096) {
        line += String.fromCharCode(byte);
    }
});
emulator.add_listener("emulator-started", () => {
    emulatorStart = performance.now();
    say(`started v86 ${V86_VERSION} (${args["no-jit"] ? "interpreter" : "JIT"}), ${memoryMiB} MiB` +
        (args.relay ? `, relay ${args.relay}` : ", no network backend"));
});

process.stdin.on("data", (chunk) => {
    if (emulator && !finished) emulator.serial_send_bytes(0, chunk);
});
process.stdin.on("end", () => { if (args["quit-on-eof"]) finish(0, "stdin closed"); });
process.stdin.on("error", () => { /* no stdin: nothing to forward */ });
process.on("SIGTERM", () => finish(0, "SIGTERM"));
process.on("SIGINT", () => finish(0, "SIGINT"));
process.on("uncaughtException", (e) => { say(`error: ${e.stack || e}`); finish(4, "emulator error"); });
process.on("unhandledRejection", (e) => { say(`error: ${e && e.stack || e}`); finish(4, "emulator error"); });

if (timeoutS > 0) {
    setTimeout(() => {
        if (!markerSeen) {
            say(`error: marker ${JSON.stringify(markerLine)} not seen within ${timeoutS} s`);
            finish(3, "timeout");
        }
    }, timeoutS * 1000).unref();
}

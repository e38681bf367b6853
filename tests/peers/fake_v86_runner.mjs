// A stand-in for peers/v86/run_v86.mjs that speaks its protocol without v86: it prints a
// boot log and the marker on stdout, the runner's status lines on stderr, and plays a tiny
// shell on stdin (enough for V86Guest.run's begin/end tags). Options as the real runner;
// FAKE_V86_MODE=crash exits with an error before the marker, =silent never prints it.
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
    options: {
        bzimage: { type: "string" }, initrd: { type: "string" }, cmdline: { type: "string" },
        memory: { type: "string" }, relay: { type: "string" }, marker: { type: "string" },
        "exit-on-marker": { type: "boolean" }, "quit-on-eof": { type: "boolean" },
        timeout: { type: "string" }, "no-jit": { type: "boolean" },
    },
});
const mode = process.env.FAKE_V86_MODE || "ok";
const figures = (extra = {}) => JSON.stringify({
    marker: args.marker, wall_s: 0.5, emulator_s: 0.4, instructions: 5000000000,
    user_cpu_s: 1.25, system_cpu_s: 0.05, main_thread_cpu_s: 1.0, cpu_wait_s: 2.5, v86_version: "0.0.0-fake", jit: !args["no-jit"], ...extra });

if (mode === "crash") {
    process.stderr.write("v86-runner: error: fake crash before the marker\n");
    process.exit(4);
}
process.stdout.write(`[    0.000000] fake kernel, cmdline: ${args.cmdline}\r\n`);
process.stdout.write(`relay=${args.relay ?? "none"} memory=${args.memory}\r\n`);
if (mode !== "silent") {
    process.stdout.write("pyv86-init: ready after 1.50 s of guest uptime\r\n\r\n");
    process.stdout.write(`${args.marker}\r\n`);
    process.stderr.write(`v86-runner: marker ${figures()}\n`);
    if (args["exit-on-marker"]) {
        process.stderr.write(`v86-runner: exit ${figures({ reason: "marker", status: 0 })}\n`);
        process.exit(0);
    }
}
let buf = "";
process.stdin.on("data", (chunk) => {
    buf += chunk.toString();
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        process.stdout.write(line + "\r\n");  // the terminal echo
        const m = /^echo PYV86-B\$\(\((\d+)\+1\)\); (.*); echo PYV86-E\$\(\((\d+)\+1\)\)-\$\?$/.exec(line);
        if (!m) continue;
        const tag = (BigInt(m[1]) + 1n).toString();
        const [word, ...rest] = m[2].split(" ");
        const status = word === "echo" ? 0 : 127;
        const out = word === "echo" ? rest.join(" ") : `sh: ${word}: not found`;
        process.stdout.write(`PYV86-B${tag}\r\n${out}\r\nPYV86-E${tag}-${status}\r\n`);
    }
});
process.stdin.on("end", () => process.exit(0));
process.on("SIGTERM", () => {
    process.stderr.write(`v86-runner: exit ${figures({ reason: "SIGTERM", status: 0 })}\n`);
    process.exit(0);
});

// Spawning the real Rust demo server (`dashboard` example) for the end-to-end tests.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The workspace root: adapter-tokio/js/support -> ../../.. */
export const REPO_ROOT = path.resolve(here, '../../..');

/** The demo binary: `EVENTWIRE_DEMO_BIN`, else the workspace's debug build (in `CARGO_TARGET_DIR` when set). */
export function demoBinary() {
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR) : path.join(REPO_ROOT, 'target');
  return process.env.EVENTWIRE_DEMO_BIN || path.join(target, 'debug/examples/dashboard');
}

/** Builds the demo if its binary is missing (one cargo build; minutes on a cold cache). */
export function ensureDemoBuilt() {
  const bin = demoBinary();
  if (fs.existsSync(bin)) return bin;
  if (process.env.EVENTWIRE_DEMO_BIN) throw new Error(`EVENTWIRE_DEMO_BIN=${bin} does not exist`);
  execFileSync('cargo', ['build', '-p', 'eventwire-tokio', '--example', 'dashboard'], { cwd: REPO_ROOT, stdio: 'inherit' });
  if (!fs.existsSync(bin)) throw new Error(`cargo build did not produce ${bin}`);
  return bin;
}

/**
 * Starts the demo with `args` on `port` (0: a free one) and resolves once it printed its URL.
 * @returns {Promise<{proc: import('node:child_process').ChildProcess, port: number, http: string, ws: string, stderr: string[], stop: (signal?: string) => Promise<number | null>}>}
 */
export function startDemo(args = [], port = 0) {
  const bin = demoBinary();
  const proc = spawn(bin, ['--addr', `127.0.0.1:${port}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = [];
  proc.stderr.on('data', (chunk) => {
    stderr.push(String(chunk));
    if (stderr.length > 200) stderr.shift();
  });
  const exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  const stop = async (signal = 'SIGTERM') => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the demo printed no URL within 10 s; stderr: ${stderr.join('').slice(-2000)}`));
    }, 10000);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited with ${code} before printing its URL; stderr: ${stderr.join('').slice(-2000)}`));
    });
    const lines = readline.createInterface({ input: proc.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = /^eventwire dashboard at http:\/\/([0-9.]+):([0-9]+)\/\s*$/.exec(line);
      if (!m) {
        proc.kill('SIGKILL');
        reject(new Error(`unexpected first line: ${line}`));
        return;
      }
      const p = Number(m[2]);
      resolve({ proc, port: p, http: `http://${m[1]}:${p}/`, ws: `ws://${m[1]}:${p}/`, stderr, stop });
    });
  });
}

/** Waits until `pred()` is true, checking every 20 ms; fails after `ms`. */
export async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Checks the delivery guarantee of one room as events and gaps arrive: no offset twice; with
 * `contiguous`, each event directly follows the previous one or the range of a gap, and a gap's
 * range starts right after the last event seen (it covers exactly the missing offsets).
 */
export class RoomOracle {
  constructor(room, contiguous) {
    this.room = room;
    this.contiguous = contiguous;
    this.epoch = null;
    this.last = null;
    this.seen = new Set();
    this.events = 0;
    this.gaps = [];
    this.violations = [];
  }

  event(e) {
    const { epoch, offset } = e.position;
    const key = `${epoch}:${offset}`;
    if (this.seen.has(key)) this.violations.push(`${this.room}: ${key} delivered twice`);
    this.seen.add(key);
    if (this.epoch !== null && epoch !== this.epoch) this.violations.push(`${this.room}: epoch ${epoch} without a reset gap`);
    if (this.last !== null && epoch === this.epoch) {
      if (offset <= this.last) this.violations.push(`${this.room}: ${offset} after ${this.last}`);
      if (this.contiguous && offset !== this.last + 1) this.violations.push(`${this.room}: ${offset} after ${this.last} with no gap`);
    }
    this.epoch = epoch;
    this.last = offset;
    this.events += 1;
  }

  gap(g) {
    this.gaps.push(g.missed);
    if ('range' in g.missed) {
      const { epoch, first, last } = g.missed.range;
      if (this.last !== null && epoch === this.epoch && first !== this.last + 1) {
        this.violations.push(`${this.room}: gap ${first}..${last} does not start after ${this.last}`);
      }
      this.epoch = epoch;
      this.last = last;
    } else {
      this.epoch = g.missed.reset.position.epoch;
      this.last = g.missed.reset.position.offset;
    }
  }
}

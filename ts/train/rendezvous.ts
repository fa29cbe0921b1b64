// The TCP rendezvous of a torchrun-style start (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and no MPI launcher):
// rank 0 listens on MASTER_PORT, every other rank connects to it, and the ranks then exchange small messages over
// those sockets (a star through rank 0). It carries what NCCL cannot bootstrap by itself (rank 0's unique id) and
// what the group needs besides NCCL (barrier, allGatherScalars, the agreement checks), so a torchrun job needs no
// MPI. Every wait is bounded: a rank that never comes, claims a rank twice, disagrees on the world size or
// disappears is an Error on every rank that names it, within the timeout, never a hang.
//
// Wire format: frames of [u32 bytes that follow][u32 sequence][u32 part count]([u32 length][bytes])·count, all
// little-endian. A rank sends one part per exchange, rank 0 answers with every rank's part; sequence 0 is the
// handshake, 0xffffffff an error that rank 0 sends to every rank before it gives up.
import * as net from 'net';

export interface RendezvousOptions {
  rank: number;
  size: number;
  /** MASTER_ADDR: rank 0's address (rank 0 listens on every address). */
  addr: string;
  /** MASTER_PORT. */
  port: number;
  /** How long to wait for the other ranks, at the start and in every exchange. */
  timeoutSeconds: number;
  /** Called once when a peer is lost (or the rendezvous fails) outside close(), with the Error every later call gets. */
  onLost?: (e: Error) => void;
}

const ERROR_SEQ = 0xffffffff;
const MAX_FRAME = 64 * 2 ** 20;  // a handshake, an id or a few thousand scalars; anything larger is not ours

function encode(seq: number, parts: readonly Uint8Array[]): Buffer {
  const bytes = 8 + parts.reduce((n, p) => n + 4 + p.length, 0);
  const out = Buffer.alloc(4 + bytes);
  out.writeUInt32LE(bytes, 0);
  out.writeUInt32LE(seq, 4);
  out.writeUInt32LE(parts.length, 8);
  let at = 12;
  for (const p of parts) {
    out.writeUInt32LE(p.length, at);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

interface Frame {
  seq: number;
  parts: Buffer[];
}

/** Splits a socket's byte stream into frames; a malformed one is an Error (something else is on the port). */
class Reader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (f: Frame) => void, private readonly onBad: (why: string) => void) {}
  push(chunk: Buffer) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 4) {
      const bytes = this.buf.readUInt32LE(0);
      if (bytes < 8 || bytes > MAX_FRAME) return this.onBad(`a frame of ${bytes} bytes`);
      if (this.buf.length < 4 + bytes) return;
      const body = this.buf.subarray(4, 4 + bytes);
      this.buf = this.buf.subarray(4 + bytes);
      const seq = body.readUInt32LE(0);
      const count = body.readUInt32LE(4);
      const parts: Buffer[] = [];
      let at = 8;
      for (let i = 0; i < count; i++) {
        if (at + 4 > body.length) return this.onBad('a truncated frame');
        const n = body.readUInt32LE(at);
        if (at + 4 + n > body.length) return this.onBad('a truncated frame');
        parts.push(Buffer.from(body.subarray(at + 4, at + 4 + n)));
        at += 4 + n;
      }
      this.onFrame({ seq, parts });
    }
  }
}

const list = (ranks: number[]) => (ranks.length === 1 ? `rank ${ranks[0]}` : `ranks ${ranks.join(', ')}`);

interface Pending {
  seq: number;
  resolve: (parts: Buffer[]) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  /** Rank 0: each rank's part as it arrives. */
  got?: (Buffer | undefined)[];
}

/**
 * A connected rendezvous. `exchange` is its one collective (every rank passes a Buffer, every rank gets all of them
 * by rank); broadcast, allGather and barrier are that exchange. Every rank must make the same calls in the same
 * order, as with any collective.
 */
export class Rendezvous {
  private seq = 0;
  private pending: Pending | null = null;
  private failure: Error | null = null;
  private closing = false;
  private closed = false;
  /** Rank 0: a socket per rank (index 0 unused). Others: [the socket to rank 0]. */
  private readonly sockets: (net.Socket | undefined)[];
  /** Rank 0: parts that came ahead of the exchange they belong to (a fast rank's next message). */
  private early = new Map<number, Buffer>();

  private constructor(private readonly o: RendezvousOptions, sockets: (net.Socket | undefined)[], private readonly server?: net.Server) {
    this.sockets = sockets;
  }

  get rank(): number {
    return this.o.rank;
  }
  get size(): number {
    return this.o.size;
  }

  /** Connects every rank (rank 0 waits for all of them); rejects within timeoutSeconds naming the ranks missing. */
  static async connect(o: RendezvousOptions): Promise<Rendezvous> {
    const { rank, size, port, timeoutSeconds } = o;
    if (!Number.isInteger(size) || size < 1) throw new Error(`rendezvous: the world size must be an integer >= 1, got ${JSON.stringify(size)}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new Error(`rendezvous: rank ${JSON.stringify(rank)} is not in a world of ${size}`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`rendezvous: MASTER_PORT must be an integer in [1, 65535], got ${JSON.stringify(port)}`);
    if (!(timeoutSeconds > 0) || !Number.isFinite(timeoutSeconds)) throw new Error(`rendezvous: timeoutSeconds must be a finite number > 0, got ${JSON.stringify(timeoutSeconds)}`);
    if (size === 1) return new Rendezvous(o, [undefined]);  // a world of one meets nobody
    return rank === 0 ? Rendezvous.listen(o) : Rendezvous.join(o);
  }

  private static listen(o: RendezvousOptions): Promise<Rendezvous> {
    const { size, port, timeoutSeconds } = o;
    const sockets: (net.Socket | undefined)[] = new Array(size).fill(undefined);
    const server = net.createServer();
    return new Promise((resolve, reject) => {
      let done = false;
      const strangers = new Set<net.Socket>();
      const fail = (why: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        // Every rank that is connected learns why, so it fails with the same message instead of a lost connection.
        const frame = encode(ERROR_SEQ, [Buffer.from(why)]);
        for (const s of [...sockets, ...strangers]) s?.end(frame);
        server.close();
        reject(new Error(why));
      };
      const timer = setTimeout(() => {
        const missing = sockets.flatMap((s, r) => (r > 0 && !s ? [r] : []));
        fail(`rendezvous: ${list(missing)} of ${size} never connected to rank 0 on port ${port} within ${timeoutSeconds} s`);
      }, timeoutSeconds * 1000);
      server.on('error', (e: Error) => fail(`rendezvous: rank 0 cannot listen on port ${port} (${e.message})`));
      // The handshake's listeners of each socket, taken off once the rendezvous is complete (attach adds its own).
      const handshake = new Map<net.Socket, { onData: (d: Buffer) => void; onClose: () => void }>();
      server.on('connection', (socket) => {
        socket.setNoDelay(true);
        strangers.add(socket);
        let claimed = -1;
        const reader = new Reader(
          (f) => {
            if (claimed >= 0 || f.seq !== 0 || f.parts.length !== 1) return fail('rendezvous: a peer sent something other than a handshake');
            let hello: { rank?: unknown; size?: unknown };
            try {
              hello = JSON.parse(f.parts[0].toString('utf8'));
            } catch {
              return fail('rendezvous: a peer sent a malformed handshake');
            }
            const r = hello.rank;
            if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r >= size) return fail(`rendezvous: a process claims rank ${JSON.stringify(r)}, not a rank in [1, ${size - 1}] of a world of ${size}`);
            if (hello.size !== size) return fail(`rendezvous: rank ${r} says WORLD_SIZE=${JSON.stringify(hello.size)}, rank 0 says ${size}`);
            if (sockets[r]) return fail(`rendezvous: two processes claim rank ${r}`);
            claimed = r;
            strangers.delete(socket);
            sockets[r] = socket;
            if (!sockets.every((s, i) => i === 0 || s)) return;
            done = true;
            clearTimeout(timer);
            // Nobody else may join: a late duplicate finds the port closed and fails its own connect.
            server.close();
            const rv = new Rendezvous(o, sockets, server);
            for (let q = 1; q < size; q++) {
              const s = sockets[q]!;
              const h = handshake.get(s)!;
              s.off('data', h.onData);
              s.off('close', h.onClose);
              rv.attach(s, q);
            }
            for (let q = 1; q < size; q++) sockets[q]!.write(encode(0, []));
            resolve(rv);
          },
          (why) => fail(`rendezvous: a peer sent ${why} (is something else using port ${port}?)`),
        );
        const onData = (d: Buffer) => reader.push(d);
        const onClose = () => {
          if (claimed >= 0) fail(`rendezvous: rank ${claimed} disconnected before every rank had joined`);
          strangers.delete(socket);
        };
        handshake.set(socket, { onData, onClose });
        socket.on('data', onData);
        socket.on('error', () => {});
        socket.on('close', onClose);
      });
      server.unref();
      server.listen(port);
    });
  }

  private static join(o: RendezvousOptions): Promise<Rendezvous> {
    const { rank, size, addr, port, timeoutSeconds } = o;
    const deadline = Date.now() + timeoutSeconds * 1000;
    return new Promise((resolve, reject) => {
      let done = false;
      let lastError = '';
      let socket: net.Socket | null = null;
      const finish = (e: Error | null, rv?: Rendezvous) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (e) {
          socket?.destroy();
          reject(e);
        } else resolve(rv!);
      };
      const timer = setTimeout(
        () => finish(new Error(`rendezvous: rank ${rank} could not complete the rendezvous with rank 0 at ${addr}:${port} within ${timeoutSeconds} s (${lastError || 'rank 0 never answered'})`)),
        Math.max(1, deadline - Date.now()),
      );
      const attempt = () => {
        if (done) return;
        const s = net.connect({ host: addr, port });
        socket = s;
        let connected = false;
        s.setNoDelay(true);
        const reader = new Reader(
          (f) => {
            if (f.seq === ERROR_SEQ) return finish(new Error(f.parts[0]?.toString('utf8') ?? 'rendezvous: rank 0 failed'));
            if (f.seq !== 0) return finish(new Error('rendezvous: rank 0 sent something other than its welcome'));
            s.off('data', onData);
            s.removeAllListeners('close');
            const rv = new Rendezvous(o, [s]);
            rv.attach(s, 0);
            finish(null, rv);
          },
          (why) => finish(new Error(`rendezvous: ${addr}:${port} sent ${why}: is it another program's port?`)),
        );
        const onData = (d: Buffer) => reader.push(d);
        s.on('data', onData);
        s.on('connect', () => {
          connected = true;
          s.write(encode(0, [Buffer.from(JSON.stringify({ rank, size }))]));
        });
        s.on('error', (e: Error) => (lastError = e.message));
        s.on('close', () => {
          if (done) return;
          // Refused or reset before the welcome: rank 0 is not listening yet (it starts at its own pace), or it
          // went away after taking the handshake.
          if (connected) return finish(new Error(`rendezvous: rank 0 at ${addr}:${port} closed the connection before every rank had joined`));
          setTimeout(attempt, 100).unref();
        });
      };
      attempt();
    });
  }

  /** Routes a socket's frames (q: the peer's rank) once the rendezvous is complete. */
  private attach(s: net.Socket, q: number) {
    s.unref();  // an idle rendezvous must not keep the process alive; a pending exchange's timer does
    const reader = new Reader(
      (f) => this.onFrame(q, f),
      (why) => this.lose(new Error(`rendezvous: rank ${q} sent ${why}`)),
    );
    s.on('data', (d: Buffer) => reader.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      if (this.closed || (this.closing && !this.pending)) return;
      this.lose(new Error(this.o.rank === 0 ? `rendezvous: rank ${q} disconnected (it exited or crashed)` : `rendezvous: lost the connection to rank 0 at ${this.o.addr}:${this.o.port} (it exited or crashed)`));
    });
  }

  private onFrame(q: number, f: Frame) {
    if (f.seq === ERROR_SEQ) return this.lose(new Error(f.parts[0]?.toString('utf8') ?? 'rendezvous: rank 0 failed'));
    const p = this.pending;
    if (this.o.rank !== 0) {
      if (!p || f.seq !== p.seq) return this.lose(new Error(`rendezvous: rank 0 answered exchange ${f.seq}, this rank is at ${p?.seq ?? 'none'}: the ranks made different calls`));
      if (f.parts.length !== this.o.size) return this.lose(new Error(`rendezvous: rank 0 sent ${f.parts.length} parts for a world of ${this.o.size}`));
      return this.settle(f.parts);
    }
    if (f.parts.length !== 1) return this.lose(new Error(`rendezvous: rank ${q} sent ${f.parts.length} parts`));
    if (!p || f.seq !== p.seq) {
      // A rank already at the next exchange (rank 0 has not called it yet): keep its part for then.
      if (f.seq === this.seq + 1 && !this.early.has(q)) return void this.early.set(q, f.parts[0]);
      return this.lose(new Error(`rendezvous: rank ${q} is at exchange ${f.seq}, rank 0 at ${p?.seq ?? this.seq}: the ranks made different calls`));
    }
    if (p.got![q]) return this.lose(new Error(`rendezvous: rank ${q} sent exchange ${f.seq} twice`));
    p.got![q] = f.parts[0];
    this.completeRoot();
  }

  private completeRoot() {
    const p = this.pending!;
    if (p.got!.some((b) => !b)) return;
    const parts = p.got as Buffer[];
    const frame = encode(p.seq, parts);
    for (let q = 1; q < this.o.size; q++) this.sockets[q]!.write(frame);
    this.settle(parts);
  }

  private settle(parts: Buffer[]) {
    const p = this.pending!;
    this.pending = null;
    clearTimeout(p.timer);
    p.resolve(parts);
  }

  /** Fails the pending exchange and every later one with e; rank 0 tells the others first. */
  private lose(e: Error) {
    if (this.failure || this.closed) return;
    this.failure = e;
    if (this.o.rank === 0) {
      const frame = encode(ERROR_SEQ, [Buffer.from(e.message)]);
      for (const s of this.sockets) s?.end(frame);
    } else this.sockets[0]?.destroy();
    const p = this.pending;
    this.pending = null;
    if (p) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.o.onLost?.(e);
  }

  /** Every rank passes a Buffer; each gets all of them, by rank. */
  exchange(mine: Uint8Array, what = 'exchange'): Promise<Buffer[]> {
    if (this.closed) return Promise.reject(new Error(`rendezvous: ${what} after close`));
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error(`rendezvous: ${what} while another exchange is waiting (await each one)`));
    if (mine.length > MAX_FRAME / Math.max(1, this.o.size) - 16) return Promise.reject(new Error(`rendezvous: ${what} of ${mine.length} bytes is too large for the rendezvous`));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const late = this.o.rank === 0 ? this.pending?.got?.flatMap((b, r) => (b ? [] : [r])) ?? [] : [0];
        const e = new Error(
          this.o.rank === 0
            ? `rendezvous: ${list(late)} did not reach ${what} within ${this.o.timeoutSeconds} s (a rank is stuck or made different calls)`
            : `rendezvous: rank 0 did not answer ${what} within ${this.o.timeoutSeconds} s (a rank is stuck or made different calls)`,
        );
        this.lose(e);
      }, this.o.timeoutSeconds * 1000);
      this.pending = { seq, resolve, reject, timer };
      if (this.o.rank !== 0) {
        this.sockets[0]!.write(encode(seq, [mine]));
        return;
      }
      const got: (Buffer | undefined)[] = new Array(this.o.size).fill(undefined);
      got[0] = Buffer.from(mine);
      for (const [q, b] of this.early) got[q] = b;
      this.early.clear();
      this.pending.got = got;
      this.completeRoot();
    });
  }

  /** Rank 0's data on every rank (the others pass nothing). */
  async broadcast(data?: Uint8Array): Promise<Buffer> {
    if (this.o.rank === 0 && !data) throw new Error('rendezvous: broadcast needs the data on rank 0');
    return (await this.exchange(this.o.rank === 0 ? data! : new Uint8Array(0), 'broadcast'))[0];
  }

  allGather(data: Uint8Array): Promise<Buffer[]> {
    return this.exchange(data, 'allGather');
  }

  async barrier(what = 'a barrier'): Promise<void> {
    await this.exchange(new Uint8Array(0), what);
  }

  /** A barrier (every rank calls close), then the sockets are closed. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    try {
      if (!this.failure) await this.barrier('close');
    } finally {
      this.closed = true;
      for (const s of this.sockets) s?.end();
      this.server?.close();
    }
  }
}

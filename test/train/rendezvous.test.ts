// The torchrun-style start (ts/train/rendezvous, the 'nccl' group of ts/train/distributed) without a GPU or NCCL:
// child processes with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT meet over TCP, exchange bytes, gather, and
// fail with an Error naming the rank (and exit non-zero) when a rank leaves early, never comes, is claimed twice or
// disagrees on the world size. Every case runs children, so a hang shows as a timeout here, not a stuck jest.
import * as path from 'path';

import { backends, initDistributed, tensor } from '../../ts';
import { native } from '../../ts/native';
import { torchrun } from './torchrun';

const script = path.join(__dirname, 'children', 'rendezvous.js');

/** One child per entry of list (its RANK), WORLD_SIZE as given, env added to each. */
const ranks = (mode: string, list: number[], worldSize: number | number[], env: NodeJS.ProcessEnv = {}) => torchrun(script, [mode], list, worldSize, () => env);

describe('rendezvous (torchrun-style start, TCP)', () => {
  test.each([2, 3])('%i ranks: rank 0 broadcasts its bytes, every rank gathers every rank\'s, barrier, close', async (n) => {
    const r = await ranks('ok', Array.from({ length: n }, (_, i) => i), n);
    for (const [i, x] of r.entries()) {
      expect({ code: x.code, stderr: x.stderr }).toEqual({ code: 0, stderr: '' });
      expect(x.out).toEqual({
        rank: i,
        id: 'the id of rank 0',
        gathered: Array.from({ length: n }, (_, q) => 'x'.repeat(q) + `rank ${q}`),
        empty: Array.from({ length: n }, () => 0),
      });
    }
  });

  test('a rank that exits right after connecting: the others fail their barrier naming it, within the timeout, and exit non-zero', async () => {
    const r = await ranks('exit-early', [0, 1, 2], 3, { RDV_TIMEOUT: '10' });
    expect(r[2].code).toBe(0);
    expect(r[0].code).toBe(3);
    expect(r[1].code).toBe(3);
    expect(r[0].out.error).toBe('rendezvous: rank 2 disconnected (it exited or crashed)');
    // Rank 1 hears it from rank 0 (which tells every rank why it gives up) or sees rank 0 go: either names the cause.
    expect(r[1].out.error).toMatch(/rendezvous: (rank 2 disconnected|lost the connection to rank 0)/);
    // Far below the 10 s timeout: a disconnect is noticed when it happens.
    expect(Math.max(...r.map((x) => x.seconds))).toBeLessThan(10);
  });

  test('a rank that never comes: rank 0 names it after the timeout, the others fail with rank 0', async () => {
    const r = await ranks('ok', [0, 1], 3, { RDV_TIMEOUT: '3' });
    expect(r.map((x) => x.code)).toEqual([3, 3]);
    expect(r[0].out.error).toBe('rendezvous: rank 2 of 3 never connected to rank 0 on port ' + String(r[0].out.error).match(/port (\d+)/)![1] + ' within 3 s');
    expect(r[1].out.error).toBe(r[0].out.error);
    expect(Math.max(...r.map((x) => x.seconds))).toBeLessThan(20);
  });

  test('rank 0 never comes: the others give up after the timeout, naming rank 0 and its address', async () => {
    const r = await ranks('ok', [1], 2, { RDV_TIMEOUT: '2' });
    expect(r[0].code).toBe(3);
    expect(r[0].out.error).toMatch(/^rendezvous: rank 1 could not complete the rendezvous with rank 0 at 127\.0\.0\.1:\d+ within 2 s \(.*ECONNREFUSED/);
  });

  test('two processes claiming one rank: an Error on every rank', async () => {
    const r = await ranks('ok', [0, 1, 1], 3, { RDV_TIMEOUT: '10' });
    expect(r.map((x) => x.code)).toEqual([3, 3, 3]);
    for (const x of r) expect(x.out.error).toBe('rendezvous: two processes claim rank 1');
  });

  test('ranks that disagree on WORLD_SIZE: an Error naming both views', async () => {
    const r = await ranks('ok', [0, 1], [2, 3], { RDV_TIMEOUT: '10' });
    expect(r.map((x) => x.code)).toEqual([3, 3]);
    for (const x of r) expect(x.out.error).toBe('rendezvous: rank 1 says WORLD_SIZE=3, rank 0 says 2');
  });

  test("initDistributed's torchrun-style group (2 ranks, device 'cpu'): allGatherScalars and barrier over the rendezvous; cpu collectives refused", async () => {
    const r = await ranks('group', [0, 1], 2);
    for (const [i, x] of r.entries()) {
      expect({ code: x.code, stderr: x.stderr }).toEqual({ code: 0, stderr: '' });
      expect(x.out).toEqual({
        rank: i,
        backend: 'nccl',
        size: 2,
        device: 'cpu',
        scalars: [['0', '0', 'NaN'], ['1', '0.5', 'NaN']],
        cpuError: "allReduce: the tensor is on cpu, and a torchrun-style group (backend 'nccl', no MPI) reduces cuda tensors only: train on cuda, or start cpu training with an MPI launcher (mpirun -np N node script.js)",
        mismatch: 'allGatherScalars: the ranks passed different numbers of values (rank 0: 1, rank 1: 2)',
      });
    }
  });
});

describe('initDistributed with torchrun variables', () => {
  const env = (more: Record<string, string> = {}) => ({ RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500', ...more });

  test('picks the rendezvous group; an incomplete set of variables is an Error naming what is missing', () => {
    const g = initDistributed({ env: env(), device: 'cpu' });
    expect([g.backend, g.rank, g.size, g.device]).toEqual(['nccl', 0, 1, 'cpu']);
    expect(initDistributed({ env: env() }).device).toBe('cuda');  // the default of a torchrun-style start
    expect(() => initDistributed({ env: { RANK: '1', WORLD_SIZE: '2' } })).toThrow(
      "initDistributed: RANK=1 WORLD_SIZE=2 (torchrun's variables) without MASTER_ADDR, MASTER_PORT: a torchrun-style start needs all of RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT",
    );
    expect(() => initDistributed({ env: env({ RANK: '2', WORLD_SIZE: '2' }) })).toThrow('initDistributed: RANK=2 is not a rank of WORLD_SIZE=2');
    expect(() => initDistributed({ env: env({ MASTER_PORT: '70000' }) })).toThrow('initDistributed: MASTER_PORT=70000 is not a port in [1, 65535]');
    expect(() => initDistributed({ env: env(), device: 'sim' as never })).toThrow("initDistributed: device must be 'cpu' or 'cuda', got \"sim\"");
    // Variables of a world of one without MASTER_*: nothing to meet, the trivial group as before.
    expect(initDistributed({ env: { RANK: '0', WORLD_SIZE: '1' } }).backend).toBe('none');
  });

  test('a world of one, device cpu: barrier and allGatherScalars work; a cpu collective is the named Error', async () => {
    const g = initDistributed({ env: env(), device: 'cpu' });
    await g.ready();
    await g.barrier();
    expect(await g.allGatherScalars([3, NaN])).toEqual([[3, NaN]]);
    expect(() => g.allReduce(tensor([1], [1]))).toThrow("allReduce: the tensor is on cpu, and a torchrun-style group (backend 'nccl', no MPI) reduces cuda tensors only");
    expect(() => g.broadcast(tensor([1], [1]))).toThrow("broadcast: the tensor is on cpu, and a torchrun-style group (backend 'nccl', no MPI)");
    await expect(g.allGather(tensor([1], [1]))).rejects.toThrow("allGather: the tensor is on cpu, and a torchrun-style group (backend 'nccl', no MPI) reduces cuda tensors only");
    await g.close();
    expect(() => g.allReduce(tensor([1], [1]))).toThrow('allReduce: the process group was closed');
  });

  // Which Error device 'cuda' meets first depends on the machine, so the case asserts the one that applies: without
  // a usable cuda backend (this CI machine: no driver), the cuda backend's own reason, before NCCL is looked for;
  // with one but without NCCL, the missing library, from ready() and from a cuda collective alike.
  const cuda = backends().find((b) => b.name === 'cuda');
  let ncclError: string | null = null;
  try {
    native.ncclLibrary();
  } catch (e) {
    ncclError = (e as Error).message;
  }
  const noNccl = ncclError !== null;
  (noNccl ? test : test.skip)(`device 'cuda' without NCCL${noNccl ? '' : ' (skipped: NCCL is present)'}: ready() and a cuda collective raise the Error that applies here`, async () => {
    expect(ncclError).toMatch(/^NCCL: no usable NCCL library \(looked for libnccl\.so\.2, libnccl\.so: .*\); install NCCL 2 .* or set AM_RADIO_NCCL_LIBRARY to the path of libnccl\.so\.2$/);
    const g = initDistributed({ env: env() });
    if (!cuda?.available) {
      await expect(g.ready()).rejects.toThrow(`initDistributed: device 'cuda' needs the cuda backend, which is not available here: ${cuda?.reason ?? 'not compiled'}`);
      // No cuda tensor can exist here, so no cuda collective can be called: the tensor itself is refused.
      expect(() => tensor([1], [1], { device: 'cuda' })).toThrow(`backend cuda is not available: ${cuda?.reason ?? 'not compiled'}`);
    } else {
      await expect(g.ready()).rejects.toThrow(/NCCL: no usable NCCL library \(looked for libnccl\.so\.2/);
      const c = initDistributed({ env: env(), device: 'cpu' });
      await c.ready();
      expect(() => c.allReduce(tensor([1, 2], [2], { device: 'cuda' }))).toThrow(/NCCL: no usable NCCL library \(looked for libnccl\.so\.2/);
      await c.close();
    }
  });

  test('AM_RADIO_NCCL_LIBRARY names the one file to open; a missing one is an Error naming it and the variable', () => {
    // A child: the library is opened once per process.
    const code = "const { native } = require('../../../ts/native'); try { native.ncclLibrary(); console.log('opened'); } catch (e) { console.log(e.message); }";
    const r = require('child_process').spawnSync(process.execPath, ['-r', path.join(__dirname, '..', 'reliability', 'children', 'register.js'), '-e', code], {
      cwd: path.join(__dirname, 'children'),
      env: { ...process.env, AM_RADIO_NCCL_LIBRARY: '/nonexistent/libnccl-for-test.so.2' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^NCCL: no usable NCCL library \(looked for \/nonexistent\/libnccl-for-test\.so\.2, named by AM_RADIO_NCCL_LIBRARY: \/nonexistent\/libnccl-for-test\.so\.2: cannot open shared object file/);
  });
});

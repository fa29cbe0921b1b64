// A model's weights as one safetensors file or as the shards that transformers' save_pretrained writes past its
// max_shard_size: model.safetensors.index.json maps every tensor name to the shard file holding it. Both read the
// same way (TensorReader), so a loader never asks which it has.
import * as fs from 'fs';
import * as path from 'path';

import { SafetensorsEntry, SafetensorsFile } from './read';

/** What a loader reads tensors from; every message names the file that holds the tensor. */
export interface TensorReader {
  /** The file or index path, for messages about the whole checkpoint. */
  readonly file: string;
  keys(): string[];
  has(name: string): boolean;
  entry(name: string, expectedShape?: readonly number[]): SafetensorsEntry;
  readFloat(name: string, expectedShape?: readonly number[]): Promise<{ data: Float32Array; shape: number[] }>;
  readInts(name: string, expectedShape?: readonly number[]): Promise<{ data: number[]; shape: number[] }>;
  close(): Promise<void>;
}

export class ShardedSafetensors implements TensorReader {
  private constructor(
    readonly file: string,
    private readonly shards: readonly SafetensorsFile[],
    private readonly shardOf: ReadonlyMap<string, SafetensorsFile>,
  ) {}

  /**
   * Opens every shard an index names and checks the index against them: each listed tensor is in the shard the
   * index says, and no shard holds a tensor the index leaves out (a stale or mixed-up index is an Error, not a
   * silently missing or duplicated weight).
   */
  static async open(indexFile: string): Promise<ShardedSafetensors> {
    const bad = (why: string) => new Error(`${indexFile}: ${why}`);
    const { map, shards: names } = readShardIndex(indexFile);
    const shards: SafetensorsFile[] = [];
    try {
      const byName = new Map<string, SafetensorsFile>();
      for (const n of names) {
        const f = await SafetensorsFile.open(path.join(path.dirname(indexFile), n));
        shards.push(f);
        byName.set(n, f);
      }
      const shardOf = new Map<string, SafetensorsFile>();
      for (const [key, n] of Object.entries(map)) {
        const f = byName.get(n)!;
        if (!f.has(key)) throw bad(`lists tensor '${key}' in ${n}, which does not hold it`);
        shardOf.set(key, f);
      }
      for (const f of shards)
        for (const key of f.keys())
          if (shardOf.get(key) !== f) throw bad(`${path.basename(f.file)} holds tensor '${key}', which the index ${shardOf.has(key) ? `places in ${path.basename(shardOf.get(key)!.file)}` : 'does not list'}`);
      return new ShardedSafetensors(indexFile, shards, shardOf);
    } catch (e) {
      await Promise.all(shards.map((f) => f.close()));
      throw e;
    }
  }

  keys(): string[] {
    return [...this.shardOf.keys()];
  }
  has(name: string): boolean {
    return this.shardOf.has(name);
  }
  private shard(name: string): SafetensorsFile {
    const f = this.shardOf.get(name);
    if (!f) throw new Error(`${this.file}: missing tensor '${name}' (not in the shard index)`);
    return f;
  }
  entry(name: string, expectedShape?: readonly number[]): SafetensorsEntry {
    return this.shard(name).entry(name, expectedShape);
  }
  readFloat(name: string, expectedShape?: readonly number[]): Promise<{ data: Float32Array; shape: number[] }> {
    return this.shard(name).readFloat(name, expectedShape);
  }
  readInts(name: string, expectedShape?: readonly number[]): Promise<{ data: number[]; shape: number[] }> {
    return this.shard(name).readInts(name, expectedShape);
  }
  async close(): Promise<void> {
    await Promise.all(this.shards.map((f) => f.close()));
  }
}

/** A shard index's weight_map and the shard files it names, each a plain .safetensors name beside the index. */
export function readShardIndex(indexFile: string): { map: Record<string, string>; shards: string[] } {
  const bad = (why: string) => new Error(`${indexFile}: ${why}`);
  let index: unknown;
  try {
    index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e) {
    throw bad(`cannot read the shard index (${(e as Error).message})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (!map || typeof map !== 'object' || Array.isArray(map)) throw bad('has no weight_map object');
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const n of shards)
    if (typeof n !== 'string' || n !== path.basename(n) || n === '..' || !/^[^/\\]+\.safetensors$/.test(n))
      throw bad(`weight_map names ${JSON.stringify(n)}, not a .safetensors file beside the index`);
  if (shards.length === 0) throw bad('weight_map lists no tensors');
  return { map: map as Record<string, string>, shards: shards as string[] };
}

/** The index file name of a sharded `<base>.safetensors`. */
export const shardIndexName = (base = 'model') => `${base}.safetensors.index.json`;

/**
 * dir's weights: `<base>.safetensors` when it exists, else the shards its `<base>.safetensors.index.json` lists; an
 * Error naming both when there is neither.
 */
export async function openWeights(dir: string, base = 'model'): Promise<TensorReader> {
  const single = path.join(dir, `${base}.safetensors`);
  const index = path.join(dir, shardIndexName(base));
  if (fs.existsSync(single)) return SafetensorsFile.open(single);
  if (fs.existsSync(index)) return ShardedSafetensors.open(index);
  throw new Error(`${dir}: no weights (neither ${base}.safetensors nor ${shardIndexName(base)})`);
}

// `am-radio teach config.json`: runs a teacher (a RADIO checkpoint or a Hugging Face encoder) once over a data source and writes its targets as shards
// (ts/teachers/shards.ts) that `{ "type": "shards" }` teachers of later distill runs read. Re-running the same
// config continues an interrupted run.
import * as fs from 'fs';
import * as path from 'path';

import type { Device } from '../native';
import { writeFeatureShards } from '../teachers/shards';
import type { Teacher } from '../teachers/types';
import { createDataSource, Fields, TEACHER_FIELDS, teacherLoader } from './config';

type Stream = NodeJS.WritableStream & { isTTY?: boolean };

export async function runTeachConfig(file: string, stream: Stream = process.stderr): Promise<number> {
  let json: unknown;
  try {
    json = JSON.parse(await fs.promises.readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the teach config (${(e as Error).message})`);
  }
  return runTeach(json, path.dirname(path.resolve(file)), stream);
}

/**
 * A teach config as an object (paths relative to base). `images` may be left out for a data source with a fixed
 * list of images (a folder): one pass over it.
 */
export async function runTeach(json: unknown, base: string, stream: Stream = process.stderr): Promise<number> {
  const c = Fields.of('config', json, ['teacher', 'data', 'images', 'output', 'shardSize', 'device']);
  const type = Fields.of('config.teacher', c.obj.teacher, Object.keys((c.obj.teacher as object) ?? {})).str('type');
  if (type !== 'radio' && type !== 'hf') throw new Error(`config.teacher.type: unknown teacher type ${JSON.stringify(type)} (teach runs "radio" and "hf" teachers)`);
  const t = Fields.of('config.teacher', c.obj.teacher, ['type', 'dir', 'name', ...TEACHER_FIELDS[type]]);
  const device = c.str('device', true) ?? 'cpu';
  if (!['cpu', 'sim', 'cuda'].includes(device)) throw new Error(`config.device must be cpu, sim or cuda, got ${JSON.stringify(device)}`);
  const counted = c.num('images', { opt: true, int: true, positive: true });
  const shardSize = c.num('shardSize', { opt: true, int: true, positive: true });
  const out = c.path('output', base);
  const open = teacherLoader(type, t, base, device as Device);
  const data = createDataSource(c.obj.data, 'config.data', base);
  const listed = (data as { ids?: readonly string[] }).ids?.length;
  const images = counted ?? listed;
  if (!images) {
    await data.close();
    throw new Error(listed === 0 ? 'config.data: the data source has no images' : 'config.images must be a positive integer (the data source has no fixed list of images to count)');
  }
  let teacher: Teacher | null = null;
  try {
    teacher = await open().catch((e: Error) => {
      throw new Error(`config.teacher: ${e.message}`, { cause: e });
    });
    const t0 = Date.now();
    let last = 0;
    const written = await writeFeatureShards({
      teacher, data, dir: out, images, shardSize, device: device as Device,
      onProgress: (done, total) => {
        const now = Date.now();
        if (done < total && now - last < (stream.isTTY ? 200 : 5000)) return;
        last = now;
        const rate = done / Math.max((now - t0) / 1000, 1e-9);
        const line = `teach ${teacher!.name}: ${done}/${total} images, ${rate.toFixed(1)} img/s, ETA ${Math.round((total - done) / Math.max(rate, 1e-9))}s`;
        stream.write(stream.isTTY ? `\r\x1b[K${line}${done >= total ? '\n' : ''}` : `${line}\n`);
      },
    });
    return written;
  } finally {
    await data.close();
    await teacher?.close();
  }
}

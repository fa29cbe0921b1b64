// Writes argv[2] with one F32 tensor 'big' of argv[3] MiB, every value argv[4], and metadata {fill: argv[4]}.
// argv[5]: 'wait' prints "ready" once the values are made and starts writing on a line of stdin, so several
// writers can be started together; 'pause' stops the write halfway through the tensor data, prints "paused" and
// waits to be killed, so a test can kill a writer at a known point.
'use strict';
require('./register');
const fs = require('fs');
const { writeSafetensors } = require('../../../ts/io/safetensors');

const [target, mib, fill, mode] = process.argv.slice(2);

if (mode === 'pause') {
  const open = fs.promises.open;
  fs.promises.open = async (...args) => {
    const fh = await open.apply(fs.promises, args);
    const write = fh.write.bind(fh);
    fh.write = async (buf, off, len, pos) => {
      if (len < 1 << 20) return write(buf, off, len, pos);
      await write(buf, off, len >> 1, pos);
      process.stdout.write('paused\n');
      setInterval(() => {}, 1000);
      return new Promise(() => {});
    };
    return fh;
  };
}

async function main() {
  const data = new Float32Array((Number(mib) * 2 ** 20) / 4).fill(Number(fill));
  if (mode === 'wait') {
    process.stdout.write('ready\n');
    await new Promise((resolve) => process.stdin.once('data', resolve));
  }
  await writeSafetensors(target, { big: { dtype: 'F32', shape: [data.length], data } }, { fill });
  process.stdout.write('done\n');
  process.exit(0);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});

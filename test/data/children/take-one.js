// Opens an ImageFolderSource on argv[2], takes one batch and (unless argv[3] is 'no-close') closes it, then
// returns from the script without process.exit: the process must exit by itself, and promptly. 'idle-close'
// first waits until the prefetched batches are decoded, so close() meets idle (unref'd) workers.
'use strict';
require('../../reliability/children/register');
const { ImageFolderSource } = require('../../../ts/data/folder');

(async () => {
  const s = new ImageFolderSource({ dir: process.argv[2], partitions: [{ height: 16, width: 16, batch: 3 }], workers: 2, prefetch: 2 });
  const b = await s.next();
  if (process.argv[3] === 'idle-close') await new Promise((r) => setTimeout(r, 1500));
  if (process.argv[3] !== 'no-close') await s.close();
  console.log(JSON.stringify({ batch: b.batch, values: b.images.length }));
})().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

// Opens argv[2] with SafetensorsFile.open and prints {"error": message} or {"opened": true} (exit 3), so a test can
// hold an open that might block, such as one on a FIFO, to a timeout.
'use strict';
require('./register');
const { SafetensorsFile } = require('../../../ts/io/safetensors');

SafetensorsFile.open(process.argv[2]).then(
  async (f) => {
    await f.close();
    console.log(JSON.stringify({ opened: true }));
    process.exit(3);
  },
  (e) => console.log(JSON.stringify({ error: e.message })),
);

// What a child script tests: the TypeScript sources (compiled on load like jest does), or the package folder
// named by AM_RADIO_ENTRY (for example a packed build).
'use strict';
const path = require('path');
if (process.env.AM_RADIO_ENTRY) module.exports = require(process.env.AM_RADIO_ENTRY);
else {
  require('./register');
  module.exports = require(path.join(__dirname, '../../../ts'));
}

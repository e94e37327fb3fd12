// Where the shared protocol vectors are.
const path = require("node:path");

module.exports = { VECTORS: path.resolve(__dirname, "../../../protocol/vectors") };

'use strict'
// W1's handler as a module for jobwerk's worker-thread pool (system jobwerk-threads).
exports.calculate = async (data) => data.x + 1

'use strict'
// W1's handler as a piscina task file (system piscina).
module.exports = async (data) => data.x + 1

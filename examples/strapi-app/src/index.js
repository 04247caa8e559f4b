module.exports = {
  register() {},

  // For the tests (npm run test:strapi): a full-access API token whose key is
  // written to EXAMPLE_TOKEN_FILE, made anew at each boot.
  async bootstrap({ strapi }) {
    // test:strapi tells the processes of a `strapi develop` reload apart by it.
    console.log(`[example] booted, pid ${process.pid}`)
    const file = process.env.EXAMPLE_TOKEN_FILE
    if (!file) return
    const tokens = strapi.service('admin::api-token')
    // Instances sharing one database (EXAMPLE_INSTANCE) each make their own.
    const suffix = process.env.EXAMPLE_INSTANCE ? `-${process.env.EXAMPLE_INSTANCE}` : ''
    for (const [name, type] of [[`example-full${suffix}`, 'full-access'], [`example-read${suffix}`, 'read-only']]) {
      const old = await tokens.getByName(name)
      if (old) await tokens.revoke(old.id)
    }
    const full = await tokens.create({ name: `example-full${suffix}`, type: 'full-access', lifespan: null, description: 'test:strapi' })
    const read = await tokens.create({ name: `example-read${suffix}`, type: 'read-only', lifespan: null, description: 'test:strapi' })
    require('fs').writeFileSync(file, JSON.stringify({ full: full.accessKey, read: read.accessKey }))
  },
}

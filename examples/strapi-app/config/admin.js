// Example secrets: set them from the environment in a real app.
module.exports = ({ env }) => ({
  serveAdminPanel: false,
  auth: { secret: env('ADMIN_JWT_SECRET', 'example-admin-jwt-secret') },
  apiToken: { salt: env('API_TOKEN_SALT', 'example-api-token-salt') },
  transfer: { token: { salt: env('TRANSFER_TOKEN_SALT', 'example-transfer-token-salt') } },
  secrets: { encryptionKey: env('ENCRYPTION_KEY', 'example-encryption-key-0123456789') },
})

/**
 * Node stops verifying certificates on every TLS connection of the process while
 * NODE_TLS_REJECT_UNAUTHORIZED is '0' (it reads the variable at each connection). Vault, the
 * upstreams, the OAuth2 token endpoints and the JWKS URLs would then accept any certificate, and a
 * credential would go to whoever answers on the path. Corridor does not start so; a private CA is
 * trusted with NODE_EXTRA_CA_CERTS (or vault.ca_file) instead.
 */
export function whyCertificateChecksOff(...envs: readonly NodeJS.ProcessEnv[]): string | null {
  if (!envs.some((env) => env['NODE_TLS_REJECT_UNAUTHORIZED'] === '0')) return null
  return 'NODE_TLS_REJECT_UNAUTHORIZED=0 turns off certificate checks for every TLS connection (Vault, upstreams, token endpoints, JWKS): Corridor does not start with it; trust a private CA with NODE_EXTRA_CA_CERTS instead'
}

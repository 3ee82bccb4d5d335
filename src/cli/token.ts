import { idProblem, mintToken, parseTtl, signingSecret, SUBJECT_MAX, TENANT_ID_MAX } from '../auth/index.ts';
import { ConfigError, loadConfig } from '../config/index.ts';
import { UsageError } from './usage-error.ts';

const USAGE = 'usage: relay token --tenant T (--user U | --service) [--ttl 1h]';

export interface TokenArgs {
  tenant?: string;
  user?: string;
  service: boolean;
  /** Lifetime as parseTtl reads it; default "1h". */
  ttl?: string;
}

/**
 * `relay token`: mints an HS256 token with the secret a server started with the same
 * environment and data folder verifies. Human lines go to stderr and the token alone to
 * stdout, so `TOKEN=$(relay token ...)` captures just the token.
 */
export async function token(args: TokenArgs): Promise<void> {
  if (!args.tenant) throw new UsageError(`--tenant is required\n${USAGE}`);
  if ((args.user !== undefined) === args.service) throw new UsageError(`give exactly one of --user and --service\n${USAGE}`);
  const tenantProblem = idProblem(args.tenant, TENANT_ID_MAX);
  if (tenantProblem) throw new UsageError(`--tenant ${tenantProblem}`);
  if (args.user !== undefined) {
    const userProblem = idProblem(args.user, SUBJECT_MAX);
    if (userProblem) throw new UsageError(`--user ${userProblem}`);
  }
  let ttlSeconds: number;
  try {
    ttlSeconds = parseTtl(args.ttl ?? '1h');
  } catch (err) {
    throw new UsageError(`--${(err as Error).message}`);
  }

  const config = loadConfig();
  const signing = signingSecret(config);
  if (signing.source === 'ephemeral') {
    throw new ConfigError('RELAY_DATA_DIR=memory:// keeps its JWT secret in the server process only: a token minted here would match no server; set RELAY_JWT_SECRET');
  }
  if (!signing.secret) {
    throw new ConfigError(
      'cannot mint: only RELAY_JWT_PUBLIC_KEY_FILE / RELAY_JWT_JWKS_FILE is configured, so tokens come from whoever holds the private key (or set RELAY_JWT_SECRET)',
    );
  }
  const jwt = await mintToken({
    secret: signing.secret,
    tenant: args.tenant,
    user: args.user,
    service: args.service,
    ttlSeconds,
    issuer: config.auth.issuer,
    audience: config.auth.audience,
  });

  if (signing.created) console.error(`relay: created the JWT secret ${signing.path} (mode 0600); a server using this data folder accepts these tokens`);
  const who = args.service ? 'the service (any user of the tenant)' : `user ${JSON.stringify(args.user)}`;
  console.error(`relay: token for tenant ${JSON.stringify(args.tenant)}, ${who}`);
  console.error(`relay: expires ${new Date(Date.now() + ttlSeconds * 1000).toISOString()}; signed with ${signing.source === 'env' ? 'RELAY_JWT_SECRET' : signing.path}`);
  console.log(jwt);
}

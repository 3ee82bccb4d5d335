import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { sharedSchemas } from './route-docs.ts';

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}

/**
 * The OpenAPI 3.1 document at GET /openapi.json and its interactive reference at GET /docs
 * (Swagger UI, assets served from this process). Register before the routes: @fastify/swagger
 * collects every route registered after it, from the schemas `documented()` attaches. Neither
 * needs a token.
 */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Relay Memory API',
        version: packageVersion(),
        license: { name: 'Apache 2.0', identifier: 'Apache-2.0' },
        description:
          'Multi-tenant long-term memory for AI assistants. The tenant is always the bearer token\'s; a user token acts for its own user, a service token names one. Errors are `{"error": {"code", "message"}}` with a stable code (docs/errors.md).',
      },
      // Relative: the document describes the service that serves it, wherever that is.
      servers: [{ url: '/', description: 'the service serving this document' }],
      tags: [
        { name: 'memory', description: 'Store, recall, read, change and erase memory (bearer token)' },
        { name: 'operations', description: 'Health, readiness and Prometheus metrics' },
      ],
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'a token of `relay token` (docs/auth.md)' } },
        schemas: sharedSchemas(),
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

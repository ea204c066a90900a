// Local OAuth 2.0 authorization server that issues machine-to-machine access tokens shaped like
// Alibaba Cloud IDaaS ones, for `make run` and the end-to-end tests. Built on oidc-provider 9.
//
// Paths copy IDaaS: the issuer is http://127.0.0.1:<IDP_PORT>/api/v2/iauths_system/oauth2, and the
// token endpoint and JWKS sit below it at /token and /jwks. Discovery is at
// <issuer>/.well-known/openid-configuration.
//
// Tokens: client_credentials grant, client_secret_basic, RS256 JWT access tokens (typ at+jwt)
// signed with tests/fixtures/keys/idp-rs256-1.key.pem, `aud` = the resource indicator and `scope`
// = the requested scopes that the client is allowed. oidc-provider 9.13 accepts
// `api://model-studio` as a resource indicator (any absolute URI without a fragment), so that is
// the Resource Server Identifier. A request without `resource` gets it by default.
//
// Clients (id / secret, allowed scopes):
//   ci-pipeline / ci-pipeline-secret  model.invoke model.list
//   list-only   / list-only-secret    model.list
//   no-scope    / no-scope-secret     none: its token carries no `scope` claim at all, whatever
//                                      it requests (oidc-provider drops an empty scope), like an
//                                      IDaaS application whose Scope Value is unset.
// A client gets only the scopes it requests with `scope=`; without `scope=` the token has none.
// Scopes may be requested bare (`model.invoke`) or in the IDaaS form
// (`api://model-studio|model.invoke`). The IDaaS form `<resource>|.all` is not emulated.
//
// Environment: IDP_PORT (default 9000); IDP_LISTEN_HOST (default 127.0.0.1), which only
// docker-compose changes, to 0.0.0.0 inside its container so that the published port reaches it. The
// issuer keeps the host 127.0.0.1 either way. Everything is kept in memory.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider from 'oidc-provider';

const ISSUER_HOST = '127.0.0.1';
const LISTEN_HOST = process.env.IDP_LISTEN_HOST ?? ISSUER_HOST;
const PORT = Number.parseInt(process.env.IDP_PORT ?? '9000', 10);
const ISSUER_PATH = '/api/v2/iauths_system/oauth2';
const ISSUER = `http://${ISSUER_HOST}:${PORT}${ISSUER_PATH}`;
const RESOURCE_SERVER_IDENTIFIER = 'api://model-studio';
const ACCESS_TOKEN_TTL_SECONDS = 3600;
const SIGNING_KEY_ID = 'idp-rs256-1';

const here = path.dirname(fileURLToPath(import.meta.url));
const signingKeyPath = path.join(here, '..', '..', 'tests', 'fixtures', 'keys', `${SIGNING_KEY_ID}.key.pem`);

// Scopes each client may receive. The resource server offers every scope, and this table narrows
// it per client, because oidc-provider checks a client's `scope` metadata only for OpenID scopes.
const ALLOWED_SCOPES_BY_CLIENT = {
  'ci-pipeline': ['model.invoke', 'model.list'],
  'list-only': ['model.list'],
  'no-scope': [],
};

function loadSigningJwk() {
  const privateKey = crypto.createPrivateKey(fs.readFileSync(signingKeyPath));
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: SIGNING_KEY_ID, use: 'sig', alg: 'RS256' };
}

function clientMetadata(clientId) {
  return {
    client_id: clientId,
    client_secret: `${clientId}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  };
}

const configuration = {
  clients: Object.keys(ALLOWED_SCOPES_BY_CLIENT).map(clientMetadata),
  jwks: { keys: [loadSigningJwk()] },
  ttl: { ClientCredentials: ACCESS_TOKEN_TTL_SECONDS },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE_SERVER_IDENTIFIER,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator, client) => {
        const allowed = ALLOWED_SCOPES_BY_CLIENT[client.clientId] ?? [];
        // Each scope is offered bare and in the IDaaS form `<resource>|<scope>`, so both
        // `scope=model.invoke` and `scope=api://model-studio|model.invoke` work, and the token
        // carries the form that was requested.
        const offered = allowed.flatMap((scope) => [scope, `${resourceIndicator}|${scope}`]);
        return {
          scope: offered.join(' '),
          audience: resourceIndicator,
          accessTokenTTL: ACCESS_TOKEN_TTL_SECONDS,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
};

const provider = new Provider(ISSUER, configuration);

// JWT access tokens are not stored, so oidc-provider emits `issued` for them, not `saved`.
provider.on('client_credentials.issued', (token) => {
  console.log(`idp: issued access token to ${token.clientId} scope="${token.scope ?? ''}" aud=${token.resourceServer?.audience}`);
});
provider.on('grant.error', (ctx, error) => {
  console.log(`idp: token request failed for ${ctx.oidc?.client?.clientId ?? 'unknown client'}: ${error.message} (${error.error_description ?? ''})`);
});
provider.on('server_error', (ctx, error) => {
  console.error(`idp: server error on ${ctx.method} ${ctx.path}:`, error);
});

const providerCallback = provider.callback();

// Mounts the provider under ISSUER_PATH. oidc-provider derives its mount path from the difference
// between req.originalUrl and req.url, as it does under Express's app.use(prefix, ...).
const server = http.createServer((req, res) => {
  if (req.url !== ISSUER_PATH && !req.url.startsWith(`${ISSUER_PATH}/`)) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not_found', error_description: `paths start with ${ISSUER_PATH}` }));
    return;
  }
  req.originalUrl = req.url;
  req.url = req.url.slice(ISSUER_PATH.length) || '/';
  providerCallback(req, res);
});

// As in the upstream stand-in: Envoy, not Node, closes idle keep-alive connections, so a JWKS
// fetch never lands on a connection that Node is closing.
server.keepAliveTimeout = 0;

server.listen(PORT, LISTEN_HOST, () => {
  console.log(`idp: listening on http://${LISTEN_HOST}:${PORT}, issuer ${ISSUER}, resource ${RESOURCE_SERVER_IDENTIFIER}`);
});

function shutDown(signal) {
  console.log(`idp: ${signal} received, stopping`);
  server.close(() => process.exit(0));
  // Keep-alive connections may hold close() open; do not wait for them.
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGINT', () => shutDown('SIGINT'));
process.on('SIGTERM', () => shutDown('SIGTERM'));

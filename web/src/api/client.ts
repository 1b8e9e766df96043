import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema";
import { withCsrf } from "./csrf";

type UnauthorizedHandler = () => void;

let onUnauthorized: UnauthorizedHandler = () => undefined;

/** The app's reaction to a 401 (the session ended): set once by the auth provider. */
export function setUnauthorizedHandler(handler: UnauthorizedHandler): void {
  onUnauthorized = handler;
}

export const csrfAndSessionMiddleware: Middleware = {
  onRequest({ request }) {
    return withCsrf(request);
  },
  onResponse({ response }) {
    if (response.status === 401) onUnauthorized();
    return response;
  },
};

export function apiOrigin(): string {
  return typeof window === "undefined" ? "" : window.location.origin;
}

/** Every call to crm goes through this typed client, with the session cookie. */
export function makeApi(fetchImpl?: typeof fetch) {
  const client = createClient<paths>({
    // Same origin as the page (crm serves the app), written out so Request objects never
    // depend on how a runtime resolves relative URLs.
    baseUrl: apiOrigin(),
    credentials: "include",
    // Resolved at call time so tests can replace the global fetch.
    fetch: (request: Request) => (fetchImpl ?? globalThis.fetch)(request),
  });
  client.use(csrfAndSessionMiddleware);
  return client;
}

export const api = makeApi();

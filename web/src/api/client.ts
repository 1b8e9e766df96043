import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema";
import { withCsrf } from "./csrf";
import { apiError, type ApiError } from "./errors";

type UnauthorizedHandler = () => void;
type RateLimitedHandler = (error: ApiError) => void;

let onUnauthorized: UnauthorizedHandler = () => undefined;
let onRateLimited: RateLimitedHandler = () => undefined;

/** The app's reaction to a 401 (the session ended): set once by the auth provider. */
export function setUnauthorizedHandler(handler: UnauthorizedHandler): void {
  onUnauthorized = handler;
}

/**
 * Who tells the person that crm answered 429 (crm's sentence, and when to try again):
 * set by the toast provider; the returned function takes it away again.
 */
export function setRateLimitedHandler(handler: RateLimitedHandler): () => void {
  onRateLimited = handler;
  return () => {
    if (onRateLimited === handler) onRateLimited = () => undefined;
  };
}

async function readBody(response: Response): Promise<unknown> {
  try {
    return (await response.clone().json()) as unknown;
  } catch {
    return undefined;
  }
}

export const csrfAndSessionMiddleware: Middleware = {
  onRequest({ request }) {
    return withCsrf(request);
  },
  async onResponse({ response }) {
    if (response.status === 401) onUnauthorized();
    // Every call, whoever made it: the page's own error handling still gets the answer.
    if (response.status === 429) onRateLimited(apiError(response, await readBody(response), "Too many requests"));
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

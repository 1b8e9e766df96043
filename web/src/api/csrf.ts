/** The CSRF token crm set in the readable `jggl_csrf` cookie (double-submit pattern). */
export const CSRF_COOKIE = "jggl_csrf";
export const CSRF_HEADER = "X-CSRF-Token";

const UNSAFE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

// The login answer carries the token too; kept in memory for the rare browser that hides
// the cookie from scripts (a strict privacy mode), never persisted.
let remembered: string | null = null;

export function rememberCsrfToken(token: string | null): void {
  remembered = token;
}

export function readCsrfToken(cookies: string = document.cookie): string | null {
  for (const part of cookies.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) {
      const value = rest.join("=");
      return value ? decodeURIComponent(value) : null;
    }
  }
  return remembered;
}

export function isUnsafeMethod(method: string): boolean {
  return UNSAFE_METHODS.has(method.toUpperCase());
}

/** Adds the CSRF header to an unsafe request; safe requests go unchanged. */
export function withCsrf(request: Request): Request {
  if (!isUnsafeMethod(request.method)) return request;
  const token = readCsrfToken();
  if (token) request.headers.set(CSRF_HEADER, token);
  return request;
}

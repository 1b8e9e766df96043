import { ApiError, errorMessage } from "./errors";
import { rememberCsrfToken, withCsrf } from "./csrf";
import { apiOrigin } from "./client";
import type { User } from "./types";

/**
 * Browser sessions: crm sets the httpOnly `jggl_session` cookie and the readable `jggl_csrf`
 * cookie. These two calls are written by hand because the session endpoints are not yet in
 * the committed OpenAPI schema; their shapes are crm's contract for the web app.
 */
export interface SessionAnswer {
  user: User;
  csrf_token: string;
}

export async function signIn(email: string, password: string): Promise<SessionAnswer> {
  const response = await fetch(
    withCsrf(
      new Request(`${apiOrigin()}/api/auth/session`, {
        method: "POST",
        credentials: "include",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ email, password }),
      }),
    ),
  );
  const body: unknown = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, errorMessage(body, `HTTP ${response.status}`));
  }
  const answer = body as SessionAnswer;
  rememberCsrfToken(answer.csrf_token);
  return answer;
}

export async function signOut(): Promise<void> {
  try {
    await fetch(
      withCsrf(new Request(`${apiOrigin()}/api/auth/session`, { method: "DELETE", credentials: "include" })),
    );
  } finally {
    rememberCsrfToken(null);
  }
}

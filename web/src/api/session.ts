import { api } from "./client";
import { unwrap } from "./errors";
import { rememberCsrfToken } from "./csrf";
import type { components } from "./schema";

/**
 * Browser sessions: crm sets the httpOnly `jggl_session` cookie and the readable
 * `jggl_csrf` cookie; the client sends the latter back as X-CSRF-Token.
 */
export type SessionAnswer = components["schemas"]["SessionResponse"];

export async function signIn(email: string, password: string): Promise<SessionAnswer> {
  const answer = unwrap(await api.POST("/api/auth/session", { body: { email, password } }), "Sign-in failed");
  rememberCsrfToken(answer.csrf_token);
  return answer;
}

export async function signOut(): Promise<void> {
  try {
    await api.DELETE("/api/auth/session");
  } finally {
    rememberCsrfToken(null);
  }
}

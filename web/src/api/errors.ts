/** What crm answered instead of success: `{detail}` as a sentence, or validation items. */
export class ApiError extends Error {
  readonly status: number;
  /** On a 429: the whole seconds crm asked to wait (`Retry-After`), when it said. */
  readonly retryAfter: number | null;

  constructor(status: number, message: string, retryAfter: number | null = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
    this.name = "ApiError";
  }
}

/** `Retry-After` as whole seconds (at least 1): its number of seconds or its date; null when absent or unreadable. */
export function retryAfterSeconds(header: string | null, now = Date.now()): number | null {
  if (!header) return null;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Math.max(1, Number(value));
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(1, Math.ceil((at - now) / 1000));
}

/** crm's sentence for a 429, and when to try again. */
export function rateLimitedMessage(sentence: string, seconds: number | null): string {
  const said = sentence.trim().replace(/[.\s]+$/, "");
  return seconds === null ? `${said}.` : `${said}. Try again in ${seconds} s.`;
}

/** The error a person sees for an answer that was not a success. */
export function apiError(response: Response, body: unknown, fallback: string): ApiError {
  const sentence = errorMessage(body, `${fallback} (HTTP ${response.status})`);
  if (response.status !== 429) return new ApiError(response.status, sentence);
  const seconds = retryAfterSeconds(response.headers.get("Retry-After"));
  return new ApiError(429, rateLimitedMessage(sentence, seconds), seconds);
}

interface ValidationItem {
  loc?: (string | number)[];
  msg?: string;
}

/** The sentence a person can read out of an error body crm sent. */
export function errorMessage(body: unknown, fallback: string): string {
  if (body && typeof body === "object" && "detail" in body) {
    const detail = (body as { detail: unknown }).detail;
    if (typeof detail === "string" && detail) return detail;
    if (Array.isArray(detail)) {
      const parts = (detail as ValidationItem[])
        .map((item) => {
          const field = item.loc?.filter((p) => p !== "body").join(".");
          return field ? `${field}: ${item.msg ?? ""}` : (item.msg ?? "");
        })
        .filter(Boolean);
      if (parts.length) return parts.join("; ");
    }
  }
  return fallback;
}

/**
 * Unwraps an openapi-fetch result: the data, or an ApiError carrying crm's own sentence.
 */
export function unwrap<T>(
  result: { data?: T; error?: unknown; response: Response },
  fallback = "The request failed",
): T {
  if (result.response.ok && result.error === undefined) return result.data as T;
  throw apiError(result.response, result.error, fallback);
}

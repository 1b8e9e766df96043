/** What crm answered instead of success: `{detail}` as a sentence, or validation items. */
export class ApiError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
    this.name = "ApiError";
  }
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
  throw new ApiError(
    result.response.status,
    errorMessage(result.error, `${fallback} (HTTP ${result.response.status})`),
  );
}

import { afterEach, describe, expect, it, vi } from "vitest";
import { makeApi, setRateLimitedHandler, setUnauthorizedHandler } from "./client";
import { CSRF_HEADER, readCsrfToken } from "./csrf";
import { ApiError, retryAfterSeconds, unwrap } from "./errors";

function recorder(status = 200) {
  const requests: Request[] = [];
  const fetchImpl = vi.fn(async (input: RequestInfo | URL) => {
    requests.push(input as Request);
    return new Response(JSON.stringify({ detail: "x" }), { status, headers: { "Content-Type": "application/json" } });
  }) as unknown as typeof fetch;
  return { requests, fetchImpl };
}

afterEach(() => setUnauthorizedHandler(() => undefined));

describe("the API client", () => {
  it("sends the jggl_csrf cookie's value as X-CSRF-Token on unsafe methods only", async () => {
    document.cookie = "jggl_csrf=tok%2Fen-123; path=/";
    const { requests, fetchImpl } = recorder();
    const api = makeApi(fetchImpl);

    await api.GET("/api/pipeline");
    await api.POST("/api/deals/{deal_id}/take", { params: { path: { deal_id: 1 } } });
    await api.PATCH("/api/deals/{deal_id}", { params: { path: { deal_id: 1 } }, body: { stage: "won" } });
    await api.PUT("/api/settings/{key}", { params: { path: { key: "sla.minutes" } }, body: { value: "30" } });
    await api.DELETE("/api/me/telegram-link");

    expect(requests.map((r) => [r.method, r.headers.get(CSRF_HEADER)])).toEqual([
      ["GET", null],
      ["POST", "tok/en-123"],
      ["PATCH", "tok/en-123"],
      ["PUT", "tok/en-123"],
      ["DELETE", "tok/en-123"],
    ]);
    expect(requests.every((r) => r.credentials === "include")).toBe(true);
  });

  it("reads the token among other cookies and gives null when there is none", () => {
    expect(readCsrfToken("a=1; jggl_csrf=abc; b=2")).toBe("abc");
    expect(readCsrfToken("a=1")).toBeNull();
  });

  it("tells the app when crm answers 401", async () => {
    const onUnauthorized = vi.fn();
    setUnauthorizedHandler(onUnauthorized);
    const { fetchImpl } = recorder(401);
    await makeApi(fetchImpl).GET("/api/deals");
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
  });

  it("does not call the 401 handler for other errors", async () => {
    const onUnauthorized = vi.fn();
    setUnauthorizedHandler(onUnauthorized);
    const { fetchImpl } = recorder(403);
    await makeApi(fetchImpl).GET("/api/users");
    expect(onUnauthorized).not.toHaveBeenCalled();
  });

  it("hands every 429 to the app with crm's sentence and when to try again", async () => {
    const seen: ApiError[] = [];
    const off = setRateLimitedHandler((error) => seen.push(error));
    const fetchImpl = vi.fn(async () =>
      new Response(JSON.stringify({ detail: "Too many requests in a short time" }), {
        status: 429,
        headers: { "Content-Type": "application/json", "Retry-After": "7" },
      }),
    ) as unknown as typeof fetch;
    const api = makeApi(fetchImpl);
    const result = await api.GET("/api/deals");
    await api.POST("/api/deals/{deal_id}/take", { params: { path: { deal_id: 1 } } });
    off();
    await api.GET("/api/deals");

    const shown = "Too many requests in a short time. Try again in 7 s.";
    expect(seen.map((error) => [error.status, error.message, error.retryAfter])).toEqual([
      [429, shown, 7],
      [429, shown, 7],
    ]);
    // The page's own handling reads the same answer (the body was not used up).
    expect(() => unwrap(result)).toThrow(shown);
  });

  it("reads Retry-After as seconds or as a date, and says nothing of a wait it was not told", async () => {
    const now = Date.parse("2026-12-06T10:00:00Z");
    expect(retryAfterSeconds("12", now)).toBe(12);
    expect(retryAfterSeconds("0", now)).toBe(1);
    expect(retryAfterSeconds("Sun, 06 Dec 2026 10:00:45 GMT", now)).toBe(45);
    expect(retryAfterSeconds("soon", now)).toBeNull();
    expect(retryAfterSeconds(null, now)).toBeNull();

    const fetchImpl = vi.fn(async () => new Response(null, { status: 429 })) as unknown as typeof fetch;
    let error: unknown;
    try {
      unwrap({ error: undefined, response: new Response(null, { status: 429 }) });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).message).toBe("The request failed (HTTP 429).");
    expect((error as ApiError).retryAfter).toBeNull();
    const seen: string[] = [];
    const off = setRateLimitedHandler((e) => seen.push(e.message));
    await makeApi(fetchImpl).GET("/api/pipeline");
    off();
    expect(seen).toEqual(["Too many requests (HTTP 429)."]);
  });
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { makeApi, setUnauthorizedHandler } from "./client";
import { CSRF_HEADER, readCsrfToken } from "./csrf";

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
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { LiveEvents, probeStream, type EventSourceLike } from "./events";

class RefusedSource implements EventSourceLike {
  readyState = 0;
  onopen: EventSourceLike["onopen"] = null;
  onerror: EventSourceLike["onerror"] = null;
  constructor(readonly url: string) {}
  addEventListener() {}
  close() {
    this.readyState = 2;
  }
  refuse() {
    this.readyState = 2;
    this.onerror?.call(this as unknown as EventSource, new Event("error"));
  }
}

function connections(probe: (url: string) => Promise<number | null>) {
  const sources: RefusedSource[] = [];
  const live = new LiveEvents(
    (url) => {
      const source = new RefusedSource(url);
      sources.push(source);
      return source;
    },
    "/api/events",
    () => undefined,
    probe,
  );
  return { sources, live };
}

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("reconnecting after crm refused the event stream", () => {
  it("waits the Retry-After of a 429 (too many streams open) before trying again, not the short backoff", async () => {
    vi.useFakeTimers();
    const probe = vi.fn(async () => 30);
    const { sources, live } = connections(probe);
    live.start();
    sources[0]?.refuse();
    await vi.advanceTimersByTimeAsync(0);
    expect(probe).toHaveBeenCalledWith("/api/events");

    // The backoff alone would have tried again after 2 s.
    await vi.advanceTimersByTimeAsync(29_000);
    expect(sources).toHaveLength(1);
    expect(live.getStatus()).toBe("offline");
    await vi.advanceTimersByTimeAsync(1_000);
    expect(sources).toHaveLength(2);
    live.stop();
  });

  it("keeps its own growing pause when crm refused for another reason", async () => {
    vi.useFakeTimers();
    const { sources, live } = connections(async () => null);
    live.start();
    sources[0]?.refuse();
    await vi.advanceTimersByTimeAsync(1_999);
    expect(sources).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sources).toHaveLength(2);
    sources[1]?.refuse();
    await vi.advanceTimersByTimeAsync(3_999);
    expect(sources).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(sources).toHaveLength(3);
    live.stop();
  });

  it("tries no more once stopped while asking crm", async () => {
    vi.useFakeTimers();
    let answer: (seconds: number | null) => void = () => undefined;
    const { sources, live } = connections(() => new Promise((resolve) => (answer = resolve)));
    live.start();
    sources[0]?.refuse();
    live.stop();
    answer(5);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sources).toHaveLength(1);
  });

  it("asks crm with HEAD and reads the wait from a 429", async () => {
    const fetchImpl = vi.fn(async (_url: string, init?: RequestInit) => {
      expect(init).toMatchObject({ method: "HEAD", credentials: "include" });
      return new Response(null, { status: 429, headers: { "Retry-After": "30" } });
    });
    vi.stubGlobal("fetch", fetchImpl);
    expect(await probeStream("/api/events")).toBe(30);
    fetchImpl.mockResolvedValueOnce(new Response(null, { status: 200 }));
    expect(await probeStream("/api/events")).toBeNull();
    fetchImpl.mockRejectedValueOnce(new TypeError("offline"));
    expect(await probeStream("/api/events")).toBeNull();
  });
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { LiveEvents, type EventSourceLike, type LiveEvent } from "./events";

class FakeSource implements EventSourceLike {
  readyState = 0;
  onopen: EventSourceLike["onopen"] = null;
  onerror: EventSourceLike["onerror"] = null;
  listeners = new Map<string, (event: MessageEvent<string>) => void>();
  closed = false;
  constructor(readonly url: string) {}
  addEventListener(type: string, listener: (event: MessageEvent<string>) => void) {
    this.listeners.set(type, listener);
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
  open() {
    this.readyState = 1;
    this.onopen?.call(this as unknown as EventSource, new Event("open"));
  }
  emit(type: string, data: string, lastEventId = "") {
    this.listeners.get(type)?.(new MessageEvent(type, { data, lastEventId }));
  }
  fail(closed: boolean) {
    this.readyState = closed ? 2 : 0;
    this.onerror?.call(this as unknown as EventSource, new Event("error"));
  }
}

afterEach(() => vi.useRealTimers());

describe("the shared event stream", () => {
  it("opens one EventSource on /api/events and hands parsed events to every subscriber", () => {
    const sources: FakeSource[] = [];
    const live = new LiveEvents((url) => {
      const s = new FakeSource(url);
      sources.push(s);
      return s;
    });
    const a: LiveEvent[] = [];
    const b: LiveEvent[] = [];
    live.subscribe((e) => a.push(e));
    live.subscribe((e) => b.push(e));
    live.start();
    live.start();
    expect(sources).toHaveLength(1);
    expect(sources[0]?.url).toBe("/api/events");

    sources[0]?.open();
    expect(live.getStatus()).toBe("live");
    sources[0]?.emit("crm.deal.created", JSON.stringify({ id: "ev-1", type: "crm.deal.created", occurred_at: "2026-12-01T00:00:00Z", data: { id: 5 } }), "17");
    sources[0]?.emit("crm.deal.updated", "{not json");

    expect(a).toEqual([{ id: "ev-1", type: "crm.deal.created", occurred_at: "2026-12-01T00:00:00Z", data: { id: 5 } }]);
    expect(b).toHaveLength(1);
  });

  it("leaves reconnecting to the browser while it retries, and starts again itself after a refusal", () => {
    vi.useFakeTimers();
    const sources: FakeSource[] = [];
    const refused = vi.fn();
    const live = new LiveEvents((url) => {
      const s = new FakeSource(url);
      sources.push(s);
      return s;
    }, "/api/events", refused);
    const statuses: string[] = [];
    live.onStatus((s) => statuses.push(s));
    live.start();
    sources[0]?.open();
    sources[0]?.emit("crm.task.due", JSON.stringify({ id: "e", type: "crm.task.due", occurred_at: "x", data: {} }), "41");
    sources[0]?.fail(false);
    expect(live.getStatus()).toBe("reconnecting");
    expect(sources).toHaveLength(1);

    sources[0]?.fail(true);
    expect(live.getStatus()).toBe("offline");
    expect(refused).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(2500);
    expect(sources).toHaveLength(2);
    expect(sources[1]?.url).toBe("/api/events?last_event_id=41");
    expect(statuses).toEqual(["offline", "connecting", "live", "reconnecting", "offline", "reconnecting"]);

    live.stop();
    expect(sources[1]?.closed).toBe(true);
  });
});

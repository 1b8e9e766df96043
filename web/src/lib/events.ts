/**
 * The app's one connection to crm's live events (`GET /api/events`, Server-Sent Events).
 * EventSource reconnects by itself and sends Last-Event-ID, so crm resumes where the
 * stream broke. When crm refuses the stream (the session ended, or crm is down) the
 * browser gives up; we then try again with a growing pause, resuming after the last event
 * seen (`?last_event_id=`, since a new EventSource has no Last-Event-ID of its own), and
 * the caller's `onRefused` lets the auth layer check the session. An EventSource cannot
 * see why it was refused, so `HEAD /api/events` asks: when crm answers 429 (the user has
 * too many streams open) the next try waits the `Retry-After` it names, never less.
 */
import { retryAfterSeconds } from "../api/errors";

export const EVENT_TYPES = [
  "crm.deal.created",
  "crm.deal.updated",
  "crm.deal.hot_lead",
  "crm.deal.sla_breached",
  "crm.message.received",
  "crm.message.sent",
  "crm.message.failed",
  "crm.task.due",
  "crm.contact.updated",
  "crm.channel.health_changed",
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

export interface LiveEvent {
  id: string;
  type: string;
  occurred_at: string;
  data: unknown;
}

export type LiveStatus = "connecting" | "live" | "reconnecting" | "offline";
type Listener = (event: LiveEvent) => void;
type StatusListener = (status: LiveStatus) => void;

export interface EventSourceLike {
  readyState: number;
  onopen: ((this: EventSource, ev: Event) => unknown) | null;
  onerror: ((this: EventSource, ev: Event) => unknown) | null;
  addEventListener(type: string, listener: (event: MessageEvent<string>) => void): void;
  close(): void;
}

export type EventSourceFactory = (url: string) => EventSourceLike;

/** The seconds crm asks a refused stream to wait (429 with `Retry-After`), else null. */
export type StreamProbe = (url: string) => Promise<number | null>;

export const probeStream: StreamProbe = async (url) => {
  try {
    const answer = await fetch(url, { method: "HEAD", credentials: "include" });
    return answer.status === 429 ? (retryAfterSeconds(answer.headers.get("Retry-After")) ?? 30) : null;
  } catch {
    return null;
  }
};

const CLOSED = 2;

export class LiveEvents {
  private source: EventSourceLike | null = null;
  private listeners = new Set<Listener>();
  private statusListeners = new Set<StatusListener>();
  private status: LiveStatus = "offline";
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private lastEventId = "";

  constructor(
    private readonly factory: EventSourceFactory = (url) =>
      new EventSource(url, { withCredentials: true }) as unknown as EventSourceLike,
    private readonly url = "/api/events",
    private readonly onRefused: () => void = () => undefined,
    private readonly probe: StreamProbe = probeStream,
  ) {}

  start(): void {
    if (this.source) return;
    this.setStatus(this.failures ? "reconnecting" : "connecting");
    const url = this.lastEventId ? `${this.url}?last_event_id=${encodeURIComponent(this.lastEventId)}` : this.url;
    const source = this.factory(url);
    this.source = source;
    source.onopen = () => {
      this.failures = 0;
      this.setStatus("live");
    };
    source.onerror = () => {
      if (source.readyState === CLOSED) {
        // The browser will not retry on its own (crm answered with an error status).
        this.source = null;
        this.failures += 1;
        this.setStatus("offline");
        this.onRefused();
        const pause = Math.min(30_000, 1000 * 2 ** Math.min(this.failures, 5));
        const refusedAt = Date.now();
        const timer = this.retryIn(pause);
        void this.probe(this.url).then((seconds) => {
          // Still waiting for that retry (not stopped or restarted meanwhile): wait as long as crm asked.
          if (seconds !== null && this.retryTimer === timer) {
            this.retryIn(Math.max(pause, seconds * 1000) - (Date.now() - refusedAt));
          }
        });
      } else {
        this.setStatus("reconnecting");
      }
    };
    // `ready` carries the position the stream resumes after; nothing to apply.
    source.addEventListener("ready", (message) => this.remember(message));
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (message) => this.dispatch(type, message));
    }
  }

  private retryIn(pause: number): ReturnType<typeof setTimeout> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const timer = setTimeout(() => {
      this.retryTimer = null;
      this.start();
    }, pause);
    this.retryTimer = timer;
    return timer;
  }

  stop(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.source?.close();
    this.source = null;
    this.failures = 0;
    this.lastEventId = "";
    this.setStatus("offline");
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onStatus(listener: StatusListener): () => void {
    this.statusListeners.add(listener);
    listener(this.status);
    return () => this.statusListeners.delete(listener);
  }

  getStatus(): LiveStatus {
    return this.status;
  }

  /** Parses one SSE message; a malformed one is skipped rather than breaking the stream. */
  dispatch(type: string, message: MessageEvent<string>): void {
    this.remember(message);
    let parsed: unknown;
    try {
      parsed = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!parsed || typeof parsed !== "object") return;
    const body = parsed as Partial<LiveEvent>;
    const event: LiveEvent = {
      id: typeof body.id === "string" ? body.id : message.lastEventId,
      type: typeof body.type === "string" ? body.type : type,
      occurred_at: typeof body.occurred_at === "string" ? body.occurred_at : new Date().toISOString(),
      data: body.data,
    };
    for (const listener of this.listeners) listener(event);
  }

  private remember(message: MessageEvent<string>): void {
    if (message.lastEventId) this.lastEventId = message.lastEventId;
  }

  private setStatus(status: LiveStatus): void {
    if (status === this.status) return;
    this.status = status;
    for (const listener of this.statusListeners) listener(status);
  }
}

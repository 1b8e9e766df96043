import { createContext, useCallback, useContext, useSyncExternalStore, type ReactNode } from "react";
import type { Translate } from "./i18n";

/** The business time zone every date is shown in (see README: where it comes from). */
const TimeZoneContext = createContext<string>(browserTimeZone());

export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export function TimeZoneProvider({ zone, children }: { zone: string; children: ReactNode }) {
  return <TimeZoneContext.Provider value={isValidTimeZone(zone) ? zone : browserTimeZone()}>{children}</TimeZoneContext.Provider>;
}

export function useTimeZone(): string {
  return useContext(TimeZoneContext);
}

export function formatDateTime(iso: string | null | undefined, locale: string, timeZone: string): string {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale, {
    timeZone,
    day: "2-digit",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
  }).format(new Date(iso));
}

export function formatDate(iso: string | null | undefined, locale: string, timeZone: string): string {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale, { timeZone, day: "2-digit", month: "short", year: "numeric" }).format(new Date(iso));
}

/** A span of time as a person says it: "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function formatDuration(seconds: number | null | undefined, t: Translate): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("duration.seconds", { n: s });
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return t("duration.minutes", { n: minutes });
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return t("duration.hoursMinutes", { h: hours, m: minutes % 60 });
  return t("duration.daysHours", { d: Math.floor(hours / 24), h: hours % 24 });
}

// One timer per refresh period for the whole page, however many rows show a waiting time.
const clocks = new Map<number, { now: number; listeners: Set<() => void>; timer: number | undefined }>();

function clock(everyMs: number) {
  let entry = clocks.get(everyMs);
  if (!entry) {
    entry = { now: Date.now(), listeners: new Set(), timer: undefined };
    clocks.set(everyMs, entry);
  }
  return entry;
}

function subscribe(everyMs: number, listener: () => void): () => void {
  const entry = clock(everyMs);
  entry.listeners.add(listener);
  if (entry.timer === undefined) {
    entry.now = Date.now();
    entry.timer = window.setInterval(() => {
      entry.now = Date.now();
      for (const l of entry.listeners) l();
    }, everyMs);
  }
  return () => {
    entry.listeners.delete(listener);
    if (entry.listeners.size === 0) {
      window.clearInterval(entry.timer);
      entry.timer = undefined;
    }
  };
}

/** The current time, refreshed every `everyMs` so waiting times and countdowns move. */
export function useNow(everyMs = 30_000): number {
  return useSyncExternalStore(
    useCallback((listener: () => void) => subscribe(everyMs, listener), [everyMs]),
    // A stored value, never a fresh Date.now(): React needs a stable snapshot per tick.
    () => clock(everyMs).now,
  );
}

export function formatMoney(amount: string | number | null | undefined, locale: string): string {
  if (amount === null || amount === undefined || amount === "") return "—";
  const n = typeof amount === "number" ? amount : Number(amount);
  if (!Number.isFinite(n)) return String(amount);
  return new Intl.NumberFormat(locale, { maximumFractionDigits: 2 }).format(n);
}

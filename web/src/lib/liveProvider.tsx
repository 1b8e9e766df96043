import { createContext, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { LiveEvents, type LiveEvent, type LiveStatus } from "./events";
import { applyEvent } from "./live";
import { useAuth, meKey } from "./auth";

interface LiveValue {
  status: LiveStatus;
  /** Pages that want to react to an event themselves (e.g. a toast on a failed reply). */
  subscribe: (listener: (event: LiveEvent) => void) => () => void;
}

const LiveContext = createContext<LiveValue>({ status: "offline", subscribe: () => () => undefined });

/** One EventSource for the whole app while someone is signed in. */
export function LiveProvider({ children, factory }: { children: ReactNode; factory?: ConstructorParameters<typeof LiveEvents>[0] }) {
  const client = useQueryClient();
  const { user } = useAuth();
  const [live, setLive] = useState<LiveEvents | null>(null);
  const [status, setStatus] = useState<LiveStatus>("offline");
  const userId = user?.id ?? null;

  useEffect(() => {
    if (userId === null) return;
    // A refused stream may mean the session ended: asking /api/me again finds out.
    const events = new LiveEvents(factory, "/api/events", () => void client.invalidateQueries({ queryKey: meKey }));
    let listsTimer: number | undefined;
    let pipelineTimer: number | undefined;
    const off = events.subscribe((event) => {
      const { listsStale } = applyEvent(client, event, client.getQueryData(meKey) ?? null);
      // Counts and sums, and lists that lacked the deal, are refetched once a burst settles.
      window.clearTimeout(pipelineTimer);
      pipelineTimer = window.setTimeout(() => void client.invalidateQueries({ queryKey: ["pipeline"] }), 1500);
      if (listsStale) {
        window.clearTimeout(listsTimer);
        listsTimer = window.setTimeout(() => void client.invalidateQueries({ queryKey: ["deals"] }), 800);
      }
    });
    const offStatus = events.onStatus(setStatus);
    events.start();
    setLive(events);
    return () => {
      off();
      offStatus();
      events.stop();
      window.clearTimeout(listsTimer);
      window.clearTimeout(pipelineTimer);
      setLive(null);
    };
  }, [client, userId, factory]);

  const value = useMemo(() => ({ status, subscribe: live ? live.subscribe.bind(live) : () => () => undefined }), [status, live]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): LiveValue {
  return useContext(LiveContext);
}
